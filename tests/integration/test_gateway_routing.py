"""test_gateway_routing.py -- integration prefixes, tenant grants, endpoint allowlist, path canonicalisation."""

import re
import urllib.parse

import pytest

from test_gateway_common import CONTACT, Env, check_error, header_values, no_new_records


@pytest.fixture(scope="module")
def env(pki, tmp_path_factory):
	e = Env(pki, tmp_path_factory, "routing", procs={"crm": {}, "calendar": {}})
	yield e
	e.close()


@pytest.fixture
def e(request, env):
	return env.use(request)


UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def assert_canonical(path):
	"""Every escape upper-case and for a character that needs one."""
	for m in re.finditer(r"%(..)", path):
		h = m.group(1)
		assert re.match(r"^[0-9A-F]{2}$", h), "non-canonical escape in %r" % path
		assert chr(int(h, 16)) not in UNRESERVED, "escaped unreserved char in %r" % path


# --------------------------------------------------------------------------
# what is served

def test_get_routed_to_crm(e):
	r = e.gw.request("GET", "/crm/v1/contacts/42")
	assert r.status == 200, r
	assert r.json()["path"] == "/v1/contacts/42"
	rec = e.crm.wait_records(1)[0]
	assert rec["method"] == "GET" and rec["target"] == "/v1/contacts/42"
	assert rec["sni"] == "crm.processor.test"
	assert header_values(rec, "Host") == ["crm.processor.test"]
	assert e.calendar.records() == []


def test_post_routed_to_calendar(e):
	r = e.gw.request("POST", "/calendar/v3/events", json={"summary": "standup"})
	assert r.status == 200, r
	rec = e.calendar.wait_records(1)[0]
	assert rec["method"] == "POST" and rec["target"] == "/v3/events"
	assert rec["sni"] == "calendar.processor.test"
	assert header_values(rec, "Host") == ["calendar.processor.test"]
	assert rec["json"] == {"summary": "standup"}
	assert e.crm.records() == []


def test_globex_uses_its_integration(e):
	r = e.gw.request("POST", "/crm/v1/contacts", json=CONTACT, cert="tenant-globex")
	assert r.status == 200, r
	assert e.crm.wait_records(1)[0]["target"] == "/v1/contacts"


@pytest.mark.parametrize("segment,decoded", [
	("abc%20def", "abc def"),
	("%C3%A9t%C3%A9", "\u00e9t\u00e9"),
	("a:b@c", "a:b@c"),
	("a+b", "a+b"),
	("x~y_z-1.2", "x~y_z-1.2"),
])
def test_path_param_reencoded_canonically(e, segment, decoded):
	r = e.gw.request("GET", "/crm/v1/contacts/" + segment)
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[0]
	assert rec["path"].startswith("/v1/contacts/")
	sent = rec["path"][len("/v1/contacts/"):]
	assert "/" not in sent
	assert urllib.parse.unquote(sent, errors="strict") == decoded
	assert_canonical(sent)


# --------------------------------------------------------------------------
# refusals

def test_tenant_without_integration_403(e):
	r = e.gw.request("POST", "/calendar/v3/events", json={"summary": "x"}, cert="tenant-globex")
	check_error(r, 403, "integration_not_allowed")
	no_new_records(e.calendar)
	no_new_records(e.crm)


@pytest.mark.parametrize("method,path", [
	("DELETE", "/crm/v1/contacts/1"),
	("GET", "/crm/v1/contacts"),
	("GET", "/crm/v1/contacts/1/notes"),
	("POST", "/crm/v1/contacts/1"),
	("PUT", "/crm/v1/contacts"),
	("GET", "/crm/v1/secret"),
	("GET", "/crm"),
	("GET", "/crm/"),
	("GET", "/calendar/v3/events"),
	("HEAD", "/crm/v1/contacts"),
])
def test_unlisted_endpoint_403(e, method, path):
	r = e.gw.request(method, path)
	if method == "HEAD":
		assert r.status == 403 and r.body == b"", r
		assert r.header("X-Request-Id")
	elif path == "/crm/":
		# An empty last segment: refused either as non-canonical or unlisted.
		assert r.status in (400, 403), r
		check_error(r, r.status, "bad_request" if r.status == 400 else "endpoint_not_allowed")
	else:
		check_error(r, 403, "endpoint_not_allowed")
	no_new_records(e.crm)
	no_new_records(e.calendar, settle=0)


