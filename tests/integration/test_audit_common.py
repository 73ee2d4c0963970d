"""test_audit_common.py -- helpers shared by the test_audit_*.py modules (no tests here).

The disclosure log seen from outside: a gateway on the harness' default
config with keys and the full policy (tokenize, format_preserve, hash,
mask, subjects), and the reader side: `subgatectl audit show|verify`, the
body_hmac key derivation redone in Python, processes found through /proc.
"""

import hashlib
import hmac
import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest

import util
from util import HarnessError, attach, gateway_problems

SECRET = util.CRM_TOKEN.split()[-1]

# RFC 3339, UTC, milliseconds: 2024-05-01T10:00:00.123Z
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ACTIONS = ("allow", "tokenize", "format_preserve", "hash", "mask", "drop")


def rid(prefix="t"):
	"""A unique request id (the gateway accepts [A-Za-z0-9._:-]{1,64})."""
	return "%s-%s" % (prefix, uuid.uuid4().hex[:20])


def canary(tag):
	"""A value that cannot occur by chance in a log or an output."""
	return "cny%s%s" % (tag, uuid.uuid4().hex[:12])


# --------------------------------------------------------------------------
# keys and key derivation

class Keys:
	"""The files `subgatectl keys init` wrote: .dir, .reader (the offline
	X25519 private key), .signer_pub (the first signing key), .index."""

	def __init__(self, keydir):
		self.dir = Path(keydir)
		self.reader = str(self.dir / "offline" / "audit-reader.key")
		self.signer_pub = str(self.dir / "audit-signer.pub")
		self.index = str(self.dir / "audit-index.key")

	def index_key(self):
		return bytes.fromhex(Path(self.index).read_text().strip())


def hkdf_sha256(ikm, info, length=32, salt=b""):
	"""RFC 5869 HKDF with SHA-256 (an empty salt is HashLen zero bytes)."""
	prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
	out, t, i = b"", b"", 1
	while len(out) < length:
		t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
		out += t
		i += 1
	return out[:length]


def keys_derive(key, purpose, key_id, version, length=32):
	"""keys_derive(): info = each of ("subgate/v1", purpose, key_id,
	decimal version) prefixed by its 2-byte big-endian length."""
	info = b""
	for s in ("subgate/v1", purpose, key_id, str(version)):
		b = s.encode()
		info += len(b).to_bytes(2, "big") + b
	return hkdf_sha256(key, info, length)


