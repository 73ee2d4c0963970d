"""test_gateway_policy.py -- allowlists on body, params, query and headers; secret headers; per-tenant accounts."""

import copy
import json

import pytest

import util
from test_gateway_common import CONTACT, SECRET, Env, check_error, header_values, no_new_records

GLOBEX_TOKEN = "Bearer globex-own-token-7f3a"
NOBODY_TOKEN = "Bearer nobody-own-token-c41d"
NOTES_RULES = ["notes.**", "custom.*", "tags[]", "matrix[][]", 'meta."e.mail"', "items[].sku",
	       "items[].qty", "flag"]


def _edit(cfg, env):
	crm = cfg["integrations"][0]
	assert crm["name"] == "crm"
	crm["headers"]["allow"] = ["Accept", "X-Request-Id", "X-Trace"]
	crm["endpoints"] += [
		{"method": "POST", "path": "/v1/notes", "request": {"allow": NOTES_RULES}},
		{"method": "GET", "path": "/v1/accounts/{account}/contacts/{id}",
		 "params": {"account": "allow", "id": "allow"}},
	]
	sec = env.base / "cfg" / "secrets"
	g = util.write_secret(sec / "globex.token", GLOBEX_TOKEN + "\n")
	n = util.write_secret(sec / "nobody.token", NOBODY_TOKEN + "\n")
	k = util.write_secret(sec / "nobody.key", "k-nobody-9\n")
	tenants = cfg["tenants"]
	# globex: same processor, its own server_name and token (a separate account).
	tenants[1]["integrations"] = [
		{"name": "crm", "server_name": "calendar.processor.test",
		 "headers": {"set": [{"name": "Authorization", "file": g}]}}]
	# nobody: another processor altogether.
	tenants.append({"id": "nobody", "clients": [util.UNKNOWN_URI], "integrations": [
		{"name": "crm", "upstream": env.procs["alt"].url, "server_name": "crm.processor.test",
		 "headers": {"set": [{"name": "Authorization", "file": n},
				     {"name": "X-Api-Key", "file": k}]}}]})
	# dnsco (client-dns): the default crm account, but its own token only.
	tenants.append({"id": "dnsco", "clients": ["svc.acme.test"], "integrations": [
		{"name": "crm", "headers": {"set": [{"name": "Authorization", "file": g}]}}]})


@pytest.fixture(scope="module")
def env(pki, tmp_path_factory):
	e = Env(pki, tmp_path_factory, "policy", procs={"crm": {}, "alt": {}}, edit=_edit)
	yield e
	e.close()


@pytest.fixture
def e(request, env):
	return env.use(request)


def post(e, path, doc=None, raw=None, cert="tenant-acme", headers=None):
	h = {"Content-Type": "application/json"}
	h.update(headers or {})
	body = raw if raw is not None else json.dumps(doc)
	r = e.gw.request("POST", path, body=body, headers=h, cert=cert)
	assert r.status == 200, r
	return e.crm.wait_records(1)[-1]


# --------------------------------------------------------------------------
# body

def test_body_allowlist(e):
	doc = copy.deepcopy(CONTACT)
	doc["ssn"] = "078-05-1120"
	doc["contact"]["notes"] = "private"
	rec = post(e, "/crm/v1/contacts", doc)
	assert rec["json"] == {
		"contact": {"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines"},
		"call": {"started_at": "2024-05-01T10:00:00Z", "summary": "asked about pricing",
			 "duration_s": 125},
	}
	for v in ("078-05-1120", "private", "ada@example.com", "555", "caller_id", "email", "ssn"):
		assert v not in rec["body"]
	assert header_values(rec, "Content-Length") == [str(len(rec["body"].encode()))]
	assert header_values(rec, "Content-Type") == ["application/json"]


def test_kept_values_byte_for_byte(e):
	raw = ('{"call":{"duration_s":1.50e+2,"summary":"caf\\u00e9 \\"q\\" \\/ \\ud83d\\ude00",'
	       '"started_at":"x"},"contact":{"company":-0.0,"first_name":"\u00e9\u4e2d"}}')
	rec = post(e, "/crm/v1/contacts", raw=raw.encode())
	body = rec["body"]
	assert "1.50e+2" in body
	assert '"caf\\u00e9 \\"q\\" \\/ \\ud83d\\ude00"' in body
	assert "-0.0" in body
	assert "\u00e9\u4e2d" in body


