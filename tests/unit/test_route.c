/* test_route.c -- request-target canonicalisation, patterns, encoding, queries */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "route.h"

/*
 * A canonicalisation vector. segs: the decoded segments joined with '|'
 * (NULL when refused); query: the raw query expected (NULL: none); reason:
 * the exact refusal.
 */
struct tvec {
	const char	*target;
	const char	*segs;
	const char	*query;
	const char	*reason;
};

static const struct tvec tvecs[] = {
	/* accepted */
	{ "/", "", NULL, NULL },
	{ "/a", "a", NULL, NULL },
	{ "/v1/contacts", "v1|contacts", NULL, NULL },
	{ "/v1/contacts/42?fields=a,b", "v1|contacts|42", "fields=a,b", NULL },
	{ "/?x=1", "", "x=1", NULL },
	{ "/a?", "a", "", NULL },
	{ "/a?b?c/d", "a", "b?c/d", NULL },
	{ "/a%20b", "a b", NULL, NULL },
	{ "/caf%C3%A9", "caf\xc3\xa9", NULL, NULL },
	{ "/%F0%9F%98%80", "\xf0\x9f\x98\x80", NULL, NULL },
	{ "/a;b=c", "a;b=c", NULL, NULL },
	{ "/user@host:80", "user@host:80", NULL, NULL },
	{ "/!$&'()*+,;=", "!$&'()*+,;=", NULL, NULL },
	{ "/a-b.c_d~e", "a-b.c_d~e", NULL, NULL },
	{ "/...", "...", NULL, NULL },
	{ "/.a", ".a", NULL, NULL },
	{ "/a%3Bb", "a;b", NULL, NULL },
	{ "/%25", "%", NULL, NULL },
	{ "/a%0Ab", "a\nb", NULL, NULL },
	{ "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/21/22/23/24/25/"
	  "26/27/28/29/30/31/32", "1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17|18|"
	  "19|20|21|22|23|24|25|26|27|28|29|30|31|32", NULL, NULL },
	/* refused */
	{ "", NULL, NULL, "path does not start with '/'" },
	{ "a/b", NULL, NULL, "path does not start with '/'" },
	{ "*", NULL, NULL, "path does not start with '/'" },
	{ "http://h/a", NULL, NULL, "path does not start with '/'" },
	{ "?a", NULL, NULL, "path does not start with '/'" },
	{ "/a#f", NULL, NULL, "fragment in request target" },
	{ "/a?b#f", NULL, NULL, "fragment in request target" },
	{ "//", NULL, NULL, "empty path segment" },
	{ "//a", NULL, NULL, "empty path segment" },
	{ "/a//b", NULL, NULL, "empty path segment" },
	{ "/a/", NULL, NULL, "trailing '/' in path" },
	{ "/a/?q", NULL, NULL, "trailing '/' in path" },
	{ "/.", NULL, NULL, "dot segment in path" },
	{ "/..", NULL, NULL, "dot segment in path" },
	{ "/a/../b", NULL, NULL, "dot segment in path" },
	{ "/a/./b", NULL, NULL, "dot segment in path" },
	{ "/%2E", NULL, NULL, "encoded dot in path" },
	{ "/%2E%2E/etc", NULL, NULL, "encoded dot in path" },
	{ "/.%2E", NULL, NULL, "encoded dot in path" },
	{ "/a%2Fb", NULL, NULL, "encoded '/' in path" },
	{ "/a%2fb", NULL, NULL,
	  "non-canonical percent escape in path (lower-case hex)" },
	{ "/a\\b", NULL, NULL, "backslash in path" },
	{ "/a%5Cb", NULL, NULL, "encoded backslash in path" },
	{ "/a%00", NULL, NULL, "encoded NUL in path" },
	{ "/a%G1", NULL, NULL, "malformed percent escape in path" },
	{ "/a%4", NULL, NULL, "malformed percent escape in path" },
	{ "/a%", NULL, NULL, "malformed percent escape in path" },
	{ "/a%4?x", NULL, NULL, "malformed percent escape in path" },
	{ "/%c3%a9", NULL, NULL,
	  "non-canonical percent escape in path (lower-case hex)" },
	{ "/%41", NULL, NULL,
	  "non-canonical percent escape in path (unreserved character)" },
	{ "/%7E", NULL, NULL,
	  "non-canonical percent escape in path (unreserved character)" },
	{ "/%30", NULL, NULL,
	  "non-canonical percent escape in path (unreserved character)" },
	{ "/%5F", NULL, NULL,
	  "non-canonical percent escape in path (unreserved character)" },
	{ "/%C3", NULL, NULL, "path is not valid UTF-8" },
	{ "/%C0%AF", NULL, NULL, "path is not valid UTF-8" },
	{ "/%ED%A0%80", NULL, NULL, "path is not valid UTF-8" },
	{ "/%F4%90%80%80", NULL, NULL, "path is not valid UTF-8" },
	{ "/%FF", NULL, NULL, "path is not valid UTF-8" },
	{ "/a b", NULL, NULL, "character not allowed in path" },
	{ "/a\"b", NULL, NULL, "character not allowed in path" },
	{ "/a<b>", NULL, NULL, "character not allowed in path" },
	{ "/{id}", NULL, NULL, "character not allowed in path" },
	{ "/caf\xc3\xa9", NULL, NULL, "character not allowed in path" },
	{ "/a\tb", NULL, NULL, "character not allowed in path" },
	{ "/a?b c", NULL, NULL, "character not allowed in query" },
	{ "/a?b[]=1", NULL, NULL, "character not allowed in query" },
	{ "/a?\xc3\xa9", NULL, NULL, "character not allowed in query" },
	{ "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/21/22/23/24/25/"
	  "26/27/28/29/30/31/32/33", NULL, NULL, "too many path segments" },
};

