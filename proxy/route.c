/* route.c -- request-target canonicalisation and endpoint path patterns (pure) */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "route.h"

static void
route_seterr(char *err, size_t errlen, const char *msg)
{
	size_t	 n;

	if (err == NULL || errlen == 0)
		return;
	n = strlen(msg);
	if (n >= errlen)
		n = errlen - 1;
	memcpy(err, msg, n);
	err[n] = '\0';
}

static int
route_is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == '~';
}

static int
route_is_subdelim(unsigned char c)
{
	return c != '\0' && strchr("!$&'()*+,;=", c) != NULL;
}

/* RFC 3986 pchar, less pct-encoded (handled by the callers). */
static int
route_is_pchar(unsigned char c)
{
	return route_is_unreserved(c) || route_is_subdelim(c) || c == ':' ||
	    c == '@';
}

/* Hex digit value; upper-case only unless lower is set. -1 otherwise. */
static int
route_hexval(unsigned char c, int lower)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (lower && c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF. Returns 1 when s[0..len) is valid.
 */
static int
route_utf8_valid(const unsigned char *s, size_t len)
{
	size_t		 i = 0, n, k;
	unsigned	 cp, min;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (s[i] >= 0xc2 && s[i] <= 0xdf) {
			n = 1; cp = s[i] & 0x1f; min = 0x80;
		} else if (s[i] >= 0xe0 && s[i] <= 0xef) {
			n = 2; cp = s[i] & 0x0f; min = 0x800;
		} else if (s[i] >= 0xf0 && s[i] <= 0xf4) {
			n = 3; cp = s[i] & 0x07; min = 0x10000;
		} else
			return 0;
		if (len - i - 1 < n)
			return 0;
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

/*
 * Validate and decode one path segment raw[0..len) into dst (which may
 * alias nothing; dst has room for len bytes). *outlen gets the decoded
 * length. Returns NULL or a fixed reason.
 */
static const char *
route_decode_segment(const unsigned char *raw, size_t len, char *dst,
    size_t *outlen)
{
	size_t	 i, o = 0;
	int	 hi, lo, escaped = 0;
	unsigned char c;

	for (i = 0; i < len; i++) {
		c = raw[i];
		if (c == '\\')
			return "backslash in path";
		if (c != '%') {
			if (!route_is_pchar(c))
				return "character not allowed in path";
			if (dst != NULL)
				dst[o] = (char)c;
			o++;
			continue;
		}
		if (len - i < 3)
			return "malformed percent escape in path";
		hi = route_hexval(raw[i + 1], 1);
		lo = route_hexval(raw[i + 2], 1);
		if (hi < 0 || lo < 0)
			return "malformed percent escape in path";
		if (route_hexval(raw[i + 1], 0) < 0 ||
		    route_hexval(raw[i + 2], 0) < 0)
			return "non-canonical percent escape in path (lower-case hex)";
		c = (unsigned char)(hi << 4 | lo);
		if (c == '\0')
			return "encoded NUL in path";
		if (c == '/')
			return "encoded '/' in path";
		if (c == '\\')
			return "encoded backslash in path";
		if (c == '.')
			return "encoded dot in path";
		if (route_is_unreserved(c))
			return "non-canonical percent escape in path (unreserved character)";
		escaped = 1;
		if (dst != NULL)
			dst[o] = (char)c;
		o++;
		i += 2;
	}
	if ((o == 1 && raw[0] == '.') || (o == 2 && raw[0] == '.' &&
	    raw[1] == '.'))
		return "dot segment in path";
	if (escaped && dst != NULL &&
	    !route_utf8_valid((const unsigned char *)dst, o))
		return "path is not valid UTF-8";
	*outlen = o;
	return NULL;
}

static int
route_query_char_ok(unsigned char c)
{
	return route_is_pchar(c) || c == '/' || c == '?' || c == '%';
}

/*
 * Canonicalise an origin-form target (route.h has the refusals). On success
 * the segments borrow from target when the path has no escapes, else from
 * one allocation in out->store; the query always borrows from target.
 * On failure out is empty and err holds a fixed reason (never the input).
 */
int
route_parse_target(const char *target, size_t len, struct route_target *out,
    char *err, size_t errlen)
{
	const unsigned char	*t = (const unsigned char *)target;
	const char		*q, *reason = NULL;
	size_t			 plen, i, start, end, o = 0, dlen;
	char			*dst;

	memset(out, 0, sizeof(*out));
	q = memchr(target, '?', len);
	plen = q != NULL ? (size_t)(q - target) : len;
	if (q != NULL) {
		out->query = q + 1;
		out->query_len = len - plen - 1;
		for (i = plen + 1; i < len; i++) {
			if (t[i] == '#') {
				reason = "fragment in request target";
				goto fail;
			}
			if (!route_query_char_ok(t[i])) {
				reason = "character not allowed in query";
				goto fail;
			}
		}
	}
	if (memchr(target, '#', plen) != NULL) {
		reason = "fragment in request target";
		goto fail;
	}
	if (plen == 0 || t[0] != '/') {
		reason = "path does not start with '/'";
		goto fail;
	}
	if (plen == 1)
		return 0;
	/*
	 * Segments without escapes are borrowed from the target (no copy);
	 * only a path with '%' gets one allocation for the decoded bytes.
	 */
	if (memchr(target, '%', plen) != NULL &&
	    (out->store = malloc(plen)) == NULL) {
		reason = "out of memory";
		goto fail;
	}
	for (start = 1; start <= plen; start = end + 1) {
		for (end = start; end < plen && t[end] != '/'; end++)
			;
		if (end == start) {
			reason = end == plen ? "trailing '/' in path" :
			    "empty path segment";
			goto fail;
		}
		if (out->nseg == ROUTE_MAX_SEGS) {
			reason = "too many path segments";
			goto fail;
		}
		dst = out->store != NULL ? out->store + o : NULL;
		if ((reason = route_decode_segment(t + start, end - start, dst,
		    &dlen)) != NULL)
			goto fail;
		out->seg[out->nseg] = dst != NULL ? dst : target + start;
		out->seg_len[out->nseg] = dlen;
		out->nseg++;
		o += dlen;
	}
	return 0;

fail:
	if (out->store != NULL)
		OPENSSL_cleanse(out->store, plen);
	route_target_free(out);
	out->query = NULL;
	out->query_len = 0;
	route_seterr(err, errlen, reason);
	return -1;
}

/* Frees the decoded copy (wiped: paths can hold personal data). */
void
route_target_free(struct route_target *t)
{
	size_t	 i, n = 0;

	if (t == NULL)
		return;
	if (t->store != NULL) {
		/* Decoded segments are stored back to back. */
		for (i = 0; i < t->nseg; i++)
			n += t->seg_len[i];
		OPENSSL_cleanse(t->store, n);
		free(t->store);
	}
	t->store = NULL;
	t->nseg = 0;
}

static int
route_param_name_ok(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0 || !((s[0] >= 'A' && s[0] <= 'Z') ||
	    (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return 0;
	for (i = 1; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

/* Compile pattern into p (each segment its own string, freed by
 * route_pattern_free). 0, or -1 with a fixed reason and p empty. */
int
route_pattern_compile(const char *pattern, int allow_params,
    struct route_pattern *p, char *err, size_t errlen)
{
	const char	*reason = NULL, *s;
	size_t		 len, start, end, i, n;
	int		 param;

	memset(p, 0, sizeof(*p));
	len = strlen(pattern);
	if (len == 0 || pattern[0] != '/') {
		reason = "pattern does not start with '/'";
		goto fail;
	}
	if (len == 1)
		return 0;
	for (start = 1; start <= len; start = end + 1) {
		for (end = start; end < len && pattern[end] != '/'; end++)
			;
		s = pattern + start;
		n = end - start;
		if (n == 0) {
			reason = end == len ? "pattern has a trailing '/'" :
			    "pattern has an empty segment";
			goto fail;
		}
		if (p->nseg == ROUTE_MAX_SEGS) {
			reason = "pattern has too many segments";
			goto fail;
		}
		if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' &&
		    s[1] == '.')) {
			reason = "pattern has a dot segment";
			goto fail;
		}
		param = n >= 2 && s[0] == '{' && s[n - 1] == '}';
		if (param) {
			if (!allow_params) {
				reason = "parameters are not allowed here";
				goto fail;
			}
			if (!route_param_name_ok(s + 1, n - 2)) {
				reason = "parameter name must match "
				    "[A-Za-z_][A-Za-z0-9_]*";
				goto fail;
			}
			if (p->nparams == ROUTE_MAX_PARAMS) {
				reason = "pattern has too many parameters";
				goto fail;
			}
			s++;
			n -= 2;
			for (i = 0; i < p->nseg; i++)
				if (p->is_param[i] && strlen(p->seg[i]) == n &&
				    memcmp(p->seg[i], s, n) == 0) {
					reason = "parameter name repeated";
					goto fail;
				}
		} else {
			for (i = 0; i < n; i++) {
				if (s[i] == '{' || s[i] == '}') {
					reason = "'{' and '}' must enclose a "
					    "whole segment";
					goto fail;
				}
				if (!route_is_pchar((unsigned char)s[i])) {
					reason = "pattern has a character that "
					    "needs escaping";
					goto fail;
				}
			}
		}
		if ((p->seg[p->nseg] = strndup(s, n)) == NULL) {
			reason = "out of memory";
			goto fail;
		}
		p->is_param[p->nseg] = param;
		p->nseg++;
		if (param)
			p->nparams++;
	}
	return 0;

fail:
	route_pattern_free(p);
	route_seterr(err, errlen, reason);
	return -1;
}

/* Free a compiled pattern's segments; p may be NULL. */
void
route_pattern_free(struct route_pattern *p)
{
	size_t	 i;

	if (p == NULL)
		return;
	for (i = 0; i < p->nseg; i++) {
		free(p->seg[i]);
		p->seg[i] = NULL;
	}
	p->nseg = 0;
	p->nparams = 0;
}

static int
route_seg_equal(const char *lit, const char *s, size_t len)
{
	return strncmp(lit, s, len) == 0 && lit[len] == '\0';
}

/* 1 when t's segments from first on match p exactly; parameter values
 * (borrowed from t) go to vals/lens in pattern order when not NULL. */
int
route_pattern_match(const struct route_pattern *p,
    const struct route_target *t, size_t first, const char **vals,
    size_t *lens)
{
	size_t	 i, k = 0;

	if (first > t->nseg || t->nseg - first != p->nseg)
		return 0;
	for (i = 0; i < p->nseg; i++) {
		if (p->is_param[i])
			continue;
		/* Decoded segments may hold NUL-free bytes only (%00 is
		 * refused), so a C-string compare with length is exact. */
		if (!route_seg_equal(p->seg[i], t->seg[first + i],
		    t->seg_len[first + i]))
			return 0;
	}
	for (i = 0; i < p->nseg; i++) {
		if (!p->is_param[i])
			continue;
		if (vals != NULL)
			vals[k] = t->seg[first + i];
		if (lens != NULL)
			lens[k] = t->seg_len[first + i];
		k++;
	}
	return 1;
}

/* 1 when p's literal segments are the first segments of t. */
int
route_prefix_match(const struct route_pattern *p, const struct route_target *t)
{
	size_t	 i;

	if (t->nseg < p->nseg)
		return 0;
	for (i = 0; i < p->nseg; i++)
		if (p->is_param[i] ||
		    !route_seg_equal(p->seg[i], t->seg[i], t->seg_len[i]))
			return 0;
	return 1;
}

/* Append s[0..len) percent-encoded canonically (unreserved characters as
 * is, every other byte %XX upper-case). 0, or -1 when out's limit or memory
 * runs out (out unchanged). */
int
route_encode(struct buf *out, const char *s, size_t len)
{
	static const char	 hex[] = "0123456789ABCDEF";
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 i, need = 0;
	char			*w;

	for (i = 0; i < len; i++)
		need += route_is_unreserved(u[i]) ? 1 : 3;
	if (buf_reserve(out, need) == -1)
		return -1;
	w = out->data + out->len;
	for (i = 0; i < len; i++) {
		if (route_is_unreserved(u[i]))
			*w++ = (char)u[i];
		else {
			*w++ = '%';
			*w++ = hex[u[i] >> 4];
			*w++ = hex[u[i] & 0xf];
		}
	}
	out->len += need;
	out->data[out->len] = '\0';
	return 0;
}

/* Start iterating q[0..len) (q may be NULL: no pairs). */
void
route_query_init(struct route_query_iter *it, const char *q, size_t len)
{
	memset(it, 0, sizeof(*it));
	it->p = q;
	it->end = q != NULL ? q + len : NULL;
}

/* Form-decode s[0..len) into b. NULL or a fixed reason. */
static const char *
route_form_decode(struct buf *b, const char *s, size_t len)
{
	size_t	 i;
	int	 hi, lo;
	char	 c;

	buf_reset(b);
	if (buf_reserve(b, len) == -1)
		return "out of memory";
	for (i = 0; i < len; i++) {
		c = s[i];
		if (c == '+')
			c = ' ';
		else if (c == '%') {
			if (len - i < 3 ||
			    (hi = route_hexval((unsigned char)s[i + 1], 1)) < 0 ||
			    (lo = route_hexval((unsigned char)s[i + 2], 1)) < 0)
				return "malformed percent escape in query";
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		b->data[b->len++] = c;
	}
	b->data[b->len] = '\0';
	if (!route_utf8_valid((const unsigned char *)b->data, b->len))
		return "query is not valid UTF-8";
	return NULL;
}

/* The next non-empty pair, form-decoded into it->name/value: 1, 0 at the
 * end, -1 with a fixed reason (iteration then stays at the end). */
int
route_query_next(struct route_query_iter *it, char *err, size_t errlen)
{
	const char	*pair, *amp, *eq, *reason;
	size_t		 plen;

	while (it->p != NULL && it->p < it->end) {
		pair = it->p;
		amp = memchr(pair, '&', (size_t)(it->end - pair));
		plen = amp != NULL ? (size_t)(amp - pair) :
		    (size_t)(it->end - pair);
		it->p = amp != NULL ? amp + 1 : it->end;
		if (plen == 0)
			continue;
		eq = memchr(pair, '=', plen);
		it->has_value = eq != NULL;
		if ((reason = route_form_decode(&it->name, pair,
		    eq != NULL ? (size_t)(eq - pair) : plen)) != NULL)
			goto fail;
		/* Names are looked up as C strings elsewhere. */
		if (memchr(it->name.data, '\0', it->name.len) != NULL) {
			reason = "NUL in query parameter name";
			goto fail;
		}
		if ((reason = route_form_decode(&it->value,
		    eq != NULL ? eq + 1 : pair + plen,
		    eq != NULL ? plen - (size_t)(eq - pair) - 1 : 0)) != NULL)
			goto fail;
		return 1;
	}
	return 0;

fail:
	it->p = it->end;
	buf_reset(&it->name);
	buf_reset(&it->value);
	route_seterr(err, errlen, reason);
	return -1;
}

/* Free (and wipe) the iterator's buffers; it may be NULL. */
void
route_query_free(struct route_query_iter *it)
{
	if (it == NULL)
		return;
	buf_free(&it->name);
	buf_free(&it->value);
}
