"""test_gateway_ops.py -- admin endpoints and metrics, request ids, the request log, `subgate -t`,
reload (on open connections, bad reloads, CRLs) and graceful shutdown."""

import copy
import http.client
import re
import shutil
import signal
import threading
import time

import pytest

import util
from test_gateway_common import (CONTACT, SECRET, Env, check_error, metric, no_new_records,
				 read_response, tls_refused, tls_socket, wait_metric)


def _edit(cfg, env):
	env.down_port = util.free_port()
	crm = cfg["integrations"][0]
	down = copy.deepcopy(crm)
	down.update({"name": "down", "prefix": "/down", "upstream": "https://127.0.0.1:%d" % env.down_port})
	down.pop("token_domain", None)
	down["endpoints"] = [{"method": "GET", "path": "/v1/x"}]
	cfg["integrations"].append(down)
	cfg["tenants"][0]["integrations"].append("down")
	cfg["limits"]["upstream_timeout_ms"] = 2000


@pytest.fixture(scope="module")
def env(pki, tmp_path_factory):
	e = Env(pki, tmp_path_factory, "ops", edit=_edit)
	yield e
	e.close()


@pytest.fixture
def e(request, env):
	return env.use(request)


# What a request on a connection the gateway closed raises.
CLOSED = util.TLS_REFUSED + (http.client.HTTPException,)


def refused_on_open_conn(c, path="/crm/v1/contacts/2"):
	"""A request on an already open connection whose client is no longer
	allowed gets 403 client_not_allowed, or the connection closed (which is a
	refusal too)."""
	try:
		resp = c.request("GET", path)
	except CLOSED:
		return
	check_error(resp, 403, "client_not_allowed")

LOG_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def request_lines(text):
	"""The msg=request lines of a log text, as dicts."""
	out = []
	for ln in text.splitlines():
		if "msg=request" not in ln:
			continue
		d = {k: v[1:-1] if v.startswith('"') else v for k, v in LOG_KV.findall(ln)}
		d["_line"] = ln
		out.append(d)
	return out


def wait_request_lines(e, n, timeout=5.0):
	return util.wait_until(lambda: len(request_lines(e.log())) >= n and request_lines(e.log()),
			       timeout, what="%d request log lines" % n)


# --------------------------------------------------------------------------
# admin

def test_healthz_and_readyz(e):
	r = e.gw.admin_get("/healthz")
	assert r.status == 200 and r.text.strip() == "ok", r
	r = e.gw.admin_get("/readyz")
	assert r.status == 200 and "ready" in r.text, r


def test_admin_unknown_path_and_method(e):
	assert e.gw.admin_get("/nope").status == 404
	assert e.gw.admin_get("/metrics/../healthz").status == 404
	c = http.client.HTTPConnection(e.gw.admin_host, e.gw.admin_port, timeout=5)
	c.request("POST", "/metrics", body=b"x")
	assert c.getresponse().status in (405, 413, 501)
	c.close()


def test_metrics_requests_by_integration_and_code(e):
	ok0 = metric(e.gw, "subgate_requests_total", integration="crm", code="200")
	nf0 = metric(e.gw, "subgate_requests_total", code="404")
	na0 = metric(e.gw, "subgate_requests_total", integration="calendar", code="403")
	ep0 = metric(e.gw, "subgate_requests_total", integration="crm", code="403")
	assert e.gw.request("GET", "/crm/v1/contacts/1").status == 200
	assert e.gw.request("GET", "/crm/v1/contacts/2").status == 200
	assert e.gw.request("GET", "/nothing").status == 404
	assert e.gw.request("POST", "/calendar/v3/events", json={}, cert="tenant-globex").status == 403
	assert e.gw.request("DELETE", "/crm/v1/contacts/1").status == 403
	wait_metric(e.gw, "subgate_requests_total", ok0 + 2, integration="crm", code="200")
	wait_metric(e.gw, "subgate_requests_total", nf0 + 1, code="404")
	wait_metric(e.gw, "subgate_requests_total", na0 + 1, integration="calendar", code="403")
	wait_metric(e.gw, "subgate_requests_total", ep0 + 1, integration="crm", code="403")
	# tenant_labels = false: no tenant names in the metrics.
	text = e.gw.admin_get("/metrics").text
	assert "acme" not in text and "globex" not in text


