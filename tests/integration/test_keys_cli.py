"""test_keys_cli.py -- subgatectl keys init|sync|rotate|activate|rotate-master|shred with the daemon: files, modes, refusals, SIGHUP, old tokens."""

import hashlib
import os
import re
import signal
import stat
import subprocess

import pytest

import util
from test_gateway_common import check_error, no_new_records

EMAIL = "ada.lovelace@example.com"
WORK_EMAIL = "Ada.Lovelace@Example.com"
PHONE = "+1 (555) 010-0199"
TOK_RE = re.compile(r"^tok1\.(\d+)\.[A-Za-z0-9_-]+$")

PRIVATE = ("token.keys", "audit-index.key", "audit-signer.key", "offline/audit-reader.key")
PUBLIC = ("audit-signer.pub", "audit-reader.pub")


def ctl(*args, check=True, cwd=None):
	return util.run([util.SUBGATECTL] + [str(a) for a in args], check=check, cwd=cwd)


def mode(path):
	return stat.S_IMODE(os.stat(path).st_mode)


def digest(path):
	with open(path, "rb") as f:
		return hashlib.sha256(f.read()).hexdigest()


def snapshot(d):
	out = {}
	for root, _, files in os.walk(d):
		for f in files:
			p = os.path.join(root, f)
			st = os.stat(p)
			out[os.path.relpath(p, d)] = (digest(p), st.st_mtime_ns, stat.S_IMODE(st.st_mode))
	return out


def start_refused(config_path, cwd, timeout=15):
	"""Run subgate -c CONF: it must exit non-zero by itself. Returns its output."""
	try:
		r = subprocess.run([str(util.SUBGATE), "-c", str(config_path)], cwd=cwd,
				   capture_output=True, text=True, timeout=timeout,
				   stdin=subprocess.DEVNULL)
	except subprocess.TimeoutExpired:
		pytest.fail("subgate started (still running after %d s) but should have refused" % timeout)
	out = r.stdout + r.stderr
	assert r.returncode != 0, "subgate exited 0:\n" + out
	return out


def data_lines(cfg):
	with open(cfg["keys"]["data_keys"]) as f:
		return [ln.split() for ln in f if ln.strip() and not ln.startswith("#")][1:]


def key_lines(cfg, tenant, integration):
	return [ln for ln in data_lines(cfg) if ln[0] == "key" and ln[1:3] == [tenant, integration]]


# --------------------------------------------------------------------------
# a gateway whose crm processor reflects, with fields that carry tokens back

def _edit(cfg):
	crm = cfg["integrations"][0]
	assert crm["name"] == "crm"
	crm["endpoints"] = [
		{"method": "POST", "path": "/v1/contacts", "request": {
			"allow": ["contact.first_name", "contact.ref"],
			"tokenize": ["contact.email"],
			"format_preserve": ["contact.phone", "contact.work_email"],
			"hash": ["call.caller_id"]},
		 "response": {"detokenize": ["contact.email", "contact.ref"],
			      "format_preserve": ["contact.phone", "contact.work_email"]}}]
	cal = cfg["integrations"][1]
	assert cal["name"] == "calendar"
	cal["endpoints"] = [
		{"method": "POST", "path": "/v3/events",
		 "request": {"allow": ["ref"], "tokenize": ["email"]},
		 "response": {"detokenize": ["ref", "email"]}}]
	return cfg


@pytest.fixture
def reflecting(gateway, gateway_config, processor):
	"""A started gateway (crm and calendar to one reflecting processor)."""
	proc = processor("reflect")
	cfg = _edit(gateway_config(crm=proc, keys=True))
	gw = gateway(cfg)
	gw.proc_ = proc
	return gw


def contact(gw, contact, call=None, cert="tenant-acme"):
	"""POST /crm/v1/contacts: (what the client got back, what the processor received)."""
	gw.proc_.clear()
	doc = {"contact": contact}
	if call:
		doc["call"] = call
	r = gw.request("POST", "/crm/v1/contacts", json=doc, cert=cert)
	assert r.status == 200, r
	return r.json(), gw.proc_.wait_records(1)[-1]["json"]


