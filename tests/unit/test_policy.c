/* test_policy.c -- policy rules: grammar, conflicts, JSON filtering, reports, responses, collecting, names */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"
#include "policy.h"

#define DEPTH	32

/* ---- path grammar ---- */

struct path_vec {
	const char	*path;
	const char	*why;	/* NULL: valid; else expected in err */
};

static const struct path_vec path_vecs[] = {
	{ "a", NULL },
	{ "a.b", NULL },
	{ "a[]", NULL },
	{ "a[].b", NULL },
	{ "a[][]", NULL },
	{ "a[][].b[]", NULL },
	{ "*", NULL },
	{ "a.*", NULL },
	{ "*.b", NULL },
	{ "*[]", NULL },
	{ "**", NULL },
	{ "a.**", NULL },
	{ "a[].**", NULL },
	{ "*.**", NULL },
	{ "\"a.b\"", NULL },
	{ "contact.\"e.mail\".x", NULL },
	{ "\"\"", NULL },
	{ "\"a\\\"b\"", NULL },
	{ "\"a\\\\b\"", NULL },
	{ "\"*\"", NULL },
	{ "\"[]\"[]", NULL },
	{ "a b.c-d_e", NULL },
	{ "\xc3\xa9t\xc3\xa9.x", NULL },
	{ "", "field path is empty" },
	{ "contact..email", "field path \"contact..email\" has an empty segment" },
	{ ".a", "has an empty segment" },
	{ "a.", "has an empty segment" },
	{ "[]", "starts with [] (the root is an object)" },
	{ "[].a", "starts with []" },
	{ "a.[]", "has [] without a key before it" },
	{ "a[", "has [ without ]" },
	{ "a[x]", "has [ without ]" },
	{ "a]", "has an unmatched ]" },
	{ "a.]", "has an unmatched ]" },
	{ "**.a", "** must be the last segment" },
	{ "a.**.b", "** must be the last segment" },
	{ "a.**[]", "** must be the last segment" },
	{ "***", "quote it" },
	{ "a*", "quote it" },
	{ "*a", "quote it" },
	{ "a.b*c", "quote it" },
	{ "a\"b\"", "quote it" },
	{ "\"abc", "has an unterminated quote" },
	{ "a.\"b", "has an unterminated quote" },
	{ "\"a\\x\"", "bad escape in a quoted key" },
	{ "\"a\"b", "not '.'" },
	{ "a[]b", "not '.'" },
	{ "a.\xff", "not valid UTF-8" },
};

static void
test_path_grammar(void **state)
{
	struct policy_rules	*r;
	char			 err[256];
	size_t			 i;
	int			 rc;

	(void)state;
	for (i = 0; i < sizeof(path_vecs) / sizeof(path_vecs[0]); i++) {
		assert_non_null(r = policy_rules_new());
		err[0] = '\0';
		rc = policy_rules_add(r, path_vecs[i].path, POLICY_ALLOW, err,
		    sizeof(err));
		if (path_vecs[i].why == NULL && rc != 0)
			fail_msg("\"%s\": refused: %s", path_vecs[i].path, err);
		if (path_vecs[i].why != NULL) {
			if (rc == 0)
				fail_msg("\"%s\": accepted", path_vecs[i].path);
			if (strstr(err, path_vecs[i].why) == NULL)
				fail_msg("\"%s\": \"%s\" lacks \"%s\"",
				    path_vecs[i].path, err, path_vecs[i].why);
		}
		assert_int_equal(policy_rules_count(r), rc == 0 ? 1 : 0);
		policy_rules_free(r);
	}
}

/* ---- conflicts ---- */

struct conflict_vec {
	const char		*p1;
	enum policy_action	 a1;
	const char		*p2;
	enum policy_action	 a2;
	const char		*why;	/* NULL: both accepted */
};

#define AL	POLICY_ALLOW
#define TK	POLICY_TOKENIZE
#define HS	POLICY_HASH
#define FP	POLICY_FORMAT_PRESERVE
#define MK	POLICY_MASK

static const struct conflict_vec conflict_vecs[] = {
	{ "contact.email", AL, "contact.email", TK,
	  "field path \"contact.email\" (tokenize) conflicts with allow rule "
	  "\"contact.email\"" },
	{ "contact.email", AL, "contact.email", AL, "is listed twice" },
	{ "contact.\"email\"", AL, "contact.email", AL, "is listed twice" },
	{ "notes.**", AL, "notes.ssn", HS, "conflicts with allow rule \"notes.**\"" },
	{ "notes.ssn", HS, "notes.**", AL, "conflicts with hash rule" },
	{ "notes.**", AL, "notes", TK, "conflicts" },
	{ "notes.**", AL, "notes.a[].b.**", TK, "conflicts" },
	{ "custom.*", AL, "custom.email", TK, "conflicts" },
	{ "custom.email", TK, "custom.*", AL, "conflicts" },
	{ "*.x", AL, "y.*", HS, "conflicts" },
	{ "**", AL, "deep.down[].x", MK, "conflicts" },
	{ "a.**", AL, "a.b.**", TK, "conflicts" },
	{ "a[].**", AL, "a.**", HS, "conflicts" },
	{ "x.**", AL, "x.**", TK, "conflicts" },
	{ "a[]", FP, "a[]", TK, "conflicts" },
	{ "*[]", FP, "a[]", TK, "conflicts" },
	{ "custom.*", AL, "custom.email", AL, NULL },
	{ "notes.**", AL, "notes.ssn", AL, NULL },
	{ "a.b", AL, "a.b.c", TK, NULL },
	{ "a", AL, "a[]", TK, NULL },
	{ "a[]", AL, "a.*", TK, NULL },
	{ "a[].b", AL, "a[].c", TK, NULL },
	{ "a[][]", AL, "a[]", TK, NULL },
	{ "a.b.**", AL, "a.c.**", HS, NULL },
	{ "a.**", AL, "b", HS, NULL },
	{ "\"a.b\"", AL, "a.b", TK, NULL },
	{ "*.x", AL, "y.z", HS, NULL },
};

static void
test_conflicts(void **state)
{
	struct policy_rules	*r;
	char			 err[256];
	enum policy_action	 a;
	size_t			 i;
	int			 rc;

	(void)state;
	for (i = 0; i < sizeof(conflict_vecs) / sizeof(conflict_vecs[0]); i++) {
		const struct conflict_vec *v = &conflict_vecs[i];

		assert_non_null(r = policy_rules_new());
		assert_int_equal(policy_rules_add(r, v->p1, v->a1, err,
		    sizeof(err)), 0);
		err[0] = '\0';
		rc = policy_rules_add(r, v->p2, v->a2, err, sizeof(err));
		if (v->why == NULL && rc != 0)
			fail_msg("%zu: %s then %s refused: %s", i, v->p1, v->p2,
			    err);
		if (v->why != NULL && (rc == 0 || strstr(err, v->why) == NULL))
			fail_msg("%zu: %s then %s: rc %d, err \"%s\"", i, v->p1,
			    v->p2, rc, err);
		assert_int_equal(policy_rules_count(r), v->why ? 1 : 2);
		assert_string_equal(policy_rules_path(r, 0, &a), v->p1);
		assert_int_equal(a, v->a1);
		policy_rules_free(r);
	}
}

/* ---- applying rules ---- */

struct xf_state {
	size_t	 calls[POLICY_NACTIONS];
};

/*
 * Test transform: writes "<action>:<value>" as a JSON string; refuses
 * (returns 1) the string "bad" and fails hard on "boom".
 */
