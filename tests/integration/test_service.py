"""test_service.py -- subgate as a systemd service: the sd_notify protocol
spoken by the real binary to a notify socket (READY=1 only once it serves,
RELOADING=1/READY=1 around reloads good and bad, STOPPING=1, the watchdog),
the unit file (systemd-analyze verify and security), the system calls the
unit's filter must allow (strace of a whole session), and make install."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import util
from test_audit_common import children
from test_gateway_common import CONTACT

UNIT = util.REPO / "conf" / "subgate.service"


class NotifySocket:
	"""A datagram socket in the role of systemd's $NOTIFY_SOCKET."""

	def __init__(self, path):
		self.path = str(path)
		self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
		self.sock.bind(self.path)
		self.got = []

	def env(self, **extra):
		e = {"NOTIFY_SOCKET": self.path}
		e.update(extra)
		return e

	def next(self, timeout=15.0):
		"""The next message as a dict (None when none came in time)."""
		self.sock.settimeout(timeout)
		try:
			data = self.sock.recv(4096)
		except socket.timeout:
			return None
		msg = dict(ln.split("=", 1) for ln in data.decode().split("\n") if ln)
		self.got.append(msg)
		return msg

	def wait_for(self, key, timeout=15.0, skip=("WATCHDOG",)):
		"""Messages up to the first one that sets key (others than skip
		before it fail the test). Returns that message."""
		deadline = time.monotonic() + timeout
		while True:
			left = deadline - time.monotonic()
			msg = self.next(max(left, 0.01))
			assert msg is not None, "no %s=1 within %.0f s; got %r" % (key, timeout, self.got)
			if key in msg:
				return msg
			assert set(msg) <= set(skip), "unexpected %r before %s=1" % (msg, key)

	def close(self):
		self.sock.close()


@pytest.fixture
def notify(tmp_path):
	n = NotifySocket(tmp_path / "notify.sock")
	yield n
	n.close()


def test_ready_reload_stop(gateway, notify):
	"""READY=1 comes when the gateway serves (listening, /readyz 200, a call
	goes through at once) and names the main PID; a reload is RELOADING=1
	(with the monotonic time a notify-reload manager checks) then READY=1,
	also when the new config is refused; SIGTERM sends STOPPING=1."""
	gw = gateway(start=False)
	gw.start(wait=False, env=notify.env())
	msg = notify.wait_for("READY")
	assert msg["READY"] == "1" and msg["MAINPID"] == str(gw.pid), msg
	assert msg["STATUS"].startswith("listening") and msg["STATUS"].endswith("generation 1"), msg
	# no waiting from here: READY=1 means it serves
	assert util.port_listening(gw.port)
	assert gw.admin_get("/readyz").status == 200
	r = gw.request("POST", "/crm/v1/contacts", json=CONTACT)
	assert r.status == 200, r

	t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
	res = gw.reload()
	assert res.ok, res
	msg = notify.wait_for("RELOADING")
	usec = int(msg["MONOTONIC_USEC"])
	assert t0 * 1e6 <= usec <= time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6, msg
	msg = notify.wait_for("READY")
	assert msg["STATUS"] == "reloaded, generation 2", msg

	try:
		res = gw.reload(text="listen = { port = ")
		assert res.ok is False, res
		notify.wait_for("RELOADING")
		msg = notify.wait_for("READY")
		assert msg["STATUS"].startswith("reload failed") and "generation 2" in msg["STATUS"], msg
	finally:
		gw.write_config()
	r = gw.request("POST", "/crm/v1/contacts", json=CONTACT)
	assert r.status == 200, r

	gw.signal(signal.SIGTERM)
	msg = notify.wait_for("STOPPING")
	assert "draining" in msg["STATUS"], msg
	assert gw.wait_exit(15) == 0


def test_reload_while_draining_is_ignored(gateway, gateway_config, processor, notify):
	"""SIGHUP after SIGTERM: a draining gateway does not reload (and does
	not tell systemd READY=1 after STOPPING=1); the call in flight
	completes."""
	slow = processor("slow", delay=1.5)
	cfg = gateway_config(crm=slow)
	cfg["limits"]["shutdown_grace_ms"] = 8000
	gw = gateway(cfg, start=False)
	gw.start(wait=False, env=notify.env())
	notify.wait_for("READY")
	result = {}

	def call():
		result["r"] = gw.request("GET", "/crm/v1/contacts/1", timeout=10)

	t = threading.Thread(target=call)
	t.start()
	slow.wait_records(1)
	gw.signal(signal.SIGTERM)
	notify.wait_for("STOPPING")
	off = gw.log_size()
	gw.signal(signal.SIGHUP)
	gw.wait_log(r"reload requested while draining: ignored", since=off)
	t.join(10)
	assert result["r"].status == 200, result
	assert gw.wait_exit(10) == 0
	assert notify.next(0.2) is None, "after STOPPING=1: %r" % notify.got[-1]
	assert "generation=2" not in gw.log_since(off)