def mint(gw, cert="tenant-acme"):
	"""The processor-side outputs for fixed values: email token, FF1 phone, email FP, hash."""
	back, sent = contact(gw, {"email": EMAIL, "phone": PHONE, "work_email": WORK_EMAIL},
			     {"caller_id": "+15550100"}, cert=cert)
	assert back["contact"] == {"email": EMAIL, "phone": PHONE, "work_email": WORK_EMAIL}, back
	c = sent["contact"]
	assert TOK_RE.match(c["email"]), c
	return c["email"], c["phone"], c["work_email"], sent["call"]["caller_id"]


def restored(gw, token, cert="tenant-acme"):
	"""What the client gets back for token written into contact.ref (a detokenise path)."""
	back, sent = contact(gw, {"ref": token}, cert=cert)
	assert sent["contact"]["ref"] == token
	return back["contact"]["ref"]


def reload_ok(gw):
	r = gw.reload()
	assert r.ok, "reload did not take: %r\n%s" % (r, r.log)


# --------------------------------------------------------------------------
# init

def test_keys_init_files_modes_and_reminder(tmp_path):
	d = tmp_path / "keys"
	r = ctl("keys", "init", d)
	for f in PRIVATE:
		assert (d / f).is_file(), f
		assert mode(d / f) == 0o600, (f, oct(mode(d / f)))
	for f in PUBLIC:
		assert (d / f).is_file(), f
		# public keys: readable, writable by the owner alone
		assert mode(d / f) & 0o400 and not mode(d / f) & 0o022, (f, oct(mode(d / f)))
	assert not (mode(d) & 0o077), "key directory made 0700: %o" % mode(d)
	# the offline reader key gets a reminder naming it
	assert "offline/audit-reader.key" in r.stdout, r.stdout
	assert re.search(r"(?i)off the gateway|offline|move it", r.stdout), r.stdout
	lines = [ln for ln in (d / "token.keys").read_text().split("\n")
		 if ln.strip() and not ln.startswith("#")]
	assert lines[0] == "subgate-token-keys 1", lines
	masters = [ln.split() for ln in lines[1:] if ln.startswith("master ")]
	assert len(masters) == 1 and masters[0][1:3] == ["1", "active"], lines
	assert re.fullmatch(r"[0-9a-f]{64}", masters[0][3])
	assert re.fullmatch(r"[0-9a-f]{64}\n", (d / "audit-index.key").read_text())
	assert "PRIVATE KEY" in (d / "audit-signer.key").read_text()
	assert "PUBLIC KEY" in (d / "audit-reader.pub").read_text()
	# no secret on stdout
	assert masters[0][3] not in r.stdout + r.stderr

	# nothing is ever overwritten
	before = snapshot(d)
	again = ctl("keys", "init", d, check=False)
	assert again.returncode != 0
	assert again.stderr.strip(), "a refusal says why"
	assert snapshot(d) == before


def test_keys_init_refuses_before_writing_anything(tmp_path):
	d = tmp_path / "keys"
	d.mkdir(mode=0o700)
	util.write_secret(d / "audit-index.key", "0" * 64 + "\n")
	r = ctl("keys", "init", d, check=False)
	assert r.returncode != 0
	assert "audit-index.key" in r.stderr, r.stderr
	assert sorted(os.listdir(d)) == ["audit-index.key"], os.listdir(d)


# --------------------------------------------------------------------------
# sync, and a pair without a data key

