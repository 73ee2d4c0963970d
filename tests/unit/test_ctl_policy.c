/* test_ctl_policy.c -- the policy functions behind subgatectl policy explain: per-node decisions and root-level names */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "json.h"
#include "policy.h"

#define AL	POLICY_ALLOW
#define TK	POLICY_TOKENIZE
#define HS	POLICY_HASH
#define FP	POLICY_FORMAT_PRESERVE
#define MK	POLICY_MASK

struct rdef {
	const char		*path;
	enum policy_action	 a;
};

static struct policy_rules *
rules_make(const struct rdef *d)
{
	struct policy_rules	*r;
	char			 err[256];

	assert_non_null(r = policy_rules_new());
	for (; d->path != NULL; d++)
		if (policy_rules_add(r, d->path, d->a, err, sizeof(err)) != 0)
			fail_msg("rule %s: %s", d->path, err);
	return r;
}

/* Collects explain lines "PATH ACTION RULE [empty|nonscalar]". */
struct lines {
	struct buf	 text;
	size_t		 scalars[POLICY_NACTIONS];
	size_t		 nonscalar;
};

static int
collect(void *arg, const struct policy_decision *d)
{
	struct lines	*l = arg;

	assert_int_equal(strlen(d->path), d->pathlen);
	buf_printf(&l->text, "%s %s %s%s\n", d->path,
	    policy_action_name(d->action), d->rule ? d->rule : "-",
	    d->container == POLICY_EMPTY ? " empty" :
	    d->container == POLICY_NONSCALAR ? " nonscalar" : "");
	if (d->value != NULL)
		l->scalars[d->action]++;
	else
		assert_int_not_equal(d->container, 0);
	if (d->container == POLICY_NONSCALAR)
		l->nonscalar++;
	return 0;
}

/* ---- exact vectors ---- */

static const struct rdef rules_main[] = {
	{ "contact.email", TK }, { "contact.first_name", AL },
	{ "prefs.*", AL }, { "tags[]", AL }, { "m[][]", HS },
	{ "notes.**", AL }, { "contact.\"x.y\"", MK }, { "company", AL },
	{ NULL, 0 },
};

static void
test_explain_vectors(void **state)
{
	static const char doc[] =
	    "{\"contact\":{\"email\":\"a@b\",\"first_name\":\"Ada\",\"age\":3,"
	    "\"x.y\":\"1234\"},\"prefs\":{\"lang\":\"en\",\"obj\":{\"c\":1}},"
	    "\"tags\":[\"a\",{\"k\":1},[]],"
	    "\"m\":[[1,2],[],3],"
	    "\"notes\":{\"t\":\"x\",\"e\":{},\"l\":[[]]},"
	    "\"company\":{\"name\":\"ACME\"},"
	    "\"zz\":{},\"\":null,\"a\\\"b\":true}";
	static const char want[] =
	    "contact.email tokenize contact.email\n"
	    "contact.first_name allow contact.first_name\n"
	    "contact.age drop -\n"
	    "contact.\"x.y\" mask contact.\"x.y\"\n"
	    "prefs.lang allow prefs.*\n"
	    "prefs.obj drop prefs.* nonscalar\n"
	    "prefs.obj.c drop -\n"
	    "tags[0] allow tags[]\n"
	    "tags[1] drop tags[] nonscalar\n"
	    "tags[1].k drop -\n"
	    "tags[2] drop tags[] nonscalar\n"
	    "m[0][0] hash m[][]\n"
	    "m[0][1] hash m[][]\n"
	    "m[1] drop - empty\n"
	    "m[2] drop -\n"
	    "notes.t allow notes.**\n"
	    "notes.e allow notes.** empty\n"
	    "notes.l[0] allow notes.** empty\n"
	    "company drop company nonscalar\n"
	    "company.name drop -\n"
	    "zz drop - empty\n"
	    "\"\" drop -\n"
	    "\"a\\\"b\" drop -\n";
	struct policy_rules	*r = rules_make(rules_main);
	struct json_reader	*jr = json_reader_new(32);
	struct lines		 l;
	char			 err[128];

	(void)state;
	memset(&l, 0, sizeof(l));
	assert_int_equal(policy_explain_json(r, jr, doc, strlen(doc), collect,
	    &l, err, sizeof(err)), 0);
	assert_string_equal(l.text.data, want);
	buf_free(&l.text);
	policy_rules_free(r);
	json_reader_free(jr);
}