def test_metrics_handshake_failures_by_reason(e):
	b_none = metric(e.gw, "subgate_tls_handshake_failures_total", reason="no_certificate")
	b_unt = metric(e.gw, "subgate_tls_handshake_failures_total", reason="untrusted")
	tls_refused(e.gw, None)
	tls_refused(e.gw, "client-otherca")
	wait_metric(e.gw, "subgate_tls_handshake_failures_total", b_none + 1, reason="no_certificate")
	wait_metric(e.gw, "subgate_tls_handshake_failures_total", b_unt + 1, reason="untrusted")
	no_new_records(e.crm)


def test_metrics_upstream_errors_by_cause(e):
	def total():
		return sum(v for n, l, v in e.gw.metrics() if n == "subgate_upstream_errors_total")
	before = total()
	r = e.gw.request("GET", "/down/v1/x")
	check_error(r, 502, "upstream_error")
	util.wait_until(lambda: total() >= before + 1, 5, what="upstream error counted")
	causes = {l.get("cause") for n, l, v in e.gw.metrics() if n == "subgate_upstream_errors_total"}
	assert causes and None not in causes and "" not in causes, causes


@pytest.mark.parametrize("name", ["subgate_request_duration_seconds",
				  "subgate_upstream_duration_seconds"])
def test_metrics_latency_histograms(e, name):
	for i in range(3):
		assert e.gw.request("GET", "/crm/v1/contacts/%d" % i).status == 200
	ms = e.gw.metrics()
	buckets = [(l["le"], v) for n, l, v in ms if n == name + "_bucket"]
	assert len(buckets) >= 5, buckets
	assert buckets[-1][0] == "+Inf"
	vals = [v for _, v in buckets]
	assert vals == sorted(vals), "buckets not cumulative"
	les = [float(le) for le, _ in buckets[:-1]]
	assert les == sorted(les)
	count = sum(v for n, l, v in ms if n == name + "_count")
	total = sum(v for n, l, v in ms if n == name + "_sum")
	assert count >= 3 and buckets[-1][1] == count
	assert 0 < total < count * 5


def test_metrics_active_connections(e):
	base = metric(e.gw, "subgate_connections_active")
	conns = [e.gw.connect() for _ in range(3)]
	try:
		for c in conns:
			assert c.request("GET", "/crm/v1/contacts/1").status == 200
		assert metric(e.gw, "subgate_connections_active") >= base + 3
	finally:
		for c in conns:
			c.close()
	util.wait_until(lambda: metric(e.gw, "subgate_connections_active") <= base, 5,
			what="active connections back to %s" % base)


def test_metrics_config_generation(e):
	assert metric(e.gw, "subgate_config_generation") >= 1


def test_metrics_have_type_lines(e):
	text = e.gw.admin_get("/metrics").text
	for name, kind in [("subgate_requests_total", "counter"),
			   ("subgate_request_duration_seconds", "histogram"),
			   ("subgate_connections_active", "gauge"),
			   ("subgate_config_generation", "gauge")]:
		assert re.search(r"^# TYPE %s %s$" % (name, kind), text, re.M), name


# --------------------------------------------------------------------------
# request ids and error bodies

@pytest.mark.parametrize("rid", ["abc-123", "A.b_c:d-e", "x" * 64, "0"])
def test_valid_request_id_echoed_and_forwarded(e, rid):
	r = e.gw.request("GET", "/crm/v1/contacts/1", headers={"X-Request-Id": rid})
	assert r.status == 200, r
	assert r.header_all("X-Request-Id") == [rid]
	rec = e.crm.wait_records(1)[0]
	assert [v for k, v in rec["headers"] if k.lower() == "x-request-id"] == [rid]
	# The request line is written at the end of the worker's loop iteration,
	# which may be just after the client has its answer.
	util.wait_until(lambda: "request_id=%s " % rid in e.log(), timeout=5.0,
			what="request line with the id")


