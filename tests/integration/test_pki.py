"""test_pki.py -- the dev PKI script, the sample processor and the harness itself (no subgate needed)."""

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

import util
from util import ACME_URI, GLOBEX_URI, UNKNOWN_URI

CAS = ["service-ca", "gateway-ca", "gateway-client-ca", "processor-ca", "other-ca"]
LEAVES = ["gateway", "gateway-rsa", "tenant-acme", "tenant-globex", "tenant-unknown",
	  "client-dns", "client-cn", "client-expired", "client-revoked", "client-otherca",
	  "processor", "processor-wrongname", "processor-otherca", "gateway-client"]
PROC_SAN = {"DNS:crm.processor.test", "DNS:calendar.processor.test", "DNS:localhost",
	    "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"}
GW_SAN = {"DNS:localhost", "DNS:subgate.test", "IP Address:127.0.0.1",
	  "IP Address:0:0:0:0:0:0:0:1"}

# name -> (issuer CA, SAN set or None for "no SAN extension", extended key usage)
EXPECTED = {
	"gateway": ("gateway-ca", GW_SAN, "TLS Web Server Authentication"),
	"gateway-rsa": ("gateway-ca", GW_SAN, "TLS Web Server Authentication"),
	"tenant-acme": ("service-ca", {"URI:" + ACME_URI}, "TLS Web Client Authentication"),
	"tenant-globex": ("service-ca", {"URI:" + GLOBEX_URI}, "TLS Web Client Authentication"),
	"tenant-unknown": ("service-ca", {"URI:" + UNKNOWN_URI}, "TLS Web Client Authentication"),
	"client-dns": ("service-ca", {"DNS:svc.acme.test"}, "TLS Web Client Authentication"),
	"client-cn": ("service-ca", None, "TLS Web Client Authentication"),
	"client-expired": ("service-ca", {"URI:" + ACME_URI}, "TLS Web Client Authentication"),
	"client-revoked": ("service-ca", {"URI:" + ACME_URI}, "TLS Web Client Authentication"),
	"client-otherca": ("other-ca", {"URI:" + ACME_URI}, "TLS Web Client Authentication"),
	"processor": ("processor-ca", PROC_SAN, "TLS Web Server Authentication"),
	"processor-wrongname": ("processor-ca", {"DNS:wrong.processor.test"},
				"TLS Web Server Authentication"),
	"processor-otherca": ("other-ca", PROC_SAN, "TLS Web Server Authentication"),
	"gateway-client": ("gateway-client-ca", {"DNS:gateway-client.subgate.test"},
			   "TLS Web Client Authentication"),
}


def openssl(*args, check=True, input=None):
	return util.run(["openssl"] + list(args), check=check, input=input)


def x509_ext(path, ext):
	"""The lines of one extension of a certificate, [] if it has none."""
	out = openssl("x509", "-in", path, "-noout", "-ext", ext).stdout
	return [ln.strip() for ln in out.splitlines()[1:] if ln.strip()]


def x509_critical(path, ext):
	out = openssl("x509", "-in", path, "-noout", "-ext", ext).stdout
	return out.splitlines()[0].rstrip().endswith("critical")


def sans(path):
	lines = x509_ext(path, "subjectAltName")
	if not lines:
		return None
	return {s.strip() for s in ",".join(lines).split(",")}


def verify(ca, cert, crl=None):
	args = ["verify", "-x509_strict", "-CAfile", ca]
	if crl:
		args += ["-crl_check", "-CRLfile", crl]
	return openssl(*(args + [cert]), check=False)