static void
join_segs(const struct route_target *t, char *out, size_t outlen)
{
	size_t	 i, o = 0;

	out[0] = '\0';
	for (i = 0; i < t->nseg; i++) {
		assert_true(o + t->seg_len[i] + 2 < outlen);
		if (i > 0)
			out[o++] = '|';
		memcpy(out + o, t->seg[i], t->seg_len[i]);
		o += t->seg_len[i];
	}
	out[o] = '\0';
}

static void
test_target_vectors(void **state)
{
	struct route_target	 t;
	char			 err[128], got[512];
	size_t			 i, ngood = 0, nbad = 0;
	int			 rc;

	(void)state;
	for (i = 0; i < sizeof(tvecs) / sizeof(tvecs[0]); i++) {
		const struct tvec *v = &tvecs[i];

		err[0] = '\0';
		rc = route_parse_target(v->target, strlen(v->target), &t, err,
		    sizeof(err));
		if (v->segs != NULL) {
			if (rc != 0)
				fail_msg("vector %zu \"%s\": refused: %s", i,
				    v->target, err);
			join_segs(&t, got, sizeof(got));
			assert_string_equal(got, v->segs);
			if (v->query == NULL)
				assert_null(t.query);
			else {
				assert_non_null(t.query);
				assert_int_equal(t.query_len, strlen(v->query));
				assert_memory_equal(t.query, v->query,
				    t.query_len);
			}
			route_target_free(&t);
			assert_null(t.store);
			ngood++;
		} else {
			if (rc != -1)
				fail_msg("vector %zu \"%s\": accepted", i,
				    v->target);
			assert_string_equal(err, v->reason);
			assert_null(t.store);
			assert_int_equal(t.nseg, 0);
			nbad++;
		}
	}
	assert_true(ngood >= 15);
	assert_true(nbad >= 40);
}

/* Embedded NUL in the target (len-based API): refused, never truncated. */
static void
test_target_embedded_nul(void **state)
{
	struct route_target	 t;
	char			 err[128];
	static const char	 raw[] = "/a\0b";

	(void)state;
	assert_int_equal(route_parse_target(raw, sizeof(raw) - 1, &t, err,
	    sizeof(err)), -1);
	assert_string_equal(err, "character not allowed in path");
}

/* Segments without escapes borrow from the target; escapes allocate. */
static void
test_target_storage(void **state)
{
	struct route_target	 t;
	const char		*a = "/x/y";
	const char		*b = "/x/%C3%A9";

	(void)state;
	assert_int_equal(route_parse_target(a, strlen(a), &t, NULL, 0), 0);
	assert_null(t.store);
	assert_ptr_equal(t.seg[1], a + 3);
	route_target_free(&t);
	assert_int_equal(route_parse_target(b, strlen(b), &t, NULL, 0), 0);
	assert_non_null(t.store);
	assert_int_equal(t.seg_len[1], 2);
	assert_memory_equal(t.seg[1], "\xc3\xa9", 2);
	route_target_free(&t);
	route_target_free(&t);	/* idempotent */
	route_target_free(NULL);
}

