/* http.c -- strict HTTP/1.1 parser: heads and chunked bodies (pure) */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http.h"

/*
 * Character classes, one bit each, from RFC 9110/9112:
 *   C_TCHAR   token characters
 *   C_FVALUE  field-value bytes: VCHAR, obs-text, SP, HTAB
 *   C_VCHAR   visible ASCII 0x21-0x7e (request-target bytes)
 *   C_HOST    uri-host and port: unreserved, sub-delims, '%', ':', '[', ']'
 *   C_QDTEXT  quoted-string text: HTAB, SP, VCHAR but '"' and '\', obs-text
 *   C_HEX     HEXDIG
 */
#define C_TCHAR		0x01
#define C_FVALUE	0x02
#define C_VCHAR		0x04
#define C_HOST		0x08
#define C_QDTEXT	0x10
#define C_HEX		0x20

static const unsigned char cclass[256] = {
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* 0x00 */
	0x00, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* 0x08 */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* 0x10 */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* 0x18 */
	0x12, 0x1f, 0x06, 0x17, 0x1f, 0x1f, 0x1f, 0x1f,	/* 0x20 */
	0x1e, 0x1e, 0x1f, 0x1f, 0x1e, 0x1f, 0x1f, 0x16,	/* 0x28 */
	0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f,	/* 0x30 */
	0x3f, 0x3f, 0x1e, 0x1e, 0x16, 0x1e, 0x16, 0x16,	/* 0x38 */
	0x16, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x1f,	/* 0x40 */
	0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,	/* 0x48 */
	0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,	/* 0x50 */
	0x1f, 0x1f, 0x1f, 0x1e, 0x06, 0x1e, 0x17, 0x1f,	/* 0x58 */
	0x17, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x1f,	/* 0x60 */
	0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,	/* 0x68 */
	0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,	/* 0x70 */
	0x1f, 0x1f, 0x1f, 0x16, 0x17, 0x16, 0x1f, 0x00,	/* 0x78 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0x80 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0x88 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0x90 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0x98 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xa0 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xa8 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xb0 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xb8 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xc0 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xc8 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xd0 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xd8 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xe0 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xe8 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xf0 */
	0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,	/* 0xf8 */
};

#define IS(c, f)	(cclass[(unsigned char)(c)] & (f))
#define IS_WS(c)	((c) == ' ' || (c) == '\t')

/* Longest chunk-size line (size and extensions) the decoder accepts. */
#define CHUNK_LINE_MAX	4096
/* Content-Length digits: 18 always fit in a uint64_t. */
#define CL_DIGITS_MAX	18

static void
seterr(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", msg);
}

/* Name a byte refused at some place in a head; never quotes the byte. */
static void
seterr_byte(char *err, size_t errlen, unsigned char c, const char *where,
    const char *dflt)
{
	const char	*what;

	if (c == '\r')
		what = "bare CR";
	else if (c == '\0')
		what = "NUL";
	else if (c < 0x20 || c == 0x7f)
		what = "control byte";
	else {
		seterr(err, errlen, dflt);
		return;
	}
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s in %s", what, where);
}