def der_spki(der):
	"""The DER SubjectPublicKeyInfo of a DER certificate, by walking the ASN.1
	(an oracle independent of the openssl pipeline the script uses)."""
	def tlv(b, i):
		tag = b[i]
		n = b[i + 1]
		j = i + 2
		if n & 0x80:
			k = n & 0x7f
			n = int.from_bytes(b[j:j + k], "big")
			j += k
		return tag, j, j + n		# tag, content start, end

	_, c, _ = tlv(der, 0)			# Certificate
	_, t, _ = tlv(der, c)			# tbsCertificate
	i = t
	tag, _, end = tlv(der, i)
	if tag == 0xa0:				# [0] version
		i = end
	for _ in range(5):			# serial, signature, issuer, validity, subject
		_, _, i = tlv(der, i)
	tag, _, end = tlv(der, i)
	assert tag == 0x30
	return der[i:end]


# --------------------------------------------------------------------------
# gen-dev-pki.sh

def test_all_files_present(pki):
	for n in CAS + LEAVES:
		for ext in (".crt", ".key"):
			p = pki.dir / (n + ext)
			assert p.is_file() and p.stat().st_size > 0, p
	assert (pki.dir / "service-ca.crl").stat().st_size > 0
	assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", pki.spki)


def test_private_keys_owner_only(pki):
	keys = sorted(pki.dir.glob("*.key"))
	assert len(keys) == len(CAS) + len(LEAVES)
	for k in keys:
		assert stat.S_IMODE(k.stat().st_mode) == 0o600, k
	for c in pki.dir.glob("*.crt"):
		assert stat.S_IMODE(c.stat().st_mode) & 0o022 == 0, c


def test_key_algorithms(pki):
	for n in CAS + LEAVES:
		text = openssl("pkey", "-in", pki.key(n), "-noout", "-text").stdout
		if n == "gateway-rsa":
			assert "Private-Key: (2048 bit" in text, n
		else:
			assert "ASN1 OID: prime256v1" in text, n
		# The certificate carries the key next to it.
		a = openssl("x509", "-in", pki.crt(n), "-noout", "-pubkey").stdout
		b = openssl("pkey", "-in", pki.key(n), "-pubout").stdout
		assert a == b, n


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_leaf_names_usage_and_issuer(pki, name):
	ca, san, eku = EXPECTED[name]
	assert sans(pki.crt(name)) == san
	assert x509_ext(pki.crt(name), "extendedKeyUsage") == [eku]
	assert x509_ext(pki.crt(name), "basicConstraints") == ["CA:FALSE"]
	assert x509_critical(pki.crt(name), "basicConstraints")
	r = verify(pki.crt(ca), pki.crt(name))
	if name == "client-expired":
		assert r.returncode != 0 and "expired" in r.stdout + r.stderr
	else:
		assert r.returncode == 0, r.stdout + r.stderr
	# Nothing else signed it: not the other CAs.
	for other in CAS:
		if other != ca:
			assert verify(pki.crt(other), pki.crt(name)).returncode != 0, (name, other)


def test_cn_only_client_subject(pki):
	subj = openssl("x509", "-in", pki.crt("client-cn"), "-noout", "-subject",
		       "-nameopt", "RFC2253").stdout
	assert "CN=cn-only-client" in subj


def test_cas_are_cas(pki):
	for n in CAS:
		assert x509_critical(pki.crt(n), "basicConstraints"), n
		assert x509_ext(pki.crt(n), "basicConstraints") == ["CA:TRUE, pathlen:0"], n
		assert x509_critical(pki.crt(n), "keyUsage"), n
		assert "Certificate Sign" in x509_ext(pki.crt(n), "keyUsage")[-1], n
		assert verify(pki.crt(n), pki.crt(n)).returncode == 0, n


def test_revoked_is_in_crl_and_others_are_not(pki):
	crl = pki.crl
	serial = openssl("x509", "-in", pki.crt("client-revoked"), "-noout",
			 "-serial").stdout.split("=")[1].strip()
	text = openssl("crl", "-in", crl, "-noout", "-text").stdout
	revoked = re.findall(r"Serial Number: ([0-9A-F]+)", text)
	assert revoked == [serial]
	assert openssl("crl", "-in", crl, "-noout", "-CAfile", pki.crt("service-ca")).returncode == 0
	r = verify(pki.crt("service-ca"), pki.crt("client-revoked"), crl)
	assert r.returncode != 0 and "revoked" in r.stdout + r.stderr
	for n in ("tenant-acme", "tenant-globex", "client-dns", "client-cn"):
		assert verify(pki.crt("service-ca"), pki.crt(n), crl).returncode == 0, n