def test_object_or_array_at_scalar_rule_dropped(e):
	doc = {"contact": {"first_name": {"canary": "obj-canary-1"}, "last_name": ["arr-canary-2"],
			   "company": "Kept Ltd"},
	       "call": {"summary": {"text": "obj-canary-3"}, "started_at": [], "duration_s": {}}}
	rec = post(e, "/crm/v1/contacts", doc)
	assert rec["json"] == {"contact": {"company": "Kept Ltd"}}
	for c in ("obj-canary-1", "arr-canary-2", "obj-canary-3", "first_name", "last_name", "summary"):
		assert c not in rec["body"]


def test_scalars_of_every_type_at_allowed_leaves(e):
	doc = {"contact": {"first_name": None, "last_name": True, "company": 12.5},
	       "call": {"started_at": False, "summary": "", "duration_s": 0}}
	rec = post(e, "/crm/v1/contacts", doc)
	assert rec["json"] == doc


def test_container_where_rules_expect_one_of_another_kind(e):
	# "contact" an array, "call" a string: nothing under them can match.
	rec = post(e, "/crm/v1/contacts", {"contact": [{"first_name": "a"}], "call": "s"})
	assert rec["json"] == {}


def test_everything_dropped_leaves_empty_root(e):
	rec = post(e, "/crm/v1/contacts", {"email": "x@y.z", "nested": {"a": [1, 2, {"b": 3}]}})
	assert rec["json"] == {}
	assert rec["body"].strip() == "{}"


def test_arrays_of_objects(e):
	doc = {"summary": "review",
	       "attendees": [
		       {"response": "yes", "email": "a@example.com", "name": "A"},
		       {"response": {"nested": "obj-canary"}},
		       {"response": ["arr-canary"]},
		       {"name": "only-unlisted"},
		       "scalar-canary",
		       ["nested-array-canary"],
		       {"response": None},
		       {"response": 3, "x": {"y": 1}},
	       ]}
	r = e.gw.request("POST", "/calendar/v3/events", json=doc)
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	assert rec["json"] == {"summary": "review",
			       "attendees": [{"response": "yes"}, {"response": None}, {"response": 3}]}
	for c in ("obj-canary", "arr-canary", "only-unlisted", "scalar-canary", "nested-array-canary",
		  "a@example.com"):
		assert c not in rec["body"]


def test_array_rule_on_object_and_empty_array(e):
	r = e.gw.request("POST", "/calendar/v3/events",
			 json={"attendees": {"response": "obj-not-array"}, "start": "s"})
	assert r.status == 200, r
	assert e.crm.wait_records(1)[-1]["json"] == {"start": "s"}
	e.crm.clear()
	r = e.gw.request("POST", "/calendar/v3/events", json={"attendees": [{"email": "x"}], "end": "e"})
	assert r.status == 200, r
	assert e.crm.wait_records(1)[-1]["json"] == {"end": "e"}


def test_subtree_wildcard_and_quoted_rules(e):
	doc = {
		"notes": {"a": {"b": [1, {"c": None}], "d": "text"}, "k": []},
		"custom": {"s": "kept", "n": 1, "obj": {"dropped": "custom-obj-canary"},
			   "arr": ["custom-arr-canary"]},
		"tags": ["t1", 2, {"t": "tag-obj-canary"}, ["tag-arr-canary"], None],
		"matrix": [[1, 2], [3, {"m": "matrix-canary"}], 4],
		"meta": {"e.mail": "quoted-kept", "e": {"mail": "unquoted-canary"}},
		"items": [{"sku": "A1", "qty": 2, "price": 9.99}, {"sku": {"x": 1}, "qty": "3"}],
		"flag": True,
		"other": "other-canary",
	}
	rec = post(e, "/crm/v1/notes", doc)
	assert rec["json"] == {
		"notes": {"a": {"b": [1, {"c": None}], "d": "text"}, "k": []},
		"custom": {"s": "kept", "n": 1},
		"tags": ["t1", 2, None],
		"matrix": [[1, 2], [3]],
		"meta": {"e.mail": "quoted-kept"},
		"items": [{"sku": "A1", "qty": 2}, {"qty": "3"}],
		"flag": True,
	}
	for c in ("custom-obj-canary", "custom-arr-canary", "tag-obj-canary", "tag-arr-canary",
		  "matrix-canary", "unquoted-canary", "other-canary", "9.99"):
		assert c not in rec["body"]


