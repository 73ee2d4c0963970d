"""test_audit_crash.py -- kill -9 of subgate under concurrent load: the write-ahead
disclosure log holds a record of every call the processor received, verifies as intact
or torn (never tampered), and is intact again after a restart recovers it."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

import util
from test_audit_common import AuditEnv, children, contact, pid_alive, rid, segments, wait_gone

THREADS = 6
LOAD_SECONDS = 1.5


@pytest.fixture
def env(request, pki, tmp_path):
	e = AuditEnv(pki, tmp_path / "crash", "crash")
	e.use(request)
	yield e
	e.close()


def _load(gw, stop, sent, lock):
	"""Post contacts with unique request ids until stop is set or the
	gateway is gone; sent gets (request id, status or exception name)."""
	conn = None
	while not stop.is_set():
		r_id = rid("load")
		try:
			if conn is None:
				conn = gw.connect(timeout=5)
			r = conn.request("POST", "/crm/v1/contacts", json=contact(),
					 headers={"X-Request-Id": r_id})
			res = r.status
			if r.header("Connection", "").lower() == "close":
				conn.close()
				conn = None
		except Exception as ex:  # the gateway died under us
			res = type(ex).__name__
			if conn is not None:
				conn.close()
				conn = None
			time.sleep(0.01)
		with lock:
			sent.append((r_id, res))
	if conn is not None:
		conn.close()


def _frames_end(data):
	"""Where a segment's frames (u32 len | u32 crc | u32 crc | body) stop:
	at the end of the file, a zero length (preallocated zeros) or a frame
	the file cuts short. Lengths are followed, checksums not checked."""
	off = 0
	while off + 12 <= len(data):
		n = int.from_bytes(data[off:off + 4], "big")
		if n == 0 or off + 12 + n > len(data):
			break
		off += 12 + n
	return off


def _check_segment_ends(audit_dir, live_ok, torn_ok=None):
	"""Every segment but a live (unclosed) last one ends at its last frame:
	the writer's preallocated zeros are cut when it closes or recovers a
	segment (torn_ok: a recovered segment may end in the bytes of a write
	the kill cut short, but not in zeros). Returns the last segment's
	(size, frames end)."""
	segs = segments(audit_dir)
	assert segs, "no segments in %s" % audit_dir
	for i, p in enumerate(segs):
		data = p.read_bytes()
		end = _frames_end(data)
		if i + 1 == len(segs) and live_ok:
			return len(data), end
		if p.name == torn_ok and len(data) > end and data[-1] != 0:
			continue
		assert len(data) == end, "%s: %d bytes, frames end at %d (a zero tail left?)" % (
			p.name, len(data), end)
	return len(data), end


@pytest.mark.timeout(90)
@pytest.mark.parametrize("victims", ["daemon", "daemon+audit"])
def test_kill_9_under_load_loses_no_disclosure(env, victims):
	"""victims "daemon": kill -9 subgate's main pid (the audit child sees
	EOF and must exit); "daemon+audit": the audit child too, first (a
	power cut as far as the log is concerned: its segment is left
	unclosed and the restart must recover it)."""
	gw = env.gw
	main_pid = gw.pid
	kids = children(main_pid)
	assert len(kids) >= 1, "no audit child process of subgate pid %d" % main_pid

	stop, lock, sent = threading.Event(), threading.Lock(), []
	threads = [threading.Thread(target=_load, args=(gw, stop, sent, lock), daemon=True)
		   for _ in range(THREADS)]
	for t in threads:
		t.start()
	time.sleep(LOAD_SECONDS)
	# kill -9 mid-flight, load still running
	if victims == "daemon+audit":
		for k in kids:
			util.run(["kill", "-9", str(k)], check=False)
	gw.proc.send_signal(signal.SIGKILL)
	gw.proc.wait(10)
	time.sleep(0.2)
	stop.set()
	for t in threads:
		t.join(15)
	gw.proc = None
	gw._log.close()
	gw.returncode = -signal.SIGKILL

	# The audit process sees EOF on every channel and exits by itself.
	lingering = [k for k in kids if not wait_gone(k, 10)]
	for k in lingering:
		util.run(["kill", "-9", str(k)], check=False)
		wait_gone(k, 5)

	ok = [x for x, res in sent if res == 200]
	assert len(ok) >= 20, "too little load before the kill: %d calls answered 200" % len(ok)
	received = []
	for rec in env.crm.records():
		vals = [v for k, v in rec["headers"] if k.lower() == "x-request-id"]
		assert len(vals) == 1, rec["headers"]
		received.append(vals[0])
	assert set(ok) <= set(received), "200 answers for calls the processor never saw?"

	# Every call the processor received has a disclosure record.
	res = env.show("--type", "disclosure")
	assert res.returncode == 0, "audit show on the crashed log exited %d: %s" % (
		res.returncode, res.stderr)
	disclosed = {json.loads(ln)["request_id"] for ln in res.stdout.splitlines() if ln.strip()}
	missing = [x for x in received if x not in disclosed]
	assert not missing, "%d of %d forwarded calls have no disclosure record: %r" % (
		len(missing), len(received), missing[:5])

	rc, out = env.verify()
	assert rc in (0, 2), "verify after kill -9 exited %d (tampered?): %s" % (rc, out)
	assert not lingering, "the audit process (pid %r) outlived subgate's kill -9 by 10 s" % lingering
	if victims == "daemon+audit":
		# The killed segment keeps the zeros preallocated ahead of its
		# last write; verify and show read them as the end of the data
		# (a live segment: intact unless a write was cut in the middle).
		size, end = _check_segment_ends(env.audit_dir, live_ok=True)
		killed = segments(env.audit_dir)[-1].name
		seg = segments(env.audit_dir)[-1].read_bytes()
		assert size >= end + 4096 and seg[-4096:] == bytes(4096), \
			"killed segment %d bytes, frames end at %d: no zero tail" % (size, end)
		if seg[end:] == bytes(size - end):
			assert rc == 0, "a zero tail after whole frames is not intact: %s" % out
	else:
		# The audit process saw EOF and closed its segment.
		_check_segment_ends(env.audit_dir, live_ok=False)
		killed = None

	# Restart on the same directory: the audit process recovers.
	log0 = gw.log_size()
	gw.start()
	assert all(not pid_alive(k) for k in kids)
	r_id = rid("after")
	r = gw.request("POST", "/crm/v1/contacts", json=contact(), headers={"X-Request-Id": r_id})
	assert r.status == 200, r
	got = env.wait_call(r_id)
	assert got["outcome"][0]["delivery"] == "sent"
	rc, out = env.verify()
	assert rc == 0, "verify after the restart exited %d: %s\nlog:\n%s" % (
		rc, out, gw.log_since(log0))
	recs = env.records()
	seqs = [x["seq"] for x in recs]
	assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), "sequence numbers repeat"
	assert {x["request_id"] for x in recs if x["type"] == "disclosure"} >= disclosed
	starts = [x for x in recs if x["type"] == "lifecycle" and x.get("event") == "start"]
	assert len(starts) == 2, starts
	if victims == "daemon+audit":
		# the unclosed segment was recovered, with a record saying so
		rec = [x for x in recs if x["type"] == "lifecycle" and x.get("event") == "recovery"]
		assert rec, "no lifecycle recovery record after restarting on an unclosed log"
		assert rec[0]["seq"] > max(x["seq"] for x in recs if x.get("request_id") in disclosed)
	assert gw.stop() == 0
	# Closed segments and the recovered one end at their last frame.
	_check_segment_ends(env.audit_dir, live_ok=False, torn_ok=killed)
	rc, out = env.verify()
	assert rc == 0, out


def _kill_audit(env):
	"""One forwarded call, then kill -9 the audit process alone."""
	gw = env.gw
	assert gw.request("POST", "/crm/v1/contacts", json=contact(),
			  headers={"X-Request-Id": rid("before")}).status == 200
	kids = children(gw.pid)
	assert kids, "no audit child process"
	for k in kids:
		util.run(["kill", "-9", str(k)], check=False)
	assert all(wait_gone(k, 5) for k in kids)
	env.crm.clear()


@pytest.mark.timeout(60)
def test_audit_process_death_stops_forwarding(env):
	"""kill -9 of the audit process alone: nothing is forwarded any more
	(503 audit_unavailable while subgate still answers), /readyz fails;
	the torn log verifies 0/2 and a restart recovers it."""
	gw = env.gw
	_kill_audit(env)
	answered = []
	deadline = time.monotonic() + 2
	while gw.proc.poll() is None and time.monotonic() < deadline:
		try:
			answered.append(gw.request("POST", "/crm/v1/contacts", json=contact(),
						   headers={"X-Request-Id": rid("after")}, timeout=5))
		except util.TLS_REFUSED:
			pass
		try:
			assert gw.admin_get("/readyz").status != 200, \
				"/readyz is ready without an audit process"
		except OSError:
			pass
		time.sleep(0.1)
	assert env.crm.records() == [], "forwarded after the audit process died"
	for r in answered:
		assert r.status == 503, r
		assert json.loads(r.body)["error"]["code"] == "audit_unavailable", r
	rc = gw.stop()
	assert rc is not None and rc >= 0 or rc == -signal.SIGTERM, "subgate ended with %s" % rc
	rc, out = env.verify()
	assert rc in (0, 2), "verify after the audit process was killed: %d %s" % (rc, out)
	gw.start()
	assert gw.request("POST", "/crm/v1/contacts", json=contact(),
			  headers={"X-Request-Id": rid("again")}).status == 200
	rc, out = env.verify()
	assert rc == 0, out


@pytest.mark.timeout(60)
def test_audit_process_death_shuts_subgate_down(env):
	"""Nothing restarts a dead audit process, so subgate shuts down
	(audit.h: "and should shut down") instead of answering 503 forever."""
	gw = env.gw
	_kill_audit(env)
	try:
		rc = gw.proc.wait(5)
	except subprocess.TimeoutExpired:
		rc = None
	assert rc is not None, "subgate still runs 5 s after its audit process died"
	gw.proc = None
	gw._log.close()
	gw.returncode = rc
	assert rc >= 0, "subgate died on signal %d" % -rc


@pytest.mark.timeout(60)
def test_stalled_audit_process_times_out_and_sends_nothing(request, pki, tmp_path):
	"""The audit process stopped (SIGSTOP): after audit_timeout_ms the call
	gets 503 audit_unavailable and is not forwarded. Once it runs again
	the late record shows up with an outcome not_sent, and calls go
	through again."""
	def edit(cfg, env):
		cfg["limits"]["audit_timeout_ms"] = 1000

	env = AuditEnv(pki, tmp_path / "stall", "stall", edit=edit)
	kids = []
	try:
		env.use(request)
		gw = env.gw
		kids = children(gw.pid)
		assert kids
		for k in kids:
			os.kill(k, signal.SIGSTOP)
		r_id = rid("stalled")
		t0 = time.monotonic()
		r = gw.request("POST", "/crm/v1/contacts", json=contact(), headers={"X-Request-Id": r_id})
		took = time.monotonic() - t0
		assert r.status == 503 and json.loads(r.body)["error"]["code"] == "audit_unavailable", r
		assert 0.8 <= took < 4, "answered after %.2fs with audit_timeout_ms 1000" % took
		for k in kids:
			os.kill(k, signal.SIGCONT)
		kids = []
		r2 = rid("resumed")
		util.wait_until(lambda: gw.request("POST", "/crm/v1/contacts", json=contact(),
						   headers={"X-Request-Id": r2}).status == 200,
				10, interval=0.2, what="forwarding after SIGCONT")
		got = env.wait_call(r_id)
		o = got["outcome"]
		assert len(o) == 1 and o[0]["delivery"] == "not_sent", o
		ids = {v for rec in env.crm.records() for k, v in rec["headers"] if k.lower() == "x-request-id"}
		assert r_id not in ids, "the timed-out call was forwarded"
		assert r2 in ids
		rc, out = env.verify()
		assert rc == 0, out
	finally:
		for k in kids:
			os.kill(k, signal.SIGCONT)
		env.close()


@pytest.fixture
def quiet_env(request, pki, tmp_path):
	"""No checkpoint in the middle of the test: a real power cut never
	loses a checkpoint whose key hand-over happened (it is synced first),
	and the page punched out here lies in frames that were synced."""
	def edit(cfg, env):
		cfg["audit"]["checkpoint_seconds"] = 3600
		cfg["audit"]["checkpoint_records"] = 100000

	e = AuditEnv(pki, tmp_path / "lostpage", "lostpage", edit=edit)
	e.use(request)
	yield e
	e.close()


@pytest.mark.timeout(90)
def test_lost_page_in_last_batch_is_a_torn_tail(quiet_env):
	"""A power cut during the last batch can keep a later page of it and
	lose an earlier one (auditfmt.h "Batches"). Simulated after kill -9 of
	subgate and its audit process: a 4 KiB page of zeros punched into the
	frames written after a known count of calls, with data after it. verify
	says torn (2, not tampered), the gateway starts and recovers at the
	last good frame, and verify is intact again."""
	env = quiet_env
	gw = env.gw
	kids = children(gw.pid)
	assert kids, "no audit child process"
	early = [rid("early") for _ in range(10)]
	for r_id in early:
		assert gw.request("POST", "/crm/v1/contacts", json=contact(),
				  headers={"X-Request-Id": r_id}).status == 200
	for r_id in early:
		env.wait_call(r_id)
	live = segments(env.audit_dir)[-1]
	known = _frames_end(live.read_bytes())
	for _ in range(40):
		assert gw.request("POST", "/crm/v1/contacts", json=contact(),
				  headers={"X-Request-Id": rid("late")}).status == 200
	for k in kids:
		util.run(["kill", "-9", str(k)], check=False)
	gw.proc.send_signal(signal.SIGKILL)
	gw.proc.wait(10)
	gw.proc = None
	gw._log.close()
	gw.returncode = -signal.SIGKILL
	assert all(wait_gone(k, 10) for k in kids)

	assert segments(env.audit_dir)[-1] == live
	data = bytearray(live.read_bytes())
	end = _frames_end(bytes(data))
	assert end - known >= 4 * 4096, "only %d bytes after the known frames" % (end - known)
	# The first whole page after the known frames lost, later ones kept.
	hole = (known + 4095) // 4096 * 4096
	assert hole + 4096 < end and any(data[hole + 4096:end])
	data[hole:hole + 4096] = bytes(4096)
	live.write_bytes(bytes(data))
	rc, out = env.verify()
	assert rc == 2, "verify of a lost page in the last batch: %d %s" % (rc, out)
	assert "torn tail" in out, out
	# show reads what is before the hole, without complaint
	recs = env.records()
	got = {x.get("request_id") for x in recs if x["type"] == "disclosure"}
	assert set(early) <= got

	log0 = gw.log_size()
	gw.start()
	r_id = rid("after")
	assert gw.request("POST", "/crm/v1/contacts", json=contact(),
			  headers={"X-Request-Id": r_id}).status == 200
	env.wait_call(r_id)
	assert "recovered: segment" in gw.log_since(log0)
	rc, out = env.verify()
	assert rc == 0, "verify after the restart: %d %s\nlog:\n%s" % (rc, out, gw.log_since(log0))
	recs = env.records()
	rec = [x for x in recs if x["type"] == "lifecycle" and x.get("event") == "recovery"]
	assert len(rec) == 1 and rec[0]["valid_bytes"] >= known and rec[0]["valid_bytes"] <= hole, rec
	got = {x.get("request_id") for x in recs if x["type"] == "disclosure"}
	assert set(early) <= got and r_id in got
	assert gw.stop() == 0
	rc, out = env.verify()
	assert rc == 0, out
