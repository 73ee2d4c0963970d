"""test_audit_disk.py -- the disclosure log on disk: low and full disk (503
audit_unavailable, nothing forwarded, /readyz fails, recovery), rotation by size and by
time, retention (moving the gateway's clock), checkpoint anchors, tampering."""

import json
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

import util
from test_audit_common import (AuditEnv, by_request, checkpoint_lines, contact, post_contact,
			       records, rid, segments, verify, wait_records)

# Time travel for retention: an LD_PRELOAD shim that moves CLOCK_REALTIME
# (clock_gettime, gettimeofday, time) by SUBGATE_TEST_CLOCK_OFFSET seconds.
# libfaketime cannot be used: it recurses into itself through jemalloc's
# initialisation. The monotonic clocks are left alone.
CLOCK_SHIM = r"""
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long
offset(void)
{
	const char *s = getenv("SUBGATE_TEST_CLOCK_OFFSET");
	return s ? atol(s) : 0;
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
	long r = syscall(SYS_clock_gettime, id, ts);
	if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
		ts->tv_sec += offset();
	return (int)r;
}

int
gettimeofday(struct timeval *tv, void *tz)
{
	struct timespec ts;
	(void)tz;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return -1;
	if (tv != NULL) {
		tv->tv_sec = ts.tv_sec;
		tv->tv_usec = ts.tv_nsec / 1000;
	}
	return 0;
}

time_t
time(time_t *t)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (t != NULL)
		*t = ts.tv_sec;
	return ts.tv_sec;
}
"""


def clock_shim(workdir):
	"""Build the clock shim in workdir; its path, or None without cc."""
	src, so = Path(workdir) / "clockshim.c", Path(workdir) / "clockshim.so"
	src.write_text(CLOCK_SHIM)
	try:
		r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(so), str(src)],
				   capture_output=True, text=True, timeout=60)
	except OSError:
		return None
	return str(so) if r.returncode == 0 else None


def check_unavailable(r):
	assert r.status == 503, r
	try:
		code = json.loads(r.body)["error"]["code"]
	except (ValueError, KeyError, TypeError):
		code = None
	assert code == "audit_unavailable", r


def readyz(gw):
	return gw.admin_get("/readyz").status


# --------------------------------------------------------------------------
# low and full disk

def test_free_space_below_min_free_refuses_everything(request, pki, tmp_path):
	"""min_free_bytes larger than the filesystem's free space: every call
	gets 503 audit_unavailable, the processor gets nothing, /readyz fails."""
	def edit(cfg, env):
		cfg["audit"]["min_free_bytes"] = 1 << 60

	env = AuditEnv(pki, tmp_path / "lowdisk", "lowdisk", edit=edit, start=False)
	try:
		env.use(request)
		env.gw.start()
		assert readyz(env.gw) == 503, "/readyz does not fail below min_free_bytes"
		for i in range(3):
			r_id = rid("low")
			r = post_contact(env.gw, contact(), r_id)
			check_unavailable(r)
			assert r.header("X-Request-Id") == r_id
		r = env.gw.request("GET", "/crm/v1/contacts/1")
		check_unavailable(r)
		time.sleep(0.2)
		assert env.crm.records() == [], "forwarded with the audit log unavailable"
		assert readyz(env.gw) == 503
	finally:
		env.close()


@pytest.fixture
def tmpfs(tmp_path):
	"""A 2 MiB tmpfs (root only); skipped when it cannot be mounted."""
	d = tmp_path / "tmpfs"
	d.mkdir()
	r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)],
			   capture_output=True, text=True)
	if r.returncode != 0:
		pytest.skip("cannot mount a tmpfs: %s" % r.stderr.strip())
	try:
		yield d
	finally:
		subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(path, leave=0):
	"""Write path until the filesystem has about `leave` bytes free (all of
	it: ENOSPC). Returns the bytes written."""
	st = os.statvfs(os.path.dirname(path))
	want = max(0, st.f_bavail * st.f_frsize - leave)
	n = 0
	with open(path, "wb") as f:
		chunk = b"\0" * 65536
		try:
			while n < want:
				n += f.write(chunk[:min(len(chunk), want - n)])
				f.flush()
			if leave == 0:
				while True:
					n += f.write(chunk)
					f.flush()
		except OSError:
			pass
	return n