static int
name_is(const struct http_header *h, const char *name, size_t len)
{
	return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

/*
 * The next complete line of a head starting at *pos, CRLF excluded, from
 * buf[0..scan). HTTP_AGAIN without an LF yet; HTTP_ERROR on an LF not
 * preceded by CR.
 */
static int
head_line(const char *buf, size_t scan, size_t *pos, const char **line,
    size_t *n)
{
	const char	*nl;
	size_t		 start = *pos, end;

	if (start >= scan ||
	    (nl = memchr(buf + start, '\n', scan - start)) == NULL)
		return HTTP_AGAIN;
	end = (size_t)(nl - buf);
	if (end == start || buf[end - 1] != '\r')
		return HTTP_ERROR;
	*line = buf + start;
	*n = end - 1 - start;
	*pos = end + 1;
	return HTTP_DONE;
}

/* One header line (CRLF excluded, not empty) into h. */
static int
parse_field(const char *line, size_t n, struct http_header *h,
    char *err, size_t errlen)
{
	size_t	 i, v, e;

	if (IS_WS(line[0])) {
		seterr(err, errlen, "obs-fold in header");
		return -1;
	}
	for (i = 0; i < n && IS(line[i], C_TCHAR); i++)
		;
	if (i == n) {
		seterr(err, errlen, "header without colon");
		return -1;
	}
	if (line[i] != ':') {
		if (IS_WS(line[i]))
			seterr(err, errlen, "whitespace before colon");
		else
			seterr_byte(err, errlen, (unsigned char)line[i],
			    "header", "bad header field name");
		return -1;
	}
	if (i == 0) {
		seterr(err, errlen, "empty header field name");
		return -1;
	}
	for (v = i + 1; v < n && IS_WS(line[v]); v++)
		;
	for (e = n; e > v && IS_WS(line[e - 1]); e--)
		;
	for (size_t j = v; j < e; j++) {
		if (!IS(line[j], C_FVALUE)) {
			seterr_byte(err, errlen, (unsigned char)line[j],
			    "header", "bad byte in header value");
			return -1;
		}
	}
	h->name = line;
	h->name_len = i;
	h->value = line + v;
	h->value_len = e - v;
	return 0;
}

/*
 * Header lines from *pos up to and including the empty line that ends the
 * head. On HTTP_DONE *pos is the head length.
 */
static int
parse_fields(const char *buf, size_t scan, size_t *pos,
    struct http_header *h, size_t maxh, size_t *nh, int *status,
    char *err, size_t errlen)
{
	const char	*line;
	size_t		 n;
	int		 r;

	for (;;) {
		r = head_line(buf, scan, pos, &line, &n);
		if (r == HTTP_AGAIN)
			return HTTP_AGAIN;
		if (r == HTTP_ERROR) {
			*status = 400;
			seterr(err, errlen, "bare LF in header");
			return HTTP_ERROR;
		}
		if (n == 0)
			return HTTP_DONE;
		if (*nh >= maxh) {
			*status = 431;
			seterr(err, errlen, "too many header fields");
			return HTTP_ERROR;
		}
		if (parse_field(line, n, &h[*nh], err, errlen) == -1) {
			*status = 400;
			return HTTP_ERROR;
		}
		(*nh)++;
	}
}

/* 1*DIGIT, at most CL_DIGITS_MAX of them. */
static int
parse_content_length(const char *v, size_t n, uint64_t *out)
{
	uint64_t	 x = 0;

	if (n == 0 || n > CL_DIGITS_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

/* What the framing-relevant fields of a head say. */
struct fields {
	const struct http_header	*host, *cl, *te;
	int				 nhost, ncl, nte;
	int				 conn_close, conn_keep_alive;
	int				 expect_continue, expect_other;
};

static void
fields_scan(const struct http_header *h, size_t n, struct fields *f)
{
	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < n; i++, h++) {
		switch (h->name_len) {
		case 4:
			if (name_is(h, "host", 4)) {
				f->host = h;
				f->nhost++;
			}
			break;
		case 6:
			if (name_is(h, "expect", 6)) {
				if (h->value_len == 12 &&
				    strncasecmp(h->value, "100-continue", 12) == 0)
					f->expect_continue = 1;
				else
					f->expect_other = 1;
			}
			break;
		case 10:
			if (name_is(h, "connection", 10)) {
				if (http_list_has(h->value, h->value_len,
				    "close"))
					f->conn_close = 1;
				if (http_list_has(h->value, h->value_len,
				    "keep-alive"))
					f->conn_keep_alive = 1;
			}
			break;
		case 14:
			if (name_is(h, "content-length", 14)) {
				f->cl = h;
				f->ncl++;
			}
			break;
		case 17:
			if (name_is(h, "transfer-encoding", 17)) {
				f->te = h;
				f->nte++;
			}
			break;
		}
	}
}

/*
 * The rules requests and responses share: at most one Content-Length, a
 * valid one; at most one Transfer-Encoding, exactly "chunked", and never
 * in HTTP/1.0; never both. *cl gets the length when there is one.
 */
static int
framing_check(const struct fields *f, int minor, uint64_t *cl,
    char *err, size_t errlen)
{
	if (f->ncl > 1) {
		seterr(err, errlen, "duplicate Content-Length");
		return -1;
	}
	if (f->nte > 1) {
		seterr(err, errlen, "duplicate Transfer-Encoding");
		return -1;
	}
	if (f->ncl && f->nte) {
		seterr(err, errlen, "both Content-Length and Transfer-Encoding");
		return -1;
	}
	if (f->ncl && parse_content_length(f->cl->value, f->cl->value_len,
	    cl) == -1) {
		seterr(err, errlen, "bad Content-Length");
		return -1;
	}
	if (f->nte) {
		if (minor == 0) {
			seterr(err, errlen, "Transfer-Encoding in HTTP/1.0");
			return -1;
		}
		if (f->te->value_len != 7 ||
		    strncasecmp(f->te->value, "chunked", 7) != 0) {
			seterr(err, errlen, "unsupported Transfer-Encoding");
			return -1;
		}
	}
	return 0;
}

static int
host_valid(const char *v, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!IS(v[i], C_HOST))
			return 0;
	return 1;
}

/* "HTTP/1.0" or "HTTP/1.1": the minor; other HTTP/x.y: -2; else -1. */
static int
parse_version(const char *v, size_t n)
{
	if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' ||
	    v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
		return -1;
	if (v[5] == '1' && (v[7] == '0' || v[7] == '1'))
		return v[7] - '0';
	return -2;
}

/* method SP origin-form SP HTTP-version, CRLF excluded. */
static int
parse_request_line(const char *line, size_t n, struct http_request *req,
    int *status, char *err, size_t errlen)
{
	size_t	 i, t;
	int	 minor;

	*status = 400;
	if (n == 0) {
		seterr(err, errlen, "empty line before request line");
		return -1;
	}
	for (i = 0; i < n && IS(line[i], C_TCHAR); i++)
		;
	if (i == 0 || i == n || line[i] != ' ') {
		if (i < n && line[i] != ' ')
			seterr_byte(err, errlen, (unsigned char)line[i],
			    "request line", "bad method");
		else
			seterr(err, errlen, "malformed request line");
		return -1;
	}
	req->method = line;
	req->method_len = i;

	for (t = ++i; i < n && IS(line[i], C_VCHAR); i++)
		;
	if (i == t || i == n || line[i] != ' ') {
		if (i < n && line[i] != ' ')
			seterr_byte(err, errlen, (unsigned char)line[i],
			    "request line", "bad byte in request target");
		else
			seterr(err, errlen, "malformed request line");
		return -1;
	}
	if (line[t] != '/') {
		seterr(err, errlen, line[t] == '*' ? "asterisk-form target" :
		    "target not in origin-form");
		return -1;
	}
	if (memchr(line + t, '#', i - t) != NULL) {
		seterr(err, errlen, "fragment in request target");
		return -1;
	}
	req->target = line + t;
	req->target_len = i - t;

	i++;
	if ((minor = parse_version(line + i, n - i)) == -2) {
		*status = 505;
		seterr(err, errlen, "unsupported HTTP version");
		return -1;
	}
	if (minor < 0) {
		if (memchr(line + i, '\r', n - i) != NULL)
			seterr(err, errlen, "bare CR in request line");
		else
			seterr(err, errlen, "malformed HTTP version");
		return -1;
	}
	req->minor = minor;
	return 0;
}

/*
 * Request head: see http.h. One pass over the head, no allocation; header
 * views borrow from buf. Syntax errors in complete lines are final even
 * while the head is incomplete, so junk is refused before it piles up.
 */
int
http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
    struct http_request *req, int *status, char *err, size_t errlen)
{
	struct http_header	*headers = req->headers;
	struct fields		 f;
	const char		*line;
	size_t			 scan, pos = 0, n;
	int			 r;

