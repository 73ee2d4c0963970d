"""test_audit_log.py -- the disclosure log through the real binary: records of forwarded,
refused and failed calls, config and lifecycle records, request ids, no values anywhere,
subject search (`subgatectl audit show --subject`)."""

import base64
import copy
import json
import os
import re
import socket
import ssl
import struct
import threading
import time
from urllib.parse import quote, quote_plus

import pytest

import util
from test_audit_common import (ACTIONS, TIME_RE, AuditEnv, Keys, attach, audit_files, body_hmac,
			       audit_processes, by_request, canary, checkpoint_lines, contact, post_contact,
			       records, rid, verify, wait_records)

HEX64 = re.compile(r"^[0-9a-f]{64}$")
COMMON = ("type", "seq", "time", "instance", "request_id", "tenant", "client", "integration",
	  "processor", "method", "endpoint")
DISCLOSURE = COMMON + ("fields", "params", "query", "headers", "body_bytes", "body_hmac",
		       "subjects", "policy")
OUTCOME = COMMON + ("disclosure_seq", "status", "response_bytes", "duration_ms", "delivery",
		    "attempts", "processor_spki")
DENIAL = COMMON + ("reason",)


def _edit(cfg, env):
	# The calendar integration goes to a port nobody listens on (refused
	# connections); a hanging crm times out after one second.
	cfg["limits"]["upstream_timeout_ms"] = 1000
	# Leads come as form bodies: their subjects are root-level fields.
	crm = [i for i in cfg["integrations"] if i["name"] == "crm"][0]
	crm["endpoints"].append({"method": "POST", "path": "/v1/leads", "request": {
		"allow": ["name"], "tokenize": ["email"], "hash": ["phone"],
		"subjects": ["email", "phone"]}})


@pytest.fixture(scope="module")
def env(pki, tmp_path_factory):
	dead = "https://127.0.0.1:%d" % util.free_port()
	e = AuditEnv(pki, tmp_path_factory.mktemp("auditlog"), "auditlog", edit=_edit,
		     calendar_url=dead)
	yield e
	e.close()


@pytest.fixture
def e(request, env):
	return env.use(request)


