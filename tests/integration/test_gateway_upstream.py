"""test_gateway_upstream.py -- TLS toward processors, upstream failures, keep-alive and pooling."""

import time

import pytest

import util
from test_gateway_common import (CONTACT, SECRET, Env, check_error, header_values, metric,
				 no_new_records, wait_metric)

TIMEOUT_MS = 1000
MAX_RESPONSE = 8192

PROCS = {
	"crm": {},
	"wrongname": {"cert": "processor-wrongname"},
	"otherca": {"cert": "processor-otherca"},
	"pin": {},
	"slow": {"mode": "slow", "delay": 3.0},
	"flaky": {},
	"v6": {"host": "::1"},
}


def _edit(cfg, env):
	cfg["limits"]["upstream_timeout_ms"] = TIMEOUT_MS
	cfg["limits"]["max_response_bytes"] = MAX_RESPONSE
	crm = cfg["integrations"][0]
	other_key = env.pki.spki_sha256("processor-wrongname")
	env.refused_port = util.free_port()

	def integ(name, url, **kw):
		d = dict(crm)
		d.update({"name": name, "prefix": "/" + name, "upstream": url})
		d.pop("token_domain", None)
		d["endpoints"] = [
			{"method": "GET", "path": "/v1/contacts/{id}", "params": {"id": "allow"}},
			{"method": "POST", "path": "/v1/contacts",
			 "request": {"allow": ["contact.first_name", "contact.company"]}},
		]
		d.update(kw)
		return d

	p = env.procs
	extra = [
		integ("wrongname", p["wrongname"].url),
		integ("otherca", p["otherca"].url),
		integ("pinbad", p["pin"].url, pin_sha256=[other_key]),
		integ("pinok", p["pin"].url, pin_sha256=[other_key, env.pki.spki]),
		integ("refused", "https://127.0.0.1:%d" % env.refused_port),
		integ("slow", p["slow"].url),
		integ("flaky", p["flaky"].url),
		integ("v6", p["v6"].url),
		integ("byname", "https://localhost:%d" % p["crm"].port),
		integ("detok", p["flaky"].url, endpoints=[
			{"method": "GET", "path": "/v1/contacts/{id}", "params": {"id": "allow"},
			 "response": {"detokenize": ["contact.email"]}}]),
	]
	cfg["integrations"] += extra
	cfg["tenants"][0]["integrations"] += [x["name"] for x in extra]


@pytest.fixture(scope="module")
def env(pki, tmp_path_factory):
	e = Env(pki, tmp_path_factory, "upstream", procs=PROCS, edit=_edit)
	yield e
	e.close()


@pytest.fixture
def e(request, env):
	env.procs["flaky"].set_mode()
	return env.use(request)


def upstream_failure(e, integ, status, code, cause_re, metric_cause, proc=None, method="GET"):
	before = metric(e.gw, "subgate_upstream_errors_total", cause=metric_cause)
	t0 = time.monotonic()
	if method == "GET":
		r = e.gw.request("GET", "/%s/v1/contacts/5" % integ)
	else:
		r = e.gw.request("POST", "/%s/v1/contacts" % integ, json=CONTACT)
	took = time.monotonic() - t0
	err = check_error(r, status, code, cause_re)
	assert SECRET not in r.text
	wait_metric(e.gw, "subgate_upstream_errors_total", before + 1, cause=metric_cause)
	log = util.wait_until(lambda: "status=%d" % status in e.log() and e.log(), timeout=5.0,
			      what="request line with the status")
	assert SECRET not in log
	if proc is not None:
		no_new_records(proc)
	return err, took


def test_baseline_ok(e):
	r = e.gw.request("GET", "/crm/v1/contacts/5")
	assert r.status == 200, r
	assert header_values(e.crm.wait_records(1)[0], "Authorization") == [util.CRM_TOKEN]


def test_wrong_host_name(e):
	upstream_failure(e, "wrongname", 502, "upstream_error", r"server_name|host ?name",
			 "hostname", proc=e.procs["wrongname"])


def test_untrusted_ca(e):
	upstream_failure(e, "otherca", 502, "upstream_error", r"trust|verif|issuer|certificate",
			 "verify", proc=e.procs["otherca"])


def test_pin_mismatch_sends_nothing(e):
	# The handshake completes; the pin check must stop the request before
	# a byte of it (or the secret header) leaves.
	upstream_failure(e, "pinbad", 502, "upstream_error", r"pin", "pin", proc=e.procs["pin"],
			 method="POST")


def test_matching_pin_works(e):
	r = e.gw.request("POST", "/pinok/v1/contacts", json=CONTACT)
	assert r.status == 200, r
	rec = e.procs["pin"].wait_records(1)[0]
	assert rec["json"] == {"contact": {"first_name": "Ada", "company": "Analytical Engines"}}


def test_connection_refused(e):
	# Nothing listens: the message must say the connection was refused
	# (not blame TLS), and the metric counts cause="connect".
	err, _ = upstream_failure(e, "refused", 502, "upstream_error",
				  r"refused|cannot connect|connect failed", "connect")
	assert "handshake" not in err["message"]


def test_timeout(e):
	_, took = upstream_failure(e, "slow", 504, "upstream_timeout", r"time", "timeout")
	assert TIMEOUT_MS / 1000.0 * 0.9 <= took < TIMEOUT_MS / 1000.0 + 1.5, took
	# The processor did get the call (it is slow, not unreachable).
	assert len(e.procs["slow"].wait_records(1)) == 1


def test_processor_hangs_up(e):
	e.procs["flaky"].set_mode("drop")
	upstream_failure(e, "flaky", 502, "upstream_error", r"clos", "closed")