def body_hmac(index_key, body):
	k = keys_derive(index_key, "body-hmac", "audit-index", 1)
	return hmac.new(k, body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------
# subgatectl audit

def ctl(args, input=None, timeout=60):
	return util.run([util.SUBGATECTL] + list(args), check=False, input=input, timeout=timeout)


def show(audit_dir, keys, *args, fmt="jsonl", input=None):
	"""`subgatectl audit show DIR --key READER --format FMT ARGS...`."""
	return ctl(["audit", "show", audit_dir, "--key", keys.reader, "--format", fmt] + list(args),
		   input=input)


def records(audit_dir, keys, *args):
	"""The records `audit show --format jsonl` prints, parsed. Fails the
	test when it exits non-zero or a line is not one JSON object."""
	r = show(audit_dir, keys, *args)
	assert r.returncode == 0, "audit show exited %d: %s" % (r.returncode, r.stderr)
	out = []
	for ln in r.stdout.splitlines():
		if not ln.strip():
			continue
		try:
			doc = json.loads(ln)
		except ValueError:
			pytest.fail("audit show printed a line that is not JSON: %r" % ln)
		assert isinstance(doc, dict), ln
		out.append(doc)
	return out


def verify(audit_dir, keys, anchor=None):
	"""`subgatectl audit verify DIR --public-key PUB [--anchor LINE]` ->
	(exit code, stdout + stderr)."""
	args = ["audit", "verify", audit_dir, "--public-key", keys.signer_pub]
	if anchor is not None:
		args += ["--anchor", anchor]
	r = ctl(args)
	return r.returncode, r.stdout + r.stderr


def by_request(recs, request_id, type=None):
	return [x for x in recs if x.get("request_id") == request_id and
		(type is None or x.get("type") == type)]


def wait_records(audit_dir, keys, pred, timeout=10.0, what="audit records"):
	"""Poll `audit show` until pred(records) is true; returns the records.
	(Outcomes are noted after the response is queued, so a client can see
	its answer a moment before the outcome record is durable.)"""
	last = [None]

	def ok():
		last[0] = records(audit_dir, keys)
		return pred(last[0])
	try:
		util.wait_until(ok, timeout, interval=0.1, what=what)
	except HarnessError:
		pytest.fail("timed out waiting for %s; records for the test:\n%s" % (
			what, "\n".join(json.dumps(x) for x in (last[0] or [])[-30:])))
	return last[0]


def wait_call(audit_dir, keys, request_id, types=("disclosure", "outcome"), timeout=10.0):
	"""Wait until the records of request_id include one of each of types;
	returns {type: [records]} for that request id."""
	def pred(recs):
		mine = by_request(recs, request_id)
		return all(any(x.get("type") == t for x in mine) for t in types)
	recs = wait_records(audit_dir, keys, pred, timeout,
			    what="%s records of request %s" % ("/".join(types), request_id))
	out = {}
	for x in by_request(recs, request_id):
		out.setdefault(x["type"], []).append(x)
	return out


def audit_files(audit_dir):
	"""Every regular file under the audit directory."""
	out = []
	for root, _dirs, files in os.walk(audit_dir):
		for f in files:
			out.append(os.path.join(root, f))
	return out


def segments(audit_dir):
	return sorted(p for p in Path(audit_dir).iterdir() if re.match(r"^seg-\d{20}\.sga$", p.name))


def checkpoint_lines(text):
	return [ln[ln.index("audit checkpoint "):] for ln in text.splitlines()
		if "audit checkpoint v1 " in ln]


# --------------------------------------------------------------------------
# processes

def audit_processes(config_path):
	"""PIDs of live audit processes started with this config."""
	pids = []
	for d in os.listdir("/proc"):
		if not d.isdigit():
			continue
		try:
			with open("/proc/%s/comm" % d) as f:
				comm = f.read().strip()
			with open("/proc/%s/cmdline" % d, "rb") as f:
				argv = f.read().split(b"\0")
		except OSError:
			continue
		if comm == "subgate-audit" and str(config_path).encode() in argv:
			pids.append(int(d))
	return pids


def children(pid):
	"""Pids whose parent is pid (from /proc/*/stat)."""
	out = []
	for d in os.listdir("/proc"):
		if not d.isdigit():
			continue
		try:
			with open("/proc/%s/stat" % d) as f:
				st = f.read()
		except OSError:
			continue
		# pid (comm) state ppid ...: comm may hold spaces and parentheses
		rest = st[st.rindex(")") + 2:].split()
		if int(rest[1]) == pid:
			out.append(int(d))
	return out


def pid_alive(pid):
	"""True while pid exists and is not a zombie."""
	try:
		with open("/proc/%d/stat" % pid) as f:
			st = f.read()
	except OSError:
		return False
	return st[st.rindex(")") + 2:].split()[0] != "Z"


def wait_gone(pid, timeout=10.0):
	"""True when pid is gone (or a zombie) within timeout."""
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		if not pid_alive(pid):
			return True
		time.sleep(0.05)
	return False


# --------------------------------------------------------------------------
# a gateway with keys, audit and the full policy, shared by a module

class AuditEnv:
	"""Processors and one gateway on util.make_config with keys and the full
	policy. procs: {name: Processor kwargs} ("crm" default echo; the
	calendar integration goes to "calendar" if given, else to crm, or to
	calendar_url). edit(cfg, env) may change the config before the start.
	Attributes: gw, procs, keys (Keys), audit_dir, cfg."""

	def __init__(self, pki, base, name, procs=None, edit=None, calendar_url=None, start=True):
		self.pki = pki
		self.name = name
		self.base = Path(base)
		self.procs = {}
		self.gw = None
		self.log0 = 0
		try:
			for pname, kw in (procs or {"crm": {}}).items():
				kw = dict(kw)
				mode = kw.pop("mode", "echo")
				p = util.Processor(pki, self.base / ("proc-" + pname), mode=mode, **kw)
				p.name = "processor %s (%s)" % (pname, mode)
				self.procs[pname] = p
				p.start()
			k = util.keys_init(self.base / "keys")
			self.keys = Keys(self.base / "keys")
			crm = self.procs["crm"]
			cal = self.procs.get("calendar")
			self.cfg = util.make_config(pki, self.base / "cfg", crm.url,
						    calendar_url or (cal.url if cal else crm.url),
						    keys=k, full_policy=True)
			if edit is not None:
				edit(self.cfg, self)
			self.audit_dir = self.cfg["audit"]["directory"]
			self.gw = util.Gateway(pki, self.base / "gw", self.cfg, name="subgate(%s)" % name)
			self.gw.processors = dict(self.procs)
			if start:
				self.gw.start()
		except BaseException:
			self.close(check=False)
			raise

	@property
	def crm(self):
		return self.procs["crm"]

	def use(self, request):
		attach(request, *([self.gw] if self.gw else []), *self.procs.values())
		for p in self.procs.values():
			p.clear()
		if self.gw:
			self.gw.settle_request_log()	# as Env.use in test_gateway_common
		self.log0 = self.gw.log_size() if self.gw else 0
		return self

	def records(self, *args):
		return records(self.audit_dir, self.keys, *args)

	def show(self, *args, fmt="jsonl", input=None):
		return show(self.audit_dir, self.keys, *args, fmt=fmt, input=input)

	def verify(self, anchor=None):
		return verify(self.audit_dir, self.keys, anchor)

	def wait_call(self, request_id, types=("disclosure", "outcome"), timeout=10.0):
		return wait_call(self.audit_dir, self.keys, request_id, types, timeout)

	def close(self, check=True):
		problems = []
		if self.gw is not None and self.gw.proc is not None:
			rc = self.gw.stop()
			problems += gateway_problems(self.gw, rc)
		for p in self.procs.values():
			p.stop()
		if check and problems:
			pytest.fail("\n".join(problems), pytrace=False)


def contact(email="ada@example.com", phone="+1 415 555 0100", **extra):
	"""A body for POST /crm/v1/contacts (every action of the full policy)."""
	body = {
		"contact": {"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines",
			    "email": email, "phone": phone, "card_number": "4111111111111111"},
		"call": {"started_at": "2024-05-01T10:00:00Z", "summary": "asked about pricing",
			 "duration_s": 125, "caller_id": "+15550100"},
	}
	for k, v in extra.items():
		body[k] = v
	return body


def post_contact(gw, body, request_id, cert="tenant-acme", path="/crm/v1/contacts"):
	return gw.request("POST", path, json=body, headers={"X-Request-Id": request_id}, cert=cert)