struct pvec {
	const char	*pattern;
	int		 allow_params;
	const char	*reason;	/* NULL: compiles */
};

static const struct pvec pvecs[] = {
	{ "/", 0, NULL },
	{ "/crm", 0, NULL },
	{ "/crm/v2", 0, NULL },
	{ "/v1/contacts/{id}", 1, NULL },
	{ "/v1/{a}/x/{B_2}", 1, NULL },
	{ "/a:b@c", 0, NULL },
	{ "", 0, "pattern does not start with '/'" },
	{ "crm", 0, "pattern does not start with '/'" },
	{ "//", 0, "pattern has an empty segment" },
	{ "/a//b", 0, "pattern has an empty segment" },
	{ "/a/", 0, "pattern has a trailing '/'" },
	{ "/./a", 0, "pattern has a dot segment" },
	{ "/a/..", 1, "pattern has a dot segment" },
	{ "/v1/{id}", 0, "parameters are not allowed here" },
	{ "/v1/{}", 1, "parameter name must match [A-Za-z_][A-Za-z0-9_]*" },
	{ "/v1/{1d}", 1, "parameter name must match [A-Za-z_][A-Za-z0-9_]*" },
	{ "/v1/{a-b}", 1, "parameter name must match [A-Za-z_][A-Za-z0-9_]*" },
	{ "/v1/x{id}", 1, "'{' and '}' must enclose a whole segment" },
	{ "/v1/{id", 1, "'{' and '}' must enclose a whole segment" },
	{ "/v1/id}", 1, "'{' and '}' must enclose a whole segment" },
	{ "/{id}/{id}", 1, "parameter name repeated" },
	{ "/a b", 0, "pattern has a character that needs escaping" },
	{ "/a%20b", 0, "pattern has a character that needs escaping" },
	{ "/a?b", 0, "pattern has a character that needs escaping" },
	{ "/a\\b", 0, "pattern has a character that needs escaping" },
};

static void
test_pattern_compile(void **state)
{
	struct route_pattern	 p;
	char			 err[128];
	size_t			 i;
	int			 rc;

	(void)state;
	for (i = 0; i < sizeof(pvecs) / sizeof(pvecs[0]); i++) {
		err[0] = '\0';
		rc = route_pattern_compile(pvecs[i].pattern,
		    pvecs[i].allow_params, &p, err, sizeof(err));
		if (pvecs[i].reason == NULL) {
			if (rc != 0)
				fail_msg("\"%s\": %s", pvecs[i].pattern, err);
			route_pattern_free(&p);
		} else {
			if (rc != -1)
				fail_msg("\"%s\" compiled", pvecs[i].pattern);
			assert_string_equal(err, pvecs[i].reason);
			assert_int_equal(p.nseg, 0);
		}
	}
	assert_int_equal(route_pattern_compile("/v1/{a}/x/{b}", 1, &p, err,
	    sizeof(err)), 0);
	assert_int_equal(p.nseg, 4);
	assert_int_equal(p.nparams, 2);
	assert_string_equal(p.seg[1], "a");
	assert_true(p.is_param[1]);
	assert_string_equal(p.seg[2], "x");
	assert_false(p.is_param[2]);
	route_pattern_free(&p);
	route_pattern_free(NULL);
}

