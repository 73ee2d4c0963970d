/* fuzz_http.c -- libFuzzer target: request/response heads and chunked bodies */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define MAXH	32

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)	do { if (!(x)) abort(); } while (0)

static const struct http_limits lim = { 2048, MAXH };

/* Every parsed field is a token name and a trimmed, CR/LF/NUL-free value
 * inside the head. */
static void
check_headers(const char *buf, size_t head_len, const struct http_header *h,
    size_t n)
{
	CHECK(n <= MAXH);
	for (size_t i = 0; i < n; i++) {
		CHECK(h[i].name >= buf && h[i].name + h[i].name_len <=
		    buf + head_len);
		CHECK(h[i].value >= buf && h[i].value + h[i].value_len <=
		    buf + head_len);
		CHECK(http_is_token(h[i].name, h[i].name_len));
		for (size_t j = 0; j < h[i].value_len; j++) {
			unsigned char c = (unsigned char)h[i].value[j];

			CHECK(c == '\t' || c >= 0x20);
			CHECK(c != 0x7f);
		}
		if (h[i].value_len > 0) {
			CHECK(h[i].value[0] != ' ' && h[i].value[0] != '\t');
			CHECK(h[i].value[h[i].value_len - 1] != ' ' &&
			    h[i].value[h[i].value_len - 1] != '\t');
		}
	}
}

static void
fuzz_request(const char *buf, size_t size)
{
	struct http_header	 h[MAXH], h2[MAXH];
	struct http_request	 req, req2;
	char			 err[128];
	int			 status, status2, r;

	req.headers = h;
	r = http_parse_request(buf, size, &lim, &req, &status, err,
	    sizeof(err));
	if (r == HTTP_ERROR) {
		CHECK(status == 400 || status == 417 || status == 431 ||
		    status == 505);
		CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		return;
	}
	CHECK(status == 0);
	if (r == HTTP_AGAIN) {
		CHECK(size <= lim.max_header_bytes);
		return;
	}
	CHECK(r == HTTP_DONE);
	CHECK(req.head_len >= 16 && req.head_len <= size &&
	    req.head_len <= lim.max_header_bytes);
	CHECK(memcmp(buf + req.head_len - 4, "\r\n\r\n", 4) == 0);
	CHECK(req.minor == 0 || req.minor == 1);
	CHECK(req.target_len > 0 && req.target[0] == '/');
	CHECK(req.minor == 0 || req.host != NULL);
	CHECK(req.framing == HTTP_BODY_NONE ||
	    req.framing == HTTP_BODY_LENGTH ||
	    req.framing == HTTP_BODY_CHUNKED);
	CHECK(req.framing != HTTP_BODY_CHUNKED || req.minor == 1);
	check_headers(buf, req.head_len, h, req.nheaders);

	/* The head alone parses the same; any shorter prefix wants more. */
	req2.headers = h2;
	CHECK(http_parse_request(buf, req.head_len, &lim, &req2, &status2,
	    err, sizeof(err)) == HTTP_DONE);
	CHECK(req2.head_len == req.head_len && req2.framing == req.framing &&
	    req2.content_length == req.content_length &&
	    req2.keep_alive == req.keep_alive && req2.nheaders == req.nheaders);
	CHECK(http_parse_request(buf, req.head_len - 1 - size % 7, &lim, &req2,
	    &status2, err, sizeof(err)) == HTTP_AGAIN);
}

static void
fuzz_response(const char *buf, size_t size, int head_request)
{
	struct http_header	 h[MAXH];
	struct http_response	 resp;
	char			 err[128];
	int			 r;

	resp.headers = h;
	r = http_parse_response(buf, size, &lim, head_request, &resp, err,
	    sizeof(err));
	if (r != HTTP_DONE)
		return;
	CHECK(resp.status >= 100 && resp.status <= 599 && resp.status != 101);
	CHECK(resp.head_len <= size && resp.head_len <= lim.max_header_bytes);
	CHECK(memcmp(buf + resp.head_len - 4, "\r\n\r\n", 4) == 0);
	if (resp.framing == HTTP_BODY_CLOSE)
		CHECK(resp.keep_alive == 0);
	if (head_request || resp.status < 200 || resp.status == 204 ||
	    resp.status == 304)
		CHECK(resp.framing == HTTP_BODY_NONE);
	check_headers(buf, resp.head_len, h, resp.nheaders);
}

/* Decode whole, then split at cut: same result, same bytes. */
static void
fuzz_chunked(const char *buf, size_t size, size_t cut)
{
	struct http_chunked	 c;
	struct buf		 a = { 0 }, b = { 0 };
	char			 err[128];
	size_t			 used1, used2 = 0, n;
	int			 r1, r2, tl;

	a.max = b.max = 4096;
	http_chunked_init(&c, 256);
	r1 = http_chunked_decode(&c, buf, size, &used1, &a, &tl, err,
	    sizeof(err));
	CHECK(used1 <= size);
	CHECK(r1 != HTTP_AGAIN || used1 == size);

	http_chunked_init(&c, 256);
	if (cut > size)
		cut = size;
	r2 = http_chunked_decode(&c, buf, cut, &n, &b, &tl, err, sizeof(err));
	used2 = n;
	if (r2 == HTTP_AGAIN) {
		CHECK(n == cut);
		r2 = http_chunked_decode(&c, buf + cut, size - cut, &n, &b,
		    &tl, err, sizeof(err));
		used2 += n;
	}
	CHECK(r1 == r2);
	if (r1 != HTTP_ERROR) {
		CHECK(used1 == used2);
		CHECK(a.len == b.len &&
		    (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
	}
	buf_free(&a);
	buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*buf = (const char *)data;
	size_t		 cut = size > 0 ? data[0] * size / 256 : 0;

	fuzz_request(buf, size);
	fuzz_response(buf, size, 0);
	fuzz_response(buf, size, 1);
	fuzz_chunked(buf, size, cut);
	(void)http_list_has(buf, size, "close");
	return 0;
}