static int
xf_test(void *arg, enum policy_action a, const struct json_token *v,
    struct buf *out)
{
	struct xf_state	*st = arg;
	char		 tmp[256];
	int		 n;

	st->calls[a]++;
	if (v->type == JSON_STRING && v->str_len == 3 &&
	    memcmp(v->str, "bad", 3) == 0)
		return 1;
	if (v->type == JSON_STRING && v->str_len == 4 &&
	    memcmp(v->str, "boom", 4) == 0)
		return -1;
	if (v->type == JSON_STRING)
		n = snprintf(tmp, sizeof(tmp), "%s:%.*s", policy_action_name(a),
		    (int)v->str_len, v->str);
	else
		n = snprintf(tmp, sizeof(tmp), "%s:%.*s", policy_action_name(a),
		    (int)v->raw_len, v->raw);
	return json_write_string(out, tmp, (size_t)n);
}

/* "allow:a.b;tokenize:c" */
static struct policy_rules *
rules_make(const char *spec)
{
	struct policy_rules	*r;
	char			*copy, *item, *save = NULL, *colon, err[256];
	enum policy_action	 a;

	assert_non_null(r = policy_rules_new());
	assert_non_null(copy = strdup(spec));
	for (item = strtok_r(copy, ";", &save); item != NULL;
	    item = strtok_r(NULL, ";", &save)) {
		assert_non_null(colon = strchr(item, ':'));
		*colon = '\0';
		assert_int_equal(policy_action_parse(item, &a), 0);
		if (policy_rules_add(r, colon + 1, a, err, sizeof(err)) != 0)
			fail_msg("rule %s: %s", colon + 1, err);
	}
	free(copy);
	return r;
}

/* "drop:[a][b] allow:[c]" with the counts of values in parentheses */
static void
report_render(const struct policy_report *rep, struct buf *b)
{
	const char	*p, *end;
	int		 a;

	buf_reset(b);
	for (a = 0; a < POLICY_NACTIONS; a++) {
		if (rep->npaths[a] == 0 && rep->count[a] == 0)
			continue;
		buf_printf(b, "%s%s(%zu):", b->len ? " " : "",
		    policy_action_name((enum policy_action)a), rep->count[a]);
		p = rep->paths[a].data;
		end = p + rep->paths[a].len;
		while (p != NULL && p < end) {
			buf_printf(b, "[%s]", p);
			p += strlen(p) + 1;
		}
	}
	if (b->data == NULL)
		buf_append_str(b, "");
}

struct apply_vec {
	const char	*name;
	const char	*rules;
	const char	*in;
	const char	*out;		/* NULL: the call fails */
	const char	*report;
	size_t		 nonscalar, invalid;
};

static const struct apply_vec apply_vecs[] = {
	{ "object at a scalar rule is dropped and counted",
	  "allow:contact.first_name",
	  "{\"contact\":{\"first_name\":{\"x\":1},\"last\":\"y\"}}",
	  "{}", "drop(2):[contact.first_name][contact.*]", 1, 0 },
	{ "array at a scalar rule is dropped and counted",
	  "allow:tags",
	  "{\"tags\":[1,2],\"n\":1}",
	  "{}", "drop(2):[tags][*]", 1, 0 },
	{ "[] keeps matching elements, removes the rest (indices shift)",
	  "allow:attendees[].email",
	  "{\"attendees\":[{\"email\":\"a\",\"x\":1},{\"y\":2},\"s\","
	  "{\"email\":\"b\"}]}",
	  "{\"attendees\":[{\"email\":\"a\"},{\"email\":\"b\"}]}",
	  "drop(3):[attendees[].*][attendees[]] allow(2):[attendees[].email]",
	  0, 0 },
	{ "[][] arrays of arrays",
	  "allow:m[][]",
	  "{\"m\":[[1,2],[],[[3]],4,[true]]}",
	  "{\"m\":[[1,2],[true]]}",
	  "drop(2):[m[][]][m[]] allow(3):[m[][]]", 1, 0 },
	{ "scalar elements of an array",
	  "allow:a[]",
	  "{\"a\":[{\"x\":1},2,[3],\"s\",null]}",
	  "{\"a\":[2,\"s\",null]}",
	  "drop(2):[a[]] allow(3):[a[]]", 2, 0 },
	{ "* matches every key, scalars only",
	  "allow:custom.*",
	  "{\"custom\":{\"a\":1,\"b\":\"x\",\"c\":{\"d\":1},\"e\":[]}}",
	  "{\"custom\":{\"a\":1,\"b\":\"x\"}}",
	  "drop(2):[custom.*] allow(2):[custom.*]", 2, 0 },
	{ "* does not match array elements",
	  "allow:a.*;allow:b[]",
	  "{\"a\":[1,2],\"b\":{\"c\":1}}",
	  "{}", "drop(2):[a][b]", 0, 0 },
	{ "** passes a subtree, empty containers in it included",
	  "allow:notes.**",
	  "{\"notes\":{\"a\":[1,{},{\"b\":null}],\"e\":{}},\"x\":1}",
	  "{\"notes\":{\"a\":[1,{},{\"b\":null}],\"e\":{}}}",
	  "drop(1):[*] allow(2):[notes.**]", 0, 0 },
	{ "** alone is the whole document, compacted, raw bytes kept",
	  "allow:**",
	  "{ \"a\" : { \"b\\u0041\" : [ 1.50E+3 , \"\\u00e9\\n\" ] } ,\n"
	  "  \"c\" : {} , \"n\": 123456789012345678901234567890 }",
	  "{\"a\":{\"b\\u0041\":[1.50E+3,\"\\u00e9\\n\"]},\"c\":{},"
	  "\"n\":123456789012345678901234567890}",
	  "allow(3):[**]", 0, 0 },
	{ "** on a scalar",
	  "allow:n.**",
	  "{\"n\":5,\"m\":6}",
	  "{\"n\":5}", "drop(1):[*] allow(1):[n.**]", 0, 0 },
	{ "quoted key with a dot",
	  "allow:contact.\"e.mail\"",
	  "{\"contact\":{\"e.mail\":\"x\",\"e\":{\"mail\":\"y\"}}}",
	  "{\"contact\":{\"e.mail\":\"x\"}}",
	  "drop(1):[contact.*] allow(1):[contact.\"e.mail\"]", 0, 0 },
	{ "quoted keys with escapes",
	  "allow:\"a\\\"b\".\"c\\\\d\"",
	  "{\"a\\\"b\":{\"c\\\\d\":1,\"c\":2}}",
	  "{\"a\\\"b\":{\"c\\\\d\":1}}",
	  /* a backslash needs no quotes outside them */
	  "drop(1):[\"a\\\"b\".*] allow(1):[\"a\\\"b\".c\\d]", 0, 0 },
	{ "keys are matched after unescaping, written raw",
	  "allow:email",
	  "{\"em\\u0061il\":\"x\"}",
	  "{\"em\\u0061il\":\"x\"}", "allow(1):[email]", 0, 0 },
	{ "emptied containers are dropped recursively, root stays",
	  "allow:a.b.c",
	  "{\"a\":{\"b\":{\"x\":1},\"y\":[1]},\"z\":{}}",
	  "{}", "drop(3):[a.b.*][a.*][*]", 0, 0 },
	{ "empty input containers at rule positions are dropped",
	  "allow:a.b;allow:l[]",
	  "{\"a\":{},\"l\":[],\"k\":1}",
	  "{}", "drop(1):[*]", 0, 0 },
	{ "unknown keys are reported as *",
	  "allow:contact.first_name",
	  "{\"contact\":{\"first_name\":\"A\",\"ssn\":\"1\"},\"ssn\":\"2\"}",
	  "{\"contact\":{\"first_name\":\"A\"}}",
	  "drop(2):[contact.*][*] allow(1):[contact.first_name]", 0, 0 },
	{ "exact key and * both live",
	  "allow:c.*.v;allow:c.k.w",
	  "{\"c\":{\"k\":{\"v\":1,\"w\":2,\"z\":3},\"j\":{\"v\":4,\"w\":5}}}",
	  "{\"c\":{\"k\":{\"v\":1,\"w\":2},\"j\":{\"v\":4}}}",
	  "drop(2):[c.k.*][c.*.*] allow(3):[c.k.v][c.k.w][c.*.v]", 0, 0 },
	{ "transforms get the rule's action; 1 drops the member",
	  "tokenize:contact.email;mask:contact.card;hash:call.caller_id;"
	  "allow:contact.name",
	  "{\"contact\":{\"email\":\"e@x\",\"name\":\"N\",\"card\":\"4111\"},"
	  "\"call\":{\"caller_id\":\"bad\"}}",
	  "{\"contact\":{\"email\":\"tokenize:e@x\",\"name\":\"N\","
	  "\"card\":\"mask:4111\"}}",
	  "drop(1):[call.caller_id] tokenize(1):[contact.email] "
	  "mask(1):[contact.card] allow(1):[contact.name]", 0, 1 },
	{ "transform of a non-string scalar",
	  "format_preserve:n;hash:b",
	  "{\"n\":12,\"b\":true}",
	  "{\"n\":\"format_preserve:12\",\"b\":\"hash:true\"}",
	  "hash(1):[b] format_preserve(1):[n]", 0, 0 },
	{ "** with a transform: every scalar, keys kept",
	  "tokenize:notes.**",
	  "{\"notes\":{\"a\":\"x\",\"b\":[1,\"bad\"],\"c\":{},\"d\":[\"bad\"]}}",
	  "{\"notes\":{\"a\":\"tokenize:x\",\"b\":[\"tokenize:1\"],\"c\":{}}}",
	  "drop(2):[notes.**] tokenize(2):[notes.**]", 0, 2 },
	{ "explicit drop rules",
	  "drop:a.b;drop:c.**;allow:a.k",
	  "{\"a\":{\"b\":1,\"k\":2},\"c\":{\"d\":{}}}",
	  "{\"a\":{\"k\":2}}",
	  "drop(2):[a.b][c.**] allow(1):[a.k]", 0, 0 },
	{ "a hard transform error fails the call",
	  "tokenize:e", "{\"e\":\"boom\"}", NULL, NULL, 0, 0 },
	{ "invalid JSON fails the call",
	  "allow:**", "{\"a\":1,\"a\":2}", NULL, NULL, 0, 0 },
	{ "over-deep JSON fails the call",
	  "allow:a",
	  "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]"
	  "]]]]]]]]]]}",
	  NULL, NULL, 0, 0 },
};

