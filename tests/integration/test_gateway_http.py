"""test_gateway_http.py -- strict HTTP/1.1 from the service: limits, media types, framing, 1.0, Expect."""

import gzip
import json
import socket
import time

import pytest

from test_gateway_common import (Env, check_error, closed_by_peer, metric, no_new_records,
				 read_head, read_response, tls_socket, wait_metric)

MAX_HEADER_BYTES = 4096
MAX_HEADERS = 20
MAX_BODY = 4096
CLIENT_TIMEOUT_MS = 1500

BODY = json.dumps({"contact": {"first_name": "Ada", "company": "AE"}}).encode()


def _edit(cfg, env):
	cfg["limits"].update({"max_header_bytes": MAX_HEADER_BYTES, "max_headers": MAX_HEADERS,
			      "max_body_bytes": MAX_BODY, "client_timeout_ms": CLIENT_TIMEOUT_MS,
			      "handshake_timeout_ms": CLIENT_TIMEOUT_MS})


@pytest.fixture(scope="module")
def env(pki, tmp_path_factory):
	e = Env(pki, tmp_path_factory, "http", edit=_edit)
	yield e
	e.close()


@pytest.fixture
def e(request, env):
	return env.use(request)


def post_head(length=None, ctype="application/json", extra=b"", version=b"1.1", te=None):
	h = b"POST /crm/v1/contacts HTTP/%s\r\nHost: localhost\r\n" % version
	if ctype is not None:
		h += b"Content-Type: %s\r\n" % ctype.encode()
	if length is not None:
		h += b"Content-Length: %d\r\n" % length
	if te is not None:
		h += b"Transfer-Encoding: %s\r\n" % te
	return h + extra + b"\r\n"


def chunked(data, size=1000):
	out = b""
	for i in range(0, len(data), size):
		part = data[i:i + size]
		out += b"%x\r\n%s\r\n" % (len(part), part)
	return out + b"0\r\n\r\n"


def refused_and_closed(e, reply, status, code):
	resps = reply.responses()
	assert resps, "no response: %r" % bytes(reply)
	check_error(resps[0], status, code)
	assert len(resps) == 1, resps
	assert reply.closed, "connection left open after a %d" % status
	no_new_records(e.crm)


# --------------------------------------------------------------------------
# limits

def test_huge_header_431(e):
	r = e.gw.raw(b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\nX-Big: " +
		     b"a" * (MAX_HEADER_BYTES * 2) + b"\r\n\r\n")
	refused_and_closed(e, r, 431, "headers_too_large")


