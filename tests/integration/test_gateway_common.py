"""test_gateway_common.py -- helpers shared by the test_gateway_*.py modules (no tests here).

The conftest.py fixtures are function-scoped (they hang off tmp_path), so a
module that wants one gateway for all its tests builds it here from the same
util classes: Env starts processors and a gateway on util.make_config (the
harness' default test config), and Env.use(request) attaches their logs to
the running test's report (as conftest does) and forgets the processors'
records so each test sees only its own.
"""

import json
import re
import socket
import ssl
import time

import pytest

import util
from util import HarnessError, attach, gateway_problems

# The secret part of the Authorization value the default config injects
# (util.CRM_TOKEN): it must never show in a response or in a log.
SECRET = util.CRM_TOKEN.split()[-1]

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

CONTACT = {
	"contact": {"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines",
		    "email": "ada@example.com", "phone": "+1 555 0100"},
	"call": {"started_at": "2024-05-01T10:00:00Z", "summary": "asked about pricing",
		 "duration_s": 125, "caller_id": "+15550100"},
}


class Env:
	"""Processors and one gateway, shared by the tests of a module.

	procs: {name: Processor kwargs}; "crm" (default echo) is the default
	config's crm and calendar upstream, "calendar" (if given) the
	calendar's. edit(cfg, env) may change the config dict before the
	gateway starts (env.pki, env.procs, env.base are set by then).
	"""

	def __init__(self, pki, tmp_path_factory, name, procs=None, edit=None, keys="auto",
		     start=True):
		self.pki = pki
		self.name = name
		self.base = tmp_path_factory.mktemp(name)
		self.procs = {}
		self.gw = None
		try:
			for pname, kw in (procs or {"crm": {}}).items():
				kw = dict(kw)
				mode = kw.pop("mode", "echo")
				nostart = kw.pop("_nostart", False)
				p = util.Processor(pki, self.base / ("proc-" + pname), mode=mode, **kw)
				p.name = "processor %s (%s)" % (pname, mode)
				self.procs[pname] = p
				if not nostart:
					p.start()
			if keys == "auto":
				keys = util.keys_supported(self.base)
			k = util.keys_init(self.base / "keys") if keys else None
			crm = self.procs.get("crm")
			cal = self.procs.get("calendar", crm)
			self.cfg = util.make_config(pki, self.base / "cfg", crm.url if crm else "https://127.0.0.1:9",
						    cal.url if cal else None, keys=k, full_policy=False)
			if edit is not None:
				edit(self.cfg, self)
			self.gw = util.Gateway(pki, self.base / "gw", self.cfg, name="subgate(%s)" % name)
			self.gw.processors = dict(self.procs)
			if start:
				self.gw.start()
		except BaseException:
			self.close(check=False)
			raise

	@property
	def crm(self):
		return self.procs.get("crm")

	@property
	def calendar(self):
		return self.procs.get("calendar", self.procs.get("crm"))

	def objects(self):
		return ([self.gw] if self.gw else []) + list(self.procs.values())

	def use(self, request):
		"""Attach logs to the test's report, clear processor records, note
		the log offset (self.log0). Returns self."""
		attach(request, *self.objects())
		for p in self.procs.values():
			p.clear()
		if self.gw:
			# the previous test's last request lines belong before log0
			self.gw.settle_request_log()
		self.log0 = self.gw.log_size() if self.gw else 0
		return self

	def log(self):
		"""Gateway log written since use()."""
		return self.gw.log_since(self.log0)

	def close(self, check=True):
		problems = []
		if self.gw is not None:
			rc = self.gw.stop()
			problems += gateway_problems(self.gw, rc)
		for p in self.procs.values():
			p.stop()
		if check and problems:
			pytest.fail("\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# assertions

def check_error(r, status, code, cause=None):
	"""r is one of subgate's own errors: status, JSON body
	{"error":{"code","message","request_id"}} and nothing else, request_id
	equal to the X-Request-Id header, no secret. cause: a regex the
	message must match (case-insensitive). Returns the error object."""
	assert r.status == status, "expected %d %s, got %r" % (status, code, r)
	ctype = r.header("Content-Type", "")
	assert ctype.split(";")[0].strip().lower() == "application/json", ctype
	try:
		doc = json.loads(r.body)
	except ValueError:
		pytest.fail("error body is not JSON: %r" % r.body)
	assert isinstance(doc, dict) and set(doc) == {"error"}, doc
	err = doc["error"]
	assert isinstance(err, dict) and set(err) == {"code", "message", "request_id"}, doc
	assert err["code"] == code, doc
	assert isinstance(err["message"], str) and err["message"], doc
	assert isinstance(err["request_id"], str) and REQUEST_ID_RE.match(err["request_id"]), doc
	assert r.header("X-Request-Id") == err["request_id"], (r.headers, doc)
	assert SECRET not in r.text
	if cause is not None:
		assert re.search(cause, err["message"], re.I), "message %r does not name %r" % (
			err["message"], cause)
	return err


def tls_refused(gw, cert, path="/crm/v1/contacts/1", **kw):
	"""Connect presenting cert and try one request: returns the exception
	the client saw when the gateway refused, fails the test when a
	response came back."""
	try:
		with gw.connect(cert, timeout=5, **kw) as c:
			r = c.request("GET", path)
	except util.TLS_REFUSED as e:
		return e
	pytest.fail("connection with %s was not refused: %r" % (cert, r))


def metric(gw, name, **labels):
	"""gw.metric(...) with None as 0."""
	v = gw.metric(name, **labels)
	return 0 if v is None else v


def wait_metric(gw, name, value, timeout=5.0, **labels):
	"""Wait until metric name{labels} >= value (metrics are per worker and
	read while workers run)."""
	return util.wait_until(lambda: metric(gw, name, **labels) >= value or None, timeout,
			       what="%s%r >= %s" % (name, labels, value)) and metric(gw, name, **labels)


def no_new_records(proc, settle=0.1):
	"""The processor received nothing since its records were cleared
	(waits a moment so a late forward would show)."""
	time.sleep(settle)
	recs = proc.records()
	assert recs == [], "processor received %d request(s): %r" % (
		len(recs), [(x["method"], x["target"]) for x in recs])


def header_values(rec, name):
	return [v for k, v in rec["headers"] if k.lower() == name.lower()]


# --------------------------------------------------------------------------
# raw TLS socket for interleaved exchanges (Expect: 100-continue)

def tls_socket(gw, cert="tenant-acme", timeout=5.0):
	ctx = gw.context(cert)
	raw = socket.create_connection((gw.host, gw.port), timeout=timeout)
	try:
		return ctx.wrap_socket(raw, server_hostname=util.GATEWAY_NAME)
	except BaseException:
		raw.close()
		raise


def read_head(sock, buf=b""):
	"""Read until a complete response head; returns (status, headers dict
	lower-case, rest bytes)."""
	while b"\r\n\r\n" not in buf:
		b = sock.recv(65536)
		if not b:
			raise HarnessError("connection closed before a response head: %r" % buf)
		buf += b
	head, _, rest = buf.partition(b"\r\n\r\n")
	lines = head.decode("latin-1").split("\r\n")
	status = int(lines[0].split(" ")[1])
	hdrs = {}
	for ln in lines[1:]:
		k, _, v = ln.partition(":")
		hdrs[k.strip().lower()] = v.strip()
	return status, hdrs, rest


def read_response(sock, buf=b""):
	"""(status, headers, body) of one Content-Length response."""
	status, hdrs, rest = read_head(sock, buf)
	n = int(hdrs.get("content-length", "0"))
	while len(rest) < n:
		b = sock.recv(65536)
		if not b:
			break
		rest += b
	return status, hdrs, rest[:n]


def closed_by_peer(sock, timeout=3.0):
	"""True when the server closes sock (EOF/reset) within timeout."""
	sock.settimeout(timeout)
	try:
		while True:
			b = sock.recv(65536)
			if not b:
				return True
	except (ssl.SSLError, ConnectionError):
		return True
	except socket.timeout:
		return False