static void
test_apply(void **state)
{
	struct json_reader	*rd;
	struct policy_rules	*r;
	struct policy_transform	 xf;
	struct xf_state		 st;
	struct policy_report	 rep;
	struct buf		 out = { 0 }, rb = { 0 };
	char			 err[256];
	size_t			 i;
	int			 rc;

	(void)state;
	memset(&rep, 0, sizeof(rep));
	assert_non_null(rd = json_reader_new(DEPTH));
	xf.fn = xf_test;
	xf.arg = &st;
	for (i = 0; i < sizeof(apply_vecs) / sizeof(apply_vecs[0]); i++) {
		const struct apply_vec *v = &apply_vecs[i];

		r = rules_make(v->rules);
		memset(&st, 0, sizeof(st));
		policy_report_reset(&rep);
		/* output is appended to what the buffer holds */
		buf_reset(&out);
		buf_append_str(&out, "PRE");
		err[0] = '\0';
		rc = policy_apply_json(r, rd, v->in, strlen(v->in), &xf, &out,
		    &rep, err, sizeof(err));
		if (v->out == NULL) {
			if (rc != -1)
				fail_msg("%s: accepted: %s", v->name, out.data);
			assert_true(err[0] != '\0');
			assert_string_equal(out.data, "PRE");
			policy_rules_free(r);
			continue;
		}
		if (rc != 0)
			fail_msg("%s: %s", v->name, err);
		if (strcmp(out.data + 3, v->out) != 0)
			fail_msg("%s:\n  got  %s\n  want %s", v->name,
			    out.data + 3, v->out);
		assert_memory_equal(out.data, "PRE", 3);
		assert_int_equal(json_validate(out.data + 3, out.len - 3, DEPTH,
		    err, sizeof(err)), 0);
		report_render(&rep, &rb);
		if (strcmp(rb.data, v->report) != 0)
			fail_msg("%s: report\n  got  %s\n  want %s", v->name,
			    rb.data, v->report);
		if (rep.dropped_nonscalar != v->nonscalar ||
		    rep.dropped_invalid != v->invalid)
			fail_msg("%s: nonscalar %zu invalid %zu", v->name,
			    rep.dropped_nonscalar, rep.dropped_invalid);
		/* the transform saw exactly the transformed and refused values */
		assert_int_equal(st.calls[POLICY_TOKENIZE] + st.calls[POLICY_HASH] +
		    st.calls[POLICY_MASK] + st.calls[POLICY_FORMAT_PRESERVE],
		    rep.count[POLICY_TOKENIZE] + rep.count[POLICY_HASH] +
		    rep.count[POLICY_MASK] + rep.count[POLICY_FORMAT_PRESERVE] +
		    rep.dropped_invalid);
		assert_int_equal(st.calls[POLICY_ALLOW], 0);
		assert_int_equal(st.calls[POLICY_DROP], 0);
		policy_rules_free(r);
	}
	policy_report_free(&rep);
	buf_free(&out);
	buf_free(&rb);
	json_reader_free(rd);
}

static void
test_apply_no_transform(void **state)
{
	struct json_reader	*rd;
	struct policy_rules	*r;
	struct buf		 out = { 0 };
	char			 err[256];

	(void)state;
	assert_non_null(rd = json_reader_new(DEPTH));
	r = rules_make("allow:a;tokenize:b");
	/* allow-only documents need no transform */
	assert_int_equal(policy_apply_json(r, rd, "{\"a\":1,\"c\":2}", 13,
	    NULL, &out, NULL, err, sizeof(err)), 0);
	assert_string_equal(out.data, "{\"a\":1}");
	buf_reset(&out);
	assert_int_equal(policy_apply_json(r, rd, "{\"a\":1,\"b\":2}", 13,
	    NULL, &out, NULL, err, sizeof(err)), -1);
	assert_string_equal(err, "no transform for action");
	assert_int_equal(out.len, 0);
	policy_rules_free(r);
	buf_free(&out);
	json_reader_free(rd);
}

/* The output buffer's max holds even when its capacity is larger. */
static void
test_output_max(void **state)
{
	static const char	 doc[] = "{\"a\":\"0123456789\",\"c\":2}";
	struct json_reader	*rd;
	struct policy_rules	*r;
	struct buf		 out = { 0 };
	char			 err[256];

	(void)state;
	assert_non_null(rd = json_reader_new(DEPTH));
	r = rules_make("allow:**");
	assert_int_equal(buf_reserve(&out, 4096), 0);
	out.max = 12;
	assert_int_equal(policy_apply_json(r, rd, doc, strlen(doc), NULL, &out,
	    NULL, err, sizeof(err)), -1);
	assert_true(out.len <= 12);
	buf_reset(&out);
	assert_int_equal(policy_apply_response(r, rd, doc, strlen(doc), NULL,
	    &out, err, sizeof(err)), -1);
	assert_true(out.len <= 12);
	buf_reset(&out);
	out.max = 64;
	assert_int_equal(policy_apply_json(r, rd, doc, strlen(doc), NULL, &out,
	    NULL, err, sizeof(err)), 0);
	assert_string_equal(out.data, doc);
	policy_rules_free(r);
	buf_free(&out);
	json_reader_free(rd);
}

