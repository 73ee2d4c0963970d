/* http.h -- strict HTTP/1.1 parser and serializer (pure) */
#ifndef SUBGATE_HTTP_H
#define SUBGATE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum http_result {
	HTTP_ERROR = -1,	/* malformed or over a limit: see *status and err */
	HTTP_DONE = 0,		/* a complete head (or body) was parsed */
	HTTP_AGAIN = 1,		/* need more bytes */
};

enum http_framing {
	HTTP_BODY_NONE = 0,	/* no body at all */
	HTTP_BODY_LENGTH,	/* Content-Length bytes */
	HTTP_BODY_CHUNKED,	/* Transfer-Encoding: chunked (final coding) */
	HTTP_BODY_CLOSE,	/* responses only: until the connection closes */
};

/* Borrowed views into the caller's buffer. */
struct http_header {
	const char	*name;
	size_t		 name_len;
	const char	*value;		/* OWS trimmed on both sides */
	size_t		 value_len;
};

struct http_limits {
	size_t	max_header_bytes;	/* whole head, request/status line included */
	size_t	max_headers;		/* header fields */
};

/*
 * A parsed request head. Before calling http_parse_request the caller sets
 * headers to an array of at least lim->max_headers elements; the parser
 * fills nheaders. Every pointer borrows from the caller's buffer.
 */
struct http_request {
	const char		*method;
	size_t			 method_len;
	const char		*target;	/* origin-form, as sent */
	size_t			 target_len;
	int			 minor;		/* HTTP/1.<minor>: 0 or 1 */
	struct http_header	*headers;
	size_t			 nheaders;
	const char		*host;		/* exactly one Host (required in 1.1) */
	size_t			 host_len;
	enum http_framing	 framing;	/* NONE, LENGTH or CHUNKED */
	uint64_t		 content_length;/* when framing == LENGTH */
	int			 keep_alive;	/* version + Connection decided */
	int			 expect_continue;/* Expect: 100-continue */
	size_t			 head_len;	/* bytes of the head, CRLFCRLF included */
};

struct http_response {
	int			 status;	/* 100..599 */
	int			 minor;
	struct http_header	*headers;	/* caller-provided, as for requests */
	size_t			 nheaders;
	enum http_framing	 framing;
	uint64_t		 content_length;
	int			 keep_alive;	/* the server lets us reuse the connection */
	size_t			 head_len;
};

/*
 * Parse a request head from buf[0..len). Returns HTTP_DONE (req filled),
 * HTTP_AGAIN (no complete head yet and len is within the limit), or
 * HTTP_ERROR with *status set to 400 (bad framing: CL+TE, duplicate or bad
 * Content-Length, any Transfer-Encoding other than a single "chunked" --
 * lists, "identity" and unknown codings alike, never 501 --, TE in
 * HTTP/1.0, obs-fold, bare CR or LF, NUL or control bytes, missing,
 * duplicate or malformed Host, bad request line, a target not in
 * origin-form, leading empty lines), 431 (no complete head within
 * max_header_bytes, or more than max_headers fields), 417 (an Expect other
 * than 100-continue) or 505 (HTTP/x.y other than 1.0 and 1.1), and a short
 * fixed reason in err (never containing request bytes). *status is 0
 * unless HTTP_ERROR. The head is complete when its CRLFCRLF ends within the
 * first max_header_bytes bytes; errors in complete lines are reported as
 * soon as they are seen, before the head is complete.
 */
int	http_parse_request(const char *buf, size_t len,
	    const struct http_limits *lim, struct http_request *req,
	    int *status, char *err, size_t errlen);

/*
 * Parse a response head. head_request: the request was HEAD (no body).
 * 1xx heads are returned as parsed (framing NONE); the caller skips
 * head_len bytes and parses again (101 is an error). 204 and 304 have no
 * body; a response with neither Content-Length nor chunked is HTTP_BODY_CLOSE
 * and keep_alive 0. Same framing rules as requests (CL and TE are checked
 * even when the response has no body). content_length is 0 unless framing
 * is HTTP_BODY_LENGTH. HTTP_ERROR has no status: the caller answers 502.
 */
int	http_parse_response(const char *buf, size_t len,
	    const struct http_limits *lim, int head_request,
	    struct http_response *resp, char *err, size_t errlen);

/* Incremental chunked-body decoder. Trailers are read and dropped. */
struct http_chunked {
	int		state;
	uint64_t	remaining;	/* bytes left in the current chunk */
	size_t		line_len;	/* bytes of the current size/trailer line */
	size_t		trailer_bytes;
	size_t		max_trailer_bytes;
};

/* Start decoding a body. max_trailer_bytes bounds the trailer fields
 * (0: none allowed). No allocation: nothing to free. */
void	http_chunked_init(struct http_chunked *c, size_t max_trailer_bytes);

/*
 * Decode in[0..len): payload bytes are appended to out (whose max bounds
 * the body: overflow is an error with err "body too large" and the return
 * value HTTP_ERROR, *too_large set to 1). *consumed is set to the bytes
 * used. Returns HTTP_DONE once the last chunk and trailers are consumed
 * (bytes after it are not consumed), HTTP_AGAIN for more input, HTTP_ERROR
 * on bad framing (chunk size not 1*HEXDIG, "0x", overflow, missing CRLF,
 * bare LF, bad extension or trailer).
 */
int	http_chunked_decode(struct http_chunked *c, const char *in, size_t len,
	    size_t *consumed, struct buf *out, int *too_large,
	    char *err, size_t errlen);

/* Case-insensitive lookup; the first match or NULL. */
const struct http_header *http_header_find(const struct http_header *h,
	    size_t n, const char *name);
/* Does a comma-separated header value contain the token (case-insensitive)? */
int	http_list_has(const char *value, size_t len, const char *token);
/* Is name a hop-by-hop header (Connection, Keep-Alive, TE, Trailer,
 * Transfer-Encoding, Upgrade, Proxy-*)? */
int	http_is_hop_by_hop(const char *name, size_t len);
/* Is name a valid header field-name (RFC 9110 token)? */
int	http_is_token(const char *s, size_t len);
/* Append "name: value\r\n" to b (both already validated). 0 or -1. */
int	http_header_append(struct buf *b, const char *name, size_t nlen,
	    const char *value, size_t vlen);
/* Reason phrase for a status code ("Unknown" if none). */
const char *http_reason(int status);

#endif