static void
test_explain_prefers(void **state)
{
	/* the outermost ** decides; a literal key beats * */
	static const struct rdef rs[] = {
		{ "a.**", AL }, { "a.b.**", AL }, { "a.b.c", AL },
		{ "*.k", AL }, { "x.k", AL }, { NULL, 0 },
	};
	static const char doc[] = "{\"a\":{\"b\":{\"c\":1},\"k\":0},"
	    "\"x\":{\"k\":2},\"y\":{\"k\":3}}";
	struct policy_rules	*r = rules_make(rs);
	struct json_reader	*jr = json_reader_new(32);
	struct lines		 l;

	(void)state;
	memset(&l, 0, sizeof(l));
	assert_int_equal(policy_explain_json(r, jr, doc, strlen(doc), collect,
	    &l, NULL, 0), 0);
	assert_string_equal(l.text.data,
	    "a.b.c allow a.**\n"
	    "a.k allow a.**\n"
	    "x.k allow x.k\n"
	    "y.k allow *.k\n");
	buf_free(&l.text);
	policy_rules_free(r);
	json_reader_free(jr);
}

static int
stop_at_second(void *arg, const struct policy_decision *d)
{
	int	*n = arg;

	(void)d;
	return ++*n == 2 ? -1 : 0;
}

static void
test_explain_errors(void **state)
{
	struct policy_rules	*r = rules_make(rules_main);
	struct json_reader	*jr = json_reader_new(3);
	struct lines		 l;
	char			 err[128];
	int			 n = 0;
	static const char *const bad[] = {
		"{\"a\":1,\"a\":2}", "[1]", "{\"a\":", "{\"a\":[[[[1]]]]}",
		"{\"a\":\"\xff\"}", "{} x",
	};
	size_t			 i;

	(void)state;
	memset(&l, 0, sizeof(l));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (policy_explain_json(r, jr, bad[i], strlen(bad[i]), collect,
		    &l, err, sizeof(err)) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_true(err[0] != '\0');
	}
	assert_int_equal(policy_explain_json(r, jr, "{\"a\":1,\"b\":2,\"c\":3}",
	    19, stop_at_second, &n, err, sizeof(err)), -1);
	assert_int_equal(n, 2);
	buf_free(&l.text);
	policy_rules_free(r);
	json_reader_free(jr);
}

/* ---- agreement with policy_apply_json ---- */

static int
xf_ok(void *arg, enum policy_action a, const struct json_token *v,
    struct buf *out)
{
	(void)arg;
	(void)a;
	(void)v;
	return buf_append_str(out, "\"T\"");
}

static uint32_t	 rng = 12345;

static uint32_t
rnd(uint32_t n)
{
	rng = rng * 1103515245u + 12345u;
	return (rng >> 8) % n;
}

static const char *const keys[] = { "a", "b", "c", "x", "y", "z", "k", "m",
	"n", "q\\\"r", "e.f", "" };
#define NKEYS	(sizeof(keys) / sizeof(keys[0]))