/* A report that already holds paths is extended, still deduplicated. */
static void
test_report(void **state)
{
	static const char	 doc[] =
	    "{\"a\":1,\"l\":[{\"v\":1,\"w\":2},{\"v\":3,\"q\":4}],\"z\":0}";
	struct json_reader	*rd;
	struct policy_rules	*r;
	struct policy_report	 rep;
	struct buf		 out = { 0 }, rb = { 0 };
	char			 err[256];
	int			 i;

	(void)state;
	memset(&rep, 0, sizeof(rep));
	assert_int_equal(policy_report_add(&rep, POLICY_ALLOW, "x.y", 3), 0);
	assert_int_equal(policy_report_add(&rep, POLICY_ALLOW, "x.y", 3), 0);
	assert_int_equal(policy_report_add(&rep, POLICY_ALLOW, "a", 1), 0);
	assert_int_equal(rep.npaths[POLICY_ALLOW], 2);
	assert_int_equal(policy_report_add(&rep, POLICY_ALLOW, "a\0b", 3), -1);
	assert_non_null(rd = json_reader_new(DEPTH));
	r = rules_make("allow:a;allow:l[].v");
	for (i = 0; i < 2; i++) {
		buf_reset(&out);
		assert_int_equal(policy_apply_json(r, rd, doc, strlen(doc),
		    NULL, &out, &rep, err, sizeof(err)), 0);
		assert_string_equal(out.data,
		    "{\"a\":1,\"l\":[{\"v\":1},{\"v\":3}]}");
	}
	report_render(&rep, &rb);
	assert_string_equal(rb.data,
	    "drop(6):[l[].*][*] allow(6):[x.y][a][l[].v]");
	/* reset empties it; a fresh report never lists drop when none */
	policy_report_reset(&rep);
	buf_reset(&out);
	assert_int_equal(policy_apply_json(r, rd, "{\"a\":1}", 7, NULL, &out,
	    &rep, err, sizeof(err)), 0);
	assert_int_equal(rep.npaths[POLICY_DROP], 0);
	assert_int_equal(rep.count[POLICY_DROP], 0);
	assert_int_equal(rep.npaths[POLICY_ALLOW], 1);
	policy_rules_free(r);
	policy_report_free(&rep);
	policy_report_free(NULL);
	buf_free(&out);
	buf_free(&rb);
	json_reader_free(rd);
}

/* Many distinct reported paths: past the fast dedup set, still exact. */
static void
test_report_many(void **state)
{
	struct json_reader	*rd;
	struct policy_rules	*r;
	struct policy_report	 rep;
	struct buf		 doc = { 0 }, out = { 0 };
	char			 err[256], path[32];
	int			 i;

	(void)state;
	memset(&rep, 0, sizeof(rep));
	assert_non_null(rd = json_reader_new(DEPTH));
	assert_non_null(r = policy_rules_new());
	buf_append_str(&doc, "{");
	for (i = 0; i < 600; i++) {
		snprintf(path, sizeof(path), "k%d", i);
		assert_int_equal(policy_rules_add(r, path, POLICY_ALLOW, err,
		    sizeof(err)), 0);
		buf_printf(&doc, "%s\"k%d\":%d,\"k%d\":[%d]", i ? "," : "",
		    i, i, i + 1000, i);
	}
	buf_append_str(&doc, "}");
	assert_int_equal(policy_apply_json(r, rd, doc.data, doc.len, NULL,
	    &out, &rep, err, sizeof(err)), 0);
	assert_int_equal(rep.npaths[POLICY_ALLOW], 600);
	assert_int_equal(rep.count[POLICY_ALLOW], 600);
	assert_int_equal(rep.npaths[POLICY_DROP], 1);
	assert_int_equal(rep.count[POLICY_DROP], 600);
	assert_string_equal(rep.paths[POLICY_DROP].data, "*");
	policy_rules_free(r);
	policy_report_free(&rep);
	buf_free(&doc);
	buf_free(&out);
	json_reader_free(rd);
}

/* Long rule keys and deep documents go past the walk's stack buffers. */
static void
test_apply_big(void **state)
{
	struct json_reader	*rd;
	struct policy_rules	*r;
	struct policy_report	 rep;
	struct buf		 doc = { 0 }, out = { 0 }, path = { 0 };
	char			 err[256];
	int			 i;

	(void)state;
	memset(&rep, 0, sizeof(rep));
	assert_non_null(rd = json_reader_new(200));
	assert_non_null(r = policy_rules_new());
	/* a 3000-byte key, quoted in the rule since it holds a dot */
	buf_append_str(&path, "\"");
	for (i = 0; i < 3000; i++)
		buf_append_char(&path, i == 1500 ? '.' : 'k');
	buf_append_str(&path, "\".v");
	assert_int_equal(policy_rules_add(r, path.data, POLICY_ALLOW, err,
	    sizeof(err)), 0);
	/* 150 levels of "d" under "deep", with a scalar at the bottom */
	buf_reset(&path);
	buf_append_str(&path, "deep");
	for (i = 0; i < 150; i++)
		buf_append_str(&path, ".d");
	assert_int_equal(policy_rules_add(r, path.data, POLICY_ALLOW, err,
	    sizeof(err)), 0);
	buf_append_str(&doc, "{\"");
	for (i = 0; i < 3000; i++)
		buf_append_char(&doc, i == 1500 ? '.' : 'k');
	buf_append_str(&doc, "\":{\"v\":1,\"w\":2},\"deep\":");
	for (i = 0; i < 150; i++)
		buf_append_str(&doc, "{\"d\":");
	buf_append_str(&doc, "7,\"x\":8");
	for (i = 0; i < 150; i++)
		buf_append_str(&doc, "}");
	buf_append_str(&doc, "}");
	assert_int_equal(policy_apply_json(r, rd, doc.data, doc.len, NULL,
	    &out, &rep, err, sizeof(err)), 0);
	assert_int_equal(rep.count[POLICY_ALLOW], 2);
	assert_int_equal(rep.npaths[POLICY_DROP], 2);
	assert_int_equal(rep.count[POLICY_DROP], 2);
	/* the dropped paths: the quoted key + ".*"; deep + 149 ".d" + ".*" */
	assert_int_equal(rep.paths[POLICY_DROP].len, (3002 + 2) + 1 +
	    (4 + 149 * 2 + 2) + 1);
	assert_null(strstr(out.data, "\"w\""));
	assert_null(strstr(out.data, "\"x\""));
	assert_non_null(strstr(out.data, "{\"d\":7}"));
	assert_int_equal(json_validate(out.data, out.len, 200, err,
	    sizeof(err)), 0);
	policy_rules_free(r);
	policy_report_free(&rep);
	buf_free(&doc);
	buf_free(&out);
	buf_free(&path);
	json_reader_free(rd);
}

/* ---- responses ---- */

struct resp_vec {
	const char	*rules;
	const char	*in;
	const char	*out;
	size_t		 ntok, nfp;	/* transform calls */
};