@pytest.mark.parametrize("rid", ["x" * 65, "a b", "a/b", "a\"b", "caf\u00e9", "a,b", "<script>", "id;x"])
def test_invalid_request_id_replaced(e, rid):
	r = e.gw.request("GET", "/crm/v1/contacts/1", headers={"X-Request-Id": rid.encode("utf-8")})
	assert r.status == 200, r
	got = r.header_all("X-Request-Id")
	assert len(got) == 1 and got[0] != rid and re.match(r"^[A-Za-z0-9._:-]{8,64}$", got[0]), got
	rec = e.crm.wait_records(1)[0]
	assert [v for k, v in rec["headers"] if k.lower() == "x-request-id"] == got
	lines = wait_request_lines(e, 1)
	assert [x["request_id"] for x in lines] == got
	assert all(rid not in x["_line"] for x in lines)


def test_generated_request_ids_differ(e):
	ids = {e.gw.request("GET", "/crm/v1/contacts/1").header("X-Request-Id") for _ in range(4)}
	assert len(ids) == 4 and None not in ids


def test_request_id_in_error_body(e):
	r = e.gw.request("GET", "/nothing", headers={"X-Request-Id": "err-rid-7"})
	err = check_error(r, 404, "no_such_integration")
	assert err["request_id"] == "err-rid-7"
	r = e.gw.request("GET", "/nothing", headers={"X-Request-Id": "bad id"})
	err = check_error(r, 404, "no_such_integration")
	assert err["request_id"] != "bad id"
	no_new_records(e.crm)


def test_request_id_on_refusals_before_routing(e):
	r = e.gw.request("GET", "/crm/v1/contacts/1", cert="tenant-unknown",
			 headers={"X-Request-Id": "unknown-rid"})
	err = check_error(r, 403, "client_not_allowed")
	assert err["request_id"] == "unknown-rid"
	no_new_records(e.crm)


# --------------------------------------------------------------------------
# the request log

def test_one_log_line_per_request(e):
	ids = []
	with e.gw.connect() as c:
		for i in range(3):
			r = c.request("GET", "/crm/v1/contacts/%d" % i, headers={"X-Request-Id": "log-%d" % i})
			assert r.status == 200
			ids.append("log-%d" % i)
		r = c.request("POST", "/crm/v1/contacts", json=CONTACT, headers={"X-Request-Id": "log-p"})
		assert r.status == 200
	r = e.gw.request("POST", "/calendar/v3/events", json={}, cert="tenant-globex",
			 headers={"X-Request-Id": "log-d"})
	assert r.status == 403
	lines = wait_request_lines(e, 5)
	assert [x["request_id"] for x in lines] == ids + ["log-p", "log-d"], [x["_line"] for x in lines]
	for x in lines[:3]:
		assert (x["tenant"], x["integration"], x["method"], x["endpoint"], x["status"]) == \
			("acme", "crm", "GET", "/v1/contacts/{id}", "200"), x["_line"]
	assert (lines[3]["method"], lines[3]["endpoint"], lines[3]["status"]) == \
		("POST", "/v1/contacts", "200")
	assert (lines[4]["tenant"], lines[4]["integration"], lines[4]["status"]) == \
		("globex", "calendar", "403")
	for x in lines:
		assert x.get("level") == "info" and "time" in x