@pytest.mark.timeout(60)
def test_low_then_full_disk_refuses_then_recovers(request, pki, tmp_path, tmpfs):
	"""The audit directory on a 2 MiB tmpfs. (1) Free space below
	min_free_bytes: 503 audit_unavailable, nothing forwarded, /readyz
	fails; space back: forwarding again. (2) Restarted with min_free_bytes
	0 and the disk filled to the last byte: calls go through while the
	segment's last page has room, then the write fails: 503
	audit_unavailable, nothing forwarded without its record, /readyz
	fails; space back: recovery into a new segment, forwarding again,
	and the log verifies."""
	def edit(cfg, env):
		cfg["audit"]["directory"] = str(tmpfs / "audit")
		cfg["audit"]["min_free_bytes"] = 256 * 1024
		cfg["audit"]["checkpoint_seconds"] = 1

	env = AuditEnv(pki, tmp_path / "fulldisk", "fulldisk", edit=edit, start=False)
	gw = env.gw
	filler = str(tmpfs / "filler")
	try:
		env.use(request)
		gw.start()
		ok1 = rid("ok1")
		assert post_contact(gw, contact(), ok1).status == 200
		assert readyz(gw) == 200

		# (1) below min_free_bytes
		fill(filler, 100 * 1024)
		util.wait_until(lambda: readyz(gw) == 503, 5, what="/readyz failing below min_free_bytes")
		env.crm.clear()
		for i in range(3):
			check_unavailable(post_contact(gw, contact(), rid("low")))
		time.sleep(0.2)
		assert env.crm.records() == [], "forwarded below min_free_bytes"
		os.unlink(filler)
		util.wait_until(lambda: readyz(gw) == 200, 10, what="/readyz back after space was freed")
		r_id = rid("back1")
		assert post_contact(gw, contact(), r_id).status == 200
		env.wait_call(r_id)

		# (2) a failing write
		assert gw.stop() == 0
		gw.cfg["audit"]["min_free_bytes"] = 0
		gw.write_config()
		gw.start()
		nseg = len(segments(env.audit_dir))
		env.crm.clear()
		fill(filler, 0)
		answers = []
		for i in range(40):
			r_id = rid("full")
			r = post_contact(gw, contact(), r_id)
			answers.append((r_id, r))
			if r.status != 200:
				break
		refused = [(i, r) for i, r in answers if r.status != 200]
		assert refused, "40 calls forwarded on a full disk (%d bytes of records?)" % (
			40 * 1400)
		for _, r in refused:
			check_unavailable(r)
		time.sleep(0.2)
		got = {v for rec in env.crm.records() for k, v in rec["headers"]
		       if k.lower() == "x-request-id"}
		assert got == {i for i, r in answers if r.status == 200}, \
			"the processor got a call refused for want of a record"
		assert readyz(gw) == 503, "/readyz is ready after a failed audit write"
		check_unavailable(post_contact(gw, contact(), rid("full")))
		os.unlink(filler)
		util.wait_until(lambda: readyz(gw) == 200, 10, what="/readyz back after the write error")
		r_id = rid("back2")
		assert post_contact(gw, contact(), r_id).status == 200
		env.wait_call(r_id)
		assert len(segments(env.audit_dir)) > nseg, "no new segment after the write error"
		rc, out = env.verify()
		assert rc == 0, out
		assert gw.stop() == 0
		rc, out = env.verify()
		assert rc == 0, out
		recs = env.records()
		# every call that was answered 200 has its disclosure
		for i, r in answers:
			if r.status == 200:
				assert by_request(recs, i, "disclosure"), i
		assert by_request(recs, ok1, "disclosure")
		assert any(x["type"] == "lifecycle" and x.get("event") == "recovery" for x in recs), \
			"no lifecycle recovery record after the write error"
	finally:
		if os.path.exists(filler):
			os.unlink(filler)
		env.close()


# --------------------------------------------------------------------------
# rotation, anchors, retention