static const struct resp_vec resp_vecs[] = {
	{ "tokenize:contact.email;format_preserve:contact.phone;tokenize:list[]",
	  "{ \"contact\" : {\"email\":\"t1\",\"phone\":\"p\",\"name\":\"n\"},\n"
	  "  \"list\":[\"a\",{\"x\":\"y\"},3],\"other\":\"o\",\"e\":{}}",
	  "{\"contact\":{\"email\":\"tokenize:t1\",\"phone\":\"format_preserve:p\","
	  "\"name\":\"n\"},\"list\":[\"tokenize:a\",{\"x\":\"y\"},\"tokenize:3\"],"
	  "\"other\":\"o\",\"e\":{}}", 3, 1 },
	/* non-strings at listed paths go to the transform too (the
	 * detokeniser copies them as they are; the subject hasher hashes
	 * numbers); elsewhere nothing is called */
	{ "tokenize:contact.email",
	  "{\"contact\":{\"email\":5},\"email\":\"x\"}",
	  "{\"contact\":{\"email\":\"tokenize:5\"},\"email\":\"x\"}", 1, 0 },
	/* refused values (1) are left as they are */
	{ "tokenize:e", "{\"e\":\"bad\"}", "{\"e\":\"bad\"}", 1, 0 },
	{ "tokenize:a.**",
	  "{\"a\":{\"b\":[\"x\",1,{\"c\":\"y\"}]},\"c\":\"z\"}",
	  "{\"a\":{\"b\":[\"tokenize:x\",\"tokenize:1\",{\"c\":\"tokenize:y\"}]},"
	  "\"c\":\"z\"}", 3, 0 },
	{ "format_preserve:*[].p",
	  "{\"u\":[{\"p\":\"1\"},{\"q\":\"2\"}],\"v\":{\"p\":\"3\"}}",
	  "{\"u\":[{\"p\":\"format_preserve:1\"},{\"q\":\"2\"}],\"v\":{\"p\":\"3\"}}",
	  0, 1 },
};

static void
test_response(void **state)
{
	struct json_reader	*rd;
	struct policy_rules	*r;
	struct policy_transform	 xf;
	struct xf_state		 st;
	struct buf		 out = { 0 };
	char			 err[256];
	size_t			 i;

	(void)state;
	assert_non_null(rd = json_reader_new(DEPTH));
	xf.fn = xf_test;
	xf.arg = &st;
	for (i = 0; i < sizeof(resp_vecs) / sizeof(resp_vecs[0]); i++) {
		r = rules_make(resp_vecs[i].rules);
		memset(&st, 0, sizeof(st));
		buf_reset(&out);
		if (policy_apply_response(r, rd, resp_vecs[i].in,
		    strlen(resp_vecs[i].in), &xf, &out, err, sizeof(err)) != 0)
			fail_msg("%zu: %s", i, err);
		if (strcmp(out.data, resp_vecs[i].out) != 0)
			fail_msg("%zu:\n  got  %s\n  want %s", i, out.data,
			    resp_vecs[i].out);
		assert_int_equal(st.calls[POLICY_TOKENIZE], resp_vecs[i].ntok);
		assert_int_equal(st.calls[POLICY_FORMAT_PRESERVE],
		    resp_vecs[i].nfp);
		policy_rules_free(r);
	}
	r = rules_make("tokenize:e");
	buf_reset(&out);
	assert_int_equal(policy_apply_response(r, rd, "{\"e\":\"boom\"}", 13,
	    &xf, &out, err, sizeof(err)), -1);
	assert_int_equal(policy_apply_response(r, rd, "{\"e\":\"x\"} x", 11,
	    &xf, &out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "trailing data"));
	assert_int_equal(out.len, 0);
	policy_rules_free(r);
	buf_free(&out);
	json_reader_free(rd);
}

/* ---- property: nothing that is not allowed reaches the output ---- */

/* Keys: some need quotes in rules; "secretkey" never appears in a rule. */
static const char *const prop_keys[] = {
	"a", "b", "c", "d.e", "x\"y", "*", "[]", "k k", "secretkey",
};
#define NPROP_KEYS	(sizeof(prop_keys) / sizeof(prop_keys[0]))
#define SECRET_KEY	8
#define PROP_MAXSEG	8

/* A concrete path: key indexes, -1 for an array element. */
struct ppath {
	int	 seg[PROP_MAXSEG];
	int	 n;
};

/* A generated rule: key index, -1 "[]", -2 "*"; dstar: ends in "**". */
struct prule {
	int	 seg[PROP_MAXSEG];
	int	 n;
	int	 dstar;
};

static uint64_t prng = 88172645463325252ULL;

static uint32_t
prnd(uint32_t n)
{
	prng ^= prng << 13;
	prng ^= prng >> 7;
	prng ^= prng << 17;
	return (uint32_t)(prng % n);
}

struct pgen {
	struct buf	 doc;
	struct ppath	 scal[512];
	int		 nscal;
	int		 serial;
	struct prule	 rules[16];
	int		 nrules;
};

static int
prule_matches(const struct prule *r, const struct ppath *p)
{
	int	 i;

	if (r->dstar ? p->n < r->n : p->n != r->n)
		return 0;
	for (i = 0; i < r->n; i++) {
		if (r->seg[i] == -1 ? p->seg[i] != -1 :
		    r->seg[i] == -2 ? p->seg[i] < 0 : r->seg[i] != p->seg[i])
			return 0;
	}
	return 1;
}

static int
pallowed(const struct pgen *g, const struct ppath *p)
{
	int	 i;

	for (i = 0; i < g->nrules; i++)
		if (prule_matches(&g->rules[i], p))
			return 1;
	return 0;
}

static void
pgen_value(struct pgen *g, struct ppath *p, int depth)
{
	int	 k = (int)prnd(depth >= PROP_MAXSEG - 1 ? 2 : 7), i, n, used;

	if (k < 3) {
		/* a string scalar; its fate is decided after the rules */
		if (g->nscal < 512) {
			g->scal[g->nscal] = *p;
			buf_printf(&g->doc, "\"@%d@\"", g->nscal);
			g->nscal++;
		} else
			buf_append_str(&g->doc, "null");
		return;
	}
	if (k == 3) {
		buf_append_str(&g->doc, prnd(2) ? "[]" : "{}");
		return;
	}
	n = (int)prnd(4);
	if (k == 4) {
		buf_append_char(&g->doc, '[');
		for (i = 0; i < n; i++) {
			if (i)
				buf_append_char(&g->doc, ',');
			p->seg[p->n++] = -1;
			pgen_value(g, p, depth + 1);
			p->n--;
		}
		buf_append_char(&g->doc, ']');
		return;
	}
	buf_append_char(&g->doc, '{');
	used = 0;
	for (i = 0; i < n; i++) {
		int key = (int)prnd(NPROP_KEYS);

		if (used & (1 << key))
			continue;
		if (used)
			buf_append_char(&g->doc, ',');
		used |= 1 << key;
		json_write_string(&g->doc, prop_keys[key],
		    strlen(prop_keys[key]));
		buf_append_char(&g->doc, ':');
		p->seg[p->n++] = key;
		pgen_value(g, p, depth + 1);
		p->n--;
	}
	buf_append_char(&g->doc, '}');
}

static void
prule_render(const struct prule *r, struct buf *b)
{
	const char	*k, *q;
	int		 i;

	buf_reset(b);
	for (i = 0; i < r->n; i++) {
		if (r->seg[i] == -1) {
			buf_append_str(b, "[]");
			continue;
		}
		if (i > 0)
			buf_append_char(b, '.');
		if (r->seg[i] == -2) {
			buf_append_str(b, "*");
			continue;
		}
		k = prop_keys[r->seg[i]];
		if (strpbrk(k, ".[]*\"") == NULL) {
			buf_append_str(b, k);
			continue;
		}
		buf_append_char(b, '"');
		for (q = k; *q != '\0'; q++) {
			if (*q == '"' || *q == '\\')
				buf_append_char(b, '\\');
			buf_append_char(b, *q);
		}
		buf_append_char(b, '"');
	}
	if (r->dstar)
		buf_append_str(b, r->n ? ".**" : "**");
}