def test_watchdog(gateway, notify):
	"""WATCHDOG_USEC: WATCHDOG=1 keeps coming from the main loop, about
	twice per interval; not at all when WATCHDOG_PID names another
	process."""
	gw = gateway(start=False)
	gw.start(wait=False, env=notify.env(WATCHDOG_USEC="200000"))
	notify.wait_for("READY")
	pings = 0
	end = time.monotonic() + 1.5
	while time.monotonic() < end:
		msg = notify.next(0.5)
		assert msg is not None, "the watchdog stopped: %r" % notify.got
		assert set(msg) == {"WATCHDOG"} and msg["WATCHDOG"] == "1", msg
		pings += 1
	assert pings >= 4, notify.got
	gw.stop()
	notify.wait_for("STOPPING")

	other = gateway(start=False)
	other.start(wait=False, env=notify.env(WATCHDOG_USEC="200000", WATCHDOG_PID="1"))
	notify.wait_for("READY")
	assert notify.next(1.0) is None, "watchdog pings for WATCHDOG_PID=1: %r" % notify.got[-1]


def test_ready_says_when_the_audit_log_cannot_take_records(gateway, notify):
	"""Below min_free_bytes at start: READY=1 still comes (the service runs
	and /readyz answers 503), and its status line says nothing is
	forwarded."""
	gw = gateway(start=False)
	gw.cfg["audit"]["min_free_bytes"] = 1 << 60
	gw.write_config()
	gw.start(wait=False, env=notify.env())
	msg = notify.wait_for("READY")
	assert "audit log unavailable" in msg["STATUS"], msg
	assert gw.admin_get("/readyz").status == 503


@pytest.mark.parametrize("value", ["/nonexistent/notify.sock", "relative.sock"])
def test_unusable_notify_socket_is_logged_and_ignored(gateway, value):
	"""A NOTIFY_SOCKET that cannot be used is said in the log, once, and
	the gateway runs as it would without a service manager."""
	gw = gateway(start=False)
	gw.start(env={"NOTIFY_SOCKET": value})
	r = gw.request("POST", "/crm/v1/contacts", json=CONTACT)
	assert r.status == 200, r
	lines = [ln for ln in gw.log_text().splitlines() if "NOTIFY_SOCKET" in ln]
	assert len(lines) == 1 and value in lines[0] and "level=warn" in lines[0], lines


def _rendered_unit(tmp_path):
	"""The unit as make install writes it, pointing at this build."""
	text = UNIT.read_text().replace("@BINDIR@", str(util.SUBGATE.parent))
	assert "@" not in re.sub(r"#.*", "", text).replace("@system-service", "").replace(
		"@privileged", ""), "a placeholder make install does not fill"
	p = tmp_path / "subgate.service"
	p.write_text(text)
	return p


def test_unit_file_verifies_and_is_hardened(tmp_path):
	"""systemd-analyze verify finds nothing to say; its offline security
	review rates the unit's exposure at most 2.0 ("OK")."""
	unit = _rendered_unit(tmp_path)
	r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
			   timeout=60)
	assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
	r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
			    "--no-pager", str(unit)], capture_output=True, text=True, timeout=60)
	m = re.search(r"Overall exposure level for subgate.service: ([0-9.]+)", r.stdout)
	assert m, r.stdout + r.stderr
	assert r.returncode == 0 and float(m.group(1)) <= 2.0, r.stdout


def _syscall_sets():
	"""systemd's syscall groups: name -> set of members (calls and @groups)."""
	out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True,
			     text=True, check=True, timeout=60).stdout
	groups, cur = {}, None
	for ln in out.splitlines():
		if ln.startswith("@"):
			cur = groups.setdefault(ln.strip(), set())
		elif cur is not None and ln.strip() and not ln.strip().startswith("#"):
			cur.add(ln.strip())
	return groups


def _expand(name, groups, seen=None):
	seen = set() if seen is None else seen
	if not name.startswith("@"):
		return {name}
	if name in seen:
		return set()
	seen.add(name)
	out = set()
	for m in groups[name]:
		out |= _expand(m, groups, seen)
	return out


def _unit_allows(groups):
	"""The calls the unit's SystemCallFilter= lines let through (an allow
	list always includes @default)."""
	allowed = _expand("@default", groups)
	for ln in UNIT.read_text().splitlines():
		if not ln.startswith("SystemCallFilter="):
			continue
		v = ln.split("=", 1)[1].strip()
		if v.startswith("~"):
			for n in v[1:].split():
				allowed -= _expand(n, groups)
		else:
			for n in v.split():
				allowed |= _expand(n, groups)
	return allowed


