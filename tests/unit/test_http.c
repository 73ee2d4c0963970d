/* test_http.c -- table-driven tests of the strict HTTP/1.1 parser */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

#define IN(s)		.in = (s), .len = sizeof(s) - 1
#define MAXH		16

static const struct http_limits lim = { 1024, MAXH };

/* One request head and what the parser must make of it. */
struct req_vec {
	const char		*name;
	const char		*in;
	size_t			 len;
	int			 result;
	int			 status;	/* on HTTP_ERROR */
	enum http_framing	 framing;
	uint64_t		 cl;
	int			 keep_alive;
	const char		*host;		/* NULL: no Host */
	int			 expect;
	const char		*why;		/* expected in err, if set */
};

#define OK(...)		.result = HTTP_DONE, __VA_ARGS__
#define BAD(st, ...)	.result = HTTP_ERROR, .status = (st), __VA_ARGS__

static const struct req_vec req_vecs[] = {
	/* valid */
	{ "simple GET", IN("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
	  OK(.framing = HTTP_BODY_NONE, .keep_alive = 1, .host = "a") },
	{ "POST with CL and body", IN("POST /v1/contacts HTTP/1.1\r\n"
	  "Host: api.example\r\nContent-Length: 5\r\n\r\nhello"),
	  OK(.framing = HTTP_BODY_LENGTH, .cl = 5, .keep_alive = 1,
	  .host = "api.example") },
	{ "POST chunked", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
	  OK(.framing = HTTP_BODY_CHUNKED, .keep_alive = 1, .host = "a") },
	{ "TE Chunked mixed case", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "transfer-encoding: ChUnKeD\r\n\r\n"),
	  OK(.framing = HTTP_BODY_CHUNKED, .keep_alive = 1, .host = "a") },
	{ "TE chunked trailing OWS", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: chunked  \r\n\r\n"),
	  OK(.framing = HTTP_BODY_CHUNKED, .keep_alive = 1, .host = "a") },
	{ "TE chunked extra leading OWS", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding:   chunked\r\n\r\n"),
	  OK(.framing = HTTP_BODY_CHUNKED, .keep_alive = 1, .host = "a") },
	{ "TE chunked HTAB OWS", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding:\tchunked\t\r\n\r\n"),
	  OK(.framing = HTTP_BODY_CHUNKED, .keep_alive = 1, .host = "a") },
	{ "HTTP/1.0 without Host", IN("GET /x HTTP/1.0\r\n\r\n"),
	  OK(.framing = HTTP_BODY_NONE, .keep_alive = 0) },
	{ "HTTP/1.0 keep-alive", IN("GET /x HTTP/1.0\r\nHost: h\r\n"
	  "Connection: Keep-Alive\r\n\r\n"),
	  OK(.keep_alive = 1, .host = "h") },
	{ "HTTP/1.0 keep-alive and close", IN("GET /x HTTP/1.0\r\n"
	  "Connection: keep-alive, close\r\n\r\n"), OK(.keep_alive = 0) },
	{ "HTTP/1.1 Connection close", IN("GET / HTTP/1.1\r\nHost: a\r\n"
	  "Connection: close\r\n\r\n"), OK(.keep_alive = 0, .host = "a") },
	{ "Connection list with close", IN("GET / HTTP/1.1\r\nHost: a\r\n"
	  "Connection: keep-alive ,  Close \r\n\r\n"),
	  OK(.keep_alive = 0, .host = "a") },
	{ "Connection: closed is not close", IN("GET / HTTP/1.1\r\n"
	  "Host: a\r\nConnection: closed\r\n\r\n"),
	  OK(.keep_alive = 1, .host = "a") },
	{ "Expect 100-continue", IN("PUT /f HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 3\r\nExpect: 100-Continue\r\n\r\n"),
	  OK(.framing = HTTP_BODY_LENGTH, .cl = 3, .keep_alive = 1,
	  .host = "a", .expect = 1) },
	{ "Expect ignored in HTTP/1.0", IN("PUT /f HTTP/1.0\r\n"
	  "Content-Length: 3\r\nExpect: 100-continue\r\n\r\n"),
	  OK(.framing = HTTP_BODY_LENGTH, .cl = 3, .expect = 0) },
	{ "CL 0", IN("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
	  OK(.framing = HTTP_BODY_LENGTH, .cl = 0, .keep_alive = 1,
	  .host = "a") },
	{ "CL leading zeros", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 007\r\n\r\n"),
	  OK(.framing = HTTP_BODY_LENGTH, .cl = 7, .keep_alive = 1,
	  .host = "a") },
	{ "CL 18 digits", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 999999999999999999\r\n\r\n"),
	  OK(.framing = HTTP_BODY_LENGTH, .cl = 999999999999999999ULL,
	  .keep_alive = 1, .host = "a") },
	{ "Host with port", IN("GET / HTTP/1.1\r\nHost: example.com:8443\r\n"
	  "\r\n"), OK(.keep_alive = 1, .host = "example.com:8443") },
	{ "Host IPv6 literal", IN("GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"),
	  OK(.keep_alive = 1, .host = "[::1]:443") },
	{ "Host trimmed", IN("GET / HTTP/1.1\r\nHost:\t a.b \t\r\n\r\n"),
	  OK(.keep_alive = 1, .host = "a.b") },
	{ "obs-text and HTAB in value", IN("GET / HTTP/1.1\r\nHost: a\r\n"
	  "X-Name: caf\xc3\xa9\tau lait\r\n\r\n"),
	  OK(.keep_alive = 1, .host = "a") },
	{ "empty value", IN("GET / HTTP/1.1\r\nX-Empty:\r\nHost: a\r\n"
	  "X-Blank:   \r\n\r\n"), OK(.keep_alive = 1, .host = "a") },
	{ "query in target", IN("GET /a/b?x=1&y=%20z HTTP/1.1\r\nHost: a\r\n"
	  "\r\n"), OK(.keep_alive = 1, .host = "a") },
	{ "extension method", IN("M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n"),
	  OK(.keep_alive = 1, .host = "a") },
	{ "many headers within limit", IN("GET / HTTP/1.1\r\nHost: a\r\n"
	  "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\n"
	  "I: 9\r\nJ: 10\r\nK: 11\r\nL: 12\r\nM: 13\r\nN: 14\r\nO: 15\r\n\r\n"),
	  OK(.keep_alive = 1, .host = "a") },

	/* request smuggling classics and other framing attacks */
	{ "CL and TE", IN("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n"), BAD(400, .why = "both") },
	{ "TE and CL", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"), BAD(400) },
	{ "TE continued by obs-fold", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: gzip\r\n chunked\r\n\r\n"), BAD(400,
	  .why = "obs-fold") },
	{ "TE line starting with SP", IN("POST / HTTP/1.1\r\n"
	  " Transfer-Encoding: chunked\r\nHost: a\r\n\r\n"), BAD(400,
	  .why = "obs-fold") },
	{ "TE xchunked", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: xchunked\r\n\r\n"), BAD(400) },
	{ "TE space before colon", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding : chunked\r\n\r\n"), BAD(400) },
	{ "TE in HTTP/1.0", IN("POST / HTTP/1.0\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n"), BAD(400) },
	{ "TE gzip, chunked", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: gzip, chunked\r\n\r\n"), BAD(400) },
	{ "TE chunked, chunked", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: chunked, chunked\r\n\r\n"), BAD(400) },
	{ "TE identity", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: identity\r\n\r\n"), BAD(400) },
	{ "TE unknown coding", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: foo\r\n\r\n"), BAD(400) },
	{ "TE with parameter", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: chunked;q=1\r\n\r\n"), BAD(400) },
	{ "two TE headers", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
	  BAD(400) },
	{ "TE with vertical tab", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding:\x0b" "chunked\r\n\r\n"), BAD(400) },
	{ "duplicate CL, equal", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 5\r\nContent-Length: 5\r\n\r\n"), BAD(400,
	  .why = "duplicate Content-Length") },
	{ "duplicate CL, different", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 5\r\ncontent-length: 6\r\n\r\n"), BAD(400) },
	{ "CL list", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 5, 5\r\n\r\n"), BAD(400) },
	{ "CL plus sign", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: +5\r\n\r\n"), BAD(400) },
	{ "CL negative", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: -1\r\n\r\n"), BAD(400) },
	{ "CL hex", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 0x10\r\n\r\n"), BAD(400) },
	{ "CL 19 digits", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 1000000000000000000\r\n\r\n"), BAD(400) },
	{ "CL over 2^64", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 18446744073709551617\r\n\r\n"), BAD(400) },
	{ "CL empty", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length:\r\n\r\n"), BAD(400) },
	{ "CL inner space", IN("POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 1 2\r\n\r\n"), BAD(400) },
	{ "bare LF after header", IN("GET / HTTP/1.1\r\nHost: a\n"
	  "X: y\r\n\r\n"), BAD(400, .why = "bare LF") },
	{ "bare LF after request line", IN("GET / HTTP/1.1\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "bare LF terminator", IN("GET / HTTP/1.1\r\nHost: a\r\n\n"),
	  BAD(400) },
	{ "bare CR in value", IN("GET / HTTP/1.1\r\nHost: a\r\n"
	  "X: a\rb\r\n\r\n"), BAD(400, .why = "bare CR") },
	{ "bare CR ends request line", IN("GET / HTTP/1.1\r\r\nHost: a\r\n"
	  "\r\n"), BAD(400) },
	{ "bare CR in target", IN("GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "NUL in value", IN("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"),
	  BAD(400, .why = "NUL") },
	{ "NUL in name", IN("GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n"),
	  BAD(400) },
	{ "control byte in value", IN("GET / HTTP/1.1\r\nHost: a\r\n"
	  "X: a\x01" "b\r\n\r\n"), BAD(400) },
	{ "DEL in value", IN("GET / HTTP/1.1\r\nHost: a\r\n"
	  "X: a\x7f" "b\r\n\r\n"), BAD(400) },
	{ "obs-fold", IN("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"),
	  BAD(400, .why = "obs-fold") },
	{ "space before colon", IN("GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
	  BAD(400, .why = "whitespace before colon") },
	{ "tab before colon", IN("GET / HTTP/1.1\r\nHost: a\r\nX\t: a\r\n\r\n"),
	  BAD(400) },
	{ "empty field name", IN("GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n"),
	  BAD(400) },
	{ "no colon", IN("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"),
	  BAD(400) },
	{ "bad name byte", IN("GET / HTTP/1.1\r\nHost: a\r\nX@Y: 1\r\n\r\n"),
	  BAD(400) },
	{ "missing Host", IN("GET / HTTP/1.1\r\nX: a\r\n\r\n"),
	  BAD(400, .why = "missing Host") },
	{ "duplicate Host", IN("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
	  BAD(400) },
	{ "duplicate Host, equal", IN("GET / HTTP/1.1\r\nHost: a\r\n"
	  "host: a\r\n\r\n"), BAD(400) },
	{ "duplicate Host in 1.0", IN("GET / HTTP/1.0\r\nHost: a\r\n"
	  "Host: b\r\n\r\n"), BAD(400) },
	{ "empty Host", IN("GET / HTTP/1.1\r\nHost:\r\n\r\n"), BAD(400) },
	{ "Host with space", IN("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
	  BAD(400) },
	{ "Host with userinfo", IN("GET / HTTP/1.1\r\nHost: u@evil\r\n\r\n"),
	  BAD(400) },
	{ "Host with path", IN("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
	  BAD(400) },
	{ "absolute-form", IN("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "asterisk-form", IN("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400, .why = "asterisk-form") },
	{ "authority-form", IN("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "fragment in target", IN("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "non-ASCII in target", IN("GET /caf\xc3\xa9 HTTP/1.1\r\n"
	  "Host: a\r\n\r\n"), BAD(400) },
	{ "HTTP/2.0", IN("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), BAD(505) },
	{ "HTTP/1.2", IN("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), BAD(505) },
	{ "HTTP/0.9", IN("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), BAD(505) },
	{ "lower-case version", IN("GET / http/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "version HTTP/2", IN("GET / HTTP/2\r\nHost: a\r\n\r\n"), BAD(400) },
	{ "version HTTP/1.10", IN("GET / HTTP/1.10\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "no version", IN("GET /\r\nHost: a\r\n\r\n"), BAD(400) },
	{ "no target", IN("GET HTTP/1.1\r\nHost: a\r\n\r\n"), BAD(400) },
	{ "trailing SP after version", IN("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "two SP after method", IN("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "two SP before version", IN("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "HTAB as separator", IN("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "empty method", IN(" / HTTP/1.1\r\nHost: a\r\n\r\n"), BAD(400) },
	{ "bad method byte", IN("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "leading empty line", IN("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "leading bare LF", IN("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
	  BAD(400) },
	{ "Expect other", IN("GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n"
	  "\r\n"), BAD(417) },
	{ "Expect list", IN("GET / HTTP/1.1\r\nHost: a\r\n"
	  "Expect: 100-continue, foo\r\n\r\n"), BAD(417) },
	{ "too many headers", IN("GET / HTTP/1.1\r\nHost: a\r\n"
	  "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\n"
	  "I: 9\r\nJ: 10\r\nK: 11\r\nL: 12\r\nM: 13\r\nN: 14\r\nO: 15\r\n"
	  "P: 16\r\n\r\n"), BAD(431, .why = "too many header fields") },
};

/* End of the head as an independent oracle: the first CRLFCRLF. */
static size_t
head_end(const char *s, size_t len)
{
	const char	*p = memmem(s, len, "\r\n\r\n", 4);

	assert_non_null(p);
	return (size_t)(p - s) + 4;
}

/* An error message is short, printable, and not empty. */
static void
check_err(const char *err)
{
	assert_true(strlen(err) > 0);
	for (const char *p = err; *p; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
}

static void
test_request_vectors(void **state)
{
	struct http_header	 h[MAXH];
	struct http_request	 req;
	char			 err[128];
	int			 status, r;

	(void)state;
	for (size_t i = 0; i < sizeof(req_vecs) / sizeof(req_vecs[0]); i++) {
		const struct req_vec	*v = &req_vecs[i];

		memset(&req, 0xa5, sizeof(req));
		req.headers = h;
		err[0] = '\0';
		status = -7;
		r = http_parse_request(v->in, v->len, &lim, &req, &status,
		    err, sizeof(err));
		if (r != v->result || (r == HTTP_ERROR && status != v->status))
			fail_msg("%s: result %d status %d (%s)", v->name, r,
			    status, err);
		if (r == HTTP_ERROR) {
			check_err(err);
			if (v->why != NULL && strstr(err, v->why) == NULL)
				fail_msg("%s: err \"%s\"", v->name, err);
			continue;
		}
		assert_int_equal(status, 0);
		if (req.framing != v->framing || req.keep_alive !=
		    v->keep_alive || req.expect_continue != v->expect ||
		    (v->framing == HTTP_BODY_LENGTH &&
		    req.content_length != v->cl))
			fail_msg("%s: framing %d cl %llu ka %d expect %d",
			    v->name, req.framing,
			    (unsigned long long)req.content_length,
			    req.keep_alive, req.expect_continue);
		if (v->host == NULL)
			assert_null(req.host);
		else {
			assert_int_equal(req.host_len, strlen(v->host));
			assert_memory_equal(req.host, v->host, req.host_len);
		}
		assert_int_equal(req.head_len, head_end(v->in, v->len));
		assert_ptr_equal(req.method, v->in);
		assert_ptr_equal(req.headers, h);
		assert_int_equal(req.minor, v->in[req.method_len +
		    req.target_len + 9] - '0');
	}
}

/* Every proper prefix of a valid head is "need more", never an error. */
static void
test_request_prefixes(void **state)
{
	struct http_header	 h[MAXH];
	struct http_request	 req;
	char			 err[128];
	int			 status, r;

	(void)state;
	for (size_t i = 0; i < sizeof(req_vecs) / sizeof(req_vecs[0]); i++) {
		const struct req_vec	*v = &req_vecs[i];
		size_t			 end;

		if (v->result != HTTP_DONE)
			continue;
		end = head_end(v->in, v->len);
		for (size_t n = 0; n < end; n++) {
			req.headers = h;
			r = http_parse_request(v->in, n, &lim, &req, &status,
			    err, sizeof(err));
			if (r != HTTP_AGAIN || status != 0)
				fail_msg("%s: prefix %zu: %d %d (%s)", v->name,
				    n, r, status, err);
		}
	}
}

/* Components of the simple request land where they should. */
static void
test_request_fields(void **state)
{
	static const char	 in[] = "PATCH /a/b?c=d HTTP/1.1\r\n"
	    "Host: h\r\nX-Trim: \t v  v \t\r\nX-Empty:  \r\n\r\nBODY";
	struct http_header	 h[MAXH];
	struct http_request	 req;
	const struct http_header *x;
	char			 err[128];
	int			 status;

	(void)state;
	req.headers = h;
	assert_int_equal(http_parse_request(in, sizeof(in) - 1, &lim, &req,
	    &status, err, sizeof(err)), HTTP_DONE);
	assert_int_equal(req.method_len, 5);
	assert_memory_equal(req.method, "PATCH", 5);
	assert_int_equal(req.target_len, 8);
	assert_memory_equal(req.target, "/a/b?c=d", 8);
	assert_int_equal(req.minor, 1);
	assert_int_equal(req.nheaders, 3);
	assert_int_equal(req.head_len, sizeof(in) - 1 - 4);
	x = http_header_find(h, req.nheaders, "x-TRIM");
	assert_non_null(x);
	assert_int_equal(x->name_len, 6);
	assert_int_equal(x->value_len, 4);
	assert_memory_equal(x->value, "v  v", 4);
	x = http_header_find(h, req.nheaders, "X-Empty");
	assert_non_null(x);
	assert_int_equal(x->value_len, 0);
	assert_null(http_header_find(h, req.nheaders, "X-Tri"));
	assert_null(http_header_find(h, req.nheaders, "X-Trimm"));
}

/* Build "GET / HTTP/1.1\r\nHost: a\r\n" plus padding headers to size. */
static char *
big_head(size_t total, int terminate)
{
	static const char	 start[] = "GET / HTTP/1.1\r\nHost: a\r\n";
	char			*s;
	size_t			 n, end = terminate ? 2 : 0;

	assert_true(total > sizeof(start) + 12 + end);
	s = malloc(total + 1);
	assert_non_null(s);
	memcpy(s, start, sizeof(start) - 1);
	n = sizeof(start) - 1;
	/* One long header fills the rest: "X: aaaa...\r\n". */
	memcpy(s + n, "X: ", 3);
	memset(s + n + 3, 'a', total - n - 3 - 2 - end);
	memcpy(s + total - 2 - end, "\r\n\r\n", 2 + end);
	s[total] = '\0';
	return s;
}

static void
test_request_size_limit(void **state)
{
	struct http_header	 h[MAXH];
	struct http_request	 req;
	char			 err[128], *s;
	int			 status;

	(void)state;
	/* A complete head of exactly max_header_bytes is fine. */
	s = big_head(lim.max_header_bytes, 1);
	req.headers = h;
	assert_int_equal(http_parse_request(s, lim.max_header_bytes, &lim,
	    &req, &status, err, sizeof(err)), HTTP_DONE);
	assert_int_equal(req.head_len, lim.max_header_bytes);
	free(s);

	/* One byte more: the terminator is not within the limit. */
	s = big_head(lim.max_header_bytes + 1, 1);
	assert_int_equal(http_parse_request(s, lim.max_header_bytes, &lim,
	    &req, &status, err, sizeof(err)), HTTP_AGAIN);
	assert_int_equal(http_parse_request(s, lim.max_header_bytes + 1, &lim,
	    &req, &status, err, sizeof(err)), HTTP_ERROR);
	assert_int_equal(status, 431);
	free(s);

	/* No terminator at all: AGAIN up to the limit, 431 past it. */
	s = big_head(4000, 0);
	assert_int_equal(http_parse_request(s, lim.max_header_bytes, &lim,
	    &req, &status, err, sizeof(err)), HTTP_AGAIN);
	assert_int_equal(http_parse_request(s, lim.max_header_bytes + 1, &lim,
	    &req, &status, err, sizeof(err)), HTTP_ERROR);
	assert_int_equal(status, 431);
	check_err(err);
	assert_int_equal(http_parse_request(s, 4000, &lim, &req, &status,
	    err, sizeof(err)), HTTP_ERROR);
	assert_int_equal(status, 431);
	free(s);
}

/* Error messages name the problem, never the bytes that caused it. */
static void
test_request_err_no_input(void **state)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\r\nHost: s3cr3t\r\nHost: s3cr3t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: s3cr3t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: s3cr3t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: s3cr3t\x01\r\n\r\n",
		"GET /s3cr3t\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\ns3cr3t : x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: s3cr3t\r\n\r\n",
		"s3cr3t\x01 / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / s3cr3t\r\nHost: a\r\n\r\n",
	};
	struct http_header	 h[MAXH];
	struct http_request	 req;
	char			 err[256];
	int			 status;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req.headers = h;
		err[0] = '\0';
		assert_int_equal(http_parse_request(bad[i], strlen(bad[i]),
		    &lim, &req, &status, err, sizeof(err)), HTTP_ERROR);
		check_err(err);
		assert_null(strstr(err, "s3cr3t"));
	}
	/* A tiny error buffer is truncated, not overrun. */
	memset(err, 'Z', sizeof(err));
	assert_int_equal(http_parse_request(bad[0], strlen(bad[0]), &lim,
	    &req, &status, err, 4), HTTP_ERROR);
	assert_int_equal(strlen(err), 3);
	assert_int_equal(err[4], 'Z');
}

/* One response head and what the parser must make of it. */
struct resp_vec {
	const char		*name;
	const char		*in;
	size_t			 len;
	int			 head_request;
	int			 result;
	int			 status;	/* on HTTP_DONE */
	enum http_framing	 framing;
	uint64_t		 cl;
	int			 keep_alive;
};

#define ROK(st, ...)	.result = HTTP_DONE, .status = (st), __VA_ARGS__
#define RBAD		.result = HTTP_ERROR

static const struct resp_vec resp_vecs[] = {
	{ "200 with CL", IN("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
	  0, ROK(200, .framing = HTTP_BODY_LENGTH, .cl = 2, .keep_alive = 1) },
	{ "200 chunked", IN("HTTP/1.1 200 OK\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n"),
	  0, ROK(200, .framing = HTTP_BODY_CHUNKED, .keep_alive = 1) },
	{ "close-delimited", IN("HTTP/1.1 200 OK\r\nX: y\r\n\r\n"),
	  0, ROK(200, .framing = HTTP_BODY_CLOSE, .keep_alive = 0) },
	{ "204 no body", IN("HTTP/1.1 204 No Content\r\n\r\n"),
	  0, ROK(204, .framing = HTTP_BODY_NONE, .keep_alive = 1) },
	{ "304 with CL", IN("HTTP/1.1 304 Not Modified\r\n"
	  "Content-Length: 100\r\n\r\n"),
	  0, ROK(304, .framing = HTTP_BODY_NONE, .keep_alive = 1) },
	{ "HEAD response with CL", IN("HTTP/1.1 200 OK\r\n"
	  "Content-Length: 100\r\n\r\n"),
	  1, ROK(200, .framing = HTTP_BODY_NONE, .keep_alive = 1) },
	{ "HEAD response chunked", IN("HTTP/1.1 200 OK\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n"),
	  1, ROK(200, .framing = HTTP_BODY_NONE, .keep_alive = 1) },
	{ "HTTP/1.0 with CL", IN("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n"
	  "\r\n"), 0, ROK(200, .framing = HTTP_BODY_LENGTH, .cl = 3,
	  .keep_alive = 0) },
	{ "HTTP/1.0 keep-alive", IN("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n"
	  "Connection: keep-alive\r\n\r\n"),
	  0, ROK(200, .framing = HTTP_BODY_LENGTH, .cl = 3, .keep_alive = 1) },
	{ "1.1 Connection close", IN("HTTP/1.1 404 Not Found\r\n"
	  "Connection: close\r\nContent-Length: 0\r\n\r\n"),
	  0, ROK(404, .framing = HTTP_BODY_LENGTH, .cl = 0, .keep_alive = 0) },
	{ "100 Continue", IN("HTTP/1.1 100 Continue\r\n\r\n"
	  "HTTP/1.1 200 OK\r\n"),
	  0, ROK(100, .framing = HTTP_BODY_NONE, .keep_alive = 1) },
	{ "103 Early Hints", IN("HTTP/1.1 103 Early Hints\r\n"
	  "Link: </a>; rel=preload\r\n\r\n"),
	  0, ROK(103, .framing = HTTP_BODY_NONE, .keep_alive = 1) },
	{ "empty reason", IN("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"),
	  0, ROK(200, .framing = HTTP_BODY_LENGTH, .keep_alive = 1) },
	{ "obs-text reason", IN("HTTP/1.1 500 Erreur \xe9\tinterne\r\n"
	  "Content-Length: 0\r\n\r\n"),
	  0, ROK(500, .framing = HTTP_BODY_LENGTH, .keep_alive = 1) },
	{ "599", IN("HTTP/1.1 599 x\r\nContent-Length: 1\r\n\r\n"),
	  0, ROK(599, .framing = HTTP_BODY_LENGTH, .cl = 1, .keep_alive = 1) },

	{ "no SP after code", IN("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
	  0, RBAD },
	{ "101 upgrade", IN("HTTP/1.1 101 Switching Protocols\r\n"
	  "Upgrade: websocket\r\n\r\n"), 0, RBAD },
	{ "status 600", IN("HTTP/1.1 600 x\r\n\r\n"), 0, RBAD },
	{ "status 099", IN("HTTP/1.1 099 x\r\n\r\n"), 0, RBAD },
	{ "two-digit status", IN("HTTP/1.1 20 OK\r\n\r\n"), 0, RBAD },
	{ "status with sign", IN("HTTP/1.1 +20 OK\r\n\r\n"), 0, RBAD },
	{ "CL and TE", IN("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n"), 0, RBAD },
	{ "duplicate CL", IN("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
	  "Content-Length: 3\r\n\r\n"), 0, RBAD },
	{ "TE gzip", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
	  0, RBAD },
	{ "TE gzip, chunked", IN("HTTP/1.1 200 OK\r\n"
	  "Transfer-Encoding: gzip, chunked\r\n\r\n"), 0, RBAD },
	{ "TE in 1.0 response", IN("HTTP/1.0 200 OK\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n"), 0, RBAD },
	{ "bare LF", IN("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),
	  0, RBAD },
	{ "obs-fold", IN("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), 0, RBAD },
	{ "HTTP/2", IN("HTTP/2 200 OK\r\n\r\n"), 0, RBAD },
	{ "HTTP/2.0", IN("HTTP/2.0 200 OK\r\n\r\n"), 0, RBAD },
	{ "lower-case version", IN("http/1.1 200 OK\r\n\r\n"), 0, RBAD },
	{ "304 with bad CL", IN("HTTP/1.1 304 Not Modified\r\n"
	  "Content-Length: abc\r\n\r\n"), 0, RBAD },
	{ "HEAD with duplicate CL", IN("HTTP/1.1 200 OK\r\n"
	  "Content-Length: 1\r\nContent-Length: 2\r\n\r\n"), 1, RBAD },
	{ "control byte in reason", IN("HTTP/1.1 200 O\x01K\r\n\r\n"),
	  0, RBAD },
	{ "leading empty line", IN("\r\nHTTP/1.1 200 OK\r\n\r\n"), 0, RBAD },
	{ "NUL in header", IN("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n"), 0, RBAD },
	{ "CL overflow", IN("HTTP/1.1 200 OK\r\n"
	  "Content-Length: 99999999999999999999\r\n\r\n"), 0, RBAD },
};

static void
test_response_vectors(void **state)
{
	struct http_header	 h[MAXH];
	struct http_response	 resp;
	char			 err[128];
	int			 r;

	(void)state;
	for (size_t i = 0; i < sizeof(resp_vecs) / sizeof(resp_vecs[0]); i++) {
		const struct resp_vec	*v = &resp_vecs[i];
		size_t			 end;

		memset(&resp, 0xa5, sizeof(resp));
		resp.headers = h;
		err[0] = '\0';
		r = http_parse_response(v->in, v->len, &lim, v->head_request,
		    &resp, err, sizeof(err));
		if (r != v->result)
			fail_msg("%s: result %d (%s)", v->name, r, err);
		if (r == HTTP_ERROR) {
			check_err(err);
			continue;
		}
		if (resp.status != v->status || resp.framing != v->framing ||
		    resp.keep_alive != v->keep_alive ||
		    resp.content_length != v->cl)
			fail_msg("%s: status %d framing %d cl %llu ka %d",
			    v->name, resp.status, resp.framing,
			    (unsigned long long)resp.content_length,
			    resp.keep_alive);
		end = head_end(v->in, v->len);
		assert_int_equal(resp.head_len, end);
		assert_int_equal(resp.minor, v->in[7] - '0');
		for (size_t n = 0; n < end; n++) {
			resp.headers = h;
			if (http_parse_response(v->in, n, &lim, v->head_request,
			    &resp, err, sizeof(err)) != HTTP_AGAIN)
				fail_msg("%s: prefix %zu not AGAIN", v->name,
				    n);
		}
	}
}

static void
test_response_limits(void **state)
{
	struct http_header	 h[2];
	struct http_response	 resp;
	struct http_limits	 small = { 64, 2 };
	static const char	 three[] = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n"
	    "C: 3\r\n\r\n";
	char			 big[200], err[128];

	(void)state;
	resp.headers = h;
	assert_int_equal(http_parse_response(three, sizeof(three) - 1, &small,
	    0, &resp, err, sizeof(err)), HTTP_ERROR);
	check_err(err);
	memset(big, 'a', sizeof(big));
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	assert_int_equal(http_parse_response(big, 64, &small, 0, &resp, err,
	    sizeof(err)), HTTP_AGAIN);
	assert_int_equal(http_parse_response(big, 65, &small, 0, &resp, err,
	    sizeof(err)), HTTP_ERROR);
}

/* One chunked body and what the decoder must make of it. */
struct chunk_vec {
	const char	*name;
	const char	*in;
	size_t		 len;
	int		 result;
	const char	*out;		/* on HTTP_DONE */
	size_t		 out_len;
	size_t		 consumed;	/* on HTTP_DONE: 0 means all of in */
};

#define COK(o)		.result = HTTP_DONE, .out = (o), \
			    .out_len = sizeof(o) - 1
#define CBAD		.result = HTTP_ERROR

static const struct chunk_vec chunk_vecs[] = {
	{ "one chunk", IN("5\r\nhello\r\n0\r\n\r\n"), COK("hello") },
	{ "empty body", IN("0\r\n\r\n"), COK("") },
	{ "last chunk 000", IN("000\r\n\r\n"), COK("") },
	{ "several chunks, upper hex", IN("A\r\n0123456789\r\n1\r\n!\r\n"
	  "a\r\nabcdefghij\r\n0\r\n\r\n"), COK("0123456789!abcdefghij") },
	{ "leading zeros", IN("0005\r\nhello\r\n0\r\n\r\n"), COK("hello") },
	{ "16 hex digits", IN("0000000000000005\r\nhello\r\n0\r\n\r\n"),
	  COK("hello") },
	{ "extension", IN("5;name=value\r\nhello\r\n0;last\r\n\r\n"),
	  COK("hello") },
	{ "extensions with BWS", IN("5 ; a = b ;c\t;d=\"q \\\" ;x\"\r\n"
	  "hello\r\n0\r\n\r\n"), COK("hello") },
	{ "quoted extension then BWS", IN("5;a=\"b\" ;c\r\nhello\r\n"
	  "0\r\n\r\n"), COK("hello") },
	{ "trailers", IN("5\r\nhello\r\n0\r\nX-T: 1\r\nChecksum:  abc \r\n"
	  "Empty:\r\n\r\n"), COK("hello") },
	{ "bytes after the end", IN("3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1"),
	  COK("abc"), .consumed = 13 },
	{ "binary data", IN("4\r\n\r\n\0\n\r\n0\r\n\r\n"), COK("\r\n\0\n") },

	{ "0x prefix", IN("0x5\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "plus sign", IN("+5\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "minus sign", IN("-5\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "leading space", IN(" 5\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "trailing space", IN("5 \r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "empty size", IN("\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "non-hex size", IN("g\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "17 hex digits", IN("00000000000000005\r\nhello\r\n0\r\n\r\n"),
	  CBAD },
	{ "size overflow", IN("10000000000000000\r\n"), CBAD },
	{ "bare LF after size", IN("5\nhello\r\n0\r\n\r\n"), CBAD },
	{ "bare CR after size", IN("5\rhello\r\n0\r\n\r\n"), CBAD },
	{ "data longer than size", IN("5\r\nhelloX\r\n0\r\n\r\n"), CBAD },
	{ "bare LF after data", IN("5\r\nhello\n0\r\n\r\n"), CBAD },
	{ "no name in extension", IN("5;=x\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "BWS then CRLF", IN("5;a \r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "empty extension value", IN("5;a=\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "unterminated quote", IN("5;a=\"b\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "junk after quote", IN("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "control in extension", IN("5;a\x01\r\nhello\r\n0\r\n\r\n"), CBAD },
	{ "trailer obs-fold", IN("0\r\nX: 1\r\n 2\r\n\r\n"), CBAD },
	{ "trailer space before colon", IN("0\r\nX : 1\r\n\r\n"), CBAD },
	{ "trailer without colon", IN("0\r\nX\r\n\r\n"), CBAD },
	{ "trailer empty name", IN("0\r\n: 1\r\n\r\n"), CBAD },
	{ "trailer bare LF", IN("0\r\nX: 1\n\r\n"), CBAD },
	{ "trailer NUL", IN("0\r\nX: \0\r\n\r\n"), CBAD },
	{ "final bare LF", IN("0\r\n\n"), CBAD },
	{ "trailers too large", IN("0\r\nX: 0123456789012345678901234567890123456"
	  "45678901234567890123456789\r\n\r\n"), CBAD },
};

#define CHUNK_TRAILER_MAX	64

/*
 * Feed in to a fresh decoder in pieces whose sizes come from next(); the
 * output and the result must not depend on the split.
 */
static int
chunk_feed(const struct chunk_vec *v, size_t (*next)(size_t), struct buf *out,
    size_t *used, char *err, size_t errlen)
{
	struct http_chunked	 c;
	size_t			 off = 0, n, consumed;
	int			 r = HTTP_AGAIN, too_large;

	http_chunked_init(&c, CHUNK_TRAILER_MAX);
	while (off < v->len) {
		n = next(v->len - off);
		r = http_chunked_decode(&c, v->in + off, n, &consumed, out,
		    &too_large, err, errlen);
		assert_true(consumed <= n);
		assert_int_equal(too_large, 0);
		off += consumed;
		if (r != HTTP_AGAIN)
			break;
		assert_int_equal(consumed, n);
	}
	*used = off;
	return r;
}

static size_t
split_all(size_t left)
{
	return left;
}

static size_t
split_one(size_t left)
{
	(void)left;
	return 1;
}

static size_t
split_random(size_t left)
{
	return 1 + (size_t)rand() % left;
}

static void
test_chunked_vectors(void **state)
{
	size_t		(*splits[])(size_t) = { split_all, split_one,
			    split_random };
	struct buf	 out = { 0 };
	char		 err[128];
	size_t		 used, want_used;
	int		 r;

	(void)state;
	srand(12345);
	for (size_t i = 0; i < sizeof(chunk_vecs) / sizeof(chunk_vecs[0]);
	    i++) {
		const struct chunk_vec	*v = &chunk_vecs[i];

		for (size_t s = 0; s < 3; s++) {
			for (int rep = 0; rep < (s == 2 ? 50 : 1); rep++) {
				buf_reset(&out);
				err[0] = '\0';
				r = chunk_feed(v, splits[s], &out, &used, err,
				    sizeof(err));
				if (r != v->result)
					fail_msg("%s: split %zu: result %d "
					    "(%s)", v->name, s, r, err);
				if (r == HTTP_ERROR) {
					check_err(err);
					continue;
				}
				want_used = v->consumed ? v->consumed : v->len;
				if (used != want_used)
					fail_msg("%s: consumed %zu", v->name,
					    used);
				assert_int_equal(out.len, v->out_len);
				assert_memory_equal(out.data, v->out, out.len);
			}
		}
	}
	buf_free(&out);
}

/*
 * A generated body: random chunk sizes (some with extensions), random data,
 * trailers; decoded whole, a byte at a time and in random splits.
 */
static void
test_chunked_generated(void **state)
{
	struct buf	 enc = { 0 }, plain = { 0 }, out = { 0 };
	struct chunk_vec v = { "generated", NULL, 0, HTTP_DONE, NULL, 0, 0 };
	size_t		 n, used;
	char		 data[700], err[128];

	(void)state;
	srand(777);
	for (int i = 0; i < 40; i++) {
		n = (size_t)rand() % sizeof(data) + 1;
		for (size_t j = 0; j < n; j++)
			data[j] = (char)rand();
		assert_int_equal(buf_printf(&enc, i % 3 ? "%zx" : "%zX", n), 0);
		if (i % 4 == 0)
			assert_int_equal(buf_append_str(&enc,
			    ";ext=\"v\\\"al\"; x = y"), 0);
		assert_int_equal(buf_append_str(&enc, "\r\n"), 0);
		assert_int_equal(buf_append(&enc, data, n), 0);
		assert_int_equal(buf_append_str(&enc, "\r\n"), 0);
		assert_int_equal(buf_append(&plain, data, n), 0);
	}
	assert_int_equal(buf_append_str(&enc, "0\r\nA: b\r\n\r\n"), 0);
	v.in = enc.data;
	v.len = enc.len;

	assert_int_equal(chunk_feed(&v, split_all, &out, &used, err,
	    sizeof(err)), HTTP_DONE);
	assert_int_equal(used, enc.len);
	assert_int_equal(out.len, plain.len);
	assert_memory_equal(out.data, plain.data, plain.len);

	buf_reset(&out);
	assert_int_equal(chunk_feed(&v, split_one, &out, &used, err,
	    sizeof(err)), HTTP_DONE);
	assert_int_equal(out.len, plain.len);
	assert_memory_equal(out.data, plain.data, plain.len);

	for (int rep = 0; rep < 200; rep++) {
		buf_reset(&out);
		assert_int_equal(chunk_feed(&v, split_random, &out, &used, err,
		    sizeof(err)), HTTP_DONE);
		assert_int_equal(used, enc.len);
		assert_int_equal(out.len, plain.len);
		assert_memory_equal(out.data, plain.data, plain.len);
	}
	buf_free(&enc);
	buf_free(&plain);
	buf_free(&out);
}

static void
test_chunked_too_large(void **state)
{
	static const char	 in[] = "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n";
	struct http_chunked	 c;
	struct buf		 out = { 0 };
	char			 err[128];
	size_t			 consumed;
	int			 too_large;

	(void)state;
	/* Exactly at the limit: fine. */
	out.max = 8;
	http_chunked_init(&c, 0);
	assert_int_equal(http_chunked_decode(&c, in, sizeof(in) - 1, &consumed,
	    &out, &too_large, err, sizeof(err)), HTTP_DONE);
	assert_int_equal(too_large, 0);
	assert_int_equal(out.len, 8);
	buf_free(&out);

	/* One byte short: the error is "too large", not bad framing. */
	out.max = 7;
	http_chunked_init(&c, 0);
	assert_int_equal(http_chunked_decode(&c, in, sizeof(in) - 1, &consumed,
	    &out, &too_large, err, sizeof(err)), HTTP_ERROR);
	assert_int_equal(too_large, 1);
	assert_string_equal(err, "body too large");
	assert_true(out.len <= 7);
	/* The decoder stays failed. */
	assert_int_equal(http_chunked_decode(&c, "0\r\n\r\n", 5, &consumed,
	    &out, &too_large, err, sizeof(err)), HTTP_ERROR);
	assert_int_equal(consumed, 0);
	buf_free(&out);

	/* A huge announced size is bounded by out, not by the size. */
	out.max = 1024;
	http_chunked_init(&c, 0);
	assert_int_equal(http_chunked_decode(&c, "ffffffffffffffff\r\nab", 20,
	    &consumed, &out, &too_large, err, sizeof(err)), HTTP_AGAIN);
	assert_int_equal(consumed, 20);
	assert_int_equal(out.len, 2);
	buf_free(&out);
}

static void
test_chunked_states(void **state)
{
	struct http_chunked	 c;
	struct buf		 out = { 0 };
	char			 err[128];
	size_t			 consumed;
	int			 too_large;

	(void)state;
	/* Done stays done and consumes nothing more. */
	http_chunked_init(&c, 16);
	assert_int_equal(http_chunked_decode(&c, "0\r\n\r\n", 5, &consumed,
	    &out, &too_large, err, sizeof(err)), HTTP_DONE);
	assert_int_equal(consumed, 5);
	assert_int_equal(http_chunked_decode(&c, "5\r\n", 3, &consumed, &out,
	    &too_large, err, sizeof(err)), HTTP_DONE);
	assert_int_equal(consumed, 0);
	/* Empty input is "more, please". */
	http_chunked_init(&c, 16);
	assert_int_equal(http_chunked_decode(&c, "", 0, &consumed, &out,
	    &too_large, err, sizeof(err)), HTTP_AGAIN);
	/* max_trailer_bytes 0 refuses any trailer field. */
	http_chunked_init(&c, 0);
	assert_int_equal(http_chunked_decode(&c, "0\r\nA: b\r\n\r\n", 11,
	    &consumed, &out, &too_large, err, sizeof(err)), HTTP_ERROR);
	check_err(err);
	/* An endless extension is bounded. */
	{
		char	 line[5000];

		memset(line, 'a', sizeof(line));
		memcpy(line, "1;", 2);
		http_chunked_init(&c, 16);
		assert_int_equal(http_chunked_decode(&c, line, sizeof(line),
		    &consumed, &out, &too_large, err, sizeof(err)),
		    HTTP_ERROR);
		assert_true(consumed < sizeof(line));
	}
	assert_int_equal(out.len, 0);
	buf_free(&out);
}

static void
test_list_has(void **state)
{
	(void)state;
	assert_true(http_list_has("close", 5, "close"));
	assert_true(http_list_has("Keep-Alive, CLOSE", 17, "close"));
	assert_true(http_list_has(" ,, a ,\tclose\t", 14, "close"));
	assert_false(http_list_has("closed", 6, "close"));
	assert_false(http_list_has("clos", 4, "close"));
	assert_false(http_list_has("close", 4, "close"));	/* len bounds */
	assert_false(http_list_has("", 0, "close"));
	assert_false(http_list_has(", ,", 3, ""));
	assert_false(http_list_has("x-close, keep", 13, "close"));
	assert_true(http_list_has("upgrade,keep-alive", 18, "keep-alive"));
}

static void
test_hop_by_hop(void **state)
{
	static const char *const yes[] = { "Connection", "keep-alive",
	    "Proxy-Connection", "proxy-authenticate", "Proxy-Authorization",
	    "TE", "Trailer", "Transfer-Encoding", "UPGRADE" };
	static const char *const no[] = { "Content-Length", "Host", "T",
	    "Trailers", "Connectio", "X-Connection", "Authorization",
	    "Content-Type", "" };

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!http_is_hop_by_hop(yes[i], strlen(yes[i])))
			fail_msg("%s should be hop-by-hop", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (http_is_hop_by_hop(no[i], strlen(no[i])))
			fail_msg("%s should not be hop-by-hop", no[i]);
	/* The length, not a NUL, ends the name. */
	assert_true(http_is_hop_by_hop("TEXT", 2));
}

static void
test_token_reason(void **state)
{
	(void)state;
	assert_true(http_is_token("Content-Type", 12));
	assert_true(http_is_token("!#$%&'*+-.^_`|~09azAZ", 21));
	assert_false(http_is_token("", 0));
	assert_false(http_is_token("a b", 3));
	assert_false(http_is_token("a:b", 3));
	assert_false(http_is_token("a\0b", 3));
	assert_false(http_is_token("caf\xc3\xa9", 5));
	assert_false(http_is_token("(x)", 3));
	assert_string_equal(http_reason(200), "OK");
	assert_string_equal(http_reason(400), "Bad Request");
	assert_string_equal(http_reason(431),
	    "Request Header Fields Too Large");
	assert_string_equal(http_reason(502), "Bad Gateway");
	assert_string_equal(http_reason(505), "HTTP Version Not Supported");
	assert_string_equal(http_reason(299), "Unknown");
	assert_string_equal(http_reason(-1), "Unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_vectors),
		cmocka_unit_test(test_request_prefixes),
		cmocka_unit_test(test_request_fields),
		cmocka_unit_test(test_request_size_limit),
		cmocka_unit_test(test_request_err_no_input),
		cmocka_unit_test(test_response_vectors),
		cmocka_unit_test(test_response_limits),
		cmocka_unit_test(test_chunked_vectors),
		cmocka_unit_test(test_chunked_generated),
		cmocka_unit_test(test_chunked_too_large),
		cmocka_unit_test(test_chunked_states),
		cmocka_unit_test(test_list_has),
		cmocka_unit_test(test_hop_by_hop),
		cmocka_unit_test(test_token_reason),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
