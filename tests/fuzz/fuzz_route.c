/* fuzz_route.c -- libFuzzer target: request-target canonicalisation and query iteration */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "route.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Every accepted target must re-encode (canonically, segment by segment)
 * into a target that parses to the same segments and query; the query
 * iterator must terminate without reading past its input.
 */
static void
fuzz_check_reencode(const struct route_target *t)
{
	struct route_target	 t2;
	struct buf		 b = { 0 };
	size_t			 i;
	char			 err[128];

	if (t->nseg == 0 && buf_append_char(&b, '/') == -1)
		abort();
	for (i = 0; i < t->nseg; i++)
		if (buf_append_char(&b, '/') == -1 ||
		    route_encode(&b, t->seg[i], t->seg_len[i]) == -1)
			abort();
	if (t->query != NULL && (buf_append_char(&b, '?') == -1 ||
	    buf_append(&b, t->query, t->query_len) == -1))
		abort();
	if (route_parse_target(b.data, b.len, &t2, err, sizeof(err)) != 0)
		abort();
	if (t2.nseg != t->nseg)
		abort();
	for (i = 0; i < t->nseg; i++)
		if (t2.seg_len[i] != t->seg_len[i] ||
		    memcmp(t2.seg[i], t->seg[i], t->seg_len[i]) != 0)
			abort();
	if ((t->query == NULL) != (t2.query == NULL) ||
	    t2.query_len != t->query_len ||
	    (t->query != NULL && memcmp(t->query, t2.query, t->query_len)))
		abort();
	route_target_free(&t2);
	buf_free(&b);
}

static void
fuzz_query(const char *q, size_t len)
{
	struct route_query_iter	 it;
	char			 err[128];
	size_t			 n = 0;
	int			 rc;

	route_query_init(&it, q, len);
	while ((rc = route_query_next(&it, err, sizeof(err))) == 1) {
		/* a pair decodes to at most its own length */
		if (it.name.len + it.value.len > len)
			abort();
		if (++n > len)
			abort();
	}
	if (rc == -1 && err[0] == '\0')
		abort();
	route_query_free(&it);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct route_target	 t;
	struct route_pattern	 p;
	char			 err[128], *s;

	err[0] = '\0';
	if (route_parse_target((const char *)data, size, &t, err,
	    sizeof(err)) == 0) {
		fuzz_check_reencode(&t);
		if (t.query != NULL)
			fuzz_query(t.query, t.query_len);
		route_target_free(&t);
	} else if (err[0] == '\0')
		abort();
	/* the raw input as a form body, and as a pattern */
	fuzz_query((const char *)data, size);
	if ((s = strndup((const char *)data, size)) == NULL)
		return 0;
	if (route_pattern_compile(s, 1, &p, err, sizeof(err)) == 0) {
		if (p.nseg > ROUTE_MAX_SEGS || p.nparams > ROUTE_MAX_PARAMS)
			abort();
		route_pattern_free(&p);
	}
	free(s);
	return 0;
}