static void
test_property_allow_only(void **state)
{
	struct pgen		*g;
	struct json_reader	*rd;
	struct policy_rules	*rules;
	struct policy_report	 rep;
	struct buf		 doc = { 0 }, out = { 0 }, rp = { 0 }, tag = { 0 };
	struct ppath		 p;
	char			 err[256];
	const char		*s, *e;
	int			 iter, i, j, nkeep, ncanary, tkeep = 0, tcanary = 0;

	(void)state;
	memset(&rep, 0, sizeof(rep));
	assert_non_null(g = calloc(1, sizeof(*g)));
	assert_non_null(rd = json_reader_new(DEPTH));
	for (iter = 0; iter < 3000; iter++) {
		buf_reset(&g->doc);
		g->nscal = 0;
		p.n = 0;
		/* the root object */
		while (g->doc.len == 0 || g->doc.data[0] != '{') {
			buf_reset(&g->doc);
			g->nscal = 0;
			pgen_value(g, &p, 0);
		}
		/* rules: generalised scalar paths, plus a few random ones */
		g->nrules = 0;
		assert_non_null(rules = policy_rules_new());
		for (i = 0; i < (int)prnd(6); i++) {
			struct prule *r = &g->rules[g->nrules];

			memset(r, 0, sizeof(*r));
			if (g->nscal > 0 && prnd(4) != 0) {
				const struct ppath *sp = &g->scal[prnd(
				    (uint32_t)g->nscal)];

				r->n = sp->n;
				memcpy(r->seg, sp->seg, sizeof(r->seg));
			} else {
				r->n = 1 + (int)prnd(3);
				for (j = 0; j < r->n; j++)
					r->seg[j] = j > 0 && prnd(4) == 0 ?
					    -1 : prnd(4) == 0 ? -2 :
					    (int)prnd(NPROP_KEYS - 1);
			}
			/*
			 * Generalise keys to "*"; sometimes put "*" where the
			 * document has an array, or "[]" where it has an
			 * object (such rules must not match there).
			 */
			for (j = 0; j < r->n; j++) {
				if (r->seg[j] == SECRET_KEY ||
				    (r->seg[j] >= 0 && prnd(5) == 0))
					r->seg[j] = -2;
				else if (r->seg[j] == -1 && prnd(6) == 0)
					r->seg[j] = -2;
				else if (j > 0 && r->seg[j] >= 0 &&
				    prnd(12) == 0)
					r->seg[j] = -1;
			}
			if (r->n > 0 && prnd(6) == 0) {
				r->n = (int)prnd((uint32_t)r->n);
				r->dstar = 1;
			}
			/* a path may not start with [] */
			if (r->n > 0 && r->seg[0] == -1)
				continue;
			if (r->n == 0 && !r->dstar)
				continue;
			prule_render(r, &rp);
			if (policy_rules_add(rules, rp.data, POLICY_ALLOW, err,
			    sizeof(err)) != 0) {
				/* allow only: the one refusal is a repeat */
				if (strstr(err, "listed twice") == NULL)
					fail_msg("rule %s: %s", rp.data, err);
				continue;
			}
			g->nrules++;
		}
		/* allowed scalars carry KEEP<n>, the others a canary */
		buf_reset(&doc);
		nkeep = ncanary = 0;
		s = g->doc.data;
		while ((e = strchr(s, '@')) != NULL) {
			buf_append(&doc, s, (size_t)(e - s));
			i = atoi(e + 1);
			if (pallowed(g, &g->scal[i])) {
				buf_printf(&doc, "KEEP%d", i);
				nkeep++;
			} else {
				buf_printf(&doc, "CANARY%d", i);
				ncanary++;
			}
			s = strchr(e + 1, '@') + 1;
		}
		buf_append_str(&doc, s);
		buf_reset(&out);
		policy_report_reset(&rep);
		if (policy_apply_json(rules, rd, doc.data, doc.len, NULL, &out,
		    &rep, err, sizeof(err)) != 0)
			fail_msg("apply: %s on %s", err, doc.data);
		if (strstr(out.data, "CANARY") != NULL)
			fail_msg("disclosed: %s -> %s", doc.data, out.data);
		for (i = 0; i < g->nscal; i++) {
			if (!pallowed(g, &g->scal[i]))
				continue;
			buf_reset(&tag);
			buf_printf(&tag, "\"KEEP%d\"", i);
			if (strstr(out.data, tag.data) == NULL)
				fail_msg("lost %s: %s -> %s", tag.data,
				    doc.data, out.data);
		}
		assert_int_equal(json_validate(out.data, out.len, DEPTH, err,
		    sizeof(err)), 0);
		assert_int_equal(rep.count[POLICY_ALLOW], nkeep);
		if (ncanary > 0)
			assert_true(rep.npaths[POLICY_DROP] > 0);
		/* a key no rule names never shows in the report */
		for (i = 0; i < POLICY_NACTIONS; i++)
			for (j = 0; j < (int)rep.paths[i].len; j++)
				if (rep.paths[i].len - (size_t)j >= 9 &&
				    memcmp(rep.paths[i].data + j, "secretkey",
				    9) == 0)
					fail_msg("key leaked into report");
		tkeep += nkeep;
		tcanary += ncanary;
		policy_rules_free(rules);
	}
	print_message("property: %d kept, %d canaries withheld\n", tkeep,
	    tcanary);
	assert_true(tkeep > 1000);
	assert_true(tcanary > 1000);
	policy_report_free(&rep);
	buf_free(&doc);
	buf_free(&out);
	buf_free(&rp);
	buf_free(&tag);
	buf_free(&g->doc);
	free(g);
	json_reader_free(rd);
}

/* ---- collecting: the response walk's calls, without its output ---- */

/* Logs every call: "<action> <type> <raw>[ <str>]\n"; fails at call fail_at. */
struct xf_log {
	struct buf	 log;
	size_t		 n, fail_at;
	int		 got_out;	/* out was not NULL */
};

static int
xf_logger(void *arg, enum policy_action a, const struct json_token *v,
    struct buf *out)
{
	struct xf_log	*l = arg;

	buf_printf(&l->log, "%s %d ", policy_action_name(a), (int)v->type);
	buf_append(&l->log, v->raw, v->raw_len);
	if (v->type == JSON_STRING) {
		buf_append_char(&l->log, ' ');
		buf_append(&l->log, v->str, v->str_len);
	}
	buf_append_char(&l->log, '\n');
	if (++l->n == l->fail_at)
		return -1;
	if (out == NULL)
		return 0;
	l->got_out = 1;
	return buf_append(out, v->raw, v->raw_len);
}

/*
 * policy_collect_json makes the calls policy_apply_response makes, in the
 * same order with the same tokens, and returns what it returns. The number
 * of calls, or -1 when the walks failed.
 */