def test_too_many_headers_431(e):
	hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 5))
	r = e.gw.raw(b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\n" + hdrs + b"\r\n")
	refused_and_closed(e, r, 431, "headers_too_large")


def test_headers_within_limits_served(e):
	hdrs = {"X-H%d" % i: "v" * 50 for i in range(MAX_HEADERS - 8)}
	r = e.gw.request("GET", "/crm/v1/contacts/1", headers=hdrs)
	assert r.status == 200, r


def test_huge_request_line_431_or_414(e):
	r = e.gw.raw(b"GET /crm/v1/contacts/" + b"a" * (MAX_HEADER_BYTES * 2) +
		     b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resps = r.responses()
	assert resps and resps[0].status in (414, 431, 400), bytes(r)[:300]
	assert r.closed
	no_new_records(e.crm)


def test_big_content_length_413(e):
	# Refused from the head alone: the body is never sent.
	r = e.gw.raw(post_head(length=MAX_BODY * 100), timeout=3)
	refused_and_closed(e, r, 413, "payload_too_large")


def test_big_chunked_body_413(e):
	doc = json.dumps({"contact": {"first_name": "x" * (MAX_BODY + 500)}}).encode()
	r = e.gw.raw(post_head(te=b"chunked") + chunked(doc))
	refused_and_closed(e, r, 413, "payload_too_large")


def test_body_at_limit_served(e):
	doc = {"contact": {"first_name": "x"}, "pad": "p" * (MAX_BODY - 60)}
	raw = json.dumps(doc).encode()
	assert len(raw) <= MAX_BODY
	r = e.gw.request("POST", "/crm/v1/contacts", body=raw, headers={"Content-Type": "application/json"})
	assert r.status == 200, r
	assert e.crm.wait_records(1)[0]["json"] == {"contact": {"first_name": "x"}}


# --------------------------------------------------------------------------
# media types

@pytest.mark.parametrize("headers", [
	{"Content-Type": "text/plain"},
	{"Content-Type": "application/xml"},
	{"Content-Type": "application/jsonx"},
	{"Content-Type": "application/json; charset=latin1"},
	{"Content-Type": "multipart/form-data; boundary=x"},
	{},
])
def test_unsupported_media_type_415(e, headers):
	r = e.gw.request("POST", "/crm/v1/contacts", body=BODY, headers=headers)
	check_error(r, 415, "unsupported_media_type")
	no_new_records(e.crm)


@pytest.mark.parametrize("enc", ["gzip", "deflate", "identity"])
def test_content_encoding_415(e, enc):
	body = gzip.compress(BODY) if enc == "gzip" else BODY
	r = e.gw.request("POST", "/crm/v1/contacts", body=body,
			 headers={"Content-Type": "application/json", "Content-Encoding": enc})
	check_error(r, 415, "unsupported_media_type")
	no_new_records(e.crm)


@pytest.mark.parametrize("ctype", ["application/json", "Application/JSON",
				   "application/json; charset=utf-8", "application/json;charset=UTF-8"])
def test_json_media_types_accepted(e, ctype):
	r = e.gw.request("POST", "/crm/v1/contacts", body=BODY, headers={"Content-Type": ctype})
	assert r.status == 200, r
	rec = e.crm.wait_records(1)[0]
	assert [v for k, v in rec["headers"] if k.lower() == "content-type"] == ["application/json"]


def test_body_on_endpoint_without_request_block(e):
	r = e.gw.request("GET", "/crm/v1/contacts/1", json={"contact": {"first_name": "smuggled"}})
	check_error(r, 400, "bad_request")
	no_new_records(e.crm)


def test_chunked_body_forwarded_with_length(e):
	r = e.gw.raw(post_head(te=b"chunked", extra=b"Connection: close\r\n") + chunked(BODY, 7))
	resps = r.responses()
	assert resps and resps[0].status == 200, bytes(r)
	rec = e.crm.wait_records(1)[0]
	assert rec["chunked"] is False
	assert rec["json"] == json.loads(BODY)
	assert [v for k, v in rec["headers"] if k.lower() == "content-length"] == [str(len(rec["body"]))]


# --------------------------------------------------------------------------
# framing

FRAMING = {
	"cl+te": post_head(length=len(BODY), te=b"chunked") + BODY,
	"te+cl": post_head(te=b"chunked", extra=b"Content-Length: %d\r\n" % len(BODY)) + chunked(BODY),
	"duplicate cl": post_head(length=len(BODY), extra=b"Content-Length: %d\r\n" % len(BODY)) + BODY,
	"conflicting cl": post_head(length=len(BODY), extra=b"Content-Length: 3\r\n") + BODY,
	"cl list": post_head(extra=b"Content-Length: %d, %d\r\n" % (len(BODY), len(BODY))) + BODY,
	"cl sign": post_head(extra=b"Content-Length: +%d\r\n" % len(BODY)) + BODY,
	"cl hex": post_head(extra=b"Content-Length: 0x%x\r\n" % len(BODY)) + BODY,
	"te gzip": post_head(te=b"gzip") + BODY,
	"te gzip,chunked": post_head(te=b"gzip, chunked") + chunked(BODY),
	"te chunked,chunked": post_head(te=b"chunked, chunked") + chunked(BODY),
	"te identity": post_head(te=b"identity") + BODY,
	"chunk size 0x": post_head(te=b"chunked") + b"0x10\r\n" + BODY[:16] + b"\r\n0\r\n\r\n",
	"chunk size junk": post_head(te=b"chunked") + b"zz\r\nab\r\n0\r\n\r\n",
	"obs-fold": b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n",
	"obs-fold tab": b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n\tb\r\n\r\n",
	"bare lf": b"GET /crm/v1/contacts/1 HTTP/1.1\nHost: localhost\n\n",
	"bare lf in headers": b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n",
	"bare cr": b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n",
	"nul in header": b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n",
	"ctl in header": b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\nX-A: a\x01b\r\n\r\n",
	"missing host": b"GET /crm/v1/contacts/1 HTTP/1.1\r\nAccept: */*\r\n\r\n",
	"duplicate host": b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n",
	"space before colon": b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost : localhost\r\n\r\n",
	"header without colon": b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\nX-A\r\n\r\n",
	"leading space header": b"GET /crm/v1/contacts/1 HTTP/1.1\r\n Host: localhost\r\n\r\n",
	"two spaces in request line": b"GET  /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
	"lower-case version": b"GET /crm/v1/contacts/1 http/1.1\r\nHost: localhost\r\n\r\n",
	"absent version": b"GET /crm/v1/contacts/1\r\nHost: localhost\r\n\r\n",
	"control in target": b"GET /crm/v1/contacts/1\x7f HTTP/1.1\r\nHost: localhost\r\n\r\n",
}


@pytest.mark.parametrize("name", list(FRAMING))
def test_ambiguous_framing_400_and_closed(e, name):
	r = e.gw.raw(FRAMING[name], timeout=3)
	refused_and_closed(e, r, 400, "bad_request")


def test_nothing_after_a_400_is_served(e):
	r = e.gw.raw(FRAMING["obs-fold"] + b"GET /crm/v1/contacts/2 HTTP/1.1\r\nHost: localhost\r\n\r\n",
		     timeout=3)
	refused_and_closed(e, r, 400, "bad_request")


@pytest.mark.parametrize("method,path,status", [
	("POST", "/nothing/v1/x", 404),
	("POST", "/crm/v1/other", 403),
	("POST", "/calendar/v3/events", 403),
])
def test_refused_request_body_never_parsed_as_a_request(e, method, path, status):
	# The refused request's body holds a complete request: it must be
	# discarded (or the connection closed), never served.
	smuggled = b"GET /crm/v1/contacts/666 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
	head = (b"%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
		b"Content-Length: %d\r\n\r\n" % (method.encode(), path.encode(), len(smuggled)))
	cert = "tenant-globex" if path.startswith("/calendar") else "tenant-acme"
	r = e.gw.raw(head + smuggled, cert=cert, timeout=2)
	resps = r.responses()
	assert resps and resps[0].status == status, bytes(r)
	assert [x.status for x in resps] == [status], "smuggled request answered: %r" % bytes(r)
	no_new_records(e.crm, settle=0.3)


def test_pipelined_requests_answered_in_order(e):
	data = (b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\n\r\n" +
		post_head(length=len(BODY)) + BODY +
		b"GET /crm/v1/contacts/3 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	r = e.gw.raw(data)
	resps = r.responses()
	assert [x.status for x in resps] == [200, 200, 200], bytes(r)
	assert [json.loads(x.body)["path"] for x in resps] == ["/v1/contacts/1", "/v1/contacts",
							     "/v1/contacts/3"]
	assert r.closed
	assert [x["target"] for x in e.crm.wait_records(3)] == ["/v1/contacts/1", "/v1/contacts",
								"/v1/contacts/3"]


# --------------------------------------------------------------------------
# HTTP/1.0 and Expect

def test_http10_served_and_closed(e):
	r = e.gw.raw(b"GET /crm/v1/contacts/10 HTTP/1.0\r\nHost: localhost\r\n\r\n", timeout=3)
	resps = r.responses()
	assert resps and resps[0].status == 200, bytes(r)
	assert json.loads(resps[0].body)["path"] == "/v1/contacts/10"
	assert resps[0].header("Transfer-Encoding") is None
	assert r.closed, "HTTP/1.0 without keep-alive must be closed after the response"
	assert e.crm.wait_records(1)[0]["version"] == "HTTP/1.1"


def test_http10_post_with_length(e):
	r = e.gw.raw(post_head(length=len(BODY), version=b"1.0") + BODY, timeout=3)
	resps = r.responses()
	assert resps and resps[0].status == 200, bytes(r)
	assert e.crm.wait_records(1)[0]["json"] == json.loads(BODY)
	assert r.closed


def test_http10_keep_alive_when_asked(e):
	with tls_socket(e.gw) as s:
		s.sendall(b"GET /crm/v1/contacts/1 HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
		st, hdrs, body = read_response(s)
		assert st == 200
		assert hdrs.get("connection", "").lower() == "keep-alive"
		s.sendall(b"GET /crm/v1/contacts/2 HTTP/1.0\r\nHost: localhost\r\n\r\n")
		st, hdrs, body = read_response(s)
		assert st == 200 and json.loads(body)["path"] == "/v1/contacts/2"
		assert closed_by_peer(s)


def test_http10_chunked_refused(e):
	r = e.gw.raw(post_head(te=b"chunked", version=b"1.0") + chunked(BODY), timeout=3)
	refused_and_closed(e, r, 400, "bad_request")


def test_expect_100_continue(e):
	with tls_socket(e.gw) as s:
		s.sendall(post_head(length=len(BODY), extra=b"Expect: 100-continue\r\n"))
		st, hdrs, rest = read_head(s)
		assert st == 100, (st, hdrs)
		assert e.crm.records() == []
		s.sendall(BODY)
		st, hdrs, body = read_response(s, rest)
		assert st == 200, body
	assert e.crm.wait_records(1)[0]["json"] == json.loads(BODY)
	assert all(k.lower() != "expect" for k, _ in e.crm.records()[0]["headers"])


def test_expect_100_continue_refused_without_continue(e):
	with tls_socket(e.gw) as s:
		s.sendall(post_head(length=MAX_BODY * 10, extra=b"Expect: 100-continue\r\n"))
		st, hdrs, rest = read_head(s)
		assert st == 413, (st, hdrs)
	no_new_records(e.crm)


def test_expect_100_continue_unlisted_endpoint(e):
	with tls_socket(e.gw) as s:
		s.sendall(b"POST /crm/v1/other HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
			  b"Content-Length: 10\r\nExpect: 100-continue\r\n\r\n")
		st, hdrs, rest = read_head(s)
		assert st == 403, (st, hdrs)
	no_new_records(e.crm)


# --------------------------------------------------------------------------
# every wait is bounded

def _closed_in_time(sock):
	t0 = time.monotonic()
	assert closed_by_peer(sock, timeout=CLIENT_TIMEOUT_MS / 1000.0 + 3), "not closed"
	took = time.monotonic() - t0
	assert took >= CLIENT_TIMEOUT_MS / 1000.0 * 0.8, took
	return took


def test_slow_request_head_times_out(e):
	with tls_socket(e.gw) as s:
		s.sendall(b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\n")
		_closed_in_time(s)
	no_new_records(e.crm)


def test_slow_request_body_times_out(e):
	with tls_socket(e.gw) as s:
		s.sendall(post_head(length=len(BODY)) + BODY[:10])
		_closed_in_time(s)
	no_new_records(e.crm)


def test_idle_keepalive_connection_closed(e):
	with tls_socket(e.gw) as s:
		s.sendall(b"GET /crm/v1/contacts/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
		st, _, _ = read_response(s)
		assert st == 200
		_closed_in_time(s)


def test_handshake_timeout(e):
	before = metric(e.gw, "subgate_tls_handshake_failures_total", reason="timeout")
	with socket.create_connection((e.gw.host, e.gw.port), timeout=5) as s:
		s.sendall(b"\x16\x03\x01")	# a TLS record header, then nothing
		_closed_in_time(s)
	wait_metric(e.gw, "subgate_tls_handshake_failures_total", before + 1, reason="timeout")
