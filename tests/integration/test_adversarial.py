"""test_adversarial.py -- hostile JSON, form bodies and query strings through the real binary: refused with 400 and nothing forwarded, or forwarded exactly as the policy says."""

import json
import re
import urllib.parse

import pytest

from test_gateway_common import Env, check_error, no_new_records

TOK_RE = re.compile(r"^tok1\.\d+\.[A-Za-z0-9_-]+$")
HASH_RE = re.compile(r"^h1\.[a-z2-7]{26,}$")
CANARY = "CANARY-7f3e"
JSON_CT = {"Content-Type": "application/json"}
FORM_CT = {"Content-Type": "application/x-www-form-urlencoded"}


def _edit(cfg, env):
	crm = cfg["integrations"][0]
	assert crm["name"] == "crm"
	crm["endpoints"] = [
		{"method": "POST", "path": "/v1/contacts", "request": {
			"allow": ["contact.first_name", "email", '"d.e"', "payload", "nums[]", "n.*",
				  "deep.**", "first_name"],
			"tokenize": ["contact.email", "tok"],
			"format_preserve": ["fp"],
			"hash": ["h"],
			"mask": ["m"]}},
		{"method": "GET", "path": "/v1/contacts/{id}", "params": {"id": "allow"},
		 "query": {"allow": ["fields"], "tokenize": ["email"], "format_preserve": ["phone"],
			   "hash": ["caller"], "mask": ["card"]}},
	]


@pytest.fixture(scope="module")
def env(pki, tmp_path_factory):
	e = Env(pki, tmp_path_factory, "adversarial", edit=_edit, keys=True)
	yield e
	e.close()


@pytest.fixture
def e(request, env):
	return env.use(request)


def send(e, body, headers=JSON_CT, path="/crm/v1/contacts"):
	if isinstance(body, str):
		body = body.encode()
	return e.gw.request("POST", path, body=body, headers=headers)


def forwarded(e, body, headers=JSON_CT):
	r = send(e, body, headers)
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	e.crm.clear()
	return rec


def refused(e, body, headers=JSON_CT, path="/crm/v1/contacts"):
	r = send(e, body, headers, path)
	check_error(r, 400, "bad_request")
	no_new_records(e.crm)
	assert CANARY not in r.text
	return r


# --------------------------------------------------------------------------
# refused JSON

DEEP = 40	# past the default max_json_depth (32)

REFUSED = [
	("duplicate key", '{"email":"a","email":"%s"}' % CANARY),
	("duplicate after unescaping", '{"email":"a","em\\u0061il":"%s"}' % CANARY),
	("duplicate after unescaping, both escaped", '{"\\u0065mail":"a","em\\u0061il":"%s"}' % CANARY),
	("duplicate nested", '{"contact":{"first_name":"a","first_name":"%s"}}' % CANARY),
	("duplicate in a dropped subtree", '{"x":{"y":1,"y":"%s"}}' % CANARY),
	("NUL in key", '{"a\\u0000b":"%s"}' % CANARY),
	("NUL in an allowed key", '{"email\\u0000":"%s"}' % CANARY),
	("lone high surrogate", '{"email":"\\ud800%s"}' % CANARY),
	("lone low surrogate", '{"email":"\\udc00%s"}' % CANARY),
	("reversed surrogates", '{"email":"\\ude00\\ud83d%s"}' % CANARY),
	("lone surrogate in key", '{"\\ud800":"%s"}' % CANARY),
	("BOM", b'\xef\xbb\xbf{"email":"' + CANARY.encode() + b'"}'),
	("block comment", '{"email":"%s"/* c */}' % CANARY),
	("line comment", '{"email":"%s"// c\n}' % CANARY),
	("NaN", '{"email":"%s","n":{"x":NaN}}' % CANARY),
	("Infinity", '{"email":"%s","nums":[Infinity]}' % CANARY),
	("-Infinity", '{"email":"%s","nums":[-Infinity]}' % CANARY),
	("trailing data", '{"email":"%s"} x' % CANARY),
	("two documents", '{"email":"%s"}{}' % CANARY),
	("trailing bracket", '{"email":"%s"}]' % CANARY),
	("trailing comma", '{"email":"%s",}' % CANARY),
	("trailing comma in array", '{"email":"%s","nums":[1,]}' % CANARY),
	("single quotes", "{'email':'%s'}" % CANARY),
	("bare key", '{email:"%s"}' % CANARY),
	("leading zero", '{"email":"%s","nums":[01]}' % CANARY),
	("plus sign", '{"email":"%s","nums":[+1]}' % CANARY),
	("bare dot", '{"email":"%s","nums":[1.]}' % CANARY),
	("hex number", '{"email":"%s","nums":[0x10]}' % CANARY),
	("raw newline in string", '{"email":"%s\nx"}' % CANARY),
	("raw tab in string", '{"email":"%s\tx"}' % CANARY),
	("bad escape", '{"email":"%s\\x41"}' % CANARY),
	("short unicode escape", '{"email":"%s\\u41"}' % CANARY),
	("invalid UTF-8", b'{"email":"\xff' + CANARY.encode() + b'"}'),
	("overlong UTF-8", b'{"email":"\xc0\xaf' + CANARY.encode() + b'"}'),
	("UTF-8 surrogate", b'{"email":"\xed\xa0\x80' + CANARY.encode() + b'"}'),
	("truncated UTF-8", b'{"email":"' + CANARY.encode() + b'\xe2\x82"}'),
	("truncated document", '{"email":"%s"' % CANARY),
	("root array", '["%s"]' % CANARY),
	("root string", '"%s"' % CANARY),
	("root number", "12345"),
	("empty document", " "),
	("deep nesting under an allowed subtree",
	 '{"email":"%s","deep":%s1%s}' % (CANARY, "[" * DEEP, "]" * DEEP)),
	("deep nesting under a dropped key",
	 '{"email":"%s","zz":%s1%s}' % (CANARY, '{"a":' * DEEP, "}" * DEEP)),
]