def test_crl_next_update_about_30_days(pki):
	out = openssl("crl", "-in", pki.crl, "-noout", "-lastupdate", "-nextupdate").stdout
	last = re.search(r"lastUpdate=(.*)", out).group(1)
	nxt = re.search(r"nextUpdate=(.*)", out).group(1)
	fmt = "%b %d %H:%M:%S %Y %Z"
	days = (time.mktime(time.strptime(" ".join(nxt.split()), fmt))
		- time.mktime(time.strptime(" ".join(last.split()), fmt))) / 86400
	assert 29 <= days <= 31


def test_expired_is_expired(pki):
	assert openssl("x509", "-in", pki.crt("client-expired"), "-noout", "-checkend", "0",
		       check=False).returncode != 0
	assert openssl("x509", "-in", pki.crt("tenant-acme"), "-noout", "-checkend", "86400",
		       check=False).returncode == 0


def test_spki_pin_matches_processor_key(pki):
	pem = Path(pki.crt("processor")).read_text()
	der = ssl.PEM_cert_to_DER_cert(pem)
	pin = base64.b64encode(hashlib.sha256(der_spki(der)).digest()).decode()
	assert pki.spki == pin
	assert util.spki_sha256(pki.crt("processor")) == pin
	assert pki.spki_sha256("processor-otherca") != pin


def test_script_keeps_complete_pki_and_force_replaces(tmp_path):
	d = tmp_path / "pki"
	t0 = time.monotonic()
	util.gen_pki(d)
	elapsed = time.monotonic() - t0
	assert elapsed < 5.0, "gen-dev-pki.sh took %.1fs" % elapsed
	before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}

	r = util.run([util.PKI_SCRIPT, str(d)])
	assert "already holds a complete PKI" in r.stderr
	assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before

	util.run([util.PKI_SCRIPT, "--force", "--quiet", str(d)])
	after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
	assert after.keys() == before.keys()
	assert after["service-ca.key"] != before["service-ca.key"]
	assert after["processor.spki"] != before["processor.spki"]

	# An incomplete PKI is rebuilt without --force.
	(d / "gateway-client.key").unlink()
	r = util.run([util.PKI_SCRIPT, str(d)])
	assert "processor.crt SPKI" in r.stdout
	assert (d / "gateway-client.key").exists()
	assert (d / "service-ca.key").read_bytes() != after["service-ca.key"]


def test_script_rejects_bad_usage(tmp_path):
	r = util.run([util.PKI_SCRIPT, "--bogus"], check=False)
	assert r.returncode == 2 and "usage" in r.stderr
	r = util.run([util.PKI_SCRIPT, str(tmp_path / "a"), str(tmp_path / "b")], check=False)
	assert r.returncode == 2
	assert not (tmp_path / "a").exists()


def test_revoke_helper_leaves_session_crl_alone(pki, tmp_path):
	orig = Path(pki.crl).read_bytes()
	crl = pki.revoke(["tenant-acme"], tmp_path / "new.crl")
	assert Path(pki.crl).read_bytes() == orig
	assert verify(pki.crt("service-ca"), pki.crt("tenant-acme"), crl).returncode != 0
	assert verify(pki.crt("service-ca"), pki.crt("client-revoked"), crl).returncode != 0
	assert verify(pki.crt("service-ca"), pki.crt("tenant-globex"), crl).returncode == 0
	assert verify(pki.crt("service-ca"), pki.crt("tenant-acme"), pki.crl).returncode == 0


