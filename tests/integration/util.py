"""util.py -- helpers for subgate's integration tests: PKI, processes, config, clients.

Only the standard library. conftest.py wraps these in pytest fixtures; tests
may also import them directly (``from util import ...``).
"""

import base64
import hashlib
import http.client
import json as jsonlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SUBGATE = REPO / "build" / "subgate"
SUBGATECTL = REPO / "build" / "subgatectl"
PKI_SCRIPT = REPO / "scripts" / "gen-dev-pki.sh"
PROCESSOR = HERE / "processor.py"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

TENANT_URI = "spiffe://personadesk.test/tenant/%s/service"
ACME_URI = TENANT_URI % "acme"
GLOBEX_URI = TENANT_URI % "globex"
UNKNOWN_URI = TENANT_URI % "nobody"
CRM_TOKEN = "Bearer crm-dev-token"		# what the default config's secret file holds
GATEWAY_NAME = "localhost"			# a name in gateway.crt's SANs

# Client certificates gen-dev-pki.sh issues, by base name.
CLIENT_CERTS = ("tenant-acme", "tenant-globex", "tenant-unknown", "client-dns",
		"client-cn", "client-expired", "client-revoked", "client-otherca")

SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error: |"
			  r"SUMMARY: UndefinedBehaviorSanitizer")


class HarnessError(Exception):
	"""The harness could not set something up (not a failed assertion)."""


# --------------------------------------------------------------------------
# ports and waiting

def free_port(host="127.0.0.1"):
	"""A TCP port that was free a moment ago on host (bind :0, release)."""
	fam = socket.AF_INET6 if ":" in host else socket.AF_INET
	with socket.socket(fam, socket.SOCK_STREAM) as s:
		s.bind((host, 0))
		return s.getsockname()[1]


def port_open(host, port, timeout=0.5):
	"""True when a TCP connection to host:port is accepted."""
	try:
		with socket.create_connection((host, port), timeout=timeout):
			return True
	except OSError:
		return False


def port_listening(port):
	"""True when some local TCP socket listens on port (from /proc/net/tcp*,
	without connecting: a probe connection would show in the server's
	logs and metrics)."""
	want = ":%04X" % port
	for f in ("/proc/net/tcp", "/proc/net/tcp6"):
		try:
			with open(f) as fh:
				next(fh)
				for ln in fh:
					parts = ln.split()
					if parts[1].endswith(want) and parts[3] == "0A":
						return True
		except FileNotFoundError:
			continue
	return False


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
	"""Poll pred() until it returns a true value (returned) or raise HarnessError."""
	deadline = time.monotonic() + timeout
	while True:
		v = pred()
		if v:
			return v
		if time.monotonic() >= deadline:
			raise HarnessError("timed out after %.1fs waiting for %s" % (timeout, what))
		time.sleep(interval)


def url_host(host):
	return "[%s]" % host if ":" in host else host


# --------------------------------------------------------------------------
# PKI

class PKI:
	"""Files written by scripts/gen-dev-pki.sh in one directory.

	pki["tenant-acme.crt"] / pki.path("tenant-acme.crt") -> absolute path (str)
	pki.crt("tenant-acme"), pki.key("tenant-acme"), pki.pair("tenant-acme") -> (crt, key)
	pki.spki -> base64 SHA-256 of processor.crt's SPKI (processor.spki)
	"""

	def __init__(self, directory):
		self.dir = Path(directory).resolve()

	def path(self, name):
		p = self.dir / name
		if not p.exists():
			raise HarnessError("no PKI file %s" % p)
		return str(p)

	__getitem__ = path

	def crt(self, name):
		return self.path(name + ".crt")

	def key(self, name):
		return self.path(name + ".key")

	def pair(self, name):
		return self.crt(name), self.key(name)

	@property
	def spki(self):
		return (self.dir / "processor.spki").read_text().strip()

	def spki_sha256(self, name):
		"""base64 SHA-256 of the SubjectPublicKeyInfo of NAME.crt."""
		return spki_sha256(self.crt(name))

	@property
	def crl(self):
		return self.path("service-ca.crl")

	def revoke(self, names, out, crldays=30, ca="service-ca"):
		"""Write to out a new CRL of ca that also revokes NAME.crt for each name.

		Works in a copy of the CA database, so the session PKI and its
		service-ca.crl are untouched. Returns out (str).
		"""
		if isinstance(names, str):
			names = [names]
		out = Path(out).resolve()
		work = out.parent / (".ca-copy-%s-%d" % (out.name, os.getpid()))
		shutil.rmtree(work, ignore_errors=True)
		shutil.copytree(self.dir / (".ca-" + ca), work)
		try:
			base = ["openssl", "ca", "-batch", "-config", "ca.cnf",
				"-cert", self.crt(ca), "-keyfile", self.key(ca)]
			for n in names:
				run(base + ["-revoke", self.crt(n), "-crl_reason", "keyCompromise"], cwd=work)
			run(base + ["-gencrl", "-crldays", str(crldays), "-crlexts", "crl_ext",
				    "-out", str(out)], cwd=work)
		finally:
			shutil.rmtree(work, ignore_errors=True)
		return str(out)


	def issue(self, name, out_dir, san=None, subject=None, ca="service-ca", kind="client",
		  days=30, start=None, end=None):
		"""Issue a new EC P-256 certificate signed by ca into out_dir
		(NAME.crt, NAME.key 0600), in a copy of the CA database.
		san: subjectAltName value ("URI:spiffe://...", "DNS:a, DNS:b") or
		None; subject default "/CN=NAME"; kind "client" or "server";
		start/end: "YYYYMMDDHHMMSSZ" (both, or neither and days).
		Returns (crt, key) as str."""
		out_dir = Path(out_dir).resolve()
		out_dir.mkdir(parents=True, exist_ok=True)
		crt, key = out_dir / (name + ".crt"), out_dir / (name + ".key")
		work = out_dir / (".ca-issue-%s-%d" % (name, os.getpid()))
		shutil.rmtree(work, ignore_errors=True)
		shutil.copytree(self.dir / (".ca-" + ca), work)
		try:
			old = os.umask(0o077)
			try:
				run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
				     "ec_paramgen_curve:P-256", "-out", key])
			finally:
				os.umask(old)
			lines = ["[ leaf ]", "basicConstraints = critical, CA:FALSE",
				 "keyUsage = critical, digitalSignature",
				 "extendedKeyUsage = %s" % ("serverAuth" if kind == "server" else "clientAuth"),
				 "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always"]
			if san:
				lines.append("subjectAltName = " + san)
			(work / "issue.ext").write_text("\n".join(lines) + "\n")
			run(["openssl", "req", "-new", "-key", key, "-subj", subject or "/CN=" + name,
			     "-out", work / "issue.csr"])
			dates = ["-startdate", start, "-enddate", end] if start else ["-days", str(days)]
			run(["openssl", "ca", "-batch", "-notext", "-config", "ca.cnf",
			     "-cert", self.crt(ca), "-keyfile", self.key(ca), "-extfile", "issue.ext",
			     "-extensions", "leaf", "-in", "issue.csr", "-out", crt] + dates, cwd=work)
		finally:
			shutil.rmtree(work, ignore_errors=True)
		return str(crt), str(key)