@pytest.mark.parametrize("raw,why", [
	(b'{"contact":{"first_name":"a","first_name":"b"}}', "duplicate key"),
	(b'{"contact":{"first_name":"a"}', "truncated"),
	(b'{"contact":{"first_name":"\xff"}}', "invalid UTF-8"),
	(b'["not an object"]', "root not an object"),
	(b'{"a":' * 40 + b'1' + b'}' * 40, "too deep"),
	(b'{"contact":{"first_name":"a"}} {}', "trailing data"),
	(b'{"contact":{"first_name":NaN}}', "not JSON"),
	(b'{"contact":{"fir\\u0000st":"a"}}', "NUL in key"),
	(b'{"contact":{"first_name":"a\x01"}}', "control character in string"),
])
def test_malformed_json_refused(e, raw, why):
	r = e.gw.request("POST", "/crm/v1/contacts", body=raw,
			 headers={"Content-Type": "application/json"})
	check_error(r, 400, "bad_request")
	assert b"first_name" not in r.body
	no_new_records(e.crm)


# --------------------------------------------------------------------------
# params and query

def test_params_allowlist(e):
	r = e.gw.request("GET", "/crm/v1/accounts/acc-9/contacts/c%20d")
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	assert rec["path"] == "/v1/accounts/acc-9/contacts/c%20d"
	assert rec["body"] == "" or rec["body"] is None or rec["body_b64"] == ""


def test_query_allowlist(e):
	r = e.gw.request("GET", "/crm/v1/contacts/9?fields=name&email=ada%40example.com&_mode=drop"
			 "&fields=phone&token=q-canary&fields=&secret")
	# _mode=drop reaching the processor would have made it hang up.
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	assert rec["query"] == {"fields": ["name", "phone", ""]}
	for c in ("ada", "_mode", "q-canary", "secret", "email", "token"):
		assert c not in rec["target"]


def test_query_escapes_reencoded(e):
	r = e.gw.request("GET", "/crm/v1/contacts/9?fields=a%2Cb%20c&fields=%C3%A9")
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	assert rec["query"] == {"fields": ["a,b c", "\u00e9"]}


def test_query_dropped_where_endpoint_has_no_query_rules(e):
	rec = post(e, "/crm/v1/contacts?fields=x&_mode=drop&debug=1", CONTACT)
	assert rec["target"] == "/v1/contacts"
	assert rec["query"] == {}


def test_malformed_query_refused(e):
	r = e.gw.request("GET", "/crm/v1/contacts/9?fields=%zz")
	check_error(r, 400, "bad_request")
	no_new_records(e.crm)


# --------------------------------------------------------------------------
# headers

def test_header_allowlist_and_injected_secret(e):
	sent = {
		"Accept": "application/json",
		"X-Request-Id": "req-policy-1",
		"x-trace": "trace-7",
		"X-Forwarded-For": "10.9.8.7",
		"X-Forwarded-Host": "xfh-canary",
		"Forwarded": "for=10.9.8.6",
		"Cookie": "session=cookie-canary",
		"Authorization": "Bearer service-own-canary",
		"Proxy-Authorization": "Basic pa-canary",
		"X-Api-Key": "apikey-canary",
		"User-Agent": "ua-canary",
		"Via": "1.1 via-canary",
		"Referer": "https://ref-canary.example/",
		"Accept-Encoding": "gzip, br",
		"X-Debug-User": "maria-canary",
	}
	rec = post(e, "/crm/v1/contacts", CONTACT, headers=sent)
	names = sorted({k.lower() for k, _ in rec["headers"]})
	assert names == sorted(["host", "accept", "x-request-id", "x-trace", "authorization",
				"accept-encoding", "content-type", "content-length"]), rec["headers"]
	assert header_values(rec, "Authorization") == [util.CRM_TOKEN]
	assert header_values(rec, "Accept") == ["application/json"]
	assert header_values(rec, "X-Request-Id") == ["req-policy-1"]
	assert header_values(rec, "X-Trace") == ["trace-7"]
	assert header_values(rec, "Accept-Encoding") == ["identity"]
	assert header_values(rec, "Host") == ["crm.processor.test"]
	dump = json.dumps(rec)
	for c in ("10.9.8.7", "10.9.8.6", "xfh-canary", "cookie-canary", "service-own-canary",
		  "pa-canary", "apikey-canary", "ua-canary", "via-canary", "ref-canary", "maria-canary",
		  "gzip"):
		assert c not in dump