	memset(req, 0, sizeof(*req));
	req->headers = headers;
	*status = 0;
	scan = len < lim->max_header_bytes ? len : lim->max_header_bytes;

	r = head_line(buf, scan, &pos, &line, &n);
	if (r == HTTP_ERROR) {
		*status = 400;
		seterr(err, errlen, "bare LF in request line");
		return HTTP_ERROR;
	}
	if (r == HTTP_DONE) {
		if (parse_request_line(line, n, req, status, err, errlen) == -1)
			return HTTP_ERROR;
		r = parse_fields(buf, scan, &pos, req->headers,
		    lim->max_headers, &req->nheaders, status, err, errlen);
		if (r == HTTP_ERROR)
			return HTTP_ERROR;
	}
	if (r == HTTP_AGAIN) {
		if (len > lim->max_header_bytes) {
			*status = 431;
			seterr(err, errlen, "request head too large");
			return HTTP_ERROR;
		}
		*status = 0;
		return HTTP_AGAIN;
	}
	req->head_len = pos;

	*status = 400;
	fields_scan(req->headers, req->nheaders, &f);
	if (f.nhost > 1) {
		seterr(err, errlen, "duplicate Host");
		return HTTP_ERROR;
	}
	if (f.nhost == 0 && req->minor == 1) {
		seterr(err, errlen, "missing Host");
		return HTTP_ERROR;
	}
	if (f.nhost == 1) {
		if (!host_valid(f.host->value, f.host->value_len)) {
			seterr(err, errlen, "bad Host");
			return HTTP_ERROR;
		}
		req->host = f.host->value;
		req->host_len = f.host->value_len;
	}
	if (framing_check(&f, req->minor, &req->content_length, err,
	    errlen) == -1)
		return HTTP_ERROR;
	if (f.nte)
		req->framing = HTTP_BODY_CHUNKED;
	else if (f.ncl)
		req->framing = HTTP_BODY_LENGTH;
	else
		req->framing = HTTP_BODY_NONE;
	if (f.expect_other) {
		*status = 417;
		seterr(err, errlen, "unsupported expectation");
		return HTTP_ERROR;
	}
	/* RFC 9110 10.1.1: a 100-continue in HTTP/1.0 is ignored. */
	req->expect_continue = f.expect_continue && req->minor == 1;
	if (req->minor == 1)
		req->keep_alive = !f.conn_close;
	else
		req->keep_alive = f.conn_keep_alive && !f.conn_close;
	*status = 0;
	return HTTP_DONE;
}