static void
test_pattern_match(void **state)
{
	struct route_pattern	 pre, ep, root;
	struct route_target	 t;
	const char		*vals[ROUTE_MAX_PARAMS];
	size_t			 lens[ROUTE_MAX_PARAMS];
	const char		*tg;

	(void)state;
	assert_int_equal(route_pattern_compile("/crm", 0, &pre, NULL, 0), 0);
	assert_int_equal(route_pattern_compile("/v1/contacts/{id}/notes/{n}",
	    1, &ep, NULL, 0), 0);
	assert_int_equal(route_pattern_compile("/", 0, &root, NULL, 0), 0);

	tg = "/crm/v1/contacts/a%20b/notes/7?x=1";
	assert_int_equal(route_parse_target(tg, strlen(tg), &t, NULL, 0), 0);
	assert_int_equal(route_prefix_match(&pre, &t), 1);
	assert_int_equal(route_prefix_match(&root, &t), 1);
	assert_int_equal(route_pattern_match(&ep, &t, 1, vals, lens), 1);
	assert_int_equal(lens[0], 3);
	assert_memory_equal(vals[0], "a b", 3);
	assert_int_equal(lens[1], 1);
	assert_memory_equal(vals[1], "7", 1);
	/* wrong offset, wrong count */
	assert_int_equal(route_pattern_match(&ep, &t, 0, vals, lens), 0);
	assert_int_equal(route_pattern_match(&ep, &t, 2, vals, lens), 0);
	assert_int_equal(route_pattern_match(&ep, &t, 7, vals, lens), 0);
	route_target_free(&t);

	/* /crmx is not under /crm; /cr neither */
	tg = "/crmx/v1";
	assert_int_equal(route_parse_target(tg, strlen(tg), &t, NULL, 0), 0);
	assert_int_equal(route_prefix_match(&pre, &t), 0);
	route_target_free(&t);
	tg = "/cr";
	assert_int_equal(route_parse_target(tg, strlen(tg), &t, NULL, 0), 0);
	assert_int_equal(route_prefix_match(&pre, &t), 0);
	route_target_free(&t);
	/* the prefix alone matches, with zero endpoint segments left */
	tg = "/crm";
	assert_int_equal(route_parse_target(tg, strlen(tg), &t, NULL, 0), 0);
	assert_int_equal(route_prefix_match(&pre, &t), 1);
	assert_int_equal(route_pattern_match(&root, &t, 1, NULL, NULL), 1);
	route_target_free(&t);
	/* a literal segment differs */
	tg = "/crm/v1/contactz/1/notes/2";
	assert_int_equal(route_parse_target(tg, strlen(tg), &t, NULL, 0), 0);
	assert_int_equal(route_pattern_match(&ep, &t, 1, vals, lens), 0);
	route_target_free(&t);
	/* a literal is compared after decoding: %3B is ';' */
	route_pattern_free(&pre);
	assert_int_equal(route_pattern_compile("/a;b", 0, &pre, NULL, 0), 0);
	tg = "/a%3Bb";
	assert_int_equal(route_parse_target(tg, strlen(tg), &t, NULL, 0), 0);
	assert_int_equal(route_prefix_match(&pre, &t), 1);
	route_target_free(&t);
	tg = "/a;";
	assert_int_equal(route_parse_target(tg, strlen(tg), &t, NULL, 0), 0);
	assert_int_equal(route_prefix_match(&pre, &t), 0);
	route_target_free(&t);

	route_pattern_free(&pre);
	route_pattern_free(&ep);
	route_pattern_free(&root);
}

static void
test_encode(void **state)
{
	static const struct { const char *in; size_t len; const char *out; }
	    ev[] = {
		{ "abcXYZ019-._~", 13, "abcXYZ019-._~" },
		{ "a b", 3, "a%20b" },
		{ "a/b?c#d%e", 9, "a%2Fb%3Fc%23d%25e" },
		{ "caf\xc3\xa9", 5, "caf%C3%A9" },
		{ "a;b:c@d+e", 9, "a%3Bb%3Ac%40d%2Be" },
		{ "\0\n\xff", 3, "%00%0A%FF" },
		{ "", 0, "" },
	};
	struct buf		 b = { 0 };
	struct route_target	 t;
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof(ev) / sizeof(ev[0]); i++) {
		buf_reset(&b);
		assert_int_equal(route_encode(&b, ev[i].in, ev[i].len), 0);
		assert_string_equal(b.data == NULL ? "" : b.data, ev[i].out);
	}
	/* round trip: an encoded UTF-8 segment parses back to itself */
	buf_reset(&b);
	assert_int_equal(buf_append_char(&b, '/'), 0);
	assert_int_equal(route_encode(&b, "x y;\xc3\xa9~", 7), 0);
	assert_int_equal(route_parse_target(b.data, b.len, &t, NULL, 0), 0);
	assert_int_equal(t.nseg, 1);
	assert_int_equal(t.seg_len[0], 7);
	assert_memory_equal(t.seg[0], "x y;\xc3\xa9~", 7);
	route_target_free(&t);
	/* a bounded buffer refuses instead of truncating */
	buf_free(&b);
	b.max = 5;
	assert_int_equal(route_encode(&b, "a b", 3), 0);
	assert_int_equal(route_encode(&b, "c", 1), -1);
	assert_int_equal(b.len, 5);
	buf_free(&b);
}