def test_keys_sync_creates_pairs_and_start_needs_them(gateway_config, pki, tmp_path):
	cfg = gateway_config(keys=True)
	# (the harness' one-time probe of the build may have synced these keys)
	if os.path.exists(cfg["keys"]["data_keys"]):
		os.remove(cfg["keys"]["data_keys"])
	conf = tmp_path / "sync.conf"
	conf.write_text(util.render_libconfig(cfg))
	out = start_refused(conf, tmp_path)
	assert "subgatectl keys sync" in out, out
	assert "acme" in out, out

	r = ctl("keys", "sync", "-c", conf)
	pairs = {(ln[1], ln[2]) for ln in data_lines(cfg) if ln[0] == "key"}
	assert pairs == {("acme", "crm"), ("acme", "calendar"), ("globex", "crm")}, data_lines(cfg)
	for t, i in pairs:
		assert re.search(r"tenant=%s integration=%s" % (t, i), r.stdout), r.stdout
		k = key_lines(cfg, t, i)
		assert len(k) == 1 and k[0][3:5] == ["1", "active"], k
	assert mode(cfg["keys"]["data_keys"]) == 0o600
	ids = {ln[5] for ln in data_lines(cfg)}
	assert len(ids) == 3, "key ids are distinct"

	# a second sync changes nothing
	before = digest(cfg["keys"]["data_keys"])
	ctl("keys", "sync", "-c", conf)
	assert digest(cfg["keys"]["data_keys"]) == before

	# a new pair in the config: refused until synced, then only it is added
	cfg["tenants"].append({"id": "initech", "clients": ["spiffe://personadesk.test/tenant/initech/service"],
			       "integrations": ["calendar"]})
	conf.write_text(util.render_libconfig(cfg))
	out = start_refused(conf, tmp_path)
	assert "initech" in out and "subgatectl keys sync" in out, out
	old = {tuple(ln) for ln in data_lines(cfg)}
	ctl("keys", "sync", "-c", conf)
	new = {tuple(ln) for ln in data_lines(cfg)}
	assert old < new and len(new - old) == 1
	assert next(iter(new - old))[1:3] == ("initech", "calendar")


# --------------------------------------------------------------------------
# rotate, activate, rotate-master

def test_rotate_activate_reload(reflecting):
	gw = reflecting
	conf = gw.config_path
	t1, ph1, em1, h1 = mint(gw)
	assert TOK_RE.match(t1).group(1) == "1"
	g1 = mint(gw, cert="tenant-globex")[0]

	r = ctl("keys", "rotate", "-c", conf, "--tenant", "acme", "--integration", "crm")
	assert re.search(r"\b2\b", r.stdout), r.stdout
	k = key_lines(gw.cfg, "acme", "crm")
	assert sorted(ln[3:5] for ln in k) == [["1", "active"], ["2", "decrypt"]], k
	assert mode(gw.cfg["keys"]["data_keys"]) == 0o600
	reload_ok(gw)
	# version 2 only decrypts so far: version 1 still mints
	assert mint(gw) == (t1, ph1, em1, h1)

	ctl("keys", "activate", "-c", conf, "--tenant", "acme", "--integration", "crm", "--version", "2")
	k = key_lines(gw.cfg, "acme", "crm")
	assert sorted(ln[3:5] for ln in k) == [["1", "decrypt"], ["2", "active"]], k
	reload_ok(gw)
	t2, ph2, em2, h2 = mint(gw)
	assert TOK_RE.match(t2).group(1) == "2", t2
	assert t2 != t1
	assert (ph2, em2, h2) == (ph1, em1, h1), "FF1, email and hash outputs never rotate"
	# tokens minted before still detokenise, and the new ones do
	assert restored(gw, t1) == EMAIL
	assert restored(gw, t2) == EMAIL
	# the other tenant is untouched by acme's rotation
	assert mint(gw, cert="tenant-globex")[0] == g1
	assert restored(gw, t2, cert="tenant-globex") == t2

	bad = ctl("keys", "activate", "-c", conf, "--tenant", "acme", "--integration", "crm",
		  "--version", "7", check=False)
	assert bad.returncode != 0
	assert sorted(ln[3:5] for ln in key_lines(gw.cfg, "acme", "crm")) == [["1", "decrypt"], ["2", "active"]]


