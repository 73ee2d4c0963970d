"""test_tokens.py -- tokenize, format_preserve, hash and mask end to end (body, path params, query); detokenisation, cross-tenant and forged tokens."""

import base64
import copy
import json
import os
import re
import urllib.parse

import pytest

import util
from test_gateway_common import Env, check_error, metric, no_new_records, wait_metric

DOMAIN = "tokens.example.com"
TOK_RE = re.compile(r"^tok1\.(\d+)\.([A-Za-z0-9_-]+)$")
HASH_RE = re.compile(r"^h1\.[a-z2-7]{26,}$")
EMAIL = "ada.lovelace@example.com"
WORK_EMAIL = "Ada.Lovelace@Analytical-Engines.example"
PHONE = "+1 (555) 010-0199"
CARD = "4111111111111111"


def _edit(cfg, env):
	crm = cfg["integrations"][0]
	assert crm["name"] == "crm"
	crm["token_domain"] = DOMAIN
	crm["endpoints"] = [
		{"method": "POST", "path": "/v1/contacts", "request": {
			"allow": ["contact.first_name", "note"],
			"tokenize": ["contact.email", "contact.num", "contact.flag"],
			"format_preserve": ["contact.phone", "contact.work_email", "contact.short"],
			"hash": ["call.caller_id"],
			"mask": ["contact.card_number", "contact.pin"]}},
		{"method": "GET", "path": "/v1/contacts/{id}", "params": {"id": "tokenize"},
		 "query": {"allow": ["fields"], "tokenize": ["email"],
			   "format_preserve": ["phone", "work_email"], "hash": ["caller"],
			   "mask": ["card"]}},
		{"method": "GET", "path": "/v1/phones/{phone}", "params": {"phone": "format_preserve"}},
		{"method": "GET", "path": "/v1/callers/{caller}/cards/{card}",
		 "params": {"caller": "hash", "card": "mask"}},
	]
	mirror = {k: v for k, v in crm.items() if k not in ("endpoints", "headers")}
	mirror.update({"name": "mirror", "prefix": "/mirror", "upstream": env.procs["mirror"].url,
		       "endpoints": [
		{"method": "POST", "path": "/v1/echo", "request": {
			"allow": ["carry", "carry_email", "note", "list[]"],
			"tokenize": ["email", "num", "flag", "nothing"],
			"format_preserve": ["phone", "work_email"],
			"hash": ["caller"], "mask": ["card"]},
		 "response": {"detokenize": ["carry", "email", "num", "flag", "nothing", "list[]"],
			      "format_preserve": ["carry_email", "phone", "work_email"]}}]})
	cfg["integrations"].append(mirror)
	for t in cfg["tenants"]:
		t["integrations"] = list(t["integrations"]) + ["mirror"]


@pytest.fixture(scope="module")
def env(pki, tmp_path_factory):
	e = Env(pki, tmp_path_factory, "tokens", procs={"crm": {}, "mirror": {"mode": "reflect"}},
		edit=_edit, keys=True)
	yield e
	e.close()


@pytest.fixture
def e(request, env):
	return env.use(request)


def post(e, path, doc, cert="tenant-acme", proc="crm", status=200):
	r = e.gw.request("POST", path, json=doc, cert=cert)
	assert r.status == status, r
	rec = e.procs[proc].wait_records(1)[-1]
	e.procs[proc].clear()
	return r, rec


def crm_contact(e, contact=None, call=None, cert="tenant-acme"):
	doc = {"contact": contact or {}}
	if call is not None:
		doc["call"] = call
	_, rec = post(e, "/crm/v1/contacts", doc, cert=cert)
	return rec


def mirror(e, doc, cert="tenant-acme"):
	"""POST to the reflecting processor: (what the client got back, what the processor got)."""
	r, rec = post(e, "/mirror/v1/echo", doc, cert=cert, proc="mirror")
	return r.json(), rec


def b32_ok(s):
	return re.fullmatch(r"[a-z2-7]+", s) is not None


def check_email_token(tok, original):
	assert tok != original and original.lower() not in tok.lower()
	local, _, dom = tok.partition("@")
	assert dom.endswith("." + DOMAIN) or dom == DOMAIN, tok
	assert 0 < len(local) <= 64 and b32_ok(local), tok
	labels = dom[:-len(DOMAIN)].rstrip(".").split(".") if dom != DOMAIN else []
	for lab in labels:
		assert 0 < len(lab) <= 63 and b32_ok(lab), tok


