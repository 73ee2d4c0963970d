"""test_gateway_tls.py -- inbound mTLS: who gets in, who is refused, and that a refusal forwards nothing."""

import ssl

import pytest

import util
from test_gateway_common import Env, check_error, metric, no_new_records, tls_refused, wait_metric


def _edit(cfg, env):
	# A tenant reached through a DNS SAN identity and one through a CN
	# (client-dns, client-cn); the CN is read from the certificate.
	cn = util.run(["openssl", "x509", "-in", env.pki.crt("client-cn"), "-noout", "-subject",
		       "-nameopt", "multiline"]).stdout
	cn = [ln.split("=", 1)[1].strip() for ln in cn.splitlines() if "commonName" in ln][0]
	env.client_cn = cn
	cfg["tenants"].append({"id": "dnsco", "clients": ["svc.acme.test"], "integrations": ["crm"]})
	cfg["tenants"].append({"id": "cnco", "clients": [cn], "integrations": ["crm"]})


@pytest.fixture(scope="module")
def env(pki, tmp_path_factory):
	e = Env(pki, tmp_path_factory, "tls", edit=_edit)
	yield e
	e.close()


@pytest.fixture
def e(request, env):
	return env.use(request)


def test_tenant_certificate_served(e):
	r = e.gw.request("GET", "/crm/v1/contacts/7")
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[-1]
	assert rec["path"] == "/v1/contacts/7"
	# The gateway presents its integration client certificate upstream.
	assert ["DNS", "gateway-client.subgate.test"] in rec["client"]["san"]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_versions_accepted(e, version):
	with e.gw.connect(min_version=version, max_version=version) as c:
		assert c.sock.version() == "TLSv%s" % version
		r = c.request("GET", "/crm/v1/contacts/1")
	assert r.status == 200, r


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls11_refused(e):
	ctx = e.gw.context()
	before = metric(e.gw, "subgate_tls_handshake_failures_total")
	try:
		ctx.minimum_version = ssl.TLSVersion.TLSv1
		ctx.maximum_version = ssl.TLSVersion.TLSv1_1
		ctx.set_ciphers("ALL:@SECLEVEL=0")
	except (ValueError, ssl.SSLError) as ex:
		pytest.skip("this Python/OpenSSL cannot offer TLS 1.1: %s" % ex)
	with pytest.raises(util.TLS_REFUSED):
		util.Conn(e.gw.host, e.gw.port, ctx, util.GATEWAY_NAME, 5).request("GET", "/crm/v1/contacts/1")
	no_new_records(e.crm)
	# The gateway saw the TLS 1.1 hello and refused it (not the client
	# refusing to offer it).
	wait_metric(e.gw, "subgate_tls_handshake_failures_total", before + 1)


def test_non_aead_suites_refused(e):
	# TLS 1.2 with CBC (non-AEAD) suites only: no shared cipher.
	before = metric(e.gw, "subgate_tls_handshake_failures_total")
	cbc = ("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:"
	       "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:AES128-SHA:AES256-SHA:AES128-SHA256")
	with pytest.raises(util.TLS_REFUSED):
		with e.gw.connect(max_version="1.2", ciphers=cbc, timeout=5) as c:
			c.request("GET", "/crm/v1/contacts/1")
	no_new_records(e.crm)
	wait_metric(e.gw, "subgate_tls_handshake_failures_total", before + 1)


def test_negotiated_suite_is_aead(e):
	with e.gw.connect(max_version="1.2") as c:
		name, version, bits = c.sock.cipher()
		assert c.request("GET", "/crm/v1/contacts/1").status == 200
	assert version == "TLSv1.2"
	assert "GCM" in name or "CHACHA20" in name or "CCM" in name, name


@pytest.mark.parametrize("cert,reason", [
	(None, "no_certificate"),
	("client-otherca", "untrusted"),
	("client-expired", "expired"),
	("client-revoked", "revoked"),
])
def test_handshake_refusals(e, cert, reason):
	before = metric(e.gw, "subgate_tls_handshake_failures_total", reason=reason)
	tls_refused(e.gw, cert)
	no_new_records(e.crm)
	wait_metric(e.gw, "subgate_tls_handshake_failures_total", before + 1, reason=reason)
	# A refused handshake never reaches the request log.
	assert "msg=request" not in e.log()


def test_self_signed_client_with_tenant_uri_refused(e, tmp_path):
	# A certificate claiming acme's URI but issued by a CA the gateway does not trust.
	crt, key = e.pki.issue("fake-acme", tmp_path, san="URI:" + util.ACME_URI, ca="other-ca")
	tls_refused(e.gw, (crt, key))
	no_new_records(e.crm)


def test_unknown_identity_403(e):
	r = e.gw.request("GET", "/crm/v1/contacts/1", cert="tenant-unknown")
	err = check_error(r, 403, "client_not_allowed")
	assert util.UNKNOWN_URI not in err["message"]
	no_new_records(e.crm)


def test_unknown_identity_403_on_every_path(e):
	# The identity is decided before routing: even an unknown prefix is 403.
	r = e.gw.request("GET", "/nowhere", cert="tenant-unknown")
	check_error(r, 403, "client_not_allowed")
	no_new_records(e.crm)


def test_revoked_uri_of_known_tenant_still_refused(e):
	# client-revoked carries acme's URI; the CRL wins over the tenant mapping.
	tls_refused(e.gw, "client-revoked", path="/calendar/v3/events")
	no_new_records(e.crm)


def test_dns_san_identity(e):
	r = e.gw.request("GET", "/crm/v1/contacts/1", cert="client-dns")
	assert r.status == 200, r
	assert len(e.crm.wait_records(1)) == 1
	util.wait_until(lambda: "tenant=dnsco" in e.log(), timeout=5.0, what="request line")


def test_cn_identity(e):
	r = e.gw.request("GET", "/crm/v1/contacts/1", cert="client-cn")
	assert r.status == 200, r
	assert len(e.crm.wait_records(1)) == 1
	util.wait_until(lambda: "tenant=cnco" in e.log(), timeout=5.0, what="request line")


def test_no_session_resumption(e):
	# Identity is verified on every connection (invariant 6): a session
	# from an earlier connection is not resumed.
	import socket
	ctx = e.gw.context("tenant-acme", max_version="1.2")
	for _ in range(2):
		with socket.create_connection((e.gw.host, e.gw.port), timeout=5) as raw:
			with ctx.wrap_socket(raw, server_hostname=util.GATEWAY_NAME) as s:
				s.sendall(b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: x\r\n\r\n")
				s.recv(100)
				sess = s.session
	with socket.create_connection((e.gw.host, e.gw.port), timeout=5) as raw:
		with ctx.wrap_socket(raw, server_hostname=util.GATEWAY_NAME, session=sess) as s:
			assert not s.session_reused