/* HTTP-version SP 3DIGIT SP reason-phrase, CRLF excluded. */
static int
parse_status_line(const char *line, size_t n, struct http_response *resp,
    char *err, size_t errlen)
{
	int	 minor;

	if (n == 0) {
		seterr(err, errlen, "empty line before status line");
		return -1;
	}
	if (n < 13 || line[8] != ' ' || line[12] != ' ') {
		seterr(err, errlen, "malformed status line");
		return -1;
	}
	if ((minor = parse_version(line, 8)) < 0) {
		seterr(err, errlen, minor == -2 ? "unsupported HTTP version" :
		    "malformed HTTP version");
		return -1;
	}
	for (int i = 9; i < 12; i++) {
		if (line[i] < '0' || line[i] > '9') {
			seterr(err, errlen, "malformed status code");
			return -1;
		}
	}
	resp->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 +
	    (line[11] - '0');
	if (resp->status < 100 || resp->status > 599) {
		seterr(err, errlen, "status code out of range");
		return -1;
	}
	for (size_t i = 13; i < n; i++) {
		if (!IS(line[i], C_FVALUE)) {
			seterr_byte(err, errlen, (unsigned char)line[i],
			    "status line", "bad byte in reason phrase");
			return -1;
		}
	}
	resp->minor = minor;
	return 0;
}

/* Response head: see http.h. head_request makes any response bodiless. */
int
http_parse_response(const char *buf, size_t len,
    const struct http_limits *lim, int head_request,
    struct http_response *resp, char *err, size_t errlen)
{
	struct http_header	*headers = resp->headers;
	struct fields		 f;
	const char		*line;
	size_t			 scan, pos = 0, n;
	int			 r, status;

	memset(resp, 0, sizeof(*resp));
	resp->headers = headers;
	scan = len < lim->max_header_bytes ? len : lim->max_header_bytes;

	r = head_line(buf, scan, &pos, &line, &n);
	if (r == HTTP_ERROR) {
		seterr(err, errlen, "bare LF in status line");
		return HTTP_ERROR;
	}
	if (r == HTTP_DONE) {
		if (parse_status_line(line, n, resp, err, errlen) == -1)
			return HTTP_ERROR;
		r = parse_fields(buf, scan, &pos, resp->headers,
		    lim->max_headers, &resp->nheaders, &status, err, errlen);
		if (r == HTTP_ERROR)
			return HTTP_ERROR;
	}
	if (r == HTTP_AGAIN) {
		if (len > lim->max_header_bytes) {
			seterr(err, errlen, "response head too large");
			return HTTP_ERROR;
		}
		return HTTP_AGAIN;
	}
	resp->head_len = pos;