@pytest.mark.parametrize("body", [b for _, b in REFUSED], ids=[n for n, _ in REFUSED])
def test_refused_json(e, body):
	refused(e, body)


def test_depth_limit_is_the_configured_one(e):
	# 31 levels under the root: within the default limit of 32
	ok = '{"deep":%s1%s,"email":"x"}' % ("[" * 30, "]" * 30)
	rec = forwarded(e, ok)
	assert rec["json"]["email"] == "x"
	assert rec["body"].count("[") == 30


# --------------------------------------------------------------------------
# accepted JSON, forwarded exactly as the policy says

def test_huge_numbers_kept_byte_for_byte(e):
	nums = ("1e400,-0.0e-0,123456789012345678901234567890123456789,1E-400,"
		"-9223372036854775809,18446744073709551616,0.10000000000000000000001,"
		"-1.7976931348623157e+309,4.9e-325,0,-0")
	rec = forwarded(e, '{"nums": [%s], "n": {"big": 1234567890123456789012345678901234567890e-2}}'
			% nums.replace(",", ", "))
	assert "[%s]" % nums in rec["body"]
	assert '"big":1234567890123456789012345678901234567890e-2' in rec["body"]


def test_json_inside_a_string_passes_as_a_string(e):
	inner = json.dumps({"ssn": "078-05-1120", "email": "x@example.com", "nested": {"a": [1]}})
	rec = forwarded(e, json.dumps({"payload": inner, "contact": {"ssn": CANARY}}))
	assert rec["json"] == {"payload": inner}
	assert isinstance(rec["json"]["payload"], str)
	assert CANARY not in rec["body"]


def test_escaped_key_matches_its_rule(e):
	rec = forwarded(e, '{"em\\u0061il":"kept","\\u0063ontact":{"first_\\u006eame":"Ada"}}')
	assert rec["json"] == {"email": "kept", "contact": {"first_name": "Ada"}}
	# kept byte for byte: the key as the client wrote it
	assert '"em\\u0061il":"kept"' in rec["body"]


def test_escaped_key_does_not_dodge_tokenize(e):
	rec = forwarded(e, '{"contact":{"em\\u0061il":"ada@example.com"},"t\\u006fk":"%s"}' % CANARY)
	c = rec["json"]["contact"]
	assert list(c) == ["email"] and TOK_RE.match(c["email"]), rec["json"]
	assert TOK_RE.match(rec["json"]["tok"])
	assert "ada@" not in rec["body"] and CANARY not in rec["body"]


def test_key_with_a_dot(e):
	body = json.dumps({"contact.email": CANARY, "contact": {"email.x": CANARY + "2"},
			   "d.e": "quoted rule", "d": {"e": CANARY + "3"}})
	rec = forwarded(e, body)
	assert rec["json"] == {"d.e": "quoted rule"}
	assert CANARY not in rec["body"]
	rec = forwarded(e, '{"d\\u002ee":"escaped dot"}')
	assert rec["json"] == {"d.e": "escaped dot"}


def test_keys_that_look_like_rule_syntax(e):
	body = json.dumps({"*": CANARY, "**": CANARY, "nums[]": CANARY, "n": {"*": "star key", "x": 1},
			   "deep": {"**": "kept", "[]": [1]}, '"email"': CANARY})
	rec = forwarded(e, body)
	assert rec["json"] == {"n": {"*": "star key", "x": 1}, "deep": {"**": "kept", "[]": [1]}}
	assert CANARY not in rec["body"]