def test_processor_garbage_response(e):
	e.procs["flaky"].set_mode("fixed", status=200, body="x", headers=[["Content-Length", "5"]])
	r = e.gw.request("GET", "/flaky/v1/contacts/5")
	# Two Content-Length headers (ours and the processor's): ambiguous framing.
	check_error(r, 502, "upstream_error")


@pytest.mark.parametrize("status", [404, 500, 503])
def test_processor_status_passed_through(e, status):
	e.procs["flaky"].set_mode("status=%d" % status)
	r = e.gw.request("GET", "/flaky/v1/contacts/5")
	assert r.status == status, r
	assert r.json()["path"] == "/v1/contacts/5"	# the processor's body, not an error of ours
	assert r.header("X-Request-Id")


def test_processor_204_no_body(e):
	e.procs["flaky"].set_mode("status=204")
	with e.gw.connect() as c:
		r = c.request("GET", "/flaky/v1/contacts/5")
		assert r.status == 204 and r.body == b"", r
		e.procs["flaky"].set_mode()
		r2 = c.request("GET", "/flaky/v1/contacts/6")
	assert r2.status == 200 and r2.json()["path"] == "/v1/contacts/6", r2


@pytest.mark.parametrize("mode", ["chunked", "close"])
def test_response_framings_normalised(e, mode):
	e.procs["flaky"].set_mode(mode)
	with e.gw.connect() as c:
		r = c.request("GET", "/flaky/v1/contacts/5")
		assert r.status == 200, r
		assert r.json()["path"] == "/v1/contacts/5"
		assert r.header("Content-Length") == str(len(r.body))
		assert r.header("Transfer-Encoding") is None
		# The client connection stays usable.
		e.procs["flaky"].set_mode()
		r2 = c.request("GET", "/flaky/v1/contacts/6")
	assert r2.status == 200, r2
	recs = e.procs["flaky"].wait_records(2)
	if mode == "close":
		# A close-delimited response's connection is never pooled.
		assert recs[0]["conn"] != recs[1]["conn"]


def test_response_headers_filtered(e):
	e.procs["flaky"].set_mode(headers=[["X-Request-Id", "processor-chosen"], ["Keep-Alive", "timeout=99"],
					   ["X-Proc", "p1"], ["Connection", "keep-alive"]])
	r = e.gw.request("GET", "/flaky/v1/contacts/5", headers={"X-Request-Id": "client-rid-1"})
	assert r.status == 200, r
	assert r.header_all("X-Request-Id") == ["client-rid-1"]
	assert r.header("Keep-Alive") is None
	assert r.header("X-Proc") == "p1"


def test_keepalive_and_pooling(e):
	with e.gw.connect() as c:
		for i in range(5):
			r = c.request("GET", "/crm/v1/contacts/%d" % i)
			assert r.status == 200, r
			assert r.json()["path"] == "/v1/contacts/%d" % i
		r = c.request("POST", "/crm/v1/contacts", json=CONTACT)
		assert r.status == 200, r
	recs = e.crm.wait_records(6)
	assert len({x["conn"] for x in recs}) == 1, [x["conn"] for x in recs]
	assert [x["conn_seq"] for x in recs] == sorted(x["conn_seq"] for x in recs)
	assert recs[-1]["conn_seq"] - recs[0]["conn_seq"] == 5


def test_pool_recovers_after_processor_restart(e):
	flaky = e.procs["flaky"]
	with e.gw.connect() as c:
		assert c.request("GET", "/flaky/v1/contacts/1").status == 200
		flaky.stop()
		flaky.start()	# same port; the pooled connection is dead now
		e.procs["flaky"].set_mode()
		r = c.request("GET", "/flaky/v1/contacts/2")
	assert r.status == 200, r
	assert flaky.wait_records(1)[-1]["path"] == "/v1/contacts/2"


def test_ipv6_upstream(e):
	r = e.gw.request("GET", "/v6/v1/contacts/5")
	assert r.status == 200, r
	assert e.procs["v6"].wait_records(1)[0]["path"] == "/v1/contacts/5"


def test_upstream_by_name(e):
	# "localhost" is resolved (asynchronously); server_name stays the
	# integration's, so the certificate check is unchanged.
	r = e.gw.request("GET", "/byname/v1/contacts/5")
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[0]
	assert rec["sni"] == "crm.processor.test"
	assert header_values(rec, "Host") == ["crm.processor.test"]


@pytest.mark.parametrize("mode", ["fixed", "chunked", "close"])
def test_response_larger_than_max_response_bytes(e, mode):
	big = {"contact": {"notes": "n" * (MAX_RESPONSE * 2)}}
	if mode == "fixed":
		e.procs["flaky"].set_mode("fixed", status=200, body=big)
	else:
		# echo/chunked/close modes answer with the request: make it big
		# through the (allowed) path parameter.
		e.procs["flaky"].set_mode(mode)
	path = "/flaky/v1/contacts/" + ("x" * (MAX_RESPONSE + 100) if mode != "fixed" else "1")
	before = metric(e.gw, "subgate_upstream_errors_total", cause="too_large")
	r = e.gw.request("GET", path)
	check_error(r, 502, "upstream_error", r"large|max_response")
	assert b"nnnnnnnn" not in r.body and b"xxxxxxxx" not in r.body
	wait_metric(e.gw, "subgate_upstream_errors_total", before + 1, cause="too_large")


def test_compressed_response_on_detokenising_endpoint(e):
	e.procs["flaky"].set_mode("gzip")
	r = e.gw.request("GET", "/detok/v1/contacts/5")
	check_error(r, 502, "upstream_error", r"compress|encoding")


def test_no_secret_anywhere_in_the_log(e):
	assert SECRET not in e.gw.log_text()