@pytest.mark.parametrize("path", ["/nothing/v1/contacts", "/crmx/v1/contacts", "/", "/cr",
				  "/v1/contacts/1", "/calendarx/v3/events"])
def test_unknown_prefix_404(e, path):
	r = e.gw.request("GET", path)
	check_error(r, 404, "no_such_integration")
	no_new_records(e.crm)
	no_new_records(e.calendar, settle=0)


def test_unknown_prefix_404_for_globex(e):
	r = e.gw.request("POST", "/billing/v1/invoices", json={}, cert="tenant-globex")
	check_error(r, 404, "no_such_integration")
	no_new_records(e.crm)


NON_CANONICAL = [
	"/crm/v1/../v1/contacts/1",		# dot segment
	"/crm/v1/./contacts/1",
	"/crm/v1/contacts/..",
	"/crm/v1/contacts/.",
	"/crm/v1/contacts/1/..",
	"/crm/v1/contacts/%2e%2e",		# encoded dot segment
	"/crm/v1/contacts/%2E%2E",
	"/crm/v1/contacts/%2e",
	"/crm/v1/contacts/a%2Fb",		# encoded slash
	"/crm/v1/contacts/a%2fb",
	"/crm/v1%2Fcontacts/1",
	"/crm/v1/contacts/a%5Cb",		# encoded backslash
	"/crm/v1/contacts/a%5cb",
	"/crm/v1/contacts/a\\b",		# raw backslash
	"/crm/v1/contacts/a%00b",		# encoded NUL
	"/crm/v1/contacts/%c3%a9",		# lower-case escape
	"/crm/v1/contacts/%C3%a9",
	"/crm/v1/contacts/%41bc",		# escaped unreserved chars
	"/crm/v1/contacts/%7E",
	"/crm/v1/contacts/a%2Db",
	"/crm/v1/contacts/%5F",
	"/crm/v1/contact%73/1",
	"/crm//v1/contacts/1",			# empty segments
	"//crm/v1/contacts/1",
	"/crm/v1//contacts/1",
	"/crm/v1/contacts//1",
	"/crm/v1/contacts/a%zz",		# malformed escapes
	"/crm/v1/contacts/a%2",
	"/crm/v1/contacts/a%",
	"/crm/v1/contacts/%FF",			# not UTF-8 once decoded
	"/crm/v1/contacts/%C0%AF",		# overlong UTF-8 for '/'
	"/%63rm/v1/contacts/1",			# escaped prefix
	"crm/v1/contacts/1",			# not origin-form
]


@pytest.mark.parametrize("path", NON_CANONICAL)
def test_non_canonical_path_400(e, path):
	r = e.gw.raw(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path.encode())
	resps = r.responses()
	assert resps, "no response to %r: %r" % (path, bytes(r))
	check_error(resps[0], 400, "bad_request")
	assert path.encode() not in r, "the refusal echoes the path"
	no_new_records(e.crm)


def test_non_canonical_path_400_with_body(e):
	r = e.gw.request("POST", "/crm/v1/./contacts", json=CONTACT)
	check_error(r, 400, "bad_request")
	no_new_records(e.crm)


def test_refusal_decided_before_upstream_even_for_calendar(e):
	r = e.gw.request("POST", "/calendar/v3/../v3/events", json={"summary": "x"})
	check_error(r, 400, "bad_request")
	no_new_records(e.calendar)