def test_objects_where_scalar_rules_point_dropped(e):
	body = json.dumps({"email": {"inner": CANARY}, "tok": [CANARY], "h": {"x": CANARY},
			   "m": [[CANARY]], "fp": {"a": CANARY + "123456"}, "first_name": "kept"})
	rec = forwarded(e, body)
	assert rec["json"] == {"first_name": "kept"}
	assert CANARY not in rec["body"] and "123456" not in rec["body"]


def test_unicode_and_escapes_in_allowed_values_byte_for_byte(e):
	raw = ('{"email":"\\u00e9\\ud83d\\ude00\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000 \xe2\x80\xa8 '
	       '\xf0\x9f\x98\x80","first_name":"\\u0041"}')
	rec = forwarded(e, raw.encode("latin-1"))
	assert rec["body"].encode("utf-8") == raw.encode("latin-1")


# --------------------------------------------------------------------------
# form bodies

def test_form_body_fields_under_root_rules(e):
	form = urllib.parse.urlencode([
		("email", "ada@example.com"), ("tok", "secret-" + CANARY), ("h", "+15550100"),
		("m", "4111111111111111"), ("fp", "+1 555 010 0199"), ("ssn", CANARY),
		("contact.email", CANARY), ("first_name", "Ada Lovelace"), ("em%61il", CANARY)])
	r = send(e, form, FORM_CT)
	assert r.status == 200, "form body: %r" % r
	rec = e.crm.wait_records(1)[-1]
	ct = [v for k, v in rec["headers"] if k.lower() == "content-type"]
	assert ct and ct[0].split(";")[0].strip() == "application/x-www-form-urlencoded", ct
	got = urllib.parse.parse_qs(rec["body"], keep_blank_values=True)
	assert set(got) == {"email", "tok", "h", "m", "fp", "first_name"}, got
	assert got["email"] == ["ada@example.com"]
	assert got["first_name"] == ["Ada Lovelace"]
	assert TOK_RE.match(got["tok"][0])
	assert HASH_RE.match(got["h"][0])
	assert got["m"] == ["************1111"]
	fp = got["fp"][0]
	assert len(fp) == len("+1 555 010 0199") and fp != "+1 555 010 0199"
	assert [c for c in fp if not c.isdigit()] == [c for c in "+1 555 010 0199" if not c.isdigit()]
	assert CANARY not in rec["body"] and CANARY not in urllib.parse.unquote(rec["body"])


def test_form_body_same_token_as_json(e):
	rec = forwarded(e, json.dumps({"tok": "same value"}))
	jtok = rec["json"]["tok"]
	r = send(e, "tok=same+value", FORM_CT)
	assert r.status == 200, "form body: %r" % r
	rec = e.crm.wait_records(1)[-1]
	assert urllib.parse.parse_qs(rec["body"])["tok"] == [jtok]


@pytest.mark.parametrize("body", ["email=%zz", "email=%4", "email=%C3%28" + CANARY,
				  "email=%ED%A0%80" + CANARY])
def test_form_body_malformed_refused(e, body):
	r = send(e, body, FORM_CT)
	assert r.status != 415, "form bodies are not accepted yet: %r" % r
	check_error(r, 400, "bad_request")
	no_new_records(e.crm)


# --------------------------------------------------------------------------
# query parameters

def test_query_each_action_and_encoded_names(e):
	q = ("fields=a%2Cb&em%61il=ada%40example.com&phone=%2B1%20555%20010%200199&caller=%2B15550100"
	     "&card=4111111111111111&EMAIL=" + CANARY + "&ssn=" + CANARY + "&email=second%40example.com")
	r = e.gw.request("GET", "/crm/v1/contacts/42?" + q)
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	got = rec["query"]
	assert set(got) == {"fields", "email", "phone", "caller", "card"}, got
	assert got["fields"] == ["a,b"]
	assert len(got["email"]) == 2 and all(TOK_RE.match(v) for v in got["email"]), got
	assert got["email"][0] != got["email"][1]
	assert HASH_RE.match(got["caller"][0]) and got["card"] == ["************1111"]
	assert len(got["phone"][0]) == len("+1 555 010 0199")
	target = urllib.parse.unquote(rec["target"])
	for v in (CANARY, "ada@", "second@", "5550100"):
		assert v not in target


@pytest.mark.parametrize("q", ["fields=%zz", "fields=%4", "fields=%C3%28", "fields=%C3",
			       "em%zzail=x"])
def test_query_malformed_refused(e, q):
	r = e.gw.request("GET", "/crm/v1/contacts/42?" + q + "&ssn=" + CANARY)
	check_error(r, 400, "bad_request")
	no_new_records(e.crm)