def check_ff1(out, original):
	assert isinstance(out, str) and len(out) == len(original), (out, original)
	for a, b in zip(original, out):
		assert a.isdigit() == b.isdigit(), (out, original)
		if not a.isdigit():
			assert a == b, (out, original)
	digits = "".join(c for c in original if c.isdigit())
	assert "".join(c for c in out if c.isdigit()) != digits
	assert digits not in out


# --------------------------------------------------------------------------
# actions in request bodies

def test_tokenize_deterministic_per_tenant_and_integration(e):
	a1 = crm_contact(e, {"email": EMAIL})
	a2 = crm_contact(e, {"email": EMAIL})
	g1 = crm_contact(e, {"email": EMAIL}, cert="tenant-globex")
	_, m1 = mirror(e, {"email": EMAIL})
	ta, tg, tm = (a1["json"]["contact"]["email"], g1["json"]["contact"]["email"],
		      m1["json"]["email"])
	for t, rec in ((ta, a1), (tg, g1), (tm, m1)):
		m = TOK_RE.match(t)
		assert m, t
		assert m.group(1) == "1"
		# AES-SIV tag (16) + padded ciphertext (>= 16 bytes)
		assert len(base64.urlsafe_b64decode(m.group(2) + "==")) >= 32
		assert "ada" not in rec["body"] and "example.com" not in rec["body"]
	assert a2["json"]["contact"]["email"] == ta, "tokenize is deterministic per pair"
	assert tg != ta, "another tenant gets another token"
	assert tm != ta, "another integration gets another token"
	other = crm_contact(e, {"email": "ada.lovelace@example.co"})
	assert other["json"]["contact"]["email"] != ta


def test_tokenize_keeps_json_type_apart(e):
	rec = crm_contact(e, {"email": "12345", "num": 12345, "flag": True})
	c = rec["json"]["contact"]
	assert all(TOK_RE.match(c[k]) for k in ("email", "num", "flag")), c
	assert c["email"] != c["num"], "string and number of the same text differ"
	assert "12345" not in rec["body"]


def test_format_preserve_email(e):
	rec = crm_contact(e, {"work_email": WORK_EMAIL})
	tok = rec["json"]["contact"]["work_email"]
	check_email_token(tok, WORK_EMAIL)
	assert "Lovelace" not in rec["body"] and "Analytical" not in rec["body"]
	again = crm_contact(e, {"work_email": WORK_EMAIL})
	assert again["json"]["contact"]["work_email"] == tok
	other = crm_contact(e, {"work_email": WORK_EMAIL}, cert="tenant-globex")
	assert other["json"]["contact"]["work_email"] != tok
	# a long address still yields a syntactically valid one
	long_addr = "x" * 60 + "." + "y" * 60 + "@" + "z" * 60 + ".example"
	rec = crm_contact(e, {"work_email": long_addr})
	check_email_token(rec["json"]["contact"]["work_email"], long_addr)


@pytest.mark.parametrize("phone", [PHONE, "+44 20 7946 0958", "555.010.0199", "0049-30-123456"])
def test_format_preserve_phone(e, phone):
	rec = crm_contact(e, {"phone": phone, "first_name": "Ada"})
	out = rec["json"]["contact"]["phone"]
	check_ff1(out, phone)
	again = crm_contact(e, {"phone": phone})
	assert again["json"]["contact"]["phone"] == out, "FF1 is deterministic"


def test_format_preserve_phone_number_type_and_short_values(e):
	rec = crm_contact(e, {"phone": 15550100199, "short": "555-01", "first_name": "Ada"})
	c = rec["json"]["contact"]
	check_ff1(c["phone"], "15550100199")	# a JSON string, 11 digits
	assert "short" not in c, "fewer than 6 digits: dropped"
	assert "555-01" not in rec["body"]
	rec = crm_contact(e, {"short": "no digits at all", "first_name": "Ada"})
	assert rec["json"]["contact"] == {"first_name": "Ada"}


def test_hash(e):
	rec = crm_contact(e, call={"caller_id": "+15550100"})
	h = rec["json"]["call"]["caller_id"]
	assert HASH_RE.match(h), h
	assert len(h) - 3 >= 26, "at least 128 bits"
	assert "5550100" not in rec["body"]
	assert crm_contact(e, call={"caller_id": "+15550100"})["json"]["call"]["caller_id"] == h
	assert crm_contact(e, call={"caller_id": "+15550101"})["json"]["call"]["caller_id"] != h
	g = crm_contact(e, call={"caller_id": "+15550100"}, cert="tenant-globex")
	assert g["json"]["call"]["caller_id"] != h, "the hash key is per pair"