def _traced(path):
	"""System call names in an strace -f output file."""
	rx = re.compile(r"^\d+\s+([a-z0-9_]+)\(")
	with open(path) as f:
		return {m.group(1) for m in map(rx.match, f) if m}


def _child(pid, comm="subgate"):
	"""The child of pid named comm (strace also forks short-lived probes)."""
	for k in children(pid):
		try:
			with open("/proc/%d/comm" % k) as f:
				if f.read().strip() == comm:
					return k
		except FileNotFoundError:
			pass
	return None


def test_syscall_filter_allows_every_call_subgate_makes(gateway, tmp_path):
	"""The unit answers a refused system call with EPERM: harmless in a
	test, a broken gateway in production. So trace a whole session with
	strace -f (the config check of ExecStartPre, start, the audit process
	and its threads, calls allowed and refused, a reload, a drain) and
	check every system call made against the unit's filter as systemd
	expands it."""
	gw = gateway(start=False)
	gw.cfg["audit"]["checkpoint_records"] = 2	# key hand-overs within the session
	gw.write_config()
	gw.keys_sync()
	key = os.path.join(gw.cfg["audit"]["directory"], "signer.key")
	calls = set()
	# LeakSanitizer (a SANITIZE build) cannot run under a tracer
	env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
	check = tmp_path / "check.strace"
	util.run(["strace", "-f", "-qq", "-o", str(check), str(util.SUBGATE), "-t", "-c",
		  str(gw.config_path)], cwd=gw.dir, env=env)
	calls |= _traced(check)

	trace = tmp_path / "run.strace"
	with open(gw.log_path, "ab") as log:
		st = subprocess.Popen(["strace", "-f", "-qq", "-o", str(trace), str(util.SUBGATE), "-c",
				       str(gw.config_path)], cwd=gw.dir, stdout=log, env=env,
				      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
	pid = None
	try:
		pid = util.wait_until(lambda: _child(st.pid), 15, what="subgate under strace")
		util.wait_until(lambda: util.port_listening(gw.port), 30, what="subgate listening")
		ino = os.stat(key).st_ino
		assert gw.request("POST", "/crm/v1/contacts", json=CONTACT).status == 200
		assert gw.request("GET", "/crm/v1/contacts/1").status == 200
		assert gw.request("DELETE", "/crm/v1/contacts/1").status == 403
		off = gw.log_size()
		os.kill(pid, signal.SIGHUP)
		gw.wait_log(r"reload done", timeout=30, since=off)
		assert gw.request("POST", "/crm/v1/contacts", json=CONTACT).status == 200
		util.wait_until(lambda: os.stat(key).st_ino != ino, 30, what="a key hand-over")
		os.kill(pid, signal.SIGTERM)
		assert st.wait(60) == 0, gw.log_text()[-2000:]
	finally:
		# strace killed would let its tracee run on: subgate goes first
		# (its audit process follows when the channel closes).
		if pid is not None and st.poll() is None:
			try:
				os.kill(pid, signal.SIGKILL)
			except ProcessLookupError:
				pass
		if st.poll() is None:
			try:
				st.wait(10)
			except subprocess.TimeoutExpired:
				st.kill()
				st.wait()
	calls |= _traced(trace)
	assert {"fdatasync", "accept4", "epoll_wait", "sync_file_range"} <= calls, \
		sorted(calls)

	refused = calls - _unit_allows(_syscall_sets())
	assert not refused, "system calls the unit's SystemCallFilter refuses: %s" % sorted(refused)


def test_make_install(tmp_path):
	"""make install DESTDIR=... PREFIX=/opt/sg: both binaries runnable, the
	unit with its placeholder filled in, the documentation."""
	dest = tmp_path / "root"
	env = dict(os.environ)
	env.pop("MAKEFLAGS", None)
	env.pop("MAKELEVEL", None)
	util.run(["make", "-s", "-C", str(util.REPO), "install", "DESTDIR=%s" % dest,
		  "PREFIX=/opt/sg"], env=env, timeout=300)
	bindir = dest / "opt/sg/bin"
	for name in ("subgate", "subgatectl"):
		p = bindir / name
		assert os.stat(p).st_mode & 0o777 == 0o755, p
	r = util.run([str(bindir / "subgate"), "-V"])
	assert r.stdout.startswith("subgate "), r.stdout
	unit = (dest / "opt/sg/lib/systemd/system/subgate.service").read_text()
	assert "ExecStart=/opt/sg/bin/subgate -c /etc/subgate/subgate.conf" in unit
	assert "@BINDIR@" not in unit
	assert (dest / "opt/sg/share/doc/subgate/README.md").read_text() == \
		(util.REPO / "README.md").read_text()
	assert (dest / "opt/sg/share/doc/subgate/subgate.conf.example").exists()