	if (resp->status == 101) {
		seterr(err, errlen, "protocol upgrade refused");
		return HTTP_ERROR;
	}
	fields_scan(resp->headers, resp->nheaders, &f);
	if (framing_check(&f, resp->minor, &resp->content_length, err,
	    errlen) == -1)
		return HTTP_ERROR;
	if (resp->minor == 1)
		resp->keep_alive = !f.conn_close;
	else
		resp->keep_alive = f.conn_keep_alive && !f.conn_close;
	if (resp->status < 200 || resp->status == 204 ||
	    resp->status == 304 || head_request) {
		resp->framing = HTTP_BODY_NONE;
		resp->content_length = 0;
	} else if (f.nte)
		resp->framing = HTTP_BODY_CHUNKED;
	else if (f.ncl)
		resp->framing = HTTP_BODY_LENGTH;
	else {
		resp->framing = HTTP_BODY_CLOSE;
		resp->keep_alive = 0;
	}
	return HTTP_DONE;
}

/* Decoder states: where in the chunked grammar the next byte falls. */
enum {
	CH_SIZE = 0,		/* chunk-size hex digits */
	CH_SIZE_WS,		/* BWS after the size: only ';' may follow */
	CH_EXT_PRE,		/* after ';': BWS, then an extension name */
	CH_EXT_NAME,		/* extension name */
	CH_EXT_NAME_WS,		/* BWS after the name: '=' or ';' */
	CH_EXT_VAL_PRE,		/* after '=': BWS, then a token or '"' */
	CH_EXT_TOKEN,		/* token value */
	CH_EXT_QS,		/* inside a quoted-string value */
	CH_EXT_QP,		/* after '\' in a quoted string */
	CH_EXT_END,		/* after a quoted string: ';', BWS or CR */
	CH_SIZE_LF,		/* CR seen at the end of the size line */
	CH_DATA,		/* chunk data, remaining bytes left */
	CH_DATA_CR,		/* CRLF after the data */
	CH_DATA_LF,
	CH_TRAILER,		/* start of a trailer line, or the final CRLF */
	CH_TRAILER_NAME,
	CH_TRAILER_VALUE,
	CH_TRAILER_LF,
	CH_FINAL_LF,
	CH_DONE,
	CH_ERROR,
};

/* Reset c to the start of a chunked body. */
void
http_chunked_init(struct http_chunked *c, size_t max_trailer_bytes)
{
	memset(c, 0, sizeof(*c));
	c->state = CH_SIZE;
	c->max_trailer_bytes = max_trailer_bytes;
}

/* Byte ch in a size line outside the data; returns the next state. */
static int
chunk_line_byte(struct http_chunked *c, unsigned char ch, const char **why)
{
	switch (c->state) {
	case CH_SIZE:
		if (IS(ch, C_HEX)) {
			if (c->line_len >= 16) {
				*why = "chunk size too long";
				return CH_ERROR;
			}
			c->remaining = c->remaining << 4 | (uint64_t)(ch <= '9' ?
			    ch - '0' : (ch | 0x20) - 'a' + 10);
			return CH_SIZE;
		}
		if (c->line_len == 0)
			break;
		if (ch == '\r')
			return CH_SIZE_LF;
		if (ch == ';')
			return CH_EXT_PRE;
		if (IS_WS(ch))
			return CH_SIZE_WS;
		break;
	case CH_SIZE_WS:
		if (IS_WS(ch))
			return CH_SIZE_WS;
		if (ch == ';')
			return CH_EXT_PRE;
		break;
	case CH_EXT_PRE:
		if (IS_WS(ch))
			return CH_EXT_PRE;
		if (IS(ch, C_TCHAR))
			return CH_EXT_NAME;
		break;
	case CH_EXT_NAME:
		if (IS(ch, C_TCHAR))
			return CH_EXT_NAME;
		/* FALLTHROUGH */
	case CH_EXT_NAME_WS:
		if (IS_WS(ch))
			return CH_EXT_NAME_WS;
		if (ch == '=')
			return CH_EXT_VAL_PRE;
		if (ch == ';')
			return CH_EXT_PRE;
		if (ch == '\r' && c->state == CH_EXT_NAME)
			return CH_SIZE_LF;
		break;
	case CH_EXT_VAL_PRE:
		if (IS_WS(ch))
			return CH_EXT_VAL_PRE;
		if (ch == '"')
			return CH_EXT_QS;
		if (IS(ch, C_TCHAR))
			return CH_EXT_TOKEN;
		break;
	case CH_EXT_TOKEN:
		if (IS(ch, C_TCHAR))
			return CH_EXT_TOKEN;
		/* FALLTHROUGH */
	case CH_EXT_END:
		if (IS_WS(ch))
			return CH_SIZE_WS;
		if (ch == ';')
			return CH_EXT_PRE;
		if (ch == '\r')
			return CH_SIZE_LF;
		break;
	case CH_EXT_QS:
		if (ch == '"')
			return CH_EXT_END;
		if (ch == '\\')
			return CH_EXT_QP;
		if (IS(ch, C_QDTEXT))
			return CH_EXT_QS;
		break;
	case CH_EXT_QP:
		if (IS(ch, C_FVALUE))
			return CH_EXT_QS;
		break;
	}
	*why = c->state == CH_SIZE ? "bad chunk size" : "bad chunk extension";
	return CH_ERROR;
}