static int
collect_same(const struct policy_rules *r, struct json_reader *rd,
    const char *doc, size_t len, size_t fail_at)
{
	struct xf_log		 a, b;
	struct policy_transform	 xf = { xf_logger, NULL };
	struct buf		 out = { 0 };
	char			 err[256];
	int			 rca, rcb;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.fail_at = b.fail_at = fail_at;
	xf.arg = &a;
	rca = policy_apply_response(r, rd, doc, len, &xf, &out, err,
	    sizeof(err));
	xf.arg = &b;
	rcb = policy_collect_json(r, rd, doc, len, &xf, err, sizeof(err));
	if (rca != rcb || a.log.len != b.log.len || (a.log.len > 0 &&
	    memcmp(a.log.data, b.log.data, a.log.len) != 0))
		fail_msg("on %.*s\n  response (%d):\n%s  collect (%d):\n%s",
		    (int)len, doc, rca, a.log.len ? a.log.data : "",
		    rcb, b.log.len ? b.log.data : "");
	assert_false(b.got_out);
	buf_free(&a.log);
	buf_free(&b.log);
	buf_free(&out);
	return rca == -1 ? -1 : (int)a.n;
}

static const struct {
	const char	*rules;
	const char	*in;
	int		 calls;
} collect_vecs[] = {
	/* the subjects shape: an escaped key matches; lookalikes and
	 * brackets, quotes and backslashes in skipped strings do not */
	{ "hash:contact.email;hash:contact.phone",
	  "{ \"contact\" : {\"first_name\":\"M\", \"em\\u0061il\" : \"a@b.c\",\n"
	  "  \"notes\":{\"email\":\"no\",\"x\":[\"}]\\\"{[\\\\\",{}]},"
	  "\"phone\":\"+1 (415) 555-0142\"},\n"
	  "  \"email\":\"no\",\"call\":{\"x\":\"}]\\\"{[\",\"contact\":"
	  "{\"email\":\"no\"}},\"contact2\":{\"email\":\"no\"},\"t\":[1,[2]]}",
	  2 },
	/* every kind of scalar goes to the transform */
	{ "hash:a;hash:b;hash:c;hash:d;hash:e",
	  "{\"a\":12.5e3,\"b\":true,\"c\":null,\"d\":\"x\",\"e\":false,"
	  "\"f\":1}", 5 },
	/* allow and drop never call; a scalar rule on a container does not */
	{ "allow:a;hash:a.b;drop:c;hash:d",
	  "{\"a\":\"s\",\"c\":1,\"d\":{\"e\":1},\"b\":2}", 0 },
	{ "allow:a;hash:a.b;drop:c;hash:d",
	  "{\"a\":{\"b\":\"x\",\"c\":1},\"c\":{\"b\":1},\"d\":[3]}", 1 },
	/* ** subtrees: all scalars under a transform, none under allow/drop */
	{ "hash:a.**;allow:b.**;drop:c.**",
	  "{\"a\":{\"x\":[1,{\"y\":\"z\"}],\"e\":[]},\"b\":{\"q\":1},"
	  "\"c\":[2],\"d\":3}", 2 },
	{ "hash:a.**", "{\"a\":\"s\",\"b\":{\"a\":1}}", 1 },
	{ "hash:**", "{\"a\":[1,\"x\",{\"b\":null}],\"c\":{}}", 3 },
	{ "allow:**", "{\"a\":[1,\"x\",{\"b\":null}],\"c\":{}}", 0 },
	/* arrays, "*" and "[]" */
	{ "tokenize:list[];format_preserve:*[].p;hash:m[][]",
	  "{\"list\":[\"a\",{\"x\":\"y\"},3,[4]],\"u\":[{\"p\":\"1\"},"
	  "{\"q\":\"2\"}],\"m\":[[1,2],3,[[4]]],\"v\":{\"p\":\"3\"}}", 5 },
	{ "hash:a[]", "{\"a\":[],\"b\":[1]}", 0 },
	/* a key and "*" both live at one level */
	{ "hash:a.*;hash:a.k.z",
	  "{\"a\":{\"k\":{\"z\":1,\"y\":2},\"j\":2,\"k2\":{\"z\":3}}}", 2 },
	{ "mask:x.y.z[]", "{\"x\":{\"y\":{\"z\":[\"1\",[\"2\"],{}]}}}", 1 },
	/* an empty document body object */
	{ "hash:a", "{}", 0 },
	{ "hash:a", " {\"a\" :\t\"v\" } \n", 1 },
};

static void
test_collect(void **state)
{
	struct json_reader	*rd;
	struct policy_rules	*r;
	struct policy_transform	 xf = { xf_logger, NULL };
	struct xf_log		 l;
	char			 err[256];
	size_t			 i, k;
	int			 n;

	(void)state;
	assert_non_null(rd = json_reader_new(DEPTH));
	for (i = 0; i < sizeof(collect_vecs) / sizeof(collect_vecs[0]); i++) {
		r = rules_make(collect_vecs[i].rules);
		n = collect_same(r, rd, collect_vecs[i].in,
		    strlen(collect_vecs[i].in), 0);
		if (n != collect_vecs[i].calls)
			fail_msg("%zu: %d calls, want %d", i, n,
			    collect_vecs[i].calls);
		/* a failing transform stops both walks at the same call */
		for (k = 1; k <= (size_t)n; k++)
			assert_int_equal(collect_same(r, rd,
			    collect_vecs[i].in, strlen(collect_vecs[i].in),
			    k), -1);
		policy_rules_free(r);
	}
	/* more trie nodes than the walk's stack holds: its live set moves
	 * to the heap */
	assert_non_null(r = policy_rules_new());
	for (k = 0; k < 300; k++) {
		char	 path[32];

		snprintf(path, sizeof(path), "k%zu.v", k);
		assert_int_equal(policy_rules_add(r, path, POLICY_HASH, err,
		    sizeof(err)), 0);
	}
	assert_int_equal(collect_same(r, rd, "{\"k7\":{\"v\":1},\"x\":2,"
	    "\"k299\":{\"v\":\"s\",\"w\":3}}", 43, 0), 2);
	policy_rules_free(r);
	/* malformed input where the walk reads: refused; trailing data too */
	r = rules_make("hash:a");
	memset(&l, 0, sizeof(l));
	xf.arg = &l;
	assert_int_equal(policy_collect_json(r, rd, "{\"a\":01}", 8, &xf, err,
	    sizeof(err)), -1);
	assert_int_equal(policy_collect_json(r, rd, "[1]", 3, &xf, err,
	    sizeof(err)), -1);
	assert_int_equal(policy_collect_json(r, rd, "{\"a\":1} x", 9, &xf,
	    err, sizeof(err)), -1);
	assert_non_null(strstr(err, "trailing data"));
	assert_int_equal(policy_collect_json(r, rd, "{\"b\":[1,", 8, &xf,
	    err, sizeof(err)), -1);
	assert_int_equal(l.n, 1);	/* the 1 before the trailing data */
	/* a transform action needs a transform */
	assert_int_equal(policy_collect_json(r, rd, "{\"a\":1}", 7, NULL, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "no transform"));
	assert_int_equal(policy_collect_json(r, rd, "{\"b\":1}", 7, NULL, err,
	    sizeof(err)), 0);
	policy_rules_free(r);
	buf_free(&l.log);
	json_reader_free(rd);
}

/* Scalars for the generated documents: the walks must agree on each. */
static const char *const collect_scalars[] = {
	"\"v\"", "\"a}]\\\"{[\\\\\"", "\"\\u00e9\\\\\"", "12", "-3.5e2",
	"true", "false", "null", "\"0123456789abcdef0123456789abcdef\\\"x\"",
	"\"\xc3\xa9\"", "\"\"",
};

