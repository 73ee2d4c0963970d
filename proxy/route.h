/* route.h -- request-target canonicalisation and endpoint path patterns (pure) */
#ifndef SUBGATE_ROUTE_H
#define SUBGATE_ROUTE_H

#include <stddef.h>

#include "buf.h"

#define ROUTE_MAX_SEGS		32
#define ROUTE_MAX_PARAMS	16

/*
 * A canonicalised origin-form request target: the path split into
 * percent-decoded segments, and the raw query (after '?', not decoded).
 */
struct route_target {
	char		*store;			/* owns the decoded bytes */
	const char	*seg[ROUTE_MAX_SEGS];
	size_t		 seg_len[ROUTE_MAX_SEGS];
	size_t		 nseg;
	const char	*query;			/* borrowed from the target; NULL if none */
	size_t		 query_len;
};

/*
 * Parse and canonicalise target[0..len). Refused (-1 with err): not
 * starting with '/', a fragment, empty segments ("//", but a lone "/" is the
 * root with zero segments), "." or ".." segments (also when encoded), an
 * encoded '/', '\' raw or encoded, %00, malformed or lower-case escapes,
 * escapes of unreserved characters (non-canonical), decoded bytes that are
 * not valid UTF-8, more than ROUTE_MAX_SEGS segments. A trailing '/' is an
 * empty last segment and is refused too.
 */
int	route_parse_target(const char *target, size_t len,
	    struct route_target *out, char *err, size_t errlen);
void	route_target_free(struct route_target *t);

/* A compiled endpoint or prefix pattern: "/v1/contacts/{id}". */
struct route_pattern {
	size_t	 nseg;
	char	*seg[ROUTE_MAX_SEGS];	/* literal text, or the parameter name */
	int	 is_param[ROUTE_MAX_SEGS];
	size_t	 nparams;
};

/*
 * Compile a pattern. allow_params: 0 for integration prefixes. Refused:
 * not starting with '/', empty segments, trailing '/', '.'/'..', '{' or '}'
 * other than around a whole segment, a parameter name not matching
 * [A-Za-z_][A-Za-z0-9_]*, a repeated parameter name, characters that need
 * escaping. "/" alone is zero segments.
 */
int	route_pattern_compile(const char *pattern, int allow_params,
	    struct route_pattern *p, char *err, size_t errlen);
void	route_pattern_free(struct route_pattern *p);

/*
 * Does t->seg[first..] match p exactly (same segment count)? On a match
 * returns 1 and fills vals/lens with the parameter values in pattern order
 * (borrowed from t). 0 otherwise.
 */
int	route_pattern_match(const struct route_pattern *p,
	    const struct route_target *t, size_t first,
	    const char **vals, size_t *lens);
/* Do the first p->nseg segments of t equal p's (literal) segments? */
int	route_prefix_match(const struct route_pattern *p,
	    const struct route_target *t);

/* Append s[0..len) percent-encoded canonically: unreserved characters
 * (ALPHA DIGIT - . _ ~) as is, every other byte as %XX upper-case. */
int	route_encode(struct buf *out, const char *s, size_t len);

/*
 * Query string iteration (application/x-www-form-urlencoded rules: '&'
 * separates, '+' is a space, %XX decoded). Used for query strings and form
 * bodies.
 */
struct route_query_iter {
	const char	*p;
	const char	*end;
	struct buf	 name;	/* decoded name of the current pair */
	struct buf	 value;	/* decoded value */
	int		 has_value;	/* "a=" vs "a" */
};

void	route_query_init(struct route_query_iter *it, const char *q, size_t len);
/* 1 and the next pair in it->name/value, 0 at the end, -1 with err on a
 * malformed escape or on decoded bytes that are not valid UTF-8. Empty
 * pairs ("a&&b") are skipped. */
int	route_query_next(struct route_query_iter *it, char *err, size_t errlen);
void	route_query_free(struct route_query_iter *it);

#endif