/* Byte ch of a trailer section (after the last-chunk line). */
static int
chunk_trailer_byte(struct http_chunked *c, unsigned char ch, const char **why)
{
	switch (c->state) {
	case CH_TRAILER:
		if (ch == '\r')
			return CH_FINAL_LF;
		if (IS(ch, C_TCHAR))
			return CH_TRAILER_NAME;
		*why = IS_WS(ch) ? "obs-fold in trailer" : ch == ':' ?
		    "empty trailer field name" : "bad trailer field name";
		return CH_ERROR;
	case CH_TRAILER_NAME:
		if (IS(ch, C_TCHAR))
			return CH_TRAILER_NAME;
		if (ch == ':')
			return CH_TRAILER_VALUE;
		*why = IS_WS(ch) ? "whitespace before colon in trailer" :
		    "bad trailer field name";
		return CH_ERROR;
	case CH_TRAILER_VALUE:
		if (IS(ch, C_FVALUE))
			return CH_TRAILER_VALUE;
		if (ch == '\r')
			return CH_TRAILER_LF;
		*why = "bad byte in trailer";
		return CH_ERROR;
	}
	*why = "bad trailer";
	return CH_ERROR;
}

/*
 * Chunked body: see http.h. A byte-at-a-time state machine for the framing
 * lines, memcpy for the data; the split of the input never changes the
 * result. Errors are sticky.
 */