static void
gen_value(struct buf *b, int depth)
{
	uint32_t	 n, i, t = rnd(depth >= 4 ? 4 : 7), used;

	switch (t) {
	case 0:
		buf_append_str(b, "\"s\"");
		return;
	case 1:
		buf_append_str(b, "12");
		return;
	case 2:
		buf_append_str(b, "true");
		return;
	case 3:
		buf_append_str(b, "null");
		return;
	case 4:
	case 5:
		buf_append_char(b, '{');
		n = rnd(4);
		used = 0;
		for (i = 0; i < n; i++) {
			uint32_t k = rnd(NKEYS);

			if (used & (1u << k))
				continue;
			if (used)
				buf_append_char(b, ',');
			used |= 1u << k;
			buf_printf(b, "\"%s\":", keys[k]);
			gen_value(b, depth + 1);
		}
		buf_append_char(b, '}');
		return;
	default:
		buf_append_char(b, '[');
		n = rnd(4);
		for (i = 0; i < n; i++) {
			if (i)
				buf_append_char(b, ',');
			gen_value(b, depth + 1);
		}
		buf_append_char(b, ']');
		return;
	}
}

static const struct rdef set1[] = {
	{ "a.b", AL }, { "x[].y", AL }, { "m[][]", AL }, { "k.*.y", AL },
	{ "a.c", TK }, { "x[].z", TK }, { "n.k.**", HS }, { "\"q\\\"r\"", MK },
	{ "\"e.f\"", FP }, { "*.z", FP }, { NULL, 0 },
};
static const struct rdef set2[] = { { "**", TK }, { NULL, 0 } };
static const struct rdef set3[] = {
	{ "*.b", AL }, { "a.b.**", AL }, { "c.k", HS }, { "*[]", MK },
	{ NULL, 0 },
};
static const struct rdef set4[] = {
	{ "a", AL }, { "a.b", AL }, { "a[]", TK }, { "*[].z.**", HS },
	{ "\"\"", MK }, { "b[][].c", AL }, { NULL, 0 },
};
static const struct rdef set5[] = {
	{ "*", AL }, { "*.*", HS }, { "*[]", TK }, { "*.*.*.**", MK },
	{ NULL, 0 },
};
static const struct rdef *const sets[] = { set1, set2, set3, set4, set5 };

static void
test_explain_agrees_with_engine(void **state)
{
	struct json_reader	*jr = json_reader_new(32);
	struct policy_transform	 xf = { xf_ok, NULL };
	size_t			 s, i, a, passed = 0, nonscalar = 0;
	int			 docs = 0;

	(void)state;
	for (s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
		struct policy_rules *r = rules_make(sets[s]);

		for (i = 0; i < 600; i++) {
			struct buf		 doc = { 0 }, out = { 0 };
			struct policy_report	 rep;
			struct lines		 l;
			char			 err[128];

			/* the root must be an object */
			do {
				buf_truncate(&doc, 0);
				gen_value(&doc, 0);
			} while (doc.data[0] != '{');
			memset(&rep, 0, sizeof(rep));
			memset(&l, 0, sizeof(l));
			if (policy_apply_json(r, jr, doc.data, doc.len, &xf,
			    &out, &rep, err, sizeof(err)) != 0)
				fail_msg("apply %s: %s", doc.data, err);
			if (policy_explain_json(r, jr, doc.data, doc.len,
			    collect, &l, err, sizeof(err)) != 0)
				fail_msg("explain %s: %s", doc.data, err);
			/* every scalar the engine passes, explain names with
			 * the same action */
			for (a = 0; a < POLICY_NACTIONS; a++)
				if (a != POLICY_DROP &&
				    rep.count[a] != l.scalars[a])
					fail_msg("set %zu doc %s: %s %zu vs %zu\n%s",
					    s, doc.data, policy_action_name(
					    (enum policy_action)a), rep.count[a],
					    l.scalars[a], l.text.data);
			if (rep.dropped_nonscalar != l.nonscalar)
				fail_msg("set %zu doc %s: nonscalar %zu vs %zu",
				    s, doc.data, rep.dropped_nonscalar,
				    l.nonscalar);
			for (a = 0; a < POLICY_NACTIONS; a++)
				if (a != POLICY_DROP)
					passed += l.scalars[a];
			nonscalar += l.nonscalar;
			docs++;
			buf_free(&doc);
			buf_free(&out);
			buf_free(&l.text);
			policy_report_free(&rep);
		}
		policy_rules_free(r);
	}
	assert_int_equal(docs, 3000);
	/* the documents exercise the rules, not only drops */
	assert_true(passed > 1000);
	assert_true(nonscalar > 100);
	json_reader_free(jr);
}