def test_secret_never_returned_or_logged(e):
	r = e.gw.request("GET", "/crm/v1/contacts/1", headers={"Authorization": "Bearer mine"})
	assert r.status == 200, r
	assert header_values(e.crm.wait_records(1)[-1], "Authorization") == [util.CRM_TOKEN]
	assert SECRET not in r.text and all(SECRET not in v for _, v in r.headers)
	assert SECRET not in e.gw.log_text()
	assert "Bearer mine" not in e.gw.log_text()


# --------------------------------------------------------------------------
# per-tenant accounts

def test_tenant_override_same_upstream_own_account(e):
	# acme: the integration's account; globex: same upstream, another
	# server_name and its own token.
	for i in range(3):
		for cert in ("tenant-acme", "tenant-globex"):
			with e.gw.connect(cert) as c:
				r = c.request("GET", "/crm/v1/contacts/%d" % i)
			assert r.status == 200, r
	recs = e.crm.wait_records(6)
	assert len(recs) == 6
	acme = [x for x in recs if x["sni"] == "crm.processor.test"]
	globex = [x for x in recs if x["sni"] == "calendar.processor.test"]
	assert len(acme) == 3 and len(globex) == 3, [x["sni"] for x in recs]
	for x in acme:
		assert header_values(x, "Authorization") == [util.CRM_TOKEN]
		assert header_values(x, "Host") == ["crm.processor.test"]
	for x in globex:
		assert header_values(x, "Authorization") == [GLOBEX_TOKEN]
		assert header_values(x, "Host") == ["calendar.processor.test"]
	assert not {x["conn"] for x in acme} & {x["conn"] for x in globex}
	assert e.procs["alt"].records() == []


def test_tenant_override_other_upstream(e):
	alt = e.procs["alt"]
	alt.clear()
	r = e.gw.request("POST", "/crm/v1/contacts", json=CONTACT, cert="tenant-unknown")
	assert r.status == 200, r
	rec = alt.wait_records(1)[-1]
	assert header_values(rec, "Authorization") == [NOBODY_TOKEN]
	assert header_values(rec, "X-Api-Key") == ["k-nobody-9"]
	assert rec["sni"] == "crm.processor.test"
	assert rec["json"]["contact"]["first_name"] == "Ada"
	no_new_records(e.crm, settle=0)
	# The override changes the account only: the policy is the integration's.
	assert "email" not in rec["body"]


def test_tenant_override_token_only_gets_own_connections(e):
	# dnsco overrides only headers.set: its calls carry its own token and
	# never ride a connection that carried acme's token.
	for i in range(3):
		for cert in ("tenant-acme", "client-dns"):
			r = e.gw.request("GET", "/crm/v1/contacts/%d" % i, cert=cert)
			assert r.status == 200, r
	recs = e.crm.wait_records(6)
	acme = [x for x in recs if header_values(x, "Authorization") == [util.CRM_TOKEN]]
	dns = [x for x in recs if header_values(x, "Authorization") == [GLOBEX_TOKEN]]
	assert len(acme) == 3 and len(dns) == 3, [header_values(x, "Authorization") for x in recs]
	assert not {x["conn"] for x in acme} & {x["conn"] for x in dns}, \
		"two tenants with different credentials shared an upstream connection"