def test_issue_helper(pki, tmp_path):
	crt, key = pki.issue("t2", tmp_path, san="URI:" + util.TENANT_URI % "t2",
			     subject="/O=x/CN=t2 service")
	assert sans(crt) == {"URI:" + util.TENANT_URI % "t2"}
	assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
	assert verify(pki.crt("service-ca"), crt, pki.crl).returncode == 0
	assert verify(pki.crt("other-ca"), crt).returncode != 0
	old, _ = pki.issue("old", tmp_path, start="20190101000000Z", end="20190201000000Z")
	r = verify(pki.crt("service-ca"), old)
	assert r.returncode != 0 and "expired" in r.stdout + r.stderr
	srv, _ = pki.issue("srv", tmp_path, ca="processor-ca", kind="server", san="DNS:x.test")
	assert x509_ext(srv, "extendedKeyUsage") == ["TLS Web Server Authentication"]
	assert not list(tmp_path.glob(".ca-*"))


# --------------------------------------------------------------------------
# processor.py

def proc_context(pki, cert="gateway-client", ca="processor-ca"):
	return util.client_context(pki, cert, ca=ca)


def proc_request(p, ctx, method, target, body=None, headers=None, sni="crm.processor.test"):
	c = util.Conn(p.host, p.port, ctx, sni)
	try:
		return c.request(method, target, body=body, headers=headers)
	finally:
		c.close()


def test_processor_requires_client_certificate(pki, processor):
	p = processor()
	with pytest.raises(util.TLS_REFUSED):
		proc_request(p, proc_context(pki, cert=None), "GET", "/v1/x")
	# A certificate from a CA the processor does not trust: refused too.
	with pytest.raises(util.TLS_REFUSED):
		proc_request(p, proc_context(pki, cert="tenant-acme"), "GET", "/v1/x")
	assert p.records() == []
	out = p.output_text()
	assert "handshake failed" in out


def test_processor_records_request(pki, processor):
	p = processor()
	body = json.dumps({"contact": {"first_name": "Ada"}}).encode()
	r = proc_request(p, proc_context(pki), "POST", "/v1/contacts?fields=a&fields=b&x=",
			 body=body, headers={"Content-Type": "application/json",
					     "X-Request-Id": "req-1"})
	assert r.status == 200
	assert r.json() == {"received": {"contact": {"first_name": "Ada"}}, "method": "POST",
			    "path": "/v1/contacts", "query": {"fields": ["a", "b"], "x": [""]}}
	[rec] = p.records()
	assert rec["method"] == "POST"
	assert rec["target"] == "/v1/contacts?fields=a&fields=b&x="
	assert rec["path"] == "/v1/contacts"
	assert base64.b64decode(rec["body_b64"]) == body
	assert rec["json"] == {"contact": {"first_name": "Ada"}}
	assert ["X-Request-Id", "req-1"] in rec["headers"]
	assert rec["sni"] == "crm.processor.test"
	assert rec["client"]["san"] == [["DNS", "gateway-client.subgate.test"]]
	assert rec["client"]["subject"]["commonName"] == "subgate gateway client"
	p.clear()
	assert p.records() == []


def test_processor_keep_alive_and_modes(pki, processor):
	p = processor()
	c = util.Conn(p.host, p.port, proc_context(pki), "crm.processor.test")
	try:
		assert c.request("POST", "/a", body=b'{"k":1}').status == 200
		p.set_mode("reflect")
		r = c.request("POST", "/b", body=b'{"tok":"tok1.1.abc"}',
			      headers={"Content-Type": "application/json"})
		assert r.body == b'{"tok":"tok1.1.abc"}'
		p.set_mode("chunked")
		r = c.request("POST", "/c", body=b'{"k":2}')
		assert r.header("Transfer-Encoding") == "chunked" and r.json()["received"] == {"k": 2}
		p.set_mode("gzip")
		r = c.request("GET", "/d")
		assert r.header("Content-Encoding") == "gzip"
		import gzip
		assert json.loads(gzip.decompress(r.body))["path"] == "/d"
		p.set_mode("status=204")
		r = c.request("DELETE", "/e")
		assert r.status == 204 and r.body == b""
		p.set_mode("fixed", status=418, body={"x": 1}, headers=[["X-Extra", "1"]])
		r = c.request("GET", "/f")
		assert (r.status, r.json(), r.header("X-Extra")) == (418, {"x": 1}, "1")
		p.set_mode("close")
		r = c.request("GET", "/g")
		assert r.header("Content-Length") is None and r.json()["path"] == "/g"
		assert not c.open
	finally:
		c.close()
	recs = p.records()
	assert [r["path"] for r in recs] == ["/a", "/b", "/c", "/d", "/e", "/f", "/g"]
	assert len({r["conn"] for r in recs}) == 1
	assert [r["conn_seq"] for r in recs] == [1, 2, 3, 4, 5, 6, 7]
	assert [r["mode"] for r in recs] == ["echo", "reflect", "chunked", "gzip", "status=204",
					     "fixed", "close"]