static void
test_property_collect(void **state)
{
	static const enum policy_action acts[] = { POLICY_ALLOW, POLICY_DROP,
	    POLICY_HASH, POLICY_TOKENIZE, POLICY_FORMAT_PRESERVE,
	    POLICY_MASK };
	struct pgen		*g;
	struct json_reader	*rd;
	struct policy_rules	*rules;
	struct buf		 doc = { 0 }, rp = { 0 };
	struct ppath		 p;
	char			 err[256];
	const char		*s;
	int			 iter, i, j, n, instr, total = 0, nonzero = 0;

	(void)state;
	assert_non_null(g = calloc(1, sizeof(*g)));
	assert_non_null(rd = json_reader_new(DEPTH));
	for (iter = 0; iter < 3000; iter++) {
		buf_reset(&g->doc);
		g->nscal = 0;
		p.n = 0;
		while (g->doc.len == 0 || g->doc.data[0] != '{') {
			buf_reset(&g->doc);
			g->nscal = 0;
			pgen_value(g, &p, 0);
		}
		/* rules of every action, mostly at the document's paths */
		assert_non_null(rules = policy_rules_new());
		for (i = 0; i < 1 + (int)prnd(6); i++) {
			struct prule r;

			memset(&r, 0, sizeof(r));
			if (g->nscal > 0 && prnd(4) != 0) {
				const struct ppath *sp = &g->scal[prnd(
				    (uint32_t)g->nscal)];

				r.n = sp->n;
				memcpy(r.seg, sp->seg, sizeof(r.seg));
			} else {
				r.n = 1 + (int)prnd(3);
				for (j = 0; j < r.n; j++)
					r.seg[j] = j > 0 && prnd(4) == 0 ?
					    -1 : (int)prnd(NPROP_KEYS);
			}
			for (j = 0; j < r.n; j++)
				if (r.seg[j] >= 0 && prnd(5) == 0)
					r.seg[j] = -2;
			if (r.n > 0 && prnd(5) == 0) {
				r.n = (int)prnd((uint32_t)r.n);
				r.dstar = 1;
			}
			if ((r.n > 0 && r.seg[0] == -1) || (r.n == 0 &&
			    !r.dstar))
				continue;
			prule_render(&r, &rp);
			/* conflicts and repeats are refused: fine */
			(void)policy_rules_add(rules, rp.data,
			    acts[prnd(sizeof(acts) / sizeof(acts[0]))], err,
			    sizeof(err));
		}
		/* varied scalars, and whitespace between tokens */
		buf_reset(&doc);
		instr = 0;
		for (s = g->doc.data; *s != '\0'; s++) {
			if (!instr && s[0] == '"' && s[1] == '@') {
				buf_append_str(&doc, collect_scalars[prnd(
				    sizeof(collect_scalars) /
				    sizeof(collect_scalars[0]))]);
				s = strchr(s + 2, '@') + 1;	/* the closing '"' */
				continue;
			}
			buf_append_char(&doc, *s);
			if (instr && *s == '\\') {
				buf_append_char(&doc, *++s);
				continue;
			}
			if (*s == '"')
				instr = !instr;
			else if (!instr && strchr("{[,:", *s) != NULL &&
			    prnd(4) == 0)
				buf_append_str(&doc, prnd(2) ? " " : "\n\t ");
		}
		assert_int_equal(json_validate(doc.data, doc.len, DEPTH, err,
		    sizeof(err)), 0);
		n = collect_same(rules, rd, doc.data, doc.len, 0);
		assert_true(n >= 0);
		total += n;
		nonzero += n > 0;
		policy_rules_free(rules);
	}
	print_message("collect: %d calls in %d of 3000 documents\n", total,
	    nonzero);
	assert_true(nonzero > 500);
	buf_free(&doc);
	buf_free(&rp);
	buf_free(&g->doc);
	free(g);
	json_reader_free(rd);
}

/* ---- actions and name tables ---- */

static void
test_actions(void **state)
{
	static const char *const names[] = {
		"drop", "allow", "tokenize", "format_preserve", "hash", "mask",
	};
	enum policy_action	 a;
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_int_equal(policy_action_parse(names[i], &a), 0);
		assert_string_equal(policy_action_name(a), names[i]);
	}
	assert_int_equal(policy_action_parse("detokenize", &a), -1);
	assert_int_equal(policy_action_parse("Allow", &a), -1);
	assert_int_equal(policy_action_parse("", &a), -1);
	assert_int_equal(policy_action_parse("tokenize", &a), 0);
	assert_int_equal(a, POLICY_TOKENIZE);
}

static void
test_names(void **state)
{
	struct policy_names	*n;
	enum policy_action	 a;
	char			 err[256], name[32];
	int			 i, ci;

	(void)state;
	for (ci = 0; ci < 2; ci++) {
		assert_non_null(n = policy_names_new(ci));
		assert_int_equal(policy_names_add(n, "X-Request-Id",
		    POLICY_ALLOW, err, sizeof(err)), 0);
		assert_int_equal(policy_names_add(n, "id", POLICY_HASH, err,
		    sizeof(err)), 0);
		assert_int_equal(policy_names_add(n, ci ? "x-request-ID" :
		    "X-Request-Id", POLICY_ALLOW, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "listed twice"));
		assert_int_equal(policy_names_lookup(n, "X-Request-Id", 12),
		    POLICY_ALLOW);
		assert_int_equal(policy_names_lookup(n, "x-request-id", 12),
		    ci ? POLICY_ALLOW : POLICY_DROP);
		assert_int_equal(policy_names_lookup(n, "X-Request-Idx", 12),
		    POLICY_ALLOW);	/* len bounds the name */
		assert_int_equal(policy_names_lookup(n, "X-Request-I", 11),
		    POLICY_DROP);
		assert_int_equal(policy_names_lookup(n, "ID", 2),
		    ci ? POLICY_HASH : POLICY_DROP);
		assert_int_equal(policy_names_lookup(n, "other", 5),
		    POLICY_DROP);
		/* past the linear range: hashed, same answers */
		for (i = 0; i < 100; i++) {
			snprintf(name, sizeof(name), "Name-%d", i);
			assert_int_equal(policy_names_add(n, name,
			    i % 2 ? POLICY_MASK : POLICY_ALLOW, err,
			    sizeof(err)), 0);
		}
		assert_int_equal(policy_names_count(n), 102);
		for (i = 0; i < 100; i++) {
			snprintf(name, sizeof(name), ci ? "nAME-%d" : "Name-%d",
			    i);
			assert_int_equal(policy_names_lookup(n, name,
			    strlen(name)), i % 2 ? POLICY_MASK : POLICY_ALLOW);
		}
		assert_int_equal(policy_names_lookup(n, "Name-100", 8),
		    POLICY_DROP);
		assert_int_equal(policy_names_lookup(n, "x-request-id", 12),
		    ci ? POLICY_ALLOW : POLICY_DROP);
		assert_int_equal(policy_names_add(n, ci ? "NAME-7" : "Name-7",
		    POLICY_ALLOW, err, sizeof(err)), -1);
		assert_string_equal(policy_names_at(n, 1, &a), "id");
		assert_int_equal(a, POLICY_HASH);
		assert_null(policy_names_at(n, 102, &a));
		policy_names_free(n);
	}
	assert_int_equal(policy_names_lookup(NULL, "a", 1), POLICY_DROP);
	policy_names_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_grammar),
		cmocka_unit_test(test_conflicts),
		cmocka_unit_test(test_apply),
		cmocka_unit_test(test_apply_no_transform),
		cmocka_unit_test(test_output_max),
		cmocka_unit_test(test_report),
		cmocka_unit_test(test_report_many),
		cmocka_unit_test(test_apply_big),
		cmocka_unit_test(test_response),
		cmocka_unit_test(test_property_allow_only),
		cmocka_unit_test(test_collect),
		cmocka_unit_test(test_property_collect),
		cmocka_unit_test(test_actions),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