def check_common(rec, env, request_id, tenant="acme", client=util.ACME_URI, integration="crm",
		 processor="crm.processor.test", method="POST", endpoint="/v1/contacts"):
	assert isinstance(rec["seq"], int) and rec["seq"] > 0, rec
	assert TIME_RE.match(rec["time"]), rec["time"]
	t = time.mktime(time.strptime(rec["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
	assert abs(t - time.time()) < 60, "record time %s is not now (UTC)" % rec["time"]
	assert rec["instance"] == "test", rec
	assert rec["request_id"] == request_id, rec
	assert rec["tenant"] == tenant, rec
	assert rec["client"] == client, rec
	assert rec["integration"] == integration, rec
	assert rec["processor"] == processor, rec
	assert rec["method"] == method, rec
	assert rec["endpoint"] == endpoint, rec


def check_actions(obj, what):
	"""fields/params/query/headers: {action: [path, ...]} with known actions."""
	assert isinstance(obj, dict), "%s is not an object: %r" % (what, obj)
	for k, v in obj.items():
		assert k in ACTIONS, "%s has an unknown action %r" % (what, k)
		assert isinstance(v, list) and v and all(isinstance(p, str) and p for p in v), (what, obj)
		assert len(v) == len(set(v)), "%s.%s repeats a path: %r" % (what, k, v)


def latest_policy(env):
	cfgs = [x for x in env.records() if x.get("type") == "config"]
	assert cfgs, "no config record"
	return cfgs[-1]["policy"]


# --------------------------------------------------------------------------
# forwarded calls

def test_forwarded_call_disclosure_then_outcome(e, pki):
	"""A forwarded call: a disclosure with every field (paths per action,
	`*` for unnamed keys, body_hmac over the forwarded body, subject
	count, policy), then an outcome with delivery=sent pointing at it."""
	r_id = rid("fwd")
	body = contact(notes="dropped field")
	body["contact"]["nickname"] = "unnamed key"
	r = post_contact(e.gw, body, r_id)
	assert r.status == 200, r
	assert r.header("X-Request-Id") == r_id
	got = e.wait_call(r_id)
	assert len(got["disclosure"]) == 1 and len(got["outcome"]) == 1, got
	d, o = got["disclosure"][0], got["outcome"][0]
	assert "denial" not in got

	for k in DISCLOSURE:
		assert k in d, "disclosure has no %r: %r" % (k, d)
	check_common(d, e, r_id)
	for k in ("fields", "params", "query", "headers"):
		check_actions(d[k], k)
	f = d["fields"]
	assert sorted(f.get("allow", [])) == sorted(["contact.first_name", "contact.last_name",
						    "contact.company", "call.started_at",
						    "call.summary", "call.duration_s"]), f
	assert f.get("tokenize") == ["contact.email"], f
	assert f.get("format_preserve") == ["contact.phone"], f
	assert f.get("hash") == ["call.caller_id"], f
	assert f.get("mask") == ["contact.card_number"], f
	# notes and contact.nickname are named by no rule: dropped, the
	# unnamed key written as *
	assert sorted(f.get("drop", [])) == ["*", "contact.*"], f
	assert d["params"] == {} and d["query"] == {}, d
	assert "X-Request-Id" in d["headers"].get("allow", []), d["headers"]

	rec = e.crm.wait_records(1)[-1]
	fwd = base64.b64decode(rec["body_b64"])
	assert d["body_bytes"] == len(fwd), (d["body_bytes"], len(fwd))
	assert HEX64.match(d["body_hmac"]), d["body_hmac"]
	assert d["body_hmac"] == body_hmac(e.keys.index_key(), fwd), \
		"body_hmac is not HMAC-SHA-256(keys_derive(index, body-hmac, audit-index, 1), forwarded body)"
	assert d["subjects"] == 2, "email and phone are subjects: %r" % d
	assert HEX64.match(d["policy"]) and d["policy"] == latest_policy(e), d

	for k in OUTCOME:
		assert k in o, "outcome has no %r: %r" % (k, o)
	check_common(o, e, r_id)
	assert o["seq"] > d["seq"]
	assert o["disclosure_seq"] == d["seq"], (o, d)
	assert o["delivery"] == "sent", o
	assert o["status"] == 200, o
	assert o["attempts"] == 1, o
	assert isinstance(o["response_bytes"], int) and o["response_bytes"] >= len(r.body), o
	assert isinstance(o["duration_ms"], (int, float)) and 0 <= o["duration_ms"] < 10000, o
	assert o["processor_spki"] == pki.spki, (o["processor_spki"], pki.spki)


def test_forwarded_get_params_and_query_paths(e):
	"""Path parameters and query parameters are named, never valued; an
	unnamed query parameter is `*`."""
	r_id = rid("get")
	r = e.gw.request("GET", "/crm/v1/contacts/c123?fields=name&other=1",
			 headers={"X-Request-Id": r_id})
	assert r.status == 200, r
	got = e.wait_call(r_id)
	d = got["disclosure"][0]
	check_common(d, e, r_id, method="GET", endpoint="/v1/contacts/{id}")
	assert d["params"] == {"allow": ["id"]}, d
	assert d["query"] == {"allow": ["fields"], "drop": ["*"]}, d
	assert d["fields"] == {}, d
	assert d["body_bytes"] == 0
	assert d["body_hmac"] == body_hmac(e.keys.index_key(), b"")
	assert d["subjects"] == 0
	assert got["outcome"][0]["delivery"] == "sent"
	assert got["outcome"][0]["disclosure_seq"] == d["seq"]


def test_request_id_generated_when_absent(e):
	"""Without X-Request-Id the gateway picks one: the same in the response
	header and in both records."""
	r = e.gw.request("POST", "/crm/v1/contacts", json=contact())
	assert r.status == 200, r
	r_id = r.header("X-Request-Id")
	assert r_id and re.match(r"^[A-Za-z0-9._:-]{1,64}$", r_id), r.headers
	got = e.wait_call(r_id)
	assert len(got["disclosure"]) == 1 and len(got["outcome"]) == 1


def test_invalid_request_id_is_replaced_not_recorded(e):
	"""An X-Request-Id the gateway does not accept (spaces, too long) is
	replaced by one of its own, in the response and the records; the
	client's text is nowhere in the log."""
	for bad in ("has space " + canary("rid"), "x" * 30 + canary("long") * 3):
		r = e.gw.request("POST", "/crm/v1/contacts", json=contact(), headers={"X-Request-Id": bad})
		assert r.status == 200, r
		r_id = r.header("X-Request-Id")
		assert r_id and r_id != bad and re.match(r"^[A-Za-z0-9._:-]{1,64}$", r_id), r.headers
		e.wait_call(r_id)
		out = e.show().stdout
		assert bad not in out and bad.split()[-1] not in out


# --------------------------------------------------------------------------
# refused calls

REFUSED = [
	# cert, method, path, body, reason, status, expected tenant/client/integration
	("tenant-acme", "GET", "/crm/v1/unlisted", None, "endpoint_not_allowed", 403,
	 ("acme", util.ACME_URI, "crm")),
	("tenant-acme", "DELETE", "/crm/v1/contacts/7", None, "endpoint_not_allowed", 403,
	 ("acme", util.ACME_URI, "crm")),
	("tenant-unknown", "GET", "/crm/v1/contacts/7", None, "client_not_allowed", 403,
	 (None, util.UNKNOWN_URI, None)),
	("tenant-globex", "POST", "/calendar/v3/events", {"start": "x"}, "integration_not_allowed", 403,
	 ("globex", util.GLOBEX_URI, "calendar")),
	("tenant-acme", "GET", "/nowhere/v1/x", None, "no_such_integration", 404,
	 ("acme", util.ACME_URI, None)),
	# refused after routing: the body is not JSON, or not declared as such
	("tenant-acme", "POST", "/crm/v1/contacts", (b'{"contact": ', "application/json"),
	 "bad_request", 400, ("acme", util.ACME_URI, "crm")),
	("tenant-acme", "POST", "/crm/v1/contacts", (b"first_name=Ada", "text/plain"),
	 "unsupported_media_type", 415, ("acme", util.ACME_URI, "crm")),
]


@pytest.mark.parametrize("cert,method,path,body,reason,status,who", REFUSED,
			 ids=[x[4] + "-" + x[1] for x in REFUSED])
def test_refused_call_is_a_denial(e, cert, method, path, body, reason, status, who):
	"""A refused call of a client whose chain verified: one denial with the
	reason, no disclosure, nothing forwarded."""
	r_id = rid("deny")
	hdrs = {"X-Request-Id": r_id}
	if isinstance(body, tuple):
		hdrs["Content-Type"] = body[1]
		r = e.gw.request(method, path, body=body[0], headers=hdrs, cert=cert)
	else:
		r = e.gw.request(method, path, json=body, headers=hdrs, cert=cert)
	assert r.status == status, r
	assert r.header("X-Request-Id") == r_id
	recs = wait_records(e.audit_dir, e.keys, lambda rs: by_request(rs, r_id, "denial"),
			    what="denial of %s" % r_id)
	mine = by_request(recs, r_id)
	assert [x["type"] for x in mine] == ["denial"], mine
	dn = mine[0]
	for k in DENIAL:
		assert k in dn, "denial has no %r: %r" % (k, dn)
	assert dn["reason"] == reason, dn
	assert dn["status"] == status, dn
	assert TIME_RE.match(dn["time"]) and dn["instance"] == "test"
	assert (dn["tenant"], dn["client"], dn["integration"]) == who, dn
	assert dn["method"] == method, dn
	# the endpoint is a pattern or nothing, never the concrete path
	if reason in ("bad_request", "unsupported_media_type"):
		assert dn["endpoint"] == "/v1/contacts", dn
	else:
		assert dn["endpoint"] in (None, ""), dn
	assert path not in json.dumps(dn)
	time.sleep(0.1)
	assert e.crm.records() == [], "the processor received a refused call"


def test_handshake_refusal_is_not_recorded(e):
	"""A client without a certificate (or with one of another CA) never
	gets a record: only the handshake failure metric counts it."""
	before = e.records()
	m0 = e.gw.metric("subgate_tls_handshake_failures_total") or 0
	for cert in (None, "client-otherca"):
		try:
			with e.gw.connect(cert, timeout=5) as c:
				resp = c.request("GET", "/crm/v1/contacts/1",
						 headers={"X-Request-Id": rid("nocert")})
			pytest.fail("connection with %s was not refused: %r" % (cert, resp))
		except util.TLS_REFUSED:
			pass
	util.wait_until(lambda: (e.gw.metric("subgate_tls_handshake_failures_total") or 0) >= m0 + 2,
			5, what="handshake failure metric +2")
	# A later call's records come right after the ones before: nothing in between.
	r_id = rid("after")
	assert post_contact(e.gw, contact(), r_id).status == 200
	got = e.wait_call(r_id)
	after = e.records()
	new = [x for x in after if x["seq"] > before[-1]["seq"]]
	extra = [x for x in new if x.get("request_id") != r_id]
	assert extra == [], "records for refused handshakes: %r" % extra
	assert got["disclosure"][0]["seq"] == before[-1]["seq"] + 1


# --------------------------------------------------------------------------
# upstream failures

def test_upstream_refused_is_not_sent(e):
	"""The processor refuses the connection: the disclosure was written
	first, the outcome says not_sent."""
	r_id = rid("refused")
	r = e.gw.request("POST", "/calendar/v3/events", json={"start": "2024-05-01T10:00:00Z"},
			 headers={"X-Request-Id": r_id})
	assert r.status == 502, r
	got = e.wait_call(r_id)
	d, o = got["disclosure"][0], got["outcome"][0]
	check_common(d, e, r_id, integration="calendar", processor="calendar.processor.test",
		     endpoint="/v3/events")
	assert len(got["outcome"]) == 1, got
	assert o["disclosure_seq"] == d["seq"]
	assert o["delivery"] == "not_sent", o
	assert o["status"] == 502, o
	assert o["processor_spki"] is None, o


@pytest.mark.parametrize("mode,status", [("hang", 504), ("drop", 502)])
def test_upstream_no_answer_after_write_is_unknown(e, mode, status):
	"""The request was written and the processor never answers (hang:
	timeout; drop: closes without a response): delivery unknown (it may
	have acted on it), and the POST is not sent twice."""
	e.crm.set_mode(mode)
	try:
		r_id = rid(mode)
		r = post_contact(e.gw, contact(), r_id)
		assert r.status == status, r
		got = e.wait_call(r_id)
	finally:
		e.crm.set_mode()
	assert len(e.crm.records()) == 1, "the processor got the request %d times" % len(
		e.crm.records())
	d, o = got["disclosure"][0], got["outcome"][0]
	assert len(got["outcome"]) == 1, got
	assert o["disclosure_seq"] == d["seq"]
	assert o["delivery"] == "unknown", o
	assert o["status"] == status, o
	assert o["attempts"] == 1, o


# --------------------------------------------------------------------------
# config and lifecycle

def test_config_and_lifecycle_records(e):
	"""start and config at start; after SIGHUP a reload and a new config
	record with the next generation."""
	recs = e.records()
	start = [x for x in recs if x["type"] == "lifecycle" and x.get("event") == "start"]
	assert start, "no lifecycle start record"
	cfg0 = [x for x in recs if x["type"] == "config"]
	assert cfg0 and cfg0[0]["seq"] > start[0]["seq"], recs[:5]
	assert HEX64.match(cfg0[0]["policy"]), cfg0[0]
	first_disc = [x for x in recs if x["type"] == "disclosure"]
	if first_disc:
		assert cfg0[0]["seq"] < first_disc[0]["seq"]
	last = recs[-1]["seq"]
	gen0 = cfg0[-1].get("generation")

	res = e.gw.reload()
	assert res.ok, res
	recs = wait_records(e.audit_dir, e.keys,
			    lambda rs: any(x["type"] == "config" and x["seq"] > last for x in rs),
			    what="config record after reload")
	new = [x for x in recs if x["seq"] > last]
	reload = [x for x in new if x["type"] == "lifecycle" and x.get("event") == "reload"]
	cfg1 = [x for x in new if x["type"] == "config"]
	assert len(reload) == 1 and len(cfg1) == 1, new
	assert reload[0]["seq"] < cfg1[0]["seq"]
	if gen0 is not None:
		assert cfg1[0]["generation"] == gen0 + 1, (cfg0[-1], cfg1[0])
	assert cfg1[0]["policy"] == cfg0[-1]["policy"], "same config, same policy hash"
	# A call after the reload is recorded under the new generation.
	r_id = rid("gen")
	assert post_contact(e.gw, contact(), r_id).status == 200
	d = e.wait_call(r_id)["disclosure"][0]
	if "generation" in d:
		assert d["generation"] == cfg1[0]["generation"]
	# A reload that does not take records no new config.
	last = e.records()[-1]["seq"]
	try:
		res = e.gw.reload(text="this is { not a config")
		assert res.ok is False, res
	finally:
		e.gw.write_config()
	time.sleep(0.3)
	new = [x for x in e.records() if x["seq"] > last]
	assert not [x for x in new if x["type"] == "config"], new


def test_stop_record_at_shutdown(gateway):
	"""SIGTERM: the last record is a lifecycle stop, and the log verifies."""
	gw = gateway(keys=True)
	keys = Keys(gw.cfg.keys_dir)
	adir = gw.cfg["audit"]["directory"]
	r_id = rid("stop")
	r = gw.request("POST", "/crm/v1/contacts", json=contact(), headers={"X-Request-Id": r_id})
	assert r.status == 200, r
	# the signing key moved into the audit directory; the configured file is gone
	assert not os.path.exists(gw.cfg["keys"]["audit_signer"]), "the configured signing key survived"
	st = os.stat(os.path.join(adir, "signer.key"))
	assert st.st_mode & 0o077 == 0, oct(st.st_mode)
	assert gw.stop() == 0
	recs = records(adir, keys)
	assert recs[0]["type"] == "lifecycle" and recs[0]["event"] == "start", recs[0]
	assert recs[-1]["type"] == "lifecycle" and recs[-1]["event"] == "stop", recs[-1]
	types = [x["type"] for x in by_request(recs, r_id)]
	assert types == ["disclosure", "outcome"], types
	rc, out = verify(adir, keys)
	assert rc == 0, out
	assert re.search(r"kind=close", gw.log_text()), "no close checkpoint line in the log"


def test_replaced_signing_key_is_wiped_on_disk(gateway):
	"""Forward security holds on disk: when a checkpoint has certified the
	next signing key and signer.key is handed over to it, the old key's
	bytes are overwritten, not left in the blocks the rename frees for a
	later compromise to find. A hard link taken before keeps the old file
	reachable to look at."""
	gw = gateway(keys=True)
	keys = Keys(gw.cfg.keys_dir)
	adir = gw.cfg["audit"]["directory"]
	key = os.path.join(adir, "signer.key")
	old = os.path.join(os.path.dirname(adir), "old-signer.key")
	os.link(key, old)
	ino = os.stat(key).st_ino
	with open(old, "rb") as f:
		assert b"PRIVATE KEY" in f.read()
	# checkpoint_seconds = 2 in the test configuration: the next
	# checkpoint comes without traffic, certifies signer.next, and the
	# key thread hands the file over.
	deadline = time.time() + 20
	while os.stat(key).st_ino == ino:
		assert time.time() < deadline, "signer.key was never handed over"
		time.sleep(0.1)
	# the key thread renames, then wipes
	while True:
		with open(old, "rb") as f:
			data = f.read()
		if b"-" not in data or time.time() > deadline:
			break
		time.sleep(0.05)
	assert len(data) > 100, "the old key file was truncated, not overwritten"
	assert data == bytes(len(data)), "the replaced signing key is still on disk"
	with open(key, "rb") as f:
		assert b"PRIVATE KEY" in f.read(), "the new signer.key is not a key"
	r_id = rid("wipe")
	r = gw.request("POST", "/crm/v1/contacts", json=contact(), headers={"X-Request-Id": r_id})
	assert r.status == 200, r
	assert gw.stop() == 0
	rc, out = verify(adir, keys)
	assert rc == 0, out


# --------------------------------------------------------------------------
# no values anywhere

def test_no_values_in_log_files_or_show_output(e):
	"""Canaries in allowed, tokenised, dropped and hashed fields, in
	client-chosen keys, path parameters, query names and values and
	dropped headers: none is in any file of the audit directory, in any
	format of `audit show`, or in the gateway log."""
	c = {k: canary(k) for k in ("allowed", "company", "dropped", "nested", "key", "nestedkey",
				    "caller", "param", "qval", "qkey", "qkeyval", "hdr", "hdrname",
				    "denypath", "denyq", "email")}
	digits = "415" + str(int(time.time() * 1000))[-7:]
	email = "%s@Example.com" % c["email"]
	body = contact(email=email, phone="+1 %s %s %s" % (digits[:3], digits[3:6], digits[6:]))
	body["contact"]["first_name"] = c["allowed"]
	body["contact"]["company"] = c["company"]
	body["contact"][c["nestedkey"]] = c["nested"]
	body["call"]["caller_id"] = c["caller"]
	body[c["key"]] = {"v": 1}
	body["notes"] = c["dropped"]
	ids = [rid("cny") for _ in range(4)]
	r = e.gw.request("POST", "/crm/v1/contacts", json=body,
			 headers={"X-Request-Id": ids[0], "X-" + c["hdrname"]: "1",
				  "X-Dropped": c["hdr"]})
	assert r.status == 200, r
	r = e.gw.request("GET", "/crm/v1/contacts/%s?fields=%s&%s=%s" % (
		c["param"], c["qval"], c["qkey"], c["qkeyval"]), headers={"X-Request-Id": ids[1]})
	assert r.status == 200, r
	r = e.gw.request("GET", "/crm/v1/%s?q=%s" % (c["denypath"], c["denyq"]),
			 headers={"X-Request-Id": ids[2]})
	assert r.status == 403, r
	r = e.gw.request("POST", "/crm/v1/contacts", json=body, headers={"X-Request-Id": ids[3]},
			 cert="tenant-unknown")
	assert r.status == 403, r
	e.wait_call(ids[0])
	e.wait_call(ids[1])
	wait_records(e.audit_dir, e.keys, lambda rs: by_request(rs, ids[3], "denial"),
		     what="denial of the unknown client")
	# the values reached the processor (so the canaries were really sent)
	fwd = json.dumps(e.crm.records())
	assert c["allowed"] in fwd and c["param"] in fwd and c["qval"] in fwd

	needles = list(c.values()) + [email, email.lower(), digits, "+1" + digits]
	outputs = {}
	for fmt in ("jsonl", "csv", "table"):
		res = e.show(fmt=fmt)
		assert res.returncode == 0, res.stderr
		outputs["show --format " + fmt] = res.stdout + res.stderr
	assert all(i in outputs["show --format jsonl"] for i in ids), "records missing from show"
	for f in audit_files(e.audit_dir):
		with open(f, "rb") as fh:
			outputs[f] = fh.read()
	outputs["gateway log"] = e.gw.log_text()
	found = []
	for where, data in outputs.items():
		for n in needles:
			nb = n.encode() if isinstance(data, bytes) else n
			if nb in data:
				found.append((n, where))
	assert not found, "values in the audit log or its output: %r" % found


# --------------------------------------------------------------------------
# subject search

def test_subject_phone_written_as_a_json_number(e):
	"""A phone number the service sends as a JSON number is a subject too:
	the search finds the disclosure (the hash covers numbers, not only
	strings)."""
	n = str(int(time.time() * 1000))[-6:]
	body = contact("num.%s@example.org" % n, "x")
	# national (a JSON number cannot carry "+"): acme's country code 1 applies
	body["contact"]["phone"] = int("415556" + n[-4:])
	i = rid("subjnum")
	assert post_contact(e.gw, body, i).status == 200
	d = e.wait_call(i)["disclosure"][0]
	assert d["subjects"] == 2, d
	res = e.show("--index-key", e.keys.index, "--subject", "+1 415 556 " + n[-4:])
	assert res.returncode == 0, res.stderr
	assert [json.loads(x)["request_id"] for x in res.stdout.splitlines() if x.strip()] == [i]


def test_subject_search_any_formatting(e):
	"""`audit show --subject` finds exactly the disclosures about one
	person however the address or number is written: email in any case,
	phone with spaces, dashes, brackets, +CC, 00CC, or national with
	--tenant and -c CONF or --country-code; on the command line or stdin."""
	n = str(int(time.time() * 1000))[-4:]
	user = "grace.hopper.%s" % n
	a_email, a_phone = "%s@Example.ORG" % user.title(), "+1 (415) 555-%s" % n
	b_email, b_phone = "someone.%s@example.org" % n, "+1 212 555 %s" % n
	c_phone = "20 7946 %s" % n			# national, globex: country code 44
	ids = {k: rid("subj" + k) for k in ("a1", "a2", "b", "c")}
	assert post_contact(e.gw, contact(a_email, a_phone), ids["a1"]).status == 200
	# the same person again, written differently
	assert post_contact(e.gw, contact(a_email.upper(), "415-555-%s" % n), ids["a2"]).status == 200
	assert post_contact(e.gw, contact(b_email, b_phone), ids["b"]).status == 200
	assert post_contact(e.gw, contact("c.%s@example.net" % n, c_phone), ids["c"],
			    cert="tenant-globex").status == 200
	# a calendar event with the same person among three attendees (the
	# calendar processor is down: the disclosure is written all the same)
	ids["cal"] = rid("subjcal")
	ev = {"start": "2024-05-01T10:00:00Z", "attendees": [
		{"email": "x.%s@example.org" % n, "response": "yes"},
		{"email": a_email.lower(), "response": "no"},
		{"email": "y.%s@example.org" % n, "name": "Yolanda %s" % n}]}
	r = e.gw.request("POST", "/calendar/v3/events", json=ev, headers={"X-Request-Id": ids["cal"]})
	assert r.status == 502, r
	# an address written decomposed (e + U+0301) is the same as composed (U+00E9)
	ids["nfd"] = rid("subjnfd")
	assert post_contact(e.gw, contact("Jose\u0301.%s@example.org" % n, "+1 646 555 " + n),
			    ids["nfd"]).status == 200
	# beyond Latin: Cyrillic upper case, and Vietnamese written decomposed
	# (e + U+0302 + U+0303, where the search has the precomposed U+1EC5)
	ids["cyr"] = rid("subjcyr")
	assert post_contact(e.gw, contact("\u0418\u0412\u0410\u041d.%s@\u041f\u0420\u0418\u041c\u0415\u0420.\u0420\u0424" % n,
					  "+1 718 555 " + n), ids["cyr"]).status == 200
	ids["vi"] = rid("subjvi")
	assert post_contact(e.gw, contact("Nguye\u0302\u0303n.%s@example.vn" % n, "+1 917 555 " + n),
			    ids["vi"]).status == 200
	for i in ids.values():
		e.wait_call(i)
	cal = e.wait_call(ids["cal"])["disclosure"][0]
	assert cal["subjects"] == 3, cal
	# array paths are written with [], an unnamed key in an element as *
	f = {k: sorted(v) for k, v in cal["fields"].items()}
	assert f == {"allow": ["attendees[].response", "start"], "tokenize": ["attendees[].email"],
		     "drop": ["attendees[].*"]}, cal["fields"]
	assert "Yolanda" not in e.show().stdout

	def found(subject, *extra, stdin=False):
		args = ["--index-key", e.keys.index, "--subject", "-" if stdin else subject] + list(extra)
		res = e.show(*args, input=(subject + "\n") if stdin else None)
		assert res.returncode == 0, (subject, extra, res.stderr)
		recs = [json.loads(ln) for ln in res.stdout.splitlines() if ln.strip()]
		assert all(x["type"] == "disclosure" for x in recs), recs
		assert subject not in res.stdout
		return sorted(x["request_id"] for x in recs)

	A = sorted([ids["a1"], ids["a2"], ids["cal"]])
	conf = ["--tenant", "acme", "-c", str(e.gw.config_path)]
	cases = [
		(user + "@example.org", []), (user.upper() + "@EXAMPLE.ORG", []),
		(a_email, []),
		("+1415555" + n, []), ("+1 415 555 " + n, []), ("+1-415-555-" + n, []),
		("001 415 555 " + n, []), ("00 1 415-555-" + n, []), ("001415555" + n, []),
		("(415) 555-" + n, conf), ("415 555 " + n, ["--country-code", "1"]),
	]
	for subject, extra in cases:
		want = A if "@" in subject else sorted([ids["a1"], ids["a2"]])
		assert found(subject, *extra) == want, (subject, extra)
		assert found(subject, *extra, stdin=True) == want, ("stdin", subject, extra)
	assert found("jos\u00e9.%s@EXAMPLE.org" % n) == [ids["nfd"]], "email not NFC-normalised"
	assert found("jose\u0301.%s@example.org" % n) == [ids["nfd"]]
	assert found("\u0438\u0432\u0430\u043d.%s@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444" % n) == [ids["cyr"]], \
		"a non-Latin email not lower-cased"
	assert found("nguy\u1ec5n.%s@example.vn" % n) == [ids["vi"]], "email not NFC-normalised"
	assert found(b_email) == [ids["b"]]
	assert found("+1 212-555-" + n) == [ids["b"]]
	C = [ids["c"]]
	assert found("+44 20 7946 " + n) == C
	assert found("0044 20-7946-" + n) == C
	assert found(c_phone, "--tenant", "globex", "-c", str(e.gw.config_path)) == C
	assert found(c_phone, "--country-code", "44") == C
	# the same national number under acme's code is someone else
	assert found(c_phone, "--country-code", "1") == []
	assert found(c_phone, *conf) == []
	assert found("nobody.%s@example.org" % n) == []
	assert found("+1 415 555 " + n, "--type", "disclosure", "--tenant", "globex") == []
	assert found(a_email, "--integration", "calendar") == [ids["cal"]]


def test_subjects_of_a_form_body(e):
	"""A form body's subject fields are hashed like a JSON body's: `audit
	show --subject` finds the call by the email or the phone number sent as
	form fields (percent-encoded, + for spaces), and a field the subject
	rules do not name is not a subject."""
	n = str(int(time.time() * 1000))[-4:]
	email, phone = "form.%s@Example.org" % n, "+1 415 555 %s" % n
	body = "name=Form+Lead&email=%s&phone=%s&note=other.%s%%40example.org" % (
		quote(email, safe=""), quote_plus(phone), n)
	r_id = rid("form")
	r = e.gw.request("POST", "/crm/v1/leads", body=body.encode(), headers={
		"Content-Type": "application/x-www-form-urlencoded", "X-Request-Id": r_id})
	assert r.status == 200, r
	d = e.wait_call(r_id)["disclosure"][0]
	assert d["subjects"] == 2, d
	assert sorted(d["fields"].get("tokenize", [])) == ["email"], d["fields"]

	def found(subject):
		res = e.show("--index-key", e.keys.index, "--subject", subject)
		assert res.returncode == 0, res.stderr
		return [json.loads(ln)["request_id"] for ln in res.stdout.splitlines() if ln.strip()]
	assert found(email.lower()) == [r_id]
	assert found("+1415555" + n) == [r_id]
	assert found("other.%s@example.org" % n) == []


def test_policy_hash_follows_recipient_and_key_versions(gateway, pki):
	"""The policy hash in config and disclosure records covers the
	recipient (here: an SPKI pin added) and the key versions (`keys rotate`
	+ `keys activate`, config file unchanged): each change gives a new
	hash, and the next disclosure carries it."""
	gw = gateway(keys=True)
	keys = Keys(gw.cfg.keys_dir)
	adir = gw.cfg["audit"]["directory"]

	def policies():
		recs = records(adir, keys)
		return [x["policy"] for x in recs if x["type"] == "config"]

	def disclosed_policy():
		r_id = rid("pol")
		r = gw.request("POST", "/crm/v1/contacts", json=contact(), headers={"X-Request-Id": r_id})
		assert r.status == 200, r
		recs = wait_records(adir, keys, lambda rs: by_request(rs, r_id, "disclosure"))
		return by_request(recs, r_id, "disclosure")[0]["policy"]

	p0 = policies()[-1]
	assert disclosed_policy() == p0
	gw.cfg["integrations"][0]["pin_sha256"] = [pki.spki]
	assert gw.reload(cfg=gw.cfg).ok
	p1 = policies()[-1]
	assert p1 != p0, "a new pin for the recipient left the policy hash unchanged"
	assert disclosed_policy() == p1

	for args in (["rotate"], ["activate", "--version", "2"]):
		r = util.run([util.SUBGATECTL, "keys", args[0], "-c", gw.config_path, "--tenant", "acme",
			      "--integration", "crm"] + args[1:], check=False)
		assert r.returncode == 0, r.stdout + r.stderr
	assert gw.reload().ok
	p2 = policies()[-1]
	assert len(policies()) == 3
	pd = disclosed_policy()
	# the new version is the one that mints now
	email = gw.processors["crm"].last()["json"]["contact"]["email"]
	assert email.startswith("tok1.2."), email
	assert p2 != p1, "a new active key version left the policy hash unchanged"
	assert pd == p2


class _HalfReader:
	"""A TLS 'processor' that reads a request head, never the body, and
	resets the connection: the gateway cannot finish writing."""

	def __init__(self, pki):
		self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
		self.ctx.load_cert_chain(*pki.pair("processor"))
		self.sock = socket.socket()
		self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
		self.sock.bind(("127.0.0.1", 0))
		self.sock.listen(8)
		self.port = self.sock.getsockname()[1]
		self.heads = []
		self.thread = threading.Thread(target=self.run, daemon=True)
		self.thread.start()

	def run(self):
		while True:
			try:
				raw, _ = self.sock.accept()
			except OSError:
				return
			s = raw
			try:
				s = self.ctx.wrap_socket(raw, server_side=True)
				buf = b""
				while b"\r\n\r\n" not in buf:
					b = s.recv(4096)
					if not b:
						break
					buf += b
				self.heads.append(buf.partition(b"\r\n\r\n")[0])
				time.sleep(0.3)
			except (OSError, ssl.SSLError):
				pass
			try:
				s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
			except OSError:
				pass
			s.close()

	def close(self):
		self.sock.close()


def test_upstream_reset_mid_body_is_partial(gateway, pki):
	"""The processor resets the connection while the gateway is still
	writing a large body: delivery partial (some of it went out)."""
	stub = _HalfReader(pki)
	try:
		gw = gateway(crm="https://127.0.0.1:%d" % stub.port, keys=True, start=False)
		gw.cfg["limits"]["max_body_bytes"] = 24 << 20
		gw.write_config()
		gw.start()
		keys = Keys(gw.cfg.keys_dir)
		adir = gw.cfg["audit"]["directory"]
		body = contact()
		body["call"]["summary"] = "x" * (16 << 20)
		r_id = rid("partial")
		r = gw.request("POST", "/crm/v1/contacts", json=body, headers={"X-Request-Id": r_id},
			       timeout=30)
		assert r.status == 502, r
		assert stub.heads, "the stub processor saw no request"
		recs = wait_records(adir, keys, lambda rs: by_request(rs, r_id, "outcome"))
		d = by_request(recs, r_id, "disclosure")[0]
		o = by_request(recs, r_id, "outcome")[0]
		assert d["body_bytes"] > 16 << 20
		assert o["disclosure_seq"] == d["seq"]
		assert o["delivery"] == "partial", o
		assert o["attempts"] == 1, o
	finally:
		stub.close()


def test_second_gateway_on_the_same_directory_is_refused(request, e, pki, tmp_path):
	"""The audit process holds the directory: a second subgate on it does
	not start, and the first one goes on recording."""
	cfg = copy.deepcopy(e.cfg)
	cfg["listen"]["port"] = util.free_port()
	cfg["admin"]["port"] = util.free_port()
	gw2 = util.Gateway(pki, tmp_path / "second", cfg, name="subgate(second)")
	attach(request, gw2)
	gw2.start(wait=False)
	try:
		rc = gw2.wait_exit(15)
	except Exception:
		gw2.stop()
		raise
	assert rc != 0, "a second subgate started on a locked audit directory"
	assert re.search(r"(?i)lock", gw2.log_text()), gw2.log_text()
	r_id = rid("first")
	assert post_contact(e.gw, contact(), r_id).status == 200
	e.wait_call(r_id)
	rc, out = e.verify()
	assert rc == 0, out


# --------------------------------------------------------------------------
# metrics

def test_audit_metrics_count_what_is_durable(e):
	"""/metrics: subgate_audit_records_total counts the records the audit
	process made durable (every type), subgate_audit_syncs_total the
	fdatasyncs that did it (records per sync is the mean group-commit
	batch), subgate_audit_checkpoints_total the checkpoints; each agrees
	with the log itself and with the checkpoint lines of the operational
	log."""
	names = ("subgate_audit_records_total", "subgate_audit_syncs_total",
		 "subgate_audit_checkpoints_total")

	def snap():
		return tuple(int(e.gw.metric(n) or 0) for n in names)

	def log_checkpoints():
		return len(checkpoint_lines(e.gw.log_text()))

	def still():
		"""(metrics, records in the log) once they stand still."""
		seen = []

		def same():
			seen.append((snap(), len(e.records())))
			if len(seen) > 1 and seen[-1] == seen[-2]:
				return True
			time.sleep(0.3)
			return False
		util.wait_until(same, 10, what="audit metrics standing still")
		return seen[-1]

	(r0, s0, c0), n0 = still()
	k0 = log_checkpoints()
	for i in range(6):
		assert post_contact(e.gw, contact(), rid("met%d" % i)).status == 200
	util.wait_until(lambda: snap()[0] - r0 >= 12, 10, what="12 more durable records")
	(r1, s1, c1), n1 = still()
	assert r1 - r0 == n1 - n0 == 12, "metric %d, log %d (from %d, %d); a call is a " \
		"disclosure and an outcome" % (r1 - r0, n1 - n0, r0, n0)
	# One sync per lone record at most, plus one per checkpoint.
	assert 1 <= s1 - s0 <= 12 + (c1 - c0), (s0, s1, c0, c1)
	# checkpoint_seconds = 2: the records get an idle checkpoint.
	util.wait_until(lambda: snap()[2] > c0 and log_checkpoints() > k0, 10,
			what="a checkpoint counted")
	assert snap()[2] - c0 == log_checkpoints() - k0


def test_startup_failure_after_the_audit_process_stops_it_first(request, pki, tmp_path):
	"""Startup can fail after the audit process has started (here the
	listen port is taken). subgate then stops the audit process before it
	exits: the log ends with its stop record and verifies intact at once,
	and the directory is free for the next start."""
	env = AuditEnv(pki, tmp_path, "startfail", start=False)
	blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	try:
		attach(request, env.gw, *env.procs.values())
		blocker.bind(("127.0.0.1", env.cfg["listen"]["port"]))
		blocker.listen(1)
		env.gw.start(wait=False)
		assert env.gw.wait_exit(15) == 1
		left = audit_processes(env.gw.config_path)
		assert "listen: " in env.gw.log_text(), env.gw.log_text()
		assert not left, "the audit process outlived subgate: %r" % left
		rc, out = env.verify()
		assert rc == 0, "the log is not closed when subgate exits: %s" % out
		last = env.records()[-1]
		assert last["type"] == "lifecycle" and last["event"] == "stop", last
		blocker.close()
		env.gw.start()
		assert audit_processes(env.gw.config_path), "the check above sees no audit process"
		assert post_contact(env.gw, contact(), rid("after")).status == 200
	finally:
		blocker.close()
		env.close()