def test_processor_slow_and_drop(pki, processor):
	p = processor(mode="slow", delay=1.0)
	t0 = time.monotonic()
	assert proc_request(p, proc_context(pki), "GET", "/s").status == 200
	assert time.monotonic() - t0 >= 1.0
	ctx = proc_context(pki)
	c = util.Conn(p.host, p.port, ctx, "crm.processor.test", timeout=0.5)
	with pytest.raises(socket.timeout):
		c.request("GET", "/s2")
	c.close()
	p.set_mode("drop")
	with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
		proc_request(p, ctx, "GET", "/d")
	assert [r["path"] for r in p.wait_records(3)] == ["/s", "/s2", "/d"]


def test_processor_query_mode_and_close_delimited_raw(pki, processor):
	p = processor()
	r = util.raw_exchange(p.host, p.port, proc_context(pki),
			      b"GET /x?_mode=close HTTP/1.1\r\nHost: crm.processor.test\r\n\r\n",
			      server_hostname="crm.processor.test")
	assert r.closed and r.error is None		# ended by close_notify, not a bare TCP close
	[resp] = r.responses()
	assert resp.status == 200 and resp.header("Content-Length") is None
	assert json.loads(resp.body)["query"] == {"_mode": ["close"]}


def test_processor_ipv6_and_other_certs(pki, processor):
	p = processor(host="::1", cert="processor-wrongname")
	assert p.url.startswith("https://[::1]:")
	ctx = proc_context(pki)
	ctx.check_hostname = False
	r = proc_request(p, ctx, "GET", "/v6", sni=None)
	assert r.status == 200
	# With the name check on, the wrong name is refused.
	with pytest.raises(ssl.SSLCertVerificationError):
		proc_request(p, proc_context(pki), "GET", "/v6")


def test_processor_restart_keeps_port(processor):
	p = processor()
	port = p.port
	p.stop()
	assert not util.port_open(p.host, port)
	p.start()
	assert p.port == port and util.port_open(p.host, port)


# --------------------------------------------------------------------------
# the libconfig renderer

def test_render_libconfig_syntax():
	cfg = {
		"a": "x\"y\\z\n\t\x01é",
		"n": 5, "big": 2**40, "neg": -1, "f": 1.5, "f2": 2.0, "t": True, "no": False,
		"skip": None,
		"arr": ["A", "B"], "empty": [], "ints": [1, 2],
		"mixed": ["calendar", {"name": "crm"}],
		"forced": util.List(["x"]),
		"grp": {"inner": {"k": "v"}},
		"raw": util.Raw("1 + "),
		"@inc": util.Include("/tmp/x.conf"),
	}
	text = util.render_libconfig(cfg)
	assert 'a = "x\\"y\\\\z\\n\\t\\x01é";\n' in text
	assert "big = 1099511627776L;" in text and "n = 5;" in text and "neg = -1;" in text
	assert "f = 1.5;" in text and "f2 = 2.0;" in text
	assert "t = true;" in text and "no = false;" in text
	assert "skip" not in text
	assert 'arr = [ "A", "B" ];' in text and "empty = [ ];" in text and "ints = [ 1, 2 ];" in text
	assert re.search(r'mixed = \(\n\s+"calendar",\n\s+\{\n\s+name = "crm";\n\s+\}\n\s*\);', text)
	assert re.search(r'forced = \(\n\s+"x"\n\s*\);', text)
	assert "raw = 1 + ;" in text
	assert '\n@include "/tmp/x.conf"\n' in text
	with pytest.raises(ValueError):
		util.render_libconfig({"bad key": 1})
	with pytest.raises(TypeError):
		util.render_libconfig({"k": object()})