/* Iterate q and join "name=value" (or "name" without '=') with '&'. */
static int
query_join(const char *q, char *out, size_t outlen, char *err, size_t errlen)
{
	struct route_query_iter	 it;
	size_t			 o = 0;
	int			 rc;

	out[0] = '\0';
	route_query_init(&it, q, q != NULL ? strlen(q) : 0);
	while ((rc = route_query_next(&it, err, errlen)) == 1) {
		o += (size_t)snprintf(out + o, outlen - o, "%s[%s]%s%s",
		    o ? "&" : "", it.name.data, it.has_value ? "=" : "",
		    it.has_value ? it.value.data : "");
		assert_true(o < outlen);
	}
	route_query_free(&it);
	return rc;
}

static void
test_query(void **state)
{
	static const struct { const char *q; const char *out; const char *err; }
	    qv[] = {
		{ "a=1&b=2", "[a]=1&[b]=2", NULL },
		{ "a", "[a]", NULL },
		{ "a=", "[a]=", NULL },
		{ "a&&b&", "[a]&[b]", NULL },
		{ "&&", "", NULL },
		{ "", "", NULL },
		{ "x+y=c+d", "[x y]=c d", NULL },
		{ "a%20b=%2B%2b", "[a b]=++", NULL },
		{ "e=caf%C3%A9&f=caf%c3%a9", "[e]=caf\xc3\xa9&[f]=caf\xc3\xa9", NULL },
		{ "a=b=c", "[a]=b=c", NULL },
		{ "=v", "[]=v", NULL },
		{ "v=%00", "[v]=", NULL },
		{ "a=%G1", NULL, "malformed percent escape in query" },
		{ "a=%4", NULL, "malformed percent escape in query" },
		{ "ok=1&a%=1", NULL, "malformed percent escape in query" },
		{ "a=%FF", NULL, "query is not valid UTF-8" },
		{ "a=%C0%80", NULL, "query is not valid UTF-8" },
		{ "%ED%B0%80=1", NULL, "query is not valid UTF-8" },
		{ "a%00b=1", NULL, "NUL in query parameter name" },
	};
	char	 out[256], err[128];
	size_t	 i;
	int	 rc;

	(void)state;
	for (i = 0; i < sizeof(qv) / sizeof(qv[0]); i++) {
		err[0] = '\0';
		rc = query_join(qv[i].q, out, sizeof(out), err, sizeof(err));
		if (qv[i].out != NULL) {
			if (rc != 0)
				fail_msg("\"%s\": %s", qv[i].q, err);
			assert_string_equal(out, qv[i].out);
		} else {
			if (rc != -1)
				fail_msg("\"%s\" accepted", qv[i].q);
			assert_string_equal(err, qv[i].err);
		}
	}
	/* value with NUL keeps its length */
	{
		struct route_query_iter it;

		route_query_init(&it, "v=a%00b", 7);
		assert_int_equal(route_query_next(&it, err, sizeof(err)), 1);
		assert_int_equal(it.value.len, 3);
		assert_memory_equal(it.value.data, "a\0b", 3);
		assert_int_equal(route_query_next(&it, err, sizeof(err)), 0);
		/* after the end it stays at the end */
		assert_int_equal(route_query_next(&it, err, sizeof(err)), 0);
		route_query_free(&it);
	}
	/* a NULL query (none in the target) iterates nothing */
	assert_int_equal(query_join(NULL, out, sizeof(out), err, sizeof(err)),
	    0);
	/* the query of a parsed target iterates */
	{
		struct route_target	 t;
		const char		*tg = "/a?x=1&y=%C3%A9";

		assert_int_equal(route_parse_target(tg, strlen(tg), &t, NULL,
		    0), 0);
		memcpy(out, t.query, t.query_len);
		out[t.query_len] = '\0';
		assert_int_equal(query_join(out, out + 64, sizeof(out) - 64,
		    err, sizeof(err)), 0);
		assert_string_equal(out + 64, "[x]=1&[y]=\xc3\xa9");
		route_target_free(&t);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_target_vectors),
		cmocka_unit_test(test_target_embedded_nul),
		cmocka_unit_test(test_target_storage),
		cmocka_unit_test(test_pattern_compile),
		cmocka_unit_test(test_pattern_match),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_query),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