def gen_pki(directory, force=False):
	"""Run gen-dev-pki.sh into directory; returns a PKI."""
	args = [str(PKI_SCRIPT), "--quiet"] + (["--force"] if force else []) + [str(directory)]
	run(args)
	return PKI(directory)


def spki_sha256(cert_path):
	"""base64 SHA-256 of the DER SubjectPublicKeyInfo of a PEM certificate."""
	pub = run(["openssl", "x509", "-in", str(cert_path), "-noout", "-pubkey"]).stdout
	der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub.encode(),
			     capture_output=True, check=True).stdout
	return base64.b64encode(hashlib.sha256(der).digest()).decode()


def run(args, cwd=None, check=True, timeout=60, input=None, env=None):
	"""subprocess.run with text output captured; raises HarnessError with the output on failure."""
	r = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
			   timeout=timeout, input=input, env=env)
	if check and r.returncode != 0:
		raise HarnessError("%s exited %d\nstdout:\n%s\nstderr:\n%s"
				   % (" ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
	return r


def write_secret(path, text, mode=0o600):
	"""Create path with text, readable by the owner only. Returns str(path)."""
	path = Path(path)
	path.parent.mkdir(parents=True, exist_ok=True)
	fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
	with os.fdopen(fd, "w") as f:
		f.write(text)
	os.chmod(path, mode)
	return str(path)


# --------------------------------------------------------------------------
# libconfig rendering

class Raw(str):
	"""Text put into the rendered config verbatim (a deliberately broken value,
	an expression libconfig has but Python does not)."""


class Include(str):
	"""As a list element at top level, or as a value of any key: `@include "path"`."""


class Group(dict):
	"""A dict; in a list it renders as a group like any dict. Exists for symmetry."""


class Array(list):
	"""Force `[ ... ]` (libconfig array: scalars of one type)."""


class List(list):
	"""Force `( ... )` (libconfig list: anything)."""


_NAME_RE = re.compile(r"^[A-Za-z*][-A-Za-z0-9_*]*$")


def _quote(s):
	out = ['"']
	for ch in s:
		o = ord(ch)
		if ch == "\\":
			out.append("\\\\")
		elif ch == '"':
			out.append('\\"')
		elif ch == "\n":
			out.append("\\n")
		elif ch == "\r":
			out.append("\\r")
		elif ch == "\t":
			out.append("\\t")
		elif ch == "\f":
			out.append("\\f")
		elif o < 0x20 or o == 0x7f:
			out.append("\\x%02x" % o)
		else:
			out.append(ch)
	out.append('"')
	return "".join(out)


def _scalar(v):
	return isinstance(v, (str, bool, int, float)) and not isinstance(v, (Raw, Include))


def _value(v, ind):
	pad = "  " * ind
	if isinstance(v, Raw):
		return str(v)
	if isinstance(v, Include):
		return "\n@include %s\n%s" % (_quote(str(v)), pad)
	if isinstance(v, bool):
		return "true" if v else "false"
	if isinstance(v, int):
		# libconfig ints are 32-bit; wider ones need the L suffix (int64).
		return "%dL" % v if not -2**31 <= v < 2**31 else "%d" % v
	if isinstance(v, float):
		r = repr(v)
		return r if ("." in r or "e" in r or "inf" in r or "nan" in r) else r + ".0"
	if isinstance(v, str):
		return _quote(v)
	if isinstance(v, dict):
		return "{\n%s%s}" % (_settings(v, ind + 1), pad)
	if isinstance(v, (list, tuple)):
		array = isinstance(v, Array) or (
			not isinstance(v, (List, tuple)) and all(_scalar(x) for x in v)
			and len({type(x) for x in v}) <= 1)
		if not v:
			return "[ ]" if array else "( )"
		items = [_value(x, ind + 1) for x in v]
		if array and sum(len(x) for x in items) < 80:
			return "[ %s ]" % ", ".join(items)
		inner = ",\n".join("  " * (ind + 1) + x for x in items)
		return ("[\n%s\n%s]" if array else "(\n%s\n%s)") % (inner, pad)
	raise TypeError("cannot render %r in a libconfig file" % (v,))


def _settings(d, ind):
	pad = "  " * ind
	out = []
	for k, v in d.items():
		if v is None:
			continue
		if isinstance(v, Include) and k.startswith("@"):
			out.append("@include %s\n" % _quote(str(v)))
			continue
		if isinstance(v, Raw) and k.startswith("@"):
			out.append("%s%s\n" % (pad, v))
			continue
		if not _NAME_RE.match(k):
			raise ValueError("%r is not a libconfig setting name" % k)
		out.append("%s%s = %s;\n" % (pad, k, _value(v, ind)))
	return "".join(out)


def render_libconfig(cfg):
	"""libconfig text for a nested dict.

	dict -> group `{ k = v; }`; list/tuple of scalars of one type -> array
	`[ ]`, anything else -> list `( )` (force with Array/List); str -> quoted
	with escapes; bool -> true/false; int beyond 32 bits -> `L` suffix;
	None -> setting omitted; Raw -> verbatim; a key starting with "@" whose
	value is Include(path) or Raw(text) emits that line (`@include "path"`).
	"""
	return _settings(cfg, 0)


def render_value(v):
	"""libconfig text for one value (a group for an @include'd file, say)."""
	return _value(v, 0) + "\n"


# --------------------------------------------------------------------------
# HTTP client side

class Response:
	"""A response: status, reason, headers [(name, value)], body (bytes)."""

	def __init__(self, status, reason, headers, body, version=None):
		self.status = status
		self.reason = reason
		self.headers = list(headers)
		self.body = body
		self.version = version

	def header(self, name, default=None):
		"""First value of header name (case-insensitive), or default."""
		for k, v in self.headers:
			if k.lower() == name.lower():
				return v
		return default

	def header_all(self, name):
		return [v for k, v in self.headers if k.lower() == name.lower()]

	@property
	def text(self):
		return self.body.decode("utf-8", "replace")

	def json(self):
		return jsonlib.loads(self.body)

	@property
	def error_code(self):
		"""subgate's error code from {"error":{"code":...}}, or None."""
		try:
			return self.json()["error"]["code"]
		except (ValueError, KeyError, TypeError):
			return None

	def __repr__(self):
		return "<Response %s %s %r>" % (self.status, self.reason, self.body[:200])


def client_context(pki, cert="tenant-acme", ca="gateway-ca", min_version=None,
		   max_version=None, ciphers=None):
	"""A TLS client context that trusts ca (a PKI base name or a path) and
	presents cert (a PKI base name, a (crt, key) pair, or None for no
	certificate). min_version/max_version: "1.2" / "1.3" or ssl.TLSVersion."""
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
	ctx.load_verify_locations(cafile=ca if "/" in ca else pki.crt(ca))
	ctx.check_hostname = True
	ctx.verify_mode = ssl.CERT_REQUIRED
	vers = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
	if min_version:
		ctx.minimum_version = vers.get(min_version, min_version)
	if max_version:
		ctx.maximum_version = vers.get(max_version, max_version)
	if ciphers:
		ctx.set_ciphers(ciphers)
	if cert is not None:
		if isinstance(cert, (tuple, list)):
			ctx.load_cert_chain(cert[0], cert[1])
		else:
			ctx.load_cert_chain(*pki.pair(cert))
	return ctx


class Conn:
	"""A kept-alive HTTPS connection. Never reconnects behind your back:
	a request after the server closed raises http.client.NotConnected (or
	another OSError), so tests can tell reuse from a new connection."""

	def __init__(self, host, port, ctx, server_hostname=GATEWAY_NAME, timeout=10.0):
		self.host, self.port = host, port
		self.http = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
		self._server_hostname = server_hostname
		self._ctx = ctx
		self._timeout = timeout
		self.connect()

	def connect(self):
		raw = socket.create_connection((self.host, self.port), timeout=self._timeout)
		try:
			self.sock = self._ctx.wrap_socket(raw, server_hostname=self._server_hostname)
		except BaseException:
			raw.close()
			raise
		self.http.sock = self.sock
		self.http.auto_open = 0

	def request(self, method, path, body=None, json=None, headers=None):
		"""Send one request and read the whole response. Returns Response."""
		hdrs = dict(headers or {})
		if json is not None:
			body = jsonlib.dumps(json).encode()
			if not any(k.lower() == "content-type" for k in hdrs):
				hdrs["Content-Type"] = "application/json"
		if isinstance(body, str):
			body = body.encode()
		self.http.request(method, path, body=body, headers=hdrs)
		r = self.http.getresponse()
		data = r.read()
		return Response(r.status, r.reason, r.getheaders(), data, r.version)

	@property
	def open(self):
		return self.http.sock is not None

	def peer_cert(self):
		return self.sock.getpeercert()

	def close(self):
		self.http.close()

	def __enter__(self):
		return self

	def __exit__(self, *exc):
		self.close()


class RawReply(bytes):
	"""Bytes read by raw_exchange; .closed: the server closed the connection
	(EOF or reset) before the read timed out; .error: the exception that
	ended reading, if any."""
	closed = False
	error = None

	def responses(self):
		"""The responses in the bytes, parsed loosely (Content-Length or
		close-delimited; no chunked): [Response]."""
		out, data = [], bytes(self)
		while data:
			head, sep, rest = data.partition(b"\r\n\r\n")
			if not sep:
				break
			lines = head.decode("latin-1").split("\r\n")
			parts = lines[0].split(" ", 2)
			if len(parts) < 2 or not parts[0].startswith("HTTP/"):
				break
			hdrs = [tuple(x.strip() for x in ln.split(":", 1)) for ln in lines[1:] if ":" in ln]
			n = None
			for k, v in hdrs:
				if k.lower() == "content-length":
					n = int(v)
			if n is None:
				n = len(rest)
			out.append(Response(int(parts[1]), parts[2] if len(parts) > 2 else "",
					    hdrs, rest[:n], parts[0]))
			data = rest[n:]
		return out

	@property
	def status(self):
		"""Status of the first response, or None."""
		r = self.responses()
		return r[0].status if r else None


def raw_exchange(host, port, ctx, data, server_hostname=GATEWAY_NAME, timeout=5.0,
		 chunks=None, pause=0.0):
	"""Open a TLS connection, send data exactly (or each of chunks, pausing
	pause seconds between them), read until the server closes or timeout
	seconds pass without data. Returns RawReply."""
	raw = socket.create_connection((host, port), timeout=timeout)
	sock = None
	buf = bytearray()
	closed, err = False, None
	try:
		sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
		for i, part in enumerate(chunks if chunks is not None else [data]):
			if i and pause:
				time.sleep(pause)
			sock.sendall(part)
		while True:
			try:
				b = sock.recv(65536)
			except socket.timeout:
				break
			except (ssl.SSLError, ConnectionError) as e:
				closed, err = True, e
				break
			if not b:
				closed = True
				break
			buf += b
	finally:
		(sock or raw).close()
	r = RawReply(bytes(buf))
	r.closed, r.error = closed, err
	return r


# Exceptions a refused TLS client sees (handshake alert, or with TLS 1.3 an
# alert/EOF on the first read after the handshake).
TLS_REFUSED = (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected,
	       http.client.BadStatusLine, socket.timeout, OSError)


# --------------------------------------------------------------------------
# processes

def _terminate(proc, timeout):
	"""SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code."""
	if proc.poll() is None:
		try:
			proc.send_signal(signal.SIGTERM)
			proc.wait(timeout)
		except subprocess.TimeoutExpired:
			proc.kill()
			proc.wait(10)
	return proc.returncode


class Processor:
	"""A running tests/integration/processor.py.

	Attributes: host, port, url ("https://host:port"), record_path, out_path.
	"""

	def __init__(self, pki, workdir, mode="echo", cert="processor",
		     client_ca="gateway-client-ca", host="127.0.0.1", port=0, delay=2.0,
		     status=None, body=None, content_type=None, headers=(), tls_max=None,
		     args=()):
		self.pki = pki
		self.dir = Path(workdir)
		self.dir.mkdir(parents=True, exist_ok=True)
		self.host = host
		self.port = port
		self.record_path = self.dir / "records.jsonl"
		self.out_path = self.dir / "processor.out"
		self.control_path = self.dir / "control.json"
		self.port_file = self.dir / "port"
		self.proc = None
		self.argv = [PYTHON, str(PROCESSOR), "--host", host,
			     "--cert", pki.crt(cert), "--key", pki.key(cert),
			     "--client-ca", client_ca if "/" in client_ca else pki.crt(client_ca),
			     "--record", str(self.record_path), "--control", str(self.control_path),
			     "--port-file", str(self.port_file), "--mode", mode,
			     "--delay", str(delay), "--verbose"]
		if status is not None:
			self.argv += ["--status", str(status)]
		if body is not None:
			if not isinstance(body, (str, bytes)):
				body = jsonlib.dumps(body)
			bf = self.dir / "fixed-body"
			bf.write_bytes(body.encode() if isinstance(body, str) else body)
			self.argv += ["--body-file", str(bf)]
		if content_type is not None:
			self.argv += ["--content-type", content_type]
		for h in headers:
			self.argv += ["--header", h if isinstance(h, str) else "%s: %s" % tuple(h)]
		if tls_max:
			self.argv += ["--tls-max", tls_max]
		self.argv += list(args)
		self.name = "processor(%s)" % mode

	@property
	def url(self):
		return "https://%s:%d" % (url_host(self.host), self.port)

	def start(self, timeout=10.0):
		"""Start (or restart on the same port, if it had one)."""
		if self.port_file.exists():
			self.port_file.unlink()
		argv = self.argv + ["--port", str(self.port)]
		self._out = open(self.out_path, "ab")
		self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
					     stdin=subprocess.DEVNULL)

		def ready():
			if self.proc.poll() is not None:
				raise HarnessError("processor exited %s:\n%s" % (self.proc.returncode,
										  self.output_text()))
			return self.port_file.exists()

		# The port file is written after listen(): no need to probe the port
		# (a probe would show up as a failed handshake in the output).
		wait_until(ready, timeout, what="processor port file")
		self.port = int(self.port_file.read_text())
		return self

	def stop(self):
		"""Stop it (SIGTERM, then SIGKILL). Returns the exit code or None."""
		if self.proc is None:
			return None
		rc = _terminate(self.proc, 5)
		self.proc = None
		self._out.close()
		return rc

	@property
	def running(self):
		return self.proc is not None and self.proc.poll() is None

	def records(self):
		"""Every request received so far, oldest first (parsed JSON lines; see
		processor.py for the keys)."""
		try:
			text = self.record_path.read_text()
		except FileNotFoundError:
			return []
		return [jsonlib.loads(ln) for ln in text.splitlines() if ln.strip()]

	def wait_records(self, n, timeout=5.0):
		"""Wait until at least n records exist; returns records()."""
		wait_until(lambda: len(self.records()) >= n, timeout, what="%d processor records" % n)
		return self.records()

	def last(self):
		"""The last record, or None."""
		r = self.records()
		return r[-1] if r else None

	def clear(self):
		"""Forget the records so far."""
		try:
			self.record_path.unlink()
		except FileNotFoundError:
			pass

	def set_mode(self, mode=None, **kw):
		"""Change behaviour from the next request on, without a restart:
		mode, delay, status, body, body_b64, content_type, headers,
		close_notify. set_mode() with nothing resets to the startup flags."""
		d = dict(kw)
		if mode is not None:
			d["mode"] = mode
		tmp = self.control_path.with_suffix(".tmp")
		tmp.write_text(jsonlib.dumps(d))
		os.replace(tmp, self.control_path)

	def output_text(self):
		try:
			return self.out_path.read_text(errors="replace")
		except FileNotFoundError:
			return ""

	def describe(self):
		return "%s %s" % (self.name, self.url), self.output_text()


# --------------------------------------------------------------------------
# keys (used only once build/subgatectl implements `keys init` / `keys sync`)

_keys_supported = None


def keys_supported(workdir):
	"""True when build/subgatectl can run `keys init` (probed once per session)."""
	global _keys_supported
	if _keys_supported is None:
		probe = Path(workdir) / "keys-probe"
		shutil.rmtree(probe, ignore_errors=True)
		_keys_supported = False
		if SUBGATECTL.exists():
			try:
				r = run([SUBGATECTL, "keys", "init", probe], check=False, timeout=30)
				_keys_supported = r.returncode == 0 and (probe / "token.keys").exists()
			except (OSError, subprocess.TimeoutExpired):
				pass
		shutil.rmtree(probe, ignore_errors=True)
	return _keys_supported


def keys_init(keydir):
	"""`subgatectl keys init keydir`; returns the config's keys = {...} group."""
	keydir = Path(keydir)
	run([SUBGATECTL, "keys", "init", keydir])
	return {
		"token_keys": str(keydir / "token.keys"),
		"data_keys": str(keydir / "data.keys"),
		"audit_reader": str(keydir / "audit-reader.pub"),
		"audit_index": str(keydir / "audit-index.key"),
		"audit_signer": str(keydir / "audit-signer.key"),
	}


# --------------------------------------------------------------------------
# the default gateway configuration

_full_policy_ok = None


def full_policy_supported(cfg, workdir, binary=None):
	"""Whether subgate accepts cfg's tokenize/format_preserve/hash/mask rules
	(False when `subgate -t` says an action "is not implemented in this
	build"). Probed once per session with cfg (a make_config(full_policy=
	True) dict with keys)."""
	global _full_policy_ok
	if _full_policy_ok is None:
		binary = Path(binary or SUBGATE)
		if not binary.exists():
			return True
		conf = Path(workdir) / "probe.conf"
		conf.write_text(render_libconfig(cfg))
		if cfg.get("keys") and SUBGATECTL.exists():
			run([SUBGATECTL, "keys", "sync", "-c", conf], check=False)
		r = run([binary, "-t", "-c", conf], check=False)
		_full_policy_ok = "not implemented in this build" not in r.stdout + r.stderr
		conf.unlink()
	return _full_policy_ok

def make_config(pki, workdir, crm_url, calendar_url=None, keys=None,
		listen_port=None, admin_port=None, host="127.0.0.1", full_policy=None):
	"""The default test config as a nested dict (render with render_libconfig).

	Tenants acme (crm, calendar) and globex (crm); integration crm at /crm
	and calendar at /calendar, both to the processor(s) at the given URLs.
	keys: None (no keys/audit sections) or the dict keys_init() returned,
	which also adds an audit section in workdir/audit. full_policy (default:
	keys is not None) adds the tokenize/format_preserve/hash/mask rules,
	which need keys; without it every body rule is allow.
	Secret file workdir/secrets/crm.token holds CRM_TOKEN (0600).
	"""
	workdir = Path(workdir)
	if full_policy is None:
		full_policy = keys is not None
	token = write_secret(workdir / "secrets" / "crm.token", CRM_TOKEN + "\n")
	listen_port = listen_port or free_port(host)
	admin_port = admin_port or free_port("127.0.0.1")
	calendar_url = calendar_url or crm_url

	contacts_req = {"allow": ["contact.first_name", "contact.last_name", "contact.company",
				  "call.started_at", "call.summary", "call.duration_s"]}
	contacts_resp = None
	cal_req = {"allow": ["start", "end", "summary", "attendees[].response"]}
	cal_resp = None
	if full_policy:
		contacts_req.update({
			"tokenize": ["contact.email"],
			"format_preserve": ["contact.phone"],
			"hash": ["call.caller_id"],
			"mask": ["contact.card_number"],
			"subjects": ["contact.email", "contact.phone"],
		})
		contacts_resp = {"detokenize": ["contact.email"], "format_preserve": ["contact.phone"]}
		cal_req.update({"tokenize": ["attendees[].email"], "subjects": ["attendees[].email"]})
		cal_resp = {"detokenize": ["attendees[].email"]}

	def account(url, server_name):
		return {
			"upstream": url,
			"server_name": server_name,
			"ca": pki.crt("processor-ca"),
			"client_certificate": pki.crt("gateway-client"),
			"client_private_key": pki.key("gateway-client"),
		}

	crm = {"name": "crm", "prefix": "/crm"}
	crm.update(account(crm_url, "crm.processor.test"))
	crm.update({
		"token_domain": "tokens.example.com",
		"headers": {"allow": ["Accept", "X-Request-Id"],
			    "set": [{"name": "Authorization", "file": token}]},
		"endpoints": [
			{"method": "POST", "path": "/v1/contacts", "request": contacts_req,
			 "response": contacts_resp},
			{"method": "GET", "path": "/v1/contacts/{id}", "params": {"id": "allow"},
			 "query": {"allow": ["fields"]}, "response": contacts_resp},
		],
	})
	calendar = {"name": "calendar", "prefix": "/calendar"}
	calendar.update(account(calendar_url, "calendar.processor.test"))
	calendar["endpoints"] = [
		{"method": "POST", "path": "/v3/events", "request": cal_req, "response": cal_resp},
	]

	cfg = {
		# No `user`: subgate keeps running as whoever started it (the
		# test's files are that user's, mode 0600).
		"user": None,
		"listen": {"address": host, "port": listen_port, "workers": 2},
		"tls": {
			"certificate": pki.crt("gateway"),
			"private_key": pki.key("gateway"),
			"client_ca": pki.crt("service-ca"),
			"crl": pki.path("service-ca.crl"),
			"min_version": "TLSv1.2",
		},
		"admin": {"address": "127.0.0.1", "port": admin_port, "tenant_labels": False},
		"limits": {
			"handshake_timeout_ms": 5000, "client_timeout_ms": 10000,
			"upstream_timeout_ms": 5000, "upstream_idle_ms": 10000,
			"audit_timeout_ms": 5000, "shutdown_grace_ms": 2000,
		},
		"tenants": [
			{"id": "acme", "clients": [ACME_URI], "phone_country_code": "1",
			 "integrations": ["crm", "calendar"]},
			{"id": "globex", "clients": [GLOBEX_URI], "phone_country_code": "44",
			 "integrations": ["crm"]},
		],
		"integrations": [crm, calendar],
	}
	if keys is not None:
		cfg["keys"] = dict(keys)
		cfg["audit"] = {
			"directory": str(workdir / "audit"), "instance": "test",
			"min_free_bytes": 1048576, "checkpoint_records": 100, "checkpoint_seconds": 2,
		}
	return cfg


# --------------------------------------------------------------------------
# the gateway

class ReloadResult:
	"""ok: True (the generation advanced), False (the gateway logged a reload
	that did not take), None (nothing observed before the timeout).
	generation: subgate_config_generation after, if known. log: log text
	written since the signal."""

	def __init__(self, ok, generation, log):
		self.ok, self.generation, self.log = ok, generation, log

	def __bool__(self):
		return bool(self.ok)

	def __repr__(self):
		return "<ReloadResult ok=%r generation=%r>" % (self.ok, self.generation)


class Gateway:
	"""build/subgate run on a config written from a dict.

	Attributes: cfg (the dict; edit it and call write_config()/reload()),
	dir, config_path, log_path, host, port, admin_host, admin_port, proc,
	processors (name -> Processor started for it by the fixture, if any).
	"""

	def __init__(self, pki, workdir, cfg, binary=SUBGATE, name="subgate"):
		self.pki = pki
		self.dir = Path(workdir)
		self.dir.mkdir(parents=True, exist_ok=True)
		self.cfg = cfg
		self.binary = Path(binary)
		self.config_path = self.dir / "subgate.conf"
		self.log_path = self.dir / "subgate.log"
		self.proc = None
		self.name = name
		self.processors = {}
		self.returncode = None
		self.expect_crash = False
		self.write_config()

	# -- config
	@property
	def host(self):
		return self.cfg["listen"].get("address", "127.0.0.1")

	@property
	def port(self):
		return self.cfg["listen"]["port"]

	@property
	def admin_enabled(self):
		a = self.cfg.get("admin")
		return a is not None and a.get("enabled", True) and a.get("port") is not None

	@property
	def admin_host(self):
		return (self.cfg.get("admin") or {}).get("address", "127.0.0.1")

	@property
	def admin_port(self):
		return (self.cfg.get("admin") or {}).get("port")

	def write_config(self, cfg=None, text=None):
		"""Write cfg (default self.cfg, which it replaces) or literal text to
		config_path. Returns the path."""
		if text is None:
			if cfg is not None:
				self.cfg = cfg
			text = render_libconfig(self.cfg)
		self.config_path.write_text(text)
		return str(self.config_path)

	def keys_sync(self):
		"""`subgatectl keys sync -c CONF` (needed after adding tenants or
		integrations when the config has keys). Returns the CompletedProcess."""
		return run([SUBGATECTL, "keys", "sync", "-c", self.config_path], cwd=self.dir)

	def check(self):
		"""`subgate -t -c CONF`: (exit code, stdout + stderr)."""
		r = run([self.binary, "-t", "-c", self.config_path], cwd=self.dir, check=False)
		return r.returncode, r.stdout + r.stderr

	# -- process
	def start(self, wait=True, timeout=15.0, args=(), env=None):
		"""Start subgate -c CONF (stdout+stderr appended to log_path) and,
		with wait, wait until the listen port is in LISTEN state (checked in
		/proc, no probe connection) and /healthz says 200.
		Raises HarnessError (with the log) if it exits or is not ready."""
		if not self.binary.exists():
			raise HarnessError("%s is not built (run make)" % self.binary)
		if "keys" in self.cfg and self.cfg["keys"]:
			self.keys_sync()
		self._log = open(self.log_path, "ab")
		self.returncode = None
		e = dict(os.environ)
		e.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
		e.update(env or {})
		self.proc = subprocess.Popen([str(self.binary), "-c", str(self.config_path)] + list(args),
					     cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT,
					     stdin=subprocess.DEVNULL, env=e)
		if wait:
			self.wait_ready(timeout)
		return self

	def _alive(self):
		if self.proc is None or self.proc.poll() is not None:
			rc = None if self.proc is None else self.proc.returncode
			raise HarnessError("subgate is not running (exit %s); log:\n%s" % (rc, self.log_text()))
		return True

	def wait_ready(self, timeout=15.0):
		wait_until(lambda: self._alive() and port_listening(self.port), timeout,
			   what="subgate listen port %d" % self.port)
		if self.admin_enabled:
			def healthy():
				self._alive()
				try:
					return self.admin_get("/healthz").status == 200
				except OSError:
					return False
			wait_until(healthy, timeout, what="subgate /healthz on admin port %s" % self.admin_port)

	@property
	def pid(self):
		return self.proc.pid if self.proc else None

	@property
	def running(self):
		return self.proc is not None and self.proc.poll() is None

	def signal(self, sig):
		self.proc.send_signal(sig)

	def stop(self, timeout=None):
		"""SIGTERM, wait (grace + 5 s), then SIGKILL. Returns the exit code
		(negative: killed by that signal), also kept in .returncode."""
		if self.proc is None:
			return self.returncode
		if timeout is None:
			grace = (self.cfg.get("limits") or {}).get("shutdown_grace_ms", 10000)
			timeout = grace / 1000.0 + 5
		self.returncode = _terminate(self.proc, timeout)
		self.proc = None
		self._log.close()
		return self.returncode

	def wait_exit(self, timeout=10.0):
		"""Wait for the process to exit on its own; returns the exit code."""
		rc = self.proc.wait(timeout)
		self.returncode = rc
		self.proc = None
		self._log.close()
		return rc

	# -- log
	def log_text(self):
		try:
			return self.log_path.read_text(errors="replace")
		except FileNotFoundError:
			return ""

	def log_size(self):
		try:
			return self.log_path.stat().st_size
		except FileNotFoundError:
			return 0

	def log_since(self, offset):
		with open(self.log_path, "rb") as f:
			f.seek(offset)
			return f.read().decode(errors="replace")

	def wait_log(self, pattern, timeout=5.0, since=0):
		"""Wait until the log (from byte offset since) matches regex pattern;
		returns the match."""
		rx = re.compile(pattern)
		return wait_until(lambda: rx.search(self.log_since(since)), timeout,
				  what="log line matching %r" % pattern)

	def sanitizer_report(self):
		"""The first sanitizer error in the log, or None."""
		m = SANITIZER_RE.search(self.log_text())
		return None if m is None else self.log_text()[m.start():m.start() + 4000]

	# -- reload
	def reload(self, cfg=None, text=None, timeout=10.0):
		"""Optionally rewrite the config (cfg dict or literal text), then
		SIGHUP and wait until the admin metric subgate_config_generation
		increments (ok=True; without admin: a "reload ... done" log line) or
		the log shows a failed reload ("reload ... failed", ok=False).
		Returns ReloadResult (ok=None: neither within timeout)."""
		if cfg is not None or text is not None:
			self.write_config(cfg, text)
			if text is None and self.cfg.get("keys"):
				self.keys_sync()
		gen0 = self.generation()
		off = self.log_size()
		self.signal(signal.SIGHUP)
		failed = re.compile(r"(?i)reload[^\n]*(fail|error|refus|invalid)")
		done = re.compile(r"(?i)reload(ed)?[^\n]*(done|ok|complete|success)")
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			self._alive()
			gen = self.generation()
			if gen0 is not None and gen is not None and gen > gen0:
				return ReloadResult(True, gen, self.log_since(off))
			log = self.log_since(off)
			if failed.search(log):
				return ReloadResult(False, self.generation(), log)
			if gen0 is None and done.search(log):
				return ReloadResult(True, None, log)
			time.sleep(0.05)
		return ReloadResult(None, self.generation(), self.log_since(off))

	# -- admin
	def admin_get(self, path, timeout=5.0):
		"""GET path on the admin listener (plain HTTP). Returns Response."""
		c = http.client.HTTPConnection(self.admin_host, self.admin_port, timeout=timeout)
		try:
			c.request("GET", path)
			r = c.getresponse()
			return Response(r.status, r.reason, r.getheaders(), r.read(), r.version)
		finally:
			c.close()

	def metrics(self):
		"""/metrics parsed: [(name, {label: value}, float)]."""
		r = self.admin_get("/metrics")
		if r.status != 200:
			raise HarnessError("/metrics answered %d" % r.status)
		return parse_metrics(r.text)

	def metric(self, name, **labels):
		"""Sum of the samples of name whose labels include labels, or None
		when there is no such sample."""
		vals = [v for n, l, v in self.metrics()
			if n == name and all(l.get(k) == str(x) for k, x in labels.items())]
		return sum(vals) if vals else None

	def settle_request_log(self, timeout=5.0):
		"""Wait until every request counted in subgate_requests_total has its
		line in the log (workers write request lines at the end of an
		event-loop iteration, which can come just after the client has its
		answer). No-op without the admin listener."""
		if not self.admin_enabled or not self.running:
			return

		def settled():
			try:
				n = self.metric("subgate_requests_total") or 0
			except (OSError, HarnessError, http.client.HTTPException):
				return True
			return self.log_text().count(" msg=request ") >= n
		wait_until(settled, timeout, what="request lines for every counted request")

	def generation(self):
		if not self.admin_enabled:
			return None
		try:
			return self.metric("subgate_config_generation")
		except (OSError, HarnessError, http.client.HTTPException):
			return None

	# -- clients
	def context(self, cert="tenant-acme", **kw):
		"""client_context() for this gateway's PKI."""
		return client_context(self.pki, cert, **kw)

	def connect(self, cert="tenant-acme", server_hostname=GATEWAY_NAME, timeout=10.0, **kw):
		"""A kept-alive Conn to the gateway presenting cert (PKI base name,
		(crt, key), or None). kw: client_context() options."""
		return Conn(self.host, self.port, self.context(cert, **kw), server_hostname, timeout)

	def request(self, method, path, body=None, json=None, headers=None, cert="tenant-acme",
		    timeout=10.0, **kw):
		"""One request on a new connection. Returns Response."""
		with self.connect(cert, timeout=timeout, **kw) as c:
			return c.request(method, path, body=body, json=json, headers=headers)

	def raw(self, data, cert="tenant-acme", timeout=5.0, chunks=None, pause=0.0, **kw):
		"""Send exact bytes over TLS; RawReply (bytes, .closed, .responses())."""
		return raw_exchange(self.host, self.port, self.context(cert, **kw), data,
				    timeout=timeout, chunks=chunks, pause=pause)

	def describe(self):
		rc = self.proc.poll() if self.proc else self.returncode
		state = "running" if self.running else "exit %s" % rc
		return ("%s log (%s, pid %s, %s)" % (self.name, self.config_path,
						      self.proc.pid if self.proc else "-", state),
			self.log_text())


_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
	"""Prometheus text format -> [(name, {label: value}, float)]."""
	out = []
	for ln in text.splitlines():
		if not ln or ln.startswith("#"):
			continue
		m = _METRIC_RE.match(ln)
		if not m:
			continue
		labels = {k: bytes(v, "utf-8").decode("unicode_escape") for k, v in _LABEL_RE.findall(m.group(3) or "")}
		try:
			val = float(m.group(4))
		except ValueError:
			continue
		out.append((m.group(1), labels, val))
	return out


# --------------------------------------------------------------------------
# test environments (test_gateway_common.Env, test_audit_common.AuditEnv)

def attach(request, *objs):
	"""As conftest._register: logs of objs go into the report if the test fails."""
	reg = getattr(request.node, "_subgate_harness", None)
	if reg is None:
		reg = request.node._subgate_harness = []
	for o in objs:
		if o not in reg:
			reg.append(o)


def gateway_problems(gw, rc):
	"""What a module-scoped environment complains about after gw.stop() returned
	rc: a sanitizer report, death by a signal, the injected processor secret in
	the log. Nothing when gw.expect_crash."""
	out = []
	if gw.expect_crash:
		return out
	san = gw.sanitizer_report()
	if san:
		out.append("%s: sanitizer report in the log:\n%s" % (gw.name, san))
	if rc is not None and rc < 0 and rc != -signal.SIGTERM:
		out.append("%s ended on signal %d" % (gw.name, -rc))
	if CRM_TOKEN.split()[-1] in gw.log_text():
		out.append("%s: the injected Authorization secret is in the log" % gw.name)
	return out