LIBCONFIG_CHECK = r"""
#include <libconfig.h>
#include <stdio.h>
int main(int argc, char **argv) {
	config_t c; config_init(&c);
	if (!config_read_file(&c, argv[1])) {
		printf("ERR %d %s\n", config_error_line(&c), config_error_text(&c)); return 1; }
	for (int i = 2; i < argc; i++) {
		config_setting_t *s = config_lookup(&c, argv[i]);
		if (!s) { printf("%s MISSING\n", argv[i]); continue; }
		switch (config_setting_type(s)) {
		case CONFIG_TYPE_STRING: printf("%s S %s\n", argv[i], config_setting_get_string(s)); break;
		case CONFIG_TYPE_INT: printf("%s I %d\n", argv[i], config_setting_get_int(s)); break;
		case CONFIG_TYPE_INT64: printf("%s L %lld\n", argv[i], config_setting_get_int64(s)); break;
		case CONFIG_TYPE_BOOL: printf("%s B %d\n", argv[i], config_setting_get_bool(s)); break;
		case CONFIG_TYPE_FLOAT: printf("%s F %g\n", argv[i], config_setting_get_float(s)); break;
		case CONFIG_TYPE_ARRAY: printf("%s A %d\n", argv[i], config_setting_length(s)); break;
		case CONFIG_TYPE_LIST: printf("%s T %d\n", argv[i], config_setting_length(s)); break;
		case CONFIG_TYPE_GROUP: printf("%s G %d\n", argv[i], config_setting_length(s)); break;
		}
	}
	config_destroy(&c); return 0;
}
"""


@pytest.fixture(scope="module")
def libconfig_check(tmp_path_factory):
	"""A tiny C program that parses a file with libconfig and prints settings."""
	d = tmp_path_factory.mktemp("libconfig")
	src = d / "check.c"
	src.write_text(LIBCONFIG_CHECK)
	flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libconfig"],
			       capture_output=True, text=True)
	if flags.returncode != 0 or not shutil.which("cc"):
		pytest.skip("libconfig development files or cc missing")
	util.run(["cc", "-std=c11", "-o", d / "check", src] + flags.stdout.split())
	return str(d / "check")