@pytest.mark.parametrize("value,masked", [
	(CARD, "************1111"),
	("123", "***"),
	("1234", "****"),
	("12345", "*2345"),
	("\u00e9\u00e0\u00fc\u00f6abcd", "****abcd"),
	("ab\U0001F600cde", "**\U0001F600cde"),
	(4111111111111111, "************1111"),
])
def test_mask(e, value, masked):
	rec = crm_contact(e, {"card_number": value})
	assert rec["json"]["contact"]["card_number"] == masked


# --------------------------------------------------------------------------
# path parameters and query parameters

def test_path_param_tokenize_matches_body_token(e):
	body_tok = crm_contact(e, {"email": EMAIL})["json"]["contact"]["email"]
	r = e.gw.request("GET", "/crm/v1/contacts/" + urllib.parse.quote(EMAIL, safe=""))
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	seg = urllib.parse.unquote(rec["path"].rsplit("/", 1)[1])
	assert TOK_RE.match(seg), rec["path"]
	assert seg == body_tok, "a string tokenises the same in the path and in the body"
	assert "ada" not in rec["target"] and "%40" not in rec["target"]


def test_path_param_format_preserve_hash_mask(e):
	r = e.gw.request("GET", "/crm/v1/phones/" + urllib.parse.quote(PHONE, safe=""))
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	check_ff1(urllib.parse.unquote(rec["path"].rsplit("/", 1)[1]), PHONE)
	e.crm.clear()
	r = e.gw.request("GET", "/crm/v1/callers/%2B15550100/cards/" + CARD)
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	parts = [urllib.parse.unquote(p) for p in rec["path"].split("/")]
	assert parts[:3] == ["", "v1", "callers"] and parts[4] == "cards", parts
	assert HASH_RE.match(parts[3]), parts
	assert parts[5] == "************1111", parts
	assert "5550100" not in rec["target"]


def test_path_param_format_preserve_too_few_digits_refused(e):
	r = e.gw.request("GET", "/crm/v1/phones/555-01")
	check_error(r, 400, "bad_request")
	no_new_records(e.crm)


def test_query_parameters_each_action(e):
	body_tok = crm_contact(e, {"email": EMAIL})["json"]["contact"]["email"]
	q = urllib.parse.urlencode([("fields", "name,email"), ("email", EMAIL), ("phone", PHONE),
				    ("work_email", WORK_EMAIL), ("caller", "+15550100"),
				    ("card", CARD), ("secret", "078-05-1120")])
	r = e.gw.request("GET", "/crm/v1/contacts/7?" + q)
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	got = {k: v[0] for k, v in rec["query"].items()}
	assert set(got) == {"fields", "email", "phone", "work_email", "caller", "card"}, got
	assert got["fields"] == "name,email"
	assert got["email"] == body_tok
	check_ff1(got["phone"], PHONE)
	check_email_token(got["work_email"], WORK_EMAIL)
	assert HASH_RE.match(got["caller"])
	assert got["card"] == "************1111"
	for v in ("078-05-1120", "secret", "lovelace", "Lovelace", "5550100"):
		assert v not in urllib.parse.unquote(rec["target"])
	assert TOK_RE.match(urllib.parse.unquote(rec["path"].rsplit("/", 1)[1]))


def test_query_format_preserve_too_few_digits_dropped(e):
	r = e.gw.request("GET", "/crm/v1/contacts/7?fields=a&phone=555-01")
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	assert rec["query"] == {"fields": ["a"]}


# --------------------------------------------------------------------------
# responses: detokenisation at listed paths

def test_round_trip_through_reflecting_processor(e):
	doc = {"email": EMAIL, "num": 12345, "flag": True, "nothing": None, "phone": PHONE,
	       "work_email": WORK_EMAIL, "note": "hello", "caller": "+15550100", "card": CARD}
	back, rec = mirror(e, doc)
	sent = rec["json"]
	for k in ("email", "num", "flag", "nothing"):
		assert TOK_RE.match(sent[k]), (k, sent)
	check_ff1(sent["phone"], PHONE)
	check_email_token(sent["work_email"], WORK_EMAIL)
	assert HASH_RE.match(sent["caller"]) and sent["card"] == "************1111"
	expect = dict(doc, caller=sent["caller"], card="************1111")
	assert back == expect, "tokens come back as the original values, with their JSON types"


def test_token_outside_detokenize_paths_stays(e):
	_, rec = mirror(e, {"email": EMAIL})
	tok = rec["json"]["email"]
	back, _ = mirror(e, {"note": tok, "carry": tok, "list": [tok, "plain", tok]})
	assert back == {"note": tok, "carry": EMAIL, "list": [EMAIL, "plain", EMAIL]}