def test_rotate_master_reload(reflecting):
	gw = reflecting
	before = mint(gw)
	g = mint(gw, cert="tenant-globex")
	old_data = data_lines(gw.cfg)
	tk = gw.cfg["keys"]["token_keys"]
	old_masters = [ln.split() for ln in open(tk) if ln.startswith("master ")]

	r = ctl("keys", "rotate-master", "-c", gw.config_path)
	assert r.stdout.strip()
	masters = [ln.split() for ln in open(tk) if ln.startswith("master ")]
	active = [m for m in masters if m[2] == "active"]
	assert len(active) == 1 and active[0][1] == "2", masters
	assert active[0][3] != old_masters[0][3]
	assert mode(tk) == 0o600 and mode(gw.cfg["keys"]["data_keys"]) == 0o600
	new_data = data_lines(gw.cfg)
	# same key ids and versions, re-wrapped under master 2
	assert [ln[:6] for ln in new_data] == [ln[:6] for ln in old_data]
	assert all(ln[6] == "2" for ln in new_data if ln[0] == "key"), new_data
	assert all(a[7] != b[7] for a, b in zip(old_data, new_data) if a[0] == "key")

	reload_ok(gw)
	assert mint(gw) == before, "same data keys: same outputs"
	assert mint(gw, cert="tenant-globex") == g
	assert restored(gw, before[0]) == EMAIL
	# and once more from a cold start
	gw.stop()
	gw.start()
	assert mint(gw) == before
	assert restored(gw, before[0]) == EMAIL


# --------------------------------------------------------------------------
# shred

def test_shred_pair(reflecting):
	gw = reflecting
	conf = gw.config_path
	acme_crm = mint(gw)[0]
	globex_crm = mint(gw, cert="tenant-globex")[0]

	def calendar(doc, cert="tenant-acme"):
		gw.proc_.clear()
		r = gw.request("POST", "/calendar/v3/events", json=doc, cert=cert)
		assert r.status == 200, r
		return r.json(), gw.proc_.wait_records(1)[-1]["json"]

	_, sent = calendar({"email": EMAIL})
	acme_cal = sent["email"]
	assert TOK_RE.match(acme_cal) and acme_cal != acme_crm

	r = ctl("keys", "shred", "-c", conf, "--tenant", "acme", "--integration", "crm")
	assert "acme" in r.stdout and "crm" in r.stdout, r.stdout
	assert key_lines(gw.cfg, "acme", "crm") == []
	assert ["shredded", "acme", "crm"] in data_lines(gw.cfg)
	assert key_lines(gw.cfg, "acme", "calendar") and key_lines(gw.cfg, "globex", "crm")
	reload_ok(gw)

	# 1. the pair's calls get 403 pair_shredded, nothing reaches the processor
	gw.proc_.clear()
	r = gw.request("POST", "/crm/v1/contacts", json={"contact": {"first_name": "Ada"}})
	check_error(r, 403, "pair_shredded")
	no_new_records(gw.proc_)

	# 2. its old tokens pass untouched through the responses of other pairs
	back, _ = calendar({"ref": acme_crm})
	assert back == {"ref": acme_crm}
	assert restored(gw, acme_crm, cert="tenant-globex") == acme_crm
	# ... while those pairs still restore their own (the check is not vacuous)
	back, _ = calendar({"ref": acme_cal})
	assert back == {"ref": EMAIL}
	assert restored(gw, globex_crm, cert="tenant-globex") == EMAIL

	# 3. sync never recreates it, neither from the CLI nor at start
	before = digest(gw.cfg["keys"]["data_keys"])
	ctl("keys", "sync", "-c", conf)
	assert digest(gw.cfg["keys"]["data_keys"]) == before
	assert key_lines(gw.cfg, "acme", "crm") == []
	gw.stop()
	gw.start()		# runs keys sync first
	assert key_lines(gw.cfg, "acme", "crm") == []
	r = gw.request("POST", "/crm/v1/contacts", json={"contact": {"first_name": "Ada"}})
	check_error(r, 403, "pair_shredded")
	back, _ = calendar({"ref": acme_cal})
	assert back == {"ref": EMAIL}