def test_default_config_parses_with_libconfig(pki, tmp_path, libconfig_check):
	# The oracle is libconfig itself: what the renderer writes is what subgate reads.
	keys = {"token_keys": "/k/token.keys", "data_keys": "/k/data.keys",
		"audit_reader": "/k/r.pub", "audit_index": "/k/i.key", "audit_signer": "/k/s.key"}
	cfg = util.make_config(pki, tmp_path, "https://127.0.0.1:9444", "https://[::1]:9445",
			       keys=keys)
	cfg["odd"] = "quote\" back\\slash nl\n tab\t ctl\x02 utf8 é"
	cfg["limits"]["max_buffered_bytes"] = 2**33
	cfg["limits"]["shutdown_grace_ms"] = 2000
	conf = tmp_path / "t.conf"
	conf.write_text(util.render_libconfig(cfg))
	keys_asked = ["listen.port", "listen.address", "tls.client_ca", "admin.tenant_labels",
		      "limits.max_buffered_bytes", "limits.shutdown_grace_ms", "tenants",
		      "tenants.[0].clients", "tenants.[0].integrations",
		      "tenants.[0].integrations.[0]", "integrations.[0].endpoints.[1].params.id",
		      "integrations.[0].endpoints.[0].request.tokenize",
		      "integrations.[0].headers.set.[0].file", "integrations.[1].upstream",
		      "odd", "audit.min_free_bytes"]
	r = util.run([libconfig_check, conf] + keys_asked)
	got = dict(ln.split(" ", 1) for ln in r.stdout.splitlines())
	assert got["listen.port"] == "I %d" % cfg["listen"]["port"]
	assert got["listen.address"] == "S 127.0.0.1"
	assert got["tls.client_ca"] == "S " + pki.crt("service-ca")
	assert got["admin.tenant_labels"] == "B 0"
	assert got["limits.max_buffered_bytes"] == "L %d" % 2**33
	assert got["limits.shutdown_grace_ms"] == "I 2000"
	assert got["tenants"] == "T 2"
	assert got["tenants.[0].clients"] == "A 1"
	assert got["tenants.[0].integrations"] == "A 2"
	assert got["tenants.[0].integrations.[0]"] == "S crm"
	assert got["integrations.[0].endpoints.[1].params.id"] == "S allow"
	assert got["integrations.[0].endpoints.[0].request.tokenize"] == "A 1"
	assert got["integrations.[1].upstream"] == "S https://[::1]:9445"
	assert got["audit.min_free_bytes"] == "I 1048576"
	secret = got["integrations.[0].headers.set.[0].file"][2:]
	assert Path(secret).read_text() == util.CRM_TOKEN + "\n"
	assert stat.S_IMODE(Path(secret).stat().st_mode) == 0o600
	# The odd string round-trips (the checker prints it raw, newline included).
	assert cfg["odd"] in r.stdout.replace("odd S ", "", 1)


def test_include_renders_for_libconfig(tmp_path, libconfig_check):
	inc = tmp_path / "crm.conf"
	inc.write_text(util.render_value({"name": "crm", "prefix": "/crm"}))
	conf = tmp_path / "t.conf"
	conf.write_text(util.render_libconfig({"@top": util.Include(str(tmp_path / "top.conf")),
					       "integrations": util.List([util.Include(str(inc))])}))
	(tmp_path / "top.conf").write_text('user = "x";\n')
	r = util.run([libconfig_check, conf, "user", "integrations.[0].prefix"])
	assert r.stdout.splitlines() == ["user S x", "integrations.[0].prefix S /crm"]


# --------------------------------------------------------------------------
# the gateway fixture, against a stand-in for subgate

FAKE_SUBGATE = r'''#!/usr/bin/python3
# A stand-in for build/subgate: TLS listener answering 200, admin /healthz
# and /metrics with subgate_config_generation, SIGHUP reload, SIGTERM exit.
import http.server, re, signal, socket, ssl, sys, threading
conf = open(sys.argv[sys.argv.index("-c") + 1]).read()
def get(block, key):
	return re.search(block + r" = \{[^}]*?" + key + r' = "?([^";]+)', conf, re.S).group(1)
gen = [1]
def hup(*a):
	text = open(sys.argv[sys.argv.index("-c") + 1]).read()
	if "broken" in text:
		print("reload failed: config broken; keeping generation %d" % gen[0], file=sys.stderr, flush=True)
	else:
		gen[0] += 1
		print("reload: generation %d" % gen[0], file=sys.stderr, flush=True)
signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGTERM, lambda *a: (print("stopping", file=sys.stderr, flush=True), sys.exit(0)))
class Admin(http.server.BaseHTTPRequestHandler):
	def do_GET(self):
		body = b"ok\n" if self.path == "/healthz" else (
			"# TYPE subgate_config_generation gauge\nsubgate_config_generation %d\n"
			'subgate_requests_total{tenant="acme",code="200"} 3\n'
			'subgate_requests_total{tenant="globex",code="403"} 2\n' % gen[0]).encode()
		self.send_response(200); self.send_header("Content-Length", str(len(body)))
		self.end_headers(); self.wfile.write(body)
	def log_message(self, *a): pass
class Main(http.server.BaseHTTPRequestHandler):
	protocol_version = "HTTP/1.1"
	def do_GET(self):
		body = ('{"path":"%s","client":%d}' % (self.path, bool(self.connection.getpeercert()))).encode()
		self.send_response(200); self.send_header("Content-Length", str(len(body)))
		self.end_headers(); self.wfile.write(body)
	def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(get("tls", "certificate"), get("tls", "private_key"))
ctx.load_verify_locations(get("tls", "client_ca")); ctx.verify_mode = ssl.CERT_OPTIONAL
main = http.server.ThreadingHTTPServer((get("listen", "address"), int(get("listen", "port"))), Main)
main.socket = ctx.wrap_socket(main.socket, server_side=True)
adm = http.server.ThreadingHTTPServer(("127.0.0.1", int(get("admin", "port"))), Admin)
for s in (main, adm):
	threading.Thread(target=s.serve_forever, daemon=True).start()
print("fake subgate started", file=sys.stderr, flush=True)
if "--crash" in sys.argv:
	import os; os.kill(os.getpid(), signal.SIGSEGV)
signal.pause() if True else None
while True:
	signal.pause()
'''