def test_log_never_holds_values_paths_or_queries(e):
	canaries = {
		"body": "BODYCANARY1", "body_unlisted": "BODYCANARY2", "param": "PARAMCANARY3",
		"query": "QUERYCANARY4", "query_unlisted": "QUERYCANARY5", "header": "HEADERCANARY6",
		"path404": "PATHCANARY7", "path400": "PATHCANARY8", "rid": "RIDCANARY 9",
	}
	doc = copy.deepcopy(CONTACT)
	doc["contact"]["first_name"] = canaries["body"]
	doc["contact"]["email"] = canaries["body_unlisted"]
	hdr = {"X-Trace": canaries["header"], "Accept": canaries["header"],
	       "X-Request-Id": canaries["rid"]}
	with e.gw.connect() as c:
		assert c.request("POST", "/crm/v1/contacts?fields=" + canaries["query"], json=doc,
				 headers=hdr).status == 200
		assert c.request("GET", "/crm/v1/contacts/%s?fields=%s&other=%s" % (
			canaries["param"], canaries["query"], canaries["query_unlisted"]),
			headers=hdr).status == 200
		assert c.request("GET", "/%s/x?q=%s" % (canaries["path404"], canaries["query"])).status == 404
	r = e.gw.request("GET", "/crm/v1/contacts/%s/../1" % canaries["path400"])
	assert r.status == 400
	r = e.gw.request("POST", "/crm/v1/contacts", body=b'{"contact":{"first_name":"BODYCANARY1"',
			 headers={"Content-Type": "application/json"})
	assert r.status == 400
	assert canaries["path400"] not in r.text and "BODYCANARY1" not in r.text
	lines = wait_request_lines(e, 5)
	assert len(lines) == 5
	log = e.gw.log_text()
	metrics = e.gw.admin_get("/metrics").text
	for what, c in canaries.items():
		assert c not in log, "%s value %r in the log" % (what, c)
		assert c not in metrics, "%s value %r in /metrics" % (what, c)
	assert "/v1/contacts/{id}" in log
	assert SECRET not in log


# --------------------------------------------------------------------------
# subgate -t

def test_check_good_config(e):
	rc, out = e.gw.check()
	assert rc == 0, out


BAD_CONFIGS = [
	# (name, mutation of the config dict or text, regex the message must match)
	("unknown top-level key", lambda c: c.update({"frobnicate": 1}), r"frobnicate"),
	("wrong type", lambda c: c["listen"].update({"port": "8443"}), r"listen\.port"),
	("port out of range", lambda c: c["listen"].update({"port": 70000}), r"listen\.port"),
	("missing tls", lambda c: c.pop("tls"), r"tls"),
	("unknown limits key", lambda c: c["limits"].update({"max_bogus": 1}), r"limits\.max_bogus"),
	("param without action", lambda c: c["integrations"][0]["endpoints"][1].pop("params"),
	 r"integrations\[crm\]\.endpoints\[GET /v1/contacts/\{id\}\]"),
	("missing secret file", lambda c: c["integrations"][0]["headers"]["set"][0].update(
		{"file": "/nonexistent/secret.token"}), r"integrations\[crm\]\.headers"),
	("tenant with unknown integration", lambda c: c["tenants"][1]["integrations"].append("billing"),
	 r"tenants\[globex\]"),
	("duplicate prefix", lambda c: c["integrations"][1].update({"prefix": "/crm"}),
	 r"integrations\[calendar\]\.prefix|prefix"),
	("bad rule path", lambda c: c["integrations"][0]["endpoints"][0]["request"]["allow"].append(
		"contact..x"), r"integrations\[crm\]\.endpoints\[POST /v1/contacts\]\.request\.allow"),
	("plain http upstream", lambda c: c["integrations"][0].update({"upstream": "http://127.0.0.1:1"}),
	 r"integrations\[crm\]\.upstream"),
	("bad pin", lambda c: c["integrations"][0].update({"pin_sha256": ["not-base64!"]}),
	 r"integrations\[crm\]\.pin_sha256"),
	("min_version TLSv1.0", lambda c: c["tls"].update({"min_version": "TLSv1.0"}), r"tls\.min_version"),
	("syntax error", "listen = { port = 1 ", r"."),
]