int
http_chunked_decode(struct http_chunked *c, const char *in, size_t len,
    size_t *consumed, struct buf *out, int *too_large, char *err,
    size_t errlen)
{
	const char	*why = NULL;
	size_t		 i = 0, n;
	unsigned char	 ch;

	if (too_large != NULL)
		*too_large = 0;
	while (i < len && c->state != CH_DONE && c->state != CH_ERROR) {
		ch = (unsigned char)in[i];
		switch (c->state) {
		case CH_DATA:
			n = len - i;
			if (n > c->remaining)
				n = (size_t)c->remaining;
			if (out->max != 0 && (out->len > out->max ||
			    n > out->max - out->len)) {
				if (too_large != NULL)
					*too_large = 1;
				why = "body too large";
				c->state = CH_ERROR;
				continue;
			}
			if (buf_append(out, in + i, n) == -1) {
				why = "out of memory";
				c->state = CH_ERROR;
				continue;
			}
			i += n;
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = CH_DATA_CR;
			continue;
		case CH_DATA_CR:
			if (ch != '\r') {
				why = "missing CRLF after chunk data";
				c->state = CH_ERROR;
				continue;
			}
			c->state = CH_DATA_LF;
			break;
		case CH_DATA_LF:
			if (ch != '\n') {
				why = "missing CRLF after chunk data";
				c->state = CH_ERROR;
				continue;
			}
			c->state = CH_SIZE;
			c->line_len = 0;
			c->remaining = 0;
			break;
		case CH_SIZE_LF:
			if (ch != '\n') {
				why = "bare CR in chunk size line";
				c->state = CH_ERROR;
				continue;
			}
			c->line_len = 0;
			c->state = c->remaining == 0 ? CH_TRAILER : CH_DATA;
			break;
		case CH_TRAILER_LF:
			if (ch != '\n') {
				why = "bare CR in trailer";
				c->state = CH_ERROR;
				continue;
			}
			c->state = CH_TRAILER;
			break;
		case CH_FINAL_LF:
			if (ch != '\n') {
				why = "bare CR in trailer";
				c->state = CH_ERROR;
				continue;
			}
			c->state = CH_DONE;
			break;
		case CH_TRAILER:
		case CH_TRAILER_NAME:
		case CH_TRAILER_VALUE:
			c->state = chunk_trailer_byte(c, ch, &why);
			if (c->state == CH_ERROR)
				continue;
			if (c->state != CH_FINAL_LF &&
			    ++c->trailer_bytes > c->max_trailer_bytes) {
				why = "trailers too large";
				c->state = CH_ERROR;
				continue;
			}
			break;
		default:
			if (ch == '\n') {
				why = "bare LF in chunk size line";
				c->state = CH_ERROR;
				continue;
			}
			c->state = chunk_line_byte(c, ch, &why);
			if (c->state == CH_ERROR)
				continue;
			if (++c->line_len > CHUNK_LINE_MAX) {
				why = "chunk size line too long";
				c->state = CH_ERROR;
				continue;
			}
			break;
		}
		i++;
	}
	*consumed = i;
	if (c->state == CH_DONE)
		return HTTP_DONE;
	if (c->state == CH_ERROR) {
		seterr(err, errlen, why != NULL ? why : "bad chunked body");
		return HTTP_ERROR;
	}
	return HTTP_AGAIN;
}

/* First header named name (case-insensitive), or NULL. Borrowed. */
const struct http_header *
http_header_find(const struct http_header *h, size_t n, const char *name)
{
	size_t	 len = strlen(name);

	for (size_t i = 0; i < n; i++)
		if (name_is(&h[i], name, len))
			return &h[i];
	return NULL;
}

/* Is token an element of the comma list value[0..len)? Empty elements and
 * OWS around elements are ignored; the compare is case-insensitive. */
int
http_list_has(const char *value, size_t len, const char *token)
{
	size_t	 tlen = strlen(token), i = 0, s, e;

	while (i < len) {
		while (i < len && (IS_WS(value[i]) || value[i] == ','))
			i++;
		s = i;
		while (i < len && value[i] != ',')
			i++;
		for (e = i; e > s && IS_WS(value[e - 1]); e--)
			;
		if (e - s == tlen && tlen > 0 &&
		    strncasecmp(value + s, token, tlen) == 0)
			return 1;
	}
	return 0;
}

/* Hop-by-hop fields (RFC 9110 7.6.1, plus the Proxy-* and Keep-Alive ones
 * old agents send): never forwarded. */
int
http_is_hop_by_hop(const char *name, size_t len)
{
	static const struct {
		const char	*name;
		size_t		 len;
	} hop[] = {
		{ "connection", 10 },
		{ "keep-alive", 10 },
		{ "proxy-connection", 16 },
		{ "proxy-authenticate", 18 },
		{ "proxy-authorization", 19 },
		{ "te", 2 },
		{ "trailer", 7 },
		{ "transfer-encoding", 17 },
		{ "upgrade", 7 },
	};

	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		if (len == hop[i].len &&
		    strncasecmp(name, hop[i].name, len) == 0)
			return 1;
	return 0;
}

/* 1*tchar (RFC 9110 5.6.2). */
int
http_is_token(const char *s, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!IS(s[i], C_TCHAR))
			return 0;
	return 1;
}

/* Standard reason phrase; a static string. */
const char *
http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 203: return "Non-Authoritative Information";
	case 204: return "No Content";
	case 205: return "Reset Content";
	case 206: return "Partial Content";
	case 300: return "Multiple Choices";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 425: return "Too Early";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

int
http_header_append(struct buf *b, const char *name, size_t nlen,
    const char *value, size_t vlen)
{
	if (buf_reserve(b, nlen + vlen + 4) == -1)
		return -1;
	buf_append(b, name, nlen);
	buf_append(b, ": ", 2);
	buf_append(b, value, vlen);
	return buf_append(b, "\r\n", 2);
}