def test_shred_whole_tenant(gateway_config, tmp_path):
	cfg = gateway_config(keys=True)
	conf = tmp_path / "shred.conf"
	conf.write_text(util.render_libconfig(cfg))
	ctl("keys", "sync", "-c", conf)
	ctl("keys", "shred", "-c", conf, "--tenant", "acme")
	lines = data_lines(cfg)
	assert ["shredded", "acme", "crm"] in lines and ["shredded", "acme", "calendar"] in lines
	assert not [ln for ln in lines if ln[0] == "key" and ln[1] == "acme"]
	assert len(key_lines(cfg, "globex", "crm")) == 1
	r = ctl("keys", "sync", "-c", conf)
	assert not [ln for ln in data_lines(cfg) if ln[0] == "key" and ln[1] == "acme"], r.stdout


def _held(path):
	"""The file now at path, open: it stays reachable after a rename over
	path, as its freed blocks would be to someone reading the disk."""
	f = open(path, "rb")
	old = f.read()
	assert old.strip(), path
	return f, old


def _now(f):
	f.seek(0)
	return f.read()


def test_replaced_key_files_are_wiped(gateway_config, tmp_path):
	"""Shredding is only as good as what is left on disk: the data.keys a
	shred replaces (with the pair's wrapped key) and the token.keys a
	master rotation replaces (with the retired master that unwraps it)
	are overwritten with zeros, not merely unlinked by the rename. A copy
	someone keeps on purpose (another hard link) is left alone, with a
	warning."""
	cfg = gateway_config(keys=True)
	conf = tmp_path / "wipe.conf"
	conf.write_text(util.render_libconfig(cfg))
	ctl("keys", "sync", "-c", conf)
	dk, tk = cfg["keys"]["data_keys"], cfg["keys"]["token_keys"]

	f, old = _held(dk)
	with f:
		wrapped = [ln[7] for ln in data_lines(cfg) if ln[:3] == ["key", "acme", "crm"]]
		assert wrapped and wrapped[0].encode() in old
		ctl("keys", "shred", "-c", conf, "--tenant", "acme", "--integration", "crm")
		assert ["shredded", "acme", "crm"] in data_lines(cfg)
		now = _now(f)
		assert len(now) == len(old) and now == bytes(len(old)), \
			"the shredded pair's wrapped key is still in the replaced data.keys"

	f, old = _held(tk)
	with f:
		master1 = [ln.split()[3] for ln in old.decode().splitlines() if ln.startswith("master 1 ")]
		assert master1
		ctl("keys", "rotate-master", "-c", conf)
		assert master1[0] not in open(tk).read(), "the retired master is still in the ring"
		now = _now(f)
		assert now == bytes(len(old)), "the retired master is still in the replaced token.keys"

	# another link: a copy kept on purpose (a backup) is not destroyed
	backup = tmp_path / "data.keys.backup"
	os.link(dk, backup)
	kept = backup.read_bytes()
	r = ctl("keys", "rotate", "-c", conf, "--tenant", "globex", "--integration", "crm")
	assert backup.read_bytes() == kept
	assert "another hard link and was not wiped" in r.stderr, r.stderr
	assert digest(dk) != digest(backup)


# --------------------------------------------------------------------------
# key file permissions

@pytest.mark.parametrize("name", ["token_keys", "data_keys", "audit_index", "audit_signer"])
def test_key_file_readable_by_others_refused(gateway_config, tmp_path, name):
	cfg = gateway_config(keys=True)
	conf = tmp_path / "perm.conf"
	conf.write_text(util.render_libconfig(cfg))
	ctl("keys", "sync", "-c", conf)
	path = cfg["keys"][name]
	os.chmod(path, 0o644)
	out = start_refused(conf, tmp_path)
	assert path in out or os.path.basename(path) in out, out
	assert re.search(r"(?i)group|others|permission|mode|readable", out), out


def test_key_file_readable_by_others_refused_on_reload(reflecting):
	gw = reflecting
	t = mint(gw)[0]
	os.chmod(gw.cfg["keys"]["data_keys"], 0o644)
	off = gw.log_size()
	gw.signal(signal.SIGHUP)
	gw.wait_log(r"(?i)data\.keys", since=off, timeout=10)
	assert gw.running
	os.chmod(gw.cfg["keys"]["data_keys"], 0o600)
	# the old generation keeps serving
	assert mint(gw)[0] == t
	assert restored(gw, t) == EMAIL