@pytest.mark.parametrize("name,mut,msg", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_check_bad_config(e, tmp_path, name, mut, msg):
	gw = util.Gateway(e.pki, tmp_path / "gw", copy.deepcopy(e.gw.cfg))
	if isinstance(mut, str):
		gw.write_config(text=mut)
	else:
		cfg = copy.deepcopy(e.gw.cfg)
		mut(cfg)
		gw.write_config(cfg)
	rc, out = gw.check()
	assert rc == 1, (rc, out)
	first = out.strip().splitlines()[0] if out.strip() else ""
	m = re.match(r"^(.+?):(\d+): (.+)$", first)
	assert m, "not FILE:LINE: message: %r" % out
	assert m.group(1) == str(gw.config_path), first
	assert int(m.group(2)) >= 1
	assert re.search(msg, m.group(3)), first
	assert SECRET not in out


# --------------------------------------------------------------------------
# reload

@pytest.fixture(scope="module")
def renv(pki, tmp_path_factory):
	def edit(cfg, env):
		# A CRL the tests may replace in place (as an operator republishes it).
		env.crl = str(env.base / "cfg" / "service-ca.crl")
		shutil.copy(pki.crl, env.crl)
		cfg["tls"]["crl"] = env.crl
	e = Env(pki, tmp_path_factory, "reload", edit=edit)
	e.original = copy.deepcopy(e.cfg)
	yield e
	e.close()


@pytest.fixture
def r(request, renv):
	renv.use(request)
	yield renv
	# Back to the original config and CRL for the next test.
	shutil.copy(renv.pki.crl, renv.crl)
	res = renv.gw.reload(cfg=copy.deepcopy(renv.original))
	assert res.ok, res.log


def company_seen(r, conn):
	r.crm.clear()
	resp = conn.request("POST", "/crm/v1/contacts", json=CONTACT)
	assert resp.status == 200, resp
	return "company" in r.crm.wait_records(1)[-1]["json"].get("contact", {})


def test_reload_tightened_allowlist_applies_to_open_connection(r):
	gen0 = r.gw.generation()
	with r.gw.connect() as c:
		assert company_seen(r, c)
		cfg = copy.deepcopy(r.original)
		cfg["integrations"][0]["endpoints"][0]["request"]["allow"].remove("contact.company")
		res = r.gw.reload(cfg=cfg)
		assert res.ok, res.log
		assert res.generation == gen0 + 1
		assert not company_seen(r, c), "the open connection still used the old allowlist"
	with r.gw.connect() as c:
		assert not company_seen(r, c)


def test_reload_removed_tenant_refused_on_open_connection(r):
	with r.gw.connect("tenant-globex") as c:
		assert c.request("GET", "/crm/v1/contacts/1").status == 200
		cfg = copy.deepcopy(r.original)
		cfg["tenants"] = [t for t in cfg["tenants"] if t["id"] != "globex"]
		assert r.gw.reload(cfg=cfg).ok
		r.crm.clear()
		refused_on_open_conn(c)
	no_new_records(r.crm)


def test_reload_removed_grant_refused_on_open_connection(r):
	with r.gw.connect() as c:
		assert c.request("POST", "/calendar/v3/events", json={"summary": "a"}).status == 200
		cfg = copy.deepcopy(r.original)
		cfg["tenants"][0]["integrations"] = ["crm"]
		assert r.gw.reload(cfg=cfg).ok
		r.crm.clear()
		resp = c.request("POST", "/calendar/v3/events", json={"summary": "b"})
		check_error(resp, 403, "integration_not_allowed")
		# The rest of the tenant's grants still work (on that connection,
		# unless the gateway closed it after the refusal).
		try:
			resp = c.request("GET", "/crm/v1/contacts/1")
		except CLOSED:
			resp = r.gw.request("GET", "/crm/v1/contacts/1")
		assert resp.status == 200, resp
	assert [x["path"] for x in r.crm.wait_records(1)] == ["/v1/contacts/1"]


def test_reload_new_crl_revokes_open_connection(r):
	with r.gw.connect("tenant-globex") as c:
		assert c.request("GET", "/crm/v1/contacts/1").status == 200
		r.pki.revoke("tenant-globex", r.base / "new.crl")
		shutil.copy(r.base / "new.crl", r.crl)
		res = r.gw.reload()
		assert res.ok, res.log
		r.crm.clear()
		refused_on_open_conn(c)
	no_new_records(r.crm)
	tls_refused(r.gw, "tenant-globex")
	# acme is not on the new CRL.
	assert r.gw.request("GET", "/crm/v1/contacts/3").status == 200


def test_reload_pin_change_not_bypassed_by_pooled_connection(r):
	# A pooled upstream connection made under the old trust settings must
	# not carry a call once the reload pinned another key.
	with r.gw.connect() as c:
		assert c.request("GET", "/crm/v1/contacts/1").status == 200
		assert c.request("GET", "/crm/v1/contacts/2").status == 200
		cfg = copy.deepcopy(r.original)
		cfg["integrations"][0]["pin_sha256"] = [r.pki.spki_sha256("processor-wrongname")]
		assert r.gw.reload(cfg=cfg).ok
		r.crm.clear()
		resp = c.request("GET", "/crm/v1/contacts/3")
		check_error(resp, 502, "upstream_error", r"pin")
	no_new_records(r.crm)


def test_reload_while_request_in_flight(r):
	# The call that started under the old generation completes under it;
	# the next one sees the new policy.
	r.crm.set_mode("slow", delay=1.0)
	result = {}
	try:
		with r.gw.connect("tenant-globex") as c:
			def call():
				try:
					result["r"] = c.request("GET", "/crm/v1/contacts/1")
				except Exception as ex:	# noqa: BLE001
					result["e"] = ex
			t = threading.Thread(target=call)
			t.start()
			r.crm.wait_records(1)
			cfg = copy.deepcopy(r.original)
			cfg["tenants"] = [x for x in cfg["tenants"] if x["id"] != "globex"]
			assert r.gw.reload(cfg=cfg).ok
			assert t.is_alive(), "the call ended before the reload took effect"
			t.join(10)
			assert "e" not in result, result
			assert result["r"].status == 200, result["r"]
			r.crm.set_mode()
			r.crm.clear()
			refused_on_open_conn(c)
		no_new_records(r.crm)
	finally:
		r.crm.set_mode()


@pytest.mark.parametrize("how", ["syntax", "semantic", "missing file", "bad crl"])
def test_bad_reload_keeps_old_config(r, how):
	gen0 = r.gw.generation()
	fail0 = metric(r.gw, "subgate_config_reload_failures_total")
	with r.gw.connect() as c:
		assert company_seen(r, c)
		cfg = copy.deepcopy(r.original)
		cfg["integrations"][0]["endpoints"][0]["request"]["allow"].remove("contact.company")
		if how == "syntax":
			res = r.gw.reload(text=util.render_libconfig(cfg) + "\nlisten = {\n")
		elif how == "semantic":
			cfg["integrations"][0]["endpoints"][0]["request"]["allow"].append("contact[[")
			res = r.gw.reload(text=util.render_libconfig(cfg))
		elif how == "missing file":
			cfg["tls"]["client_ca"] = str(r.base / "no-such-ca.crt")
			res = r.gw.reload(text=util.render_libconfig(cfg))
		else:
			with open(r.crl, "w") as f:
				f.write("-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n")
			res = r.gw.reload(cfg=cfg)
		assert res.ok is False, res
		assert re.search(r"(?i)reload[^\n]*fail", res.log), res.log
		wait_metric(r.gw, "subgate_config_reload_failures_total", fail0 + 1)
		assert r.gw.generation() == gen0
		# The old policy still rules, on the open connection and a new one.
		assert company_seen(r, c)
	with r.gw.connect() as c:
		assert company_seen(r, c)
	assert r.gw.admin_get("/readyz").status == 200


# --------------------------------------------------------------------------
# shutdown

def test_graceful_shutdown(gateway, gateway_config, processor):
	slow = processor("slow", delay=2.5)
	cfg = gateway_config(crm=slow)
	cfg["limits"]["shutdown_grace_ms"] = 8000
	gw = gateway(cfg)
	idle = gw.connect()
	assert idle.request("POST", "/crm/v1/contacts", json=CONTACT).status == 200
	slow.clear()
	result = {}

	def call():
		try:
			result["r"] = gw.request("GET", "/crm/v1/contacts/1", timeout=10)
		except Exception as ex:	# noqa: BLE001 -- reported below
			result["e"] = ex

	t = threading.Thread(target=call)
	t.start()
	slow.wait_records(1)		# the slow request is at the processor now
	t0 = time.monotonic()
	gw.signal(signal.SIGTERM)
	# New connections are refused while the slow request is in flight.
	util.wait_until(lambda: not util.port_listening(gw.port), 2, what="listener closed")
	with pytest.raises(util.TLS_REFUSED):
		gw.request("GET", "/crm/v1/contacts/2", timeout=2)
	assert time.monotonic() - t0 < 2.2, "checked too late to prove anything"
	assert t.is_alive(), "the slow call ended before the checks"
	# The idle kept-alive connection is closed, not served.
	with pytest.raises(util.TLS_REFUSED):
		idle.request("GET", "/crm/v1/contacts/3")
	t.join(10)
	assert "e" not in result, result
	assert result["r"].status == 200, result["r"]
	assert result["r"].json()["path"] == "/v1/contacts/1"
	assert gw.wait_exit(10) == 0
	assert [x["path"] for x in slow.records()] == ["/v1/contacts/1"]


def test_shutdown_grace_bounds_the_wait(gateway, gateway_config, processor):
	hang = processor("hang")
	cfg = gateway_config(crm=hang)
	cfg["limits"]["shutdown_grace_ms"] = 500
	cfg["limits"]["upstream_timeout_ms"] = 30000
	gw = gateway(cfg)
	result = {}

	def call():
		try:
			result["r"] = gw.request("GET", "/crm/v1/contacts/1", timeout=10)
		except Exception as ex:	# noqa: BLE001
			result["e"] = ex

	t = threading.Thread(target=call)
	t.start()
	hang.wait_records(1)
	t0 = time.monotonic()
	gw.signal(signal.SIGTERM)
	assert gw.wait_exit(5) == 0
	assert time.monotonic() - t0 < 3
	t.join(10)
	# The abandoned call ends (closed or an error), it does not hang.
	assert "e" in result or result["r"].status >= 500, result


def test_shutdown_does_not_serve_queued_requests(gateway, gateway_config, processor):
	# Two pipelined requests; SIGTERM while the first is at the processor:
	# the first completes (and says Connection: close), the second is never
	# forwarded (a 503 draining answer, or no answer, are both fine).
	slow = processor("slow", delay=1.0)
	cfg = gateway_config(crm=slow)
	cfg["limits"]["shutdown_grace_ms"] = 8000
	gw = gateway(cfg)
	with tls_socket(gw) as s:
		s.sendall(b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
			  b"GET /crm/v1/contacts/2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
		slow.wait_records(1)
		gw.signal(signal.SIGTERM)
		st, hdrs, body = read_response(s)
		assert st == 200 and b"/v1/contacts/1" in body, (st, body)
		assert hdrs.get("connection", "").lower() == "close", hdrs
		rest = b""
		s.settimeout(3)
		try:
			while True:
				b = s.recv(65536)
				if not b:
					break
				rest += b
		except (OSError, ValueError):
			pass
	if rest:
		st2, _, body2 = read_response(_Buffered(rest))
		assert st2 == 503 and b"draining" in body2, rest
	assert gw.wait_exit(10) == 0
	assert [x["path"] for x in slow.records()] == ["/v1/contacts/1"]


class _Buffered:
	"""A recv()-able stand-in over bytes already read."""

	def __init__(self, data):
		self.data = data

	def recv(self, n):
		out, self.data = self.data[:n], self.data[n:]
		return out