def test_cross_tenant_token_comes_back_untouched(e):
	_, rec = mirror(e, {"email": EMAIL, "work_email": WORK_EMAIL})
	acme_tok, acme_mail = rec["json"]["email"], rec["json"]["work_email"]
	labels = {"integration": "mirror"}
	before = metric(e.gw, "subgate_tokens_untouched_total", **labels)
	# globex writes acme's tokens into fields that are detokenise paths
	back, rec = mirror(e, {"carry": acme_tok, "carry_email": acme_mail}, cert="tenant-globex")
	assert rec["json"] == {"carry": acme_tok, "carry_email": acme_mail}
	assert back == {"carry": acme_tok, "carry_email": acme_mail}
	wait_metric(e.gw, "subgate_tokens_untouched_total", before + 2, **labels)
	# the same paths restore acme's own tokens for acme (the negative is not vacuous)
	back, _ = mirror(e, {"carry": acme_tok, "carry_email": acme_mail})
	assert back == {"carry": EMAIL, "carry_email": WORK_EMAIL}
	# and globex's own token for globex
	_, rec = mirror(e, {"email": EMAIL}, cert="tenant-globex")
	globex_tok = rec["json"]["email"]
	assert globex_tok != acme_tok
	back, _ = mirror(e, {"carry": globex_tok}, cert="tenant-globex")
	assert back == {"carry": EMAIL}
	back, _ = mirror(e, {"carry": globex_tok})
	assert back == {"carry": globex_tok}


def test_other_integration_token_untouched(e):
	crm_tok = crm_contact(e, {"email": EMAIL})["json"]["contact"]["email"]
	back, _ = mirror(e, {"carry": crm_tok})
	assert back == {"carry": crm_tok}, "a token of acme/crm is not restored under acme/mirror"


def _forgeries(tok):
	m = TOK_RE.match(tok)
	ver, body = m.group(1), m.group(2)
	mid = len(body) // 2
	flip = body[:mid] + ("A" if body[mid] != "A" else "B") + body[mid + 1:]
	raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
	return [
		"tok1.%s.%s" % (ver, flip),						# tampered ciphertext
		"tok1.%s.%s" % (ver, base64.urlsafe_b64encode(os.urandom(len(raw))).decode().rstrip("=")),
		"tok1.9.%s" % body,							# unknown version
		"tok1.%s.%s=" % (ver, body),						# padded: not canonical
		"tok1.%s.%s" % (ver, base64.b64encode(raw).decode().rstrip("=")) if
		("+" in base64.b64encode(raw).decode() or "/" in base64.b64encode(raw).decode())
		else "tok1.%s.%s." % (ver, body),					# wrong alphabet / junk
		"tok1.%s.%s" % (ver, body[:-4]),					# truncated
		"tok1.%s." % ver,							# empty
		"tok1.0%s.%s" % (ver, body),						# non-canonical version
	]


def test_forged_tokens_untouched_and_counted(e):
	_, rec = mirror(e, {"email": EMAIL})
	tok = rec["json"]["email"]
	forged = _forgeries(tok)
	assert len(set(forged)) == len(forged) and tok not in forged
	labels = {"integration": "mirror"}
	before = metric(e.gw, "subgate_tokens_untouched_total", **labels)
	restored0 = metric(e.gw, "subgate_tokens_restored_total", **labels)
	back, rec = mirror(e, {"list": forged, "carry": "TOK1.1.notatoken"})
	assert rec["json"] == {"list": forged, "carry": "TOK1.1.notatoken"}
	assert back == {"list": forged, "carry": "TOK1.1.notatoken"}
	wait_metric(e.gw, "subgate_tokens_untouched_total", before + len(forged), **labels)
	assert metric(e.gw, "subgate_tokens_restored_total", **labels) == restored0
	# the genuine token in the same list is restored
	back, _ = mirror(e, {"list": forged[:2] + [tok]})
	assert back == {"list": forged[:2] + [EMAIL]}
	wait_metric(e.gw, "subgate_tokens_restored_total", restored0 + 1, **labels)


def test_forged_email_token_untouched(e):
	_, rec = mirror(e, {"work_email": WORK_EMAIL})
	good = rec["json"]["work_email"]
	local, _, dom = good.partition("@")
	bad_local = local[:-1] + ("a" if local[-1] != "a" else "b")
	forged = [bad_local + "@" + dom, local + "@" + dom.replace(DOMAIN, "other.example.com"),
		  "aaaaaaaa@" + DOMAIN]
	for f in forged:
		back, _ = mirror(e, {"carry_email": f})
		assert back == {"carry_email": f}
	back, _ = mirror(e, {"carry_email": good.upper()})
	assert back == {"carry_email": WORK_EMAIL}, "email tokens decode case-insensitively"