/* ---- root-level names: policy_rules_root == explain == {"name": v} ---- */

static void
test_root_names(void **state)
{
	static const char *const names[] = { "a", "b", "c", "x", "k", "n",
	    "q\"r", "e.f", "", "zz", "a.b", "**", "*" };
	struct json_reader	*jr = json_reader_new(32);
	struct policy_transform	 xf = { xf_ok, NULL };
	size_t			 s, i, a, hits = 0;

	(void)state;
	for (s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
		struct policy_rules *r = rules_make(sets[s]);

		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			struct buf		 doc = { 0 }, out = { 0 };
			struct buf		 repath = { 0 };
			struct policy_report	 rep;
			enum policy_action	 ra, ea, ja = POLICY_DROP;
			const char		*rule;

			buf_append_char(&doc, '{');
			json_write_string(&doc, names[i], strlen(names[i]));
			buf_append_str(&doc, ":\"v\"}");
			memset(&rep, 0, sizeof(rep));
			assert_int_equal(policy_apply_json(r, jr, doc.data,
			    doc.len, &xf, &out, &rep, NULL, 0), 0);
			for (a = 0; a < POLICY_NACTIONS; a++)
				if (rep.count[a] == 1)
					ja = (enum policy_action)a;
			ra = policy_rules_root(r, names[i], strlen(names[i]),
			    &repath);
			ea = policy_explain_root(r, names[i], strlen(names[i]),
			    &rule);
			if (ra != ja || ea != ja)
				fail_msg("set %zu name \"%s\": root %s explain "
				    "%s json %s", s, names[i],
				    policy_action_name(ra),
				    policy_action_name(ea),
				    policy_action_name(ja));
			assert_true((rule == NULL) == (ea == POLICY_DROP));
			/* the report path is the one the JSON walk writes */
			assert_int_equal(rep.npaths[ja], 1);
			assert_string_equal(repath.data, rep.paths[ja].data);
			if (ja != POLICY_DROP)
				hits++;
			buf_free(&doc);
			buf_free(&out);
			buf_free(&repath);
			policy_report_free(&rep);
		}
		policy_rules_free(r);
	}
	/* the table exercises matches, not only drops */
	assert_true(hits >= 20);
	json_reader_free(jr);
}

static void
test_root_literal(void **state)
{
	static const struct rdef rs[] = {
		{ "contact.email", AL }, { "\"contact.email\"", TK },
		{ "email", HS }, { NULL, 0 },
	};
	struct policy_rules	*r = rules_make(rs);
	struct buf		 p = { 0 };
	const char		*rule;

	(void)state;
	/* a field named contact.email is one key, not a path */
	assert_int_equal(policy_rules_root(r, "contact.email", 13, &p), TK);
	assert_string_equal(p.data, "\"contact.email\"");
	assert_int_equal(policy_explain_root(r, "contact.email", 13, &rule), TK);
	assert_string_equal(rule, "\"contact.email\"");
	assert_int_equal(policy_rules_root(r, "email", 5, &p), HS);
	assert_string_equal(p.data, "email");
	assert_int_equal(policy_rules_root(r, "contact", 7, &p), POLICY_DROP);
	assert_string_equal(p.data, "contact");
	assert_int_equal(policy_rules_root(r, "other", 5, &p), POLICY_DROP);
	assert_string_equal(p.data, "*");
	assert_int_equal(policy_rules_root(r, "email", 5, NULL), HS);
	buf_free(&p);
	policy_rules_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_explain_vectors),
		cmocka_unit_test(test_explain_prefers),
		cmocka_unit_test(test_explain_errors),
		cmocka_unit_test(test_explain_agrees_with_engine),
		cmocka_unit_test(test_root_names),
		cmocka_unit_test(test_root_literal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