@pytest.mark.timeout(90)
def test_rotation_anchor_and_retention(request, pki, tmp_path):
	"""Rotation by size (a burst far beyond segment_bytes) and by time (an
	idle gateway still closes its segment after segment_seconds) keeps
	verify green; a checkpoint line from the gateway's log anchors the
	full log and refuses a log cut short of it. Retention: restarted with
	the clock three days ahead (an LD_PRELOAD shim), retention_days = 1 deletes
	the old segments under a signed record and verify stays green."""
	def edit(cfg, env):
		cfg["audit"].update({"segment_bytes": 4096, "segment_seconds": 2,
				     "checkpoint_seconds": 1, "retention_days": 1})

	env = AuditEnv(pki, tmp_path / "rot", "rotation", edit=edit, start=False)
	try:
		env.use(request)
		gw = env.gw
		gw.start()
		t0 = time.monotonic()
		ids = [rid("rot") for _ in range(30)]
		for r_id in ids:
			assert post_contact(gw, contact(), r_id).status == 200
		burst = time.monotonic() - t0
		util.wait_until(lambda: records(env.audit_dir, env.keys)[-1].get("request_id") == ids[-1]
				or None, 5, what="the burst's last outcome")
		n_size = len(segments(env.audit_dir))
		# Each call writes two records of a few hundred bytes: 30 calls fill
		# several 4 KiB segments, more than the clock alone would close.
		assert n_size >= 4 + int(burst / 2), "%d segments after %.1fs" % (n_size, burst)
		time.sleep(4.5)
		n_time = len(segments(env.audit_dir))
		assert n_time >= n_size + 1, "an idle segment was not closed after segment_seconds"
		recs = env.records()
		rot = [x for x in recs if x["type"] == "lifecycle" and x.get("event") == "rotation"]
		assert len(rot) >= n_time - 1, rot
		for r_id in ids:
			assert [x["type"] for x in by_request(recs, r_id)] == ["disclosure", "outcome"]
		rc, out = env.verify()
		assert rc == 0, "verify after rotations: %s" % out

		# anchors: a checkpoint line printed by the gateway
		lines = checkpoint_lines(gw.log_text())
		assert len(lines) >= n_size, "too few checkpoint lines in the log: %d" % len(lines)
		for ln in (lines[0], lines[len(lines) // 2], lines[-1]):
			rc, out = env.verify(anchor=ln)
			assert rc == 0, "verify --anchor %s: %s" % (ln, out)
		# the same log without its last two segments is shorter than the anchor
		cut = tmp_path / "cut"
		shutil.copytree(env.audit_dir, cut)
		for p in segments(cut)[-2:]:
			p.unlink()
		rc, out = verify(str(cut), env.keys, anchor=lines[-1])
		assert rc == 1, "a log cut short of the anchor passed: %d %s" % (rc, out)

		assert gw.stop() == 0
		rc, out = env.verify()
		assert rc == 0, out
		before = env.records()
		n_before = len(segments(env.audit_dir))

		shim = clock_shim(tmp_path)
		if shim is None:
			pytest.skip("retention needs time travel and cc to build the clock shim; "
				    "rotation and anchors passed")
		log0 = gw.log_size()
		first = segments(env.audit_dir)[0].name
		gw.start(env={"LD_PRELOAD": shim, "SUBGATE_TEST_CLOCK_OFFSET": str(3 * 86400)})
		util.wait_until(lambda: segments(env.audit_dir)[0].name != first, 10,
				what="retention to delete the oldest segments")
		rc, out = env.verify()
		assert rc == 0, "verify after retention: %s\nlog:\n%s" % (out, gw.log_since(log0))
		after = wait_records(env.audit_dir, env.keys,
				     lambda rs: any(x["type"] == "lifecycle" and x.get("event") == "retention"
						    for x in rs), what="lifecycle retention record")
		assert len(segments(env.audit_dir)) < n_before + 2
		# the deleted segments' records are gone, the kept ones still read
		assert len(after) < len(before) + 10
		assert after[0]["seq"] > before[0]["seq"]
		assert gw.stop() == 0
		rc, out = env.verify()
		assert rc == 0, "verify after retention and stop: %s" % out
		assert os.path.exists(os.path.join(env.audit_dir, "keychain")), \
			"no keychain kept for the deleted segments' key hand-overs"
	finally:
		env.close()


# --------------------------------------------------------------------------
# tampering

def crc32c(data, crc=0):
	crc ^= 0xFFFFFFFF
	for b in data:
		crc ^= b
		for _ in range(8):
			crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
	return crc ^ 0xFFFFFFFF


def frames(data):
	"""[(offset, body)] of a segment's frames: u32 len | u32 crc32c(len
	bytes) | u32 crc32c(body) | body."""
	out, off = [], 0
	while off + 12 <= len(data):
		n = struct.unpack(">I", data[off:off + 4])[0]
		if n == 0 or off + 12 + n > len(data):
			break
		out.append((off, bytes(data[off + 12:off + 12 + n])))
		off += 12 + n
	return out


def frame(body):
	n = struct.pack(">I", len(body))
	return n + struct.pack(">II", crc32c(n), crc32c(body)) + body


@pytest.fixture(scope="module")
def stopped_log(pki, tmp_path_factory):
	"""A stopped gateway's log: two segments of records, closed."""
	def edit(cfg, env):
		cfg["audit"]["segment_bytes"] = 3000

	base = tmp_path_factory.mktemp("tamper")
	env = AuditEnv(pki, base / "env", "tamper", edit=edit)
	try:
		for i in range(8):
			assert post_contact(env.gw, contact(), rid("tamper")).status == 200
		time.sleep(0.3)
	finally:
		env.close()
	assert len(segments(env.audit_dir)) >= 2
	rc, out = env.verify()
	assert rc == 0, out
	return env


def tampered_copy(env, tmp_path, edit):
	"""A copy of the log with segment 1 passed through edit(bytearray)."""
	d = tmp_path / "copy"
	shutil.copytree(env.audit_dir, d)
	seg = segments(d)[0]
	data = bytearray(seg.read_bytes())
	edit(data)
	seg.write_bytes(bytes(data))
	return str(d)


def flip_raw(data):
	"""One bit of a record frame, checksums left as they are."""
	off, body = frames(data)[3]
	data[off + 12 + len(body) // 2] ^= 0x01


def flip_resealed(data, kind):
	"""One bit of the first frame of type kind, checksums recomputed (a
	tamperer who knows the format)."""
	for off, body in frames(data):
		if body[0] == kind:
			b = bytearray(body)
			b[len(b) - 20] ^= 0x01
			new = frame(bytes(b))
			data[off:off + len(new)] = new
			return
	raise AssertionError("no frame of type %d" % kind)


def drop_record(data):
	"""Remove a whole record frame, checksums of the rest intact."""
	off, body = frames(data)[3]
	assert body[0] == 2
	del data[off:off + 12 + len(body)]


TAMPER = {
	"flipped-byte": flip_raw,
	"record-resealed": lambda d: flip_resealed(d, 2),
	"header-resealed": lambda d: flip_resealed(d, 1),
	"checkpoint-resealed": lambda d: flip_resealed(d, 3),
	"record-removed": drop_record,
}


@pytest.mark.parametrize("how", list(TAMPER))
def test_tampered_segment_fails_verify(stopped_log, tmp_path, how):
	"""A changed byte in a stopped gateway's segment: verify exits 1 and
	names the segment (and where in it)."""
	d = tampered_copy(stopped_log, tmp_path, TAMPER[how])
	rc, out = verify(d, stopped_log.keys)
	assert rc == 1, "verify of a tampered log (%s) exited %d: %s" % (how, rc, out)
	assert "TAMPERED" in out, out
	assert re.search(r"segment 1\b", out) or "seg-00000000000000000001" in out, \
		"verify does not name the segment: %s" % out
	assert re.search(r"offset \d+|seq \d+|frame \d+", out), "verify does not say where: %s" % out


def test_segment_removed_or_cut_fails_verify(stopped_log, tmp_path):
	"""A middle segment deleted, or the first one cut before its close
	checkpoint: verify exits 1."""
	d = tmp_path / "removed"
	shutil.copytree(stopped_log.audit_dir, d)
	segs = segments(d)
	assert len(segs) >= 3, "the fixture's log has %d segments" % len(segs)
	segs[1].unlink()
	rc, out = verify(str(d), stopped_log.keys)
	assert rc == 1, "a log without its segment 2 verified %d: %s" % (rc, out)

	def cut(data):
		off, body = frames(data)[-1]
		assert body[0] == 3, "the last frame of a closed segment is a checkpoint"
		del data[off:]
	rc, out = verify(tampered_copy(stopped_log, tmp_path, cut), stopped_log.keys)
	assert rc == 1, "segment 1 without its close checkpoint verified %d: %s" % (rc, out)