@pytest.fixture
def fake_subgate(tmp_path):
	p = tmp_path / "fake-subgate"
	p.write_text(FAKE_SUBGATE)
	p.chmod(0o755)
	return str(p)


def test_gateway_fixture_lifecycle(gateway, client, fake_subgate):
	gw = gateway(binary=fake_subgate, keys=False)
	crm = gw.processors["crm"]
	assert crm.running and gw.processors["calendar"] is crm
	assert gw.running and gw.admin_get("/healthz").status == 200
	assert "fake subgate started" in gw.log_text()
	r = client.request(gw, "GET", "/crm/v1/contacts/1")
	assert (r.status, r.json()) == (200, {"path": "/crm/v1/contacts/1", "client": 1})
	assert gw.request("GET", "/x", cert=None).json()["client"] == 0
	with gw.connect() as c:
		assert c.request("GET", "/a").status == 200
		assert c.request("GET", "/b").status == 200
	raw = gw.raw(b"GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	assert raw.status == 200 and raw.responses()[0].json()["path"] == "/raw"

	assert gw.metric("subgate_config_generation") == 1
	assert gw.metric("subgate_requests_total") == 5
	assert gw.metric("subgate_requests_total", tenant="acme") == 3
	assert gw.metric("subgate_nothing") is None
	res = gw.reload()
	assert res.ok is True and res.generation == 2 and "generation 2" in res.log
	res = gw.reload(text=gw.config_path.read_text() + "# broken\n")
	assert res.ok is False and "reload failed" in res.log
	assert gw.generation() == 2

	assert gw.stop() == 0
	assert "stopping" in gw.log_text()
	assert not gw.running


def test_gateway_fixture_reports_start_failure(gateway, fake_subgate, tmp_path):
	bad = tmp_path / "bad"
	bad.write_text("#!/bin/sh\necho 'conf: line 3: nope' >&2\nexit 1\n")
	bad.chmod(0o755)
	with pytest.raises(util.HarnessError, match="line 3: nope"):
		gateway(binary=str(bad), keys=False)


def test_gateway_config_values(gateway_config, pki):
	cfg = gateway_config(keys=False)
	assert cfg.keys_dir is None and "keys" not in cfg and "audit" not in cfg
	crm, cal = cfg["integrations"]
	assert crm["upstream"] == cfg.processors["crm"].url
	assert crm["server_name"] == "crm.processor.test"
	assert cal["server_name"] == "calendar.processor.test"
	assert crm["headers"]["allow"] == ["Accept", "X-Request-Id"]
	assert [t["id"] for t in cfg["tenants"]] == ["acme", "globex"]
	assert cfg["tenants"][1]["integrations"] == ["crm"]
	ep = crm["endpoints"][0]
	assert set(ep["request"]) == {"allow"}	# no keys: no tokenize/hash/... rules
	assert cfg["listen"]["port"] != cfg["admin"]["port"]
