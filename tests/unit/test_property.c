/* test_property.c -- generated documents under generated policies: nothing not allowed leaves, tokens round-trip */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ftw.h>

#include <cmocka.h>

#include "buf.h"
#include "json.h"
#include "keys.h"
#include "policy.h"
#include "token.h"

/*
 * Each document is built as a tree first (objects, arrays, scalars; keys
 * either from a pool that rules may name, some written with escapes, or
 * "free" keys that only "*" can match). Rules are generated from the
 * tree's own paths (generalised, truncated to "**", sometimes pointing at a
 * container) with random actions; the ones policy_rules_add accepts form
 * the policy. The model decides each scalar's action, then gives it its
 * content: allowed values get KEEP text or edge numbers with varied
 * escapes, every other value a canary (the MARKER in letters plus a unique
 * 15-digit run), and every key whose member does not survive a canary as
 * well. From the model come the exact bytes policy_apply_json must write
 * and the exact bytes policy_apply_response must restore.
 *
 * Run: SUBGATE_PROPERTY_DOCS (default 100000), SUBGATE_PROPERTY_SEED
 * (printed on every run), SUBGATE_PROPERTY_DOC=N to replay one document.
 */

#define MARKER		"KqZv_CANARY_"
#define MARKER_LEN	(sizeof(MARKER) - 1)
#define TOKEN_DOMAIN	"tok.example.com"
#define DEFAULT_DOCS	100000
#define MAXNODES	400
#define MAXDEPTH	7
#define MAXRULES	10
#define RUN_DIGITS	15
#define READER_DEPTH	32

#define SEG_ARR		(-1)	/* path: array element; rule: [] */
#define SEG_STAR	(-2)	/* rule: * */
#define SEG_FREE	(-3)	/* path: a key no rule names */

/* ---- PRNG: xorshift64*, each document seeded by splitmix64(seed, index) ---- */

static uint64_t rng;

static uint64_t
splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t
r64(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dULL;
}

static uint32_t
rnd(uint32_t n)
{
	return (uint32_t)((r64() >> 11) % n);
}

/* ---- the key pool ---- */

struct pkey {
	const char	*name;		/* UTF-8 */
	const char	*raw[3];	/* JSON spellings (without quotes) */
	const char	*rule[2];	/* rule spellings */
};

static const struct pkey pool[] = {
	{ "a", { "a", "\\u0061", NULL }, { "a", "\"a\"" } },
	{ "b", { "b", NULL, NULL }, { "b", NULL } },
	{ "email", { "email", "em\\u0061il", "\\u0065mail" }, { "email", "\"email\"" } },
	{ "d.e", { "d.e", "d\\u002ee", NULL }, { "\"d.e\"", NULL } },
	{ "x\"y", { "x\\\"y", "x\\u0022y", NULL }, { "\"x\\\"y\"", NULL } },
	{ "*", { "*", NULL, NULL }, { "\"*\"", NULL } },
	{ "[]", { "[]", "\\u005b]", NULL }, { "\"[]\"", NULL } },
	{ "\xc3\xa9", { "\xc3\xa9", "\\u00e9", "\\u00E9" }, { "\xc3\xa9", "\"\xc3\xa9\"" } },
	{ "\xf0\x9f\x98\x80", { "\xf0\x9f\x98\x80", "\\ud83d\\ude00", NULL },
	  { "\xf0\x9f\x98\x80", NULL } },
	{ "back\\slash", { "back\\\\slash", "back\\u005cslash", NULL },
	  { "\"back\\\\slash\"", NULL } },
	{ "k k", { "k k", "k\\u0020k", NULL }, { "k k", "\"k k\"" } },
	{ "a.b", { "a.b", NULL, NULL }, { "\"a.b\"", NULL } },
};
#define NPOOL	((int)(sizeof(pool) / sizeof(pool[0])))

/* ---- the document model ---- */

enum nkind { N_OBJ, N_ARR, N_SCAL };

struct node {
	enum nkind		 kind;
	int			 parent, first, last, next, nkids;
	int			 seg[MAXDEPTH + 1];	/* path from the root */
	int			 nseg;
	/* as a member of an object */
	int			 keyseg;	/* pool index or SEG_FREE */
	struct buf		 keyraw;	/* with quotes */
	/* scalars */
	enum json_type		 stype;
	struct buf		 raw, val, xout, rest;
	int			 has_run;
	char			 run[RUN_DIGITS + 1];
	/* decisions */
	enum policy_action	 act;
	int			 dstar;		/* under a ** rule */
	int			 kept;
	int			 reversible;	/* restored at a response path */
};

struct rule {
	int			 seg[MAXDEPTH + 1];
	int			 nseg;
	int			 dstar;
	enum policy_action	 act;
	struct buf		 text;
};

struct gen {
	struct node	 n[MAXNODES];
	int		 nn;
	struct rule	 r[MAXRULES];
	int		 nr;
	int		 ids;		/* unique ids within a document */
	uint64_t	 runbase;
	struct buf	 doc, want, wantrest, out, rest, tmp, unesc, pct;
	/* statistics */
	unsigned long	 nallow, ncanary, nkeycanary, nxf[POLICY_NACTIONS];
	unsigned long	 nrestored, ncross, nrules, nrefused, ndropinvalid;
};

static struct keyring		*ring;
static const struct keys_pair	*pair_a, *pair_b;
static char			 keydir[64];
static char			 b64needle[6][24];

/* ---- text helpers ---- */

static void
put_utf8(struct buf *b, uint32_t cp)
{
	char	 s[4];
	size_t	 n;

	if (cp < 0x80) {
		s[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		s[0] = (char)(0xc0 | cp >> 6);
		s[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		s[0] = (char)(0xe0 | cp >> 12);
		s[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		s[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		s[0] = (char)(0xf0 | cp >> 18);
		s[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		s[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		s[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	assert_int_equal(buf_append(b, s, n), 0);
}

/* Decode one UTF-8 code point at s (valid input assumed); *n its length. */
static uint32_t
get_utf8(const unsigned char *s, size_t *n)
{
	if (s[0] < 0x80) {
		*n = 1;
		return s[0];
	}
	if (s[0] < 0xe0) {
		*n = 2;
		return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
	}
	if (s[0] < 0xf0) {
		*n = 3;
		return (uint32_t)(s[0] & 0x0f) << 12 |
		    (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
	}
	*n = 4;
	return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 |
	    (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
}

static void
put_u(struct buf *raw, uint32_t u)
{
	static const char *const hx[2] = { "0123456789abcdef",
	    "0123456789ABCDEF" };
	const char	*h = hx[rnd(2)];

	buf_printf(raw, "\\u%c%c%c%c", h[u >> 12 & 15], h[u >> 8 & 15],
	    h[u >> 4 & 15], h[u & 15]);
}

/*
 * Append code point cp to val, and to raw as JSON string content: written
 * as is, or (with probability esc/8, always when JSON needs it) escaped.
 */
static void
emit_cp(struct buf *raw, struct buf *val, uint32_t cp, unsigned esc)
{
	int	 must = cp < 0x20 || cp == '"' || cp == '\\';

	put_utf8(val, cp);
	if (!must && rnd(8) >= esc) {
		put_utf8(raw, cp);
		return;
	}
	if (cp >= 0x10000) {
		put_u(raw, 0xd800 + ((cp - 0x10000) >> 10));
		put_u(raw, 0xdc00 + ((cp - 0x10000) & 0x3ff));
		return;
	}
	if (rnd(2)) {
		switch (cp) {
		case '"': buf_append_str(raw, "\\\""); return;
		case '\\': buf_append_str(raw, "\\\\"); return;
		case '/': buf_append_str(raw, "\\/"); return;
		case '\b': buf_append_str(raw, "\\b"); return;
		case '\f': buf_append_str(raw, "\\f"); return;
		case '\n': buf_append_str(raw, "\\n"); return;
		case '\r': buf_append_str(raw, "\\r"); return;
		case '\t': buf_append_str(raw, "\\t"); return;
		default: break;
		}
	}
	put_u(raw, cp);
}

static void
emit_str(struct buf *raw, struct buf *val, const char *s, unsigned esc)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 n;

	while (*p != '\0') {
		uint32_t cp = get_utf8(p, &n);

		emit_cp(raw, val, cp, esc);
		p += n;
	}
}

/* Decorations: no ASCII digits, no '@'. */
static const char *const decor[] = {
	"", " ", "\xc3\xa9t\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
	"\"q\"", "back\\slash", "a/b", "\n\t\r\b\f", "\x01\x1f", "\x7f",
	"{\"json\":[true,null]}", "\xe2\x80\xa8", "\xef\xbf\xbf",
	"\xf4\x8f\xbf\xbf", "tok1.", "h1.", "%E%F%", "QUJD", "\xe4\xb8\xad",
};
#define NDECOR	((int)(sizeof(decor) / sizeof(decor[0])))

static void
emit_decor(struct buf *raw, struct buf *val, int n, unsigned esc, int nul)
{
	while (n-- > 0) {
		if (nul && rnd(12) == 0)
			emit_cp(raw, val, 0, esc);	/* NUL in a value */
		else
			emit_str(raw, val, decor[rnd(NDECOR)], esc);
	}
}

static void
emit_id(struct buf *raw, struct buf *val, int id, unsigned esc)
{
	char	 s[16];
	int	 i = 0;

	do {
		s[i++] = (char)('a' + id % 26);
		id /= 26;
	} while (id > 0 && i < 15);
	s[i] = '\0';
	emit_str(raw, val, s, esc);
}

/* ---- building the tree ---- */

static int
node_new(struct gen *g, enum nkind kind, int parent, int keyseg)
{
	struct node	*n, *p;
	int		 i;

	if (g->nn >= MAXNODES)
		return -1;
	i = g->nn++;
	n = &g->n[i];
	n->kind = kind;
	n->parent = parent;
	n->first = n->last = n->next = -1;
	n->nkids = 0;
	n->keyseg = keyseg;
	n->act = POLICY_DROP;
	n->dstar = n->kept = n->reversible = n->has_run = 0;
	buf_reset(&n->keyraw);
	buf_reset(&n->raw);
	buf_reset(&n->val);
	buf_reset(&n->xout);
	buf_reset(&n->rest);
	if (parent < 0) {
		n->nseg = 0;
		return i;
	}
	p = &g->n[parent];
	memcpy(n->seg, p->seg, sizeof(n->seg));
	n->nseg = p->nseg;
	n->seg[n->nseg++] = p->kind == N_ARR ? SEG_ARR : keyseg;
	if (p->first < 0)
		p->first = i;
	else
		g->n[p->last].next = i;
	p->last = i;
	p->nkids++;
	return i;
}

static void
gen_tree(struct gen *g, int parent, int keyseg, int depth, int root)
{
	int		 i, k, nk, self;
	uint32_t	 used = 0;
	enum nkind	 kind;

	k = root ? 9 : (int)rnd(depth >= MAXDEPTH ? 5 : 10);
	kind = root || k >= 7 ? N_OBJ : k >= 5 ? N_ARR : N_SCAL;
	if ((self = node_new(g, kind, parent, keyseg)) < 0)
		return;
	if (kind == N_SCAL) {
		static const enum json_type st[] = { JSON_STRING, JSON_STRING,
		    JSON_STRING, JSON_NUMBER, JSON_NUMBER, JSON_TRUE,
		    JSON_FALSE, JSON_NULL };

		g->n[self].stype = st[rnd(sizeof(st) / sizeof(st[0]))];
		return;
	}
	nk = (int)rnd(root ? 10 : 6);
	for (i = 0; i < nk; i++) {
		if (kind == N_ARR) {
			gen_tree(g, self, SEG_ARR, depth + 1, 0);
			continue;
		}
		if (rnd(3) == 0) {
			gen_tree(g, self, SEG_FREE, depth + 1, 0);
			continue;
		}
		k = (int)rnd(NPOOL);
		if (used & (1u << k))
			continue;
		used |= 1u << k;
		gen_tree(g, self, k, depth + 1, 0);
	}
}

/* ---- rules ---- */

static int
seg_match(int r, int p)
{
	if (r == SEG_ARR)
		return p == SEG_ARR;
	if (r == SEG_STAR)
		return p != SEG_ARR;
	return r == p;
}

static int
rule_match(const struct rule *r, const struct node *n)
{
	int	 i;

	if (r->nseg != n->nseg)
		return 0;
	for (i = 0; i < r->nseg; i++)
		if (!seg_match(r->seg[i], n->seg[i]))
			return 0;
	return 1;
}

static void
rule_render(struct rule *r)
{
	const char	*s;
	int		 i;

	buf_reset(&r->text);
	for (i = 0; i < r->nseg; i++) {
		if (r->seg[i] == SEG_ARR) {
			buf_append_str(&r->text, "[]");
			continue;
		}
		if (i > 0)
			buf_append_char(&r->text, '.');
		if (r->seg[i] == SEG_STAR) {
			buf_append_char(&r->text, '*');
			continue;
		}
		s = pool[r->seg[i]].rule[1];
		if (s == NULL || rnd(2))
			s = pool[r->seg[i]].rule[0];
		buf_append_str(&r->text, s);
	}
	if (r->dstar)
		buf_append_str(&r->text, r->nseg > 0 ? ".**" : "**");
}

static enum policy_action
random_action(void)
{
	uint32_t	 x = rnd(100);

	if (x < 36)
		return POLICY_ALLOW;
	if (x < 56)
		return POLICY_TOKENIZE;
	if (x < 72)
		return POLICY_FORMAT_PRESERVE;
	if (x < 86)
		return POLICY_HASH;
	return POLICY_MASK;
}

static void
gen_rules(struct gen *g, struct policy_rules *rules)
{
	struct rule	*r;
	char		 err[256];
	int		 i, j, want = 2 + (int)rnd(MAXRULES - 1);

	g->nr = 0;
	for (i = 0; i < want && g->nr < MAXRULES; i++) {
		r = &g->r[g->nr];
		if (g->nn > 1 && rnd(5) != 0) {
			/* a node's path: scalar or container alike */
			const struct node *n = &g->n[1 + rnd((uint32_t)g->nn - 1)];

			r->nseg = n->nseg;
			memcpy(r->seg, n->seg, sizeof(r->seg));
		} else {
			r->nseg = 1 + (int)rnd(3);
			for (j = 0; j < r->nseg; j++)
				r->seg[j] = j > 0 && rnd(4) == 0 ? SEG_ARR :
				    rnd(4) == 0 ? SEG_STAR : (int)rnd(NPOOL);
		}
		r->dstar = 0;
		for (j = 0; j < r->nseg; j++) {
			if (r->seg[j] == SEG_FREE || (r->seg[j] >= 0 &&
			    rnd(5) == 0))
				r->seg[j] = SEG_STAR;
			else if (r->seg[j] == SEG_ARR && rnd(8) == 0)
				r->seg[j] = SEG_STAR;
			else if (j > 0 && r->seg[j] >= 0 && rnd(14) == 0)
				r->seg[j] = SEG_ARR;
		}
		if (rnd(6) == 0) {
			r->nseg = r->nseg > 0 ? (int)rnd((uint32_t)r->nseg + 1) : 0;
			r->dstar = 1;
		}
		if (r->nseg > 0 && r->seg[0] == SEG_ARR)
			continue;	/* a path may not start with [] */
		if (r->nseg == 0 && !r->dstar)
			continue;
		r->act = random_action();
		rule_render(r);
		g->nrules++;
		if (policy_rules_add(rules, r->text.data, r->act, err,
		    sizeof(err)) != 0) {
			if (strstr(err, "listed twice") == NULL &&
			    strstr(err, "conflicts") == NULL)
				fail_msg("rule %s (%s) refused: %s", r->text.data,
				    policy_action_name(r->act), err);
			g->nrefused++;
			continue;
		}
		g->nr++;
	}
}

/* ---- deciding ---- */

/* Per node top-down: the action of the rule that decides it. */
static void
decide(struct gen *g, int i, int inherited)
{
	struct node	*n = &g->n[i];
	int		 d = inherited, j, k;

	if (d < 0) {
		for (j = 0; j < g->nr; j++) {
			if (!g->r[j].dstar || !rule_match(&g->r[j], n))
				continue;
			if (d >= 0 && d != (int)g->r[j].act)
				fail_msg("conflict not refused: %s", g->r[j].text.data);
			d = (int)g->r[j].act;
		}
	}
	if (d >= 0) {
		n->dstar = 1;
		n->act = (enum policy_action)d;
	}
	if (n->kind == N_SCAL) {
		for (j = 0; j < g->nr; j++) {
			if (g->r[j].dstar || !rule_match(&g->r[j], n))
				continue;
			if ((n->dstar || n->act != POLICY_DROP) &&
			    n->act != g->r[j].act)
				fail_msg("conflict not refused: %s", g->r[j].text.data);
			n->act = g->r[j].act;
		}
		return;
	}
	for (k = n->first; k >= 0; k = g->n[k].next)
		decide(g, k, d);
}

/* ---- content ---- */

static const char *const edge_numbers[] = {
	"0", "-0", "0.0", "-0.0e-0", "1E400", "-1e-400", "1.7976931348623157e308",
	"4.9e-324", "2.2250738585072014E-308", "123456789012345678901234567890123",
	"-9223372036854775809", "18446744073709551616", "9007199254740993",
	"1e+2", "0.1", "2E-0", "-5", "100000000000000000000000000000.0e-999999",
	"0e0", "1.0000000000000000000000000001",
};
#define NEDGE	((int)(sizeof(edge_numbers) / sizeof(edge_numbers[0])))

static void
make_run(struct gen *g, struct node *n)
{
	snprintf(n->run, sizeof(n->run), "%015llu",
	    (unsigned long long)(g->runbase + (uint64_t)g->ids++));
	n->has_run = 1;
}

/* An allowed value: "KEEP" text with every kind of escape, or an edge number. */
static void
content_keep(struct gen *g, struct node *n)
{
	switch (n->stype) {
	case JSON_STRING:
		buf_append_char(&n->raw, '"');
		emit_str(&n->raw, &n->val, "KEEP", 2);
		emit_id(&n->raw, &n->val, g->ids++, 2);
		emit_decor(&n->raw, &n->val, (int)rnd(4), 3, 1);
		if (rnd(3) == 0) {
			char d[16];

			snprintf(d, sizeof(d), " %u", rnd(1000000));
			emit_str(&n->raw, &n->val, d, 2);
		}
		buf_append_char(&n->raw, '"');
		break;
	case JSON_NUMBER:
		buf_append_str(&n->raw, edge_numbers[rnd(NEDGE)]);
		break;
	case JSON_TRUE:
		buf_append_str(&n->raw, "true");
		break;
	case JSON_FALSE:
		buf_append_str(&n->raw, "false");
		break;
	default:
		buf_append_str(&n->raw, "null");
		break;
	}
}

enum sclass { C_TEXT, C_RUN, C_PHONE, C_FEWDIG, C_EMAIL };

/* A value that must not reach the processor as it is. */
static void
content_canary(struct gen *g, struct node *n)
{
	static const char *const seps[] = { "-", " ", ".", "(", ")", "/", "" };
	static const char *const exps[] = { "", "", "e400", "E-400", "e+0",
	    "e-0000", "E+99999" };
	enum sclass	 c;
	unsigned	 esc;
	int		 i;

	switch (n->stype) {
	case JSON_STRING:
		break;
	case JSON_NUMBER:
		make_run(g, n);
		buf_printf(&n->raw, "%s%s%s%s", rnd(2) ? "-" : "", n->run,
		    rnd(2) ? ".5" : "", exps[rnd(7)]);
		return;
	default:
		content_keep(g, n);
		return;
	}
	if (n->act == POLICY_FORMAT_PRESERVE) {
		static const enum sclass fp[] = { C_PHONE, C_PHONE, C_EMAIL,
		    C_FEWDIG, C_TEXT };

		c = fp[rnd(5)];
	} else
		c = (enum sclass)rnd(5);
	/* reversible values must be written the way they come back */
	esc = n->act == POLICY_TOKENIZE || n->act == POLICY_FORMAT_PRESERVE ?
	    0 : 3;
	buf_append_char(&n->raw, '"');
	switch (c) {
	case C_PHONE:
		make_run(g, n);
		if (rnd(2))
			emit_str(&n->raw, &n->val, "+", esc);
		for (i = 0; i < RUN_DIGITS; i++) {
			char d[2] = { n->run[i], '\0' };

			emit_str(&n->raw, &n->val, d, esc);
			if (rnd(4) == 0)
				emit_str(&n->raw, &n->val, seps[rnd(7)], esc);
		}
		break;
	case C_EMAIL:
		make_run(g, n);
		emit_str(&n->raw, &n->val, MARKER, esc);
		emit_id(&n->raw, &n->val, g->ids++, esc);
		emit_str(&n->raw, &n->val, ".", esc);
		emit_str(&n->raw, &n->val, n->run, esc);
		emit_str(&n->raw, &n->val, rnd(2) ? "@Example.COM" :
		    "@mail.example.org", esc);
		break;
	default:
		emit_str(&n->raw, &n->val, MARKER, esc);
		emit_id(&n->raw, &n->val, g->ids++, esc);
		/* (decorations hold digits: "tok1.", "h1.") */
		if (n->act != POLICY_FORMAT_PRESERVE)
			emit_decor(&n->raw, &n->val, (int)rnd(3), esc, 1);
		if (c == C_RUN) {
			make_run(g, n);
			emit_str(&n->raw, &n->val, " ", esc);
			emit_str(&n->raw, &n->val, n->run, esc);
		} else if (c == C_FEWDIG)
			emit_str(&n->raw, &n->val, rnd(2) ? "12" : "1-2-3-4-5",
			    esc);
		/* mask keeps the last four: never the marker or the run */
		emit_str(&n->raw, &n->val, rnd(2) ? "wxyz" :
		    "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa0", esc);
		break;
	}
	buf_append_char(&n->raw, '"');
	if (esc == 0) {
		/* exactly what json_write_string writes back */
		buf_reset(&n->raw);
		assert_int_equal(json_write_string(&n->raw, n->val.data,
		    n->val.len), 0);
	}
}

/* ---- checking one transform's output ---- */

static size_t
cp_count(const char *s, size_t len)
{
	size_t	 i, n = 0;

	for (i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			n++;
	return n;
}

/* JSON-unescape everything in s (backslash escapes anywhere) into out. */
static void
unescape_all(const char *s, size_t len, struct buf *out)
{
	size_t		 i;
	uint32_t	 u, lo;

	buf_reset(out);
	for (i = 0; i < len; i++) {
		if (s[i] != '\\' || i + 1 >= len) {
			buf_append_char(out, s[i]);
			continue;
		}
		i++;
		switch (s[i]) {
		case 'b': buf_append_char(out, '\b'); break;
		case 'f': buf_append_char(out, '\f'); break;
		case 'n': buf_append_char(out, '\n'); break;
		case 'r': buf_append_char(out, '\r'); break;
		case 't': buf_append_char(out, '\t'); break;
		case 'u':
			if (i + 4 >= len || sscanf(s + i + 1, "%4x", &u) != 1) {
				buf_append_char(out, 'u');
				break;
			}
			i += 4;
			if (u >= 0xd800 && u < 0xdc00 && i + 6 < len &&
			    s[i + 1] == '\\' && s[i + 2] == 'u' &&
			    sscanf(s + i + 3, "%4x", &lo) == 1 &&
			    lo >= 0xdc00 && lo < 0xe000) {
				u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
				i += 6;
			}
			put_utf8(out, u);
			break;
		default:
			buf_append_char(out, s[i]);
			break;
		}
	}
}

static void
check_xout(const struct node *n, struct buf *tmp)
{
	const struct keys_pair	*p = pair_a;
	const char		*x = n->xout.data, *s;
	size_t			 xl = n->xout.len, i, len, cps, k;
	char			 pre[32];

	assert_true(xl >= 2 && x[0] == '"' && x[xl - 1] == '"');
	unescape_all(x + 1, xl - 2, tmp);
	switch (n->act) {
	case POLICY_TOKENIZE:
		snprintf(pre, sizeof(pre), "tok1.%u.", (unsigned)p->active);
		if (strncmp(tmp->data, pre, strlen(pre)) != 0 ||
		    strspn(tmp->data + strlen(pre), "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz0123456789-_") !=
		    tmp->len - strlen(pre) || tmp->len - strlen(pre) < 43)
			fail_msg("tokenize: %s -> %s", n->raw.data, x);
		break;
	case POLICY_HASH:
		if (tmp->len != 3 + 32 || strncmp(tmp->data, "h1.", 3) != 0 ||
		    strspn(tmp->data + 3, "abcdefghijklmnopqrstuvwxyz234567") != 32)
			fail_msg("hash: %s -> %s", n->raw.data, x);
		break;
	case POLICY_MASK:
		if (n->stype == JSON_STRING) {
			s = n->val.data;
			len = n->val.len;
		} else if (n->stype == JSON_NUMBER) {
			s = n->raw.data;
			len = n->raw.len;
		} else {
			s = "****";
			len = 0;
		}
		cps = n->stype == JSON_STRING || n->stype == JSON_NUMBER ?
		    cp_count(s, len) : 4;
		k = cps <= 4 ? cps : cps - 4;
		for (i = 0; i < k; i++)
			if (tmp->data[i] != '*')
				fail_msg("mask: %s -> %s", n->raw.data, x);
		if (cps > 4) {
			/* the last four code points, unchanged */
			const char *e = s + len;
			int m = 0;

			while (m < 4 && e > s) {
				e--;
				if (((unsigned char)*e & 0xc0) != 0x80)
					m++;
			}
			if (tmp->len != k + (size_t)(s + len - e) ||
			    memcmp(tmp->data + k, e, (size_t)(s + len - e)) != 0)
				fail_msg("mask: %s -> %s", n->raw.data, x);
		} else if (tmp->len != k)
			fail_msg("mask: %s -> %s", n->raw.data, x);
		break;
	case POLICY_FORMAT_PRESERVE:
		s = n->stype == JSON_STRING ? n->val.data : n->raw.data;
		len = n->stype == JSON_STRING ? n->val.len : n->raw.len;
		if (memchr(s, '@', len) != NULL) {
			/* local part of <= 64 base32, labels <= 63, our domain */
			const char *at = memchr(tmp->data, '@', tmp->len), *q;
			const char *dom = "." TOKEN_DOMAIN;

			if (at == NULL || at - tmp->data > 64 || at == tmp->data ||
			    tmp->len < strlen(dom) || strcmp(tmp->data + tmp->len -
			    strlen(dom), dom) != 0)
				fail_msg("email: %s -> %s", n->raw.data, x);
			for (q = tmp->data; q < tmp->data + tmp->len - strlen(dom);
			    q++)
				if (strchr("abcdefghijklmnopqrstuvwxyz234567@.",
				    *q) == NULL)
					fail_msg("email: %s -> %s", n->raw.data, x);
			break;
		}
		/* FF1: same length, separators in place, digits changed */
		if (tmp->len != len)
			fail_msg("ff1: %s -> %s", n->raw.data, x);
		for (i = 0; i < len; i++)
			if ((s[i] >= '0' && s[i] <= '9') !=
			    (tmp->data[i] >= '0' && tmp->data[i] <= '9') ||
			    ((s[i] < '0' || s[i] > '9') && s[i] != tmp->data[i]))
				fail_msg("ff1: %s -> %s", n->raw.data, x);
		if (memcmp(s, tmp->data, len) == 0)
			fail_msg("ff1 left the digits: %s", n->raw.data);
		break;
	default:
		fail_msg("transform for %s", policy_action_name(n->act));
	}
}

/* Apply the scalar's action through token_xform_request, as the walk would. */
static void
transform(struct gen *g, struct node *n, struct token_ctx *ctx)
{
	struct json_token	 t;
	int			 rc;

	memset(&t, 0, sizeof(t));
	t.type = n->stype;
	t.raw = n->raw.data;
	t.raw_len = n->raw.len;
	if (n->stype == JSON_STRING) {
		t.str = n->val.data;
		t.str_len = n->val.len;
	}
	if (n->act == POLICY_DROP) {
		n->kept = 0;
		return;
	}
	if (n->act == POLICY_ALLOW) {
		n->kept = 1;
		g->nallow++;
		return;
	}
	rc = token_xform_request(ctx, n->act, &t, &n->xout);
	if (rc == -1)
		fail_msg("token_xform_request(%s) failed on %s",
		    policy_action_name(n->act), n->raw.data);
	if (rc == 1) {
		/* allowed to drop: FP of < 6 digits, booleans, null */
		if (n->act != POLICY_FORMAT_PRESERVE)
			fail_msg("%s dropped %s", policy_action_name(n->act),
			    n->raw.data);
		n->kept = 0;
		g->ndropinvalid++;
		return;
	}
	n->kept = 1;
	g->nxf[n->act]++;
	check_xout(n, &g->tmp);
	if (n->act == POLICY_TOKENIZE) {
		n->reversible = 1;
		assert_int_equal(buf_append(&n->rest, n->raw.data, n->raw.len), 0);
	} else if (n->act == POLICY_FORMAT_PRESERVE) {
		n->reversible = 1;
		if (n->stype == JSON_STRING)
			buf_append(&n->rest, n->raw.data, n->raw.len);
		else
			buf_printf(&n->rest, "\"%s\"", n->raw.data);
	}
}

/* Contents, transforms and visibility, bottom-up. */
static void
settle(struct gen *g, int i, struct token_ctx *ctx)
{
	struct node	*n = &g->n[i];
	int		 k, any = 0;

	if (n->kind == N_SCAL) {
		if (n->act == POLICY_ALLOW)
			content_keep(g, n);
		else {
			content_canary(g, n);
			g->ncanary++;
		}
		transform(g, n, ctx);
		return;
	}
	for (k = n->first; k >= 0; k = g->n[k].next) {
		settle(g, k, ctx);
		any |= g->n[k].kept;
	}
	n->kept = any || i == 0 || (n->dstar && n->nkids == 0);
}

/* Keys: visible members get ordinary names, the others canaries. */
static void
name_keys(struct gen *g)
{
	struct node	*n;
	const char	*r;
	struct buf	*val = &g->tmp;
	int		 i;

	for (i = 1; i < g->nn; i++) {
		n = &g->n[i];
		if (g->n[n->parent].kind != N_OBJ)
			continue;
		buf_reset(val);
		buf_append_char(&n->keyraw, '"');
		if (n->keyseg >= 0) {
			do
				r = pool[n->keyseg].raw[rnd(3)];
			while (r == NULL);
			buf_append_str(&n->keyraw, r);
		} else if (n->kept) {
			emit_str(&n->keyraw, val, "f", 3);
			emit_id(&n->keyraw, val, g->ids++, 3);
			emit_decor(&n->keyraw, val, (int)rnd(2), 3, 0);
		} else {
			emit_str(&n->keyraw, val, MARKER, 3);
			emit_id(&n->keyraw, val, g->ids++, 3);
			emit_str(&n->keyraw, val, decor[rnd(NDECOR)], 3);
			g->nkeycanary++;
		}
		buf_append_char(&n->keyraw, '"');
	}
}

/* ---- serialising ---- */

enum ser { SER_DOC, SER_OUT, SER_REST };

static void
ws(struct buf *b)
{
	static const char *const w[] = { " ", "\n", "\t", "\r\n  ", "  " };

	if (rnd(5) == 0)
		buf_append_str(b, w[rnd(5)]);
}

static void
serialise(const struct gen *g, int i, struct buf *b, enum ser how)
{
	const struct node	*n = &g->n[i], *c;
	int			 k, first = 1;

	if (n->kind == N_SCAL) {
		if (how == SER_DOC || n->act == POLICY_ALLOW)
			buf_append(b, n->raw.data, n->raw.len);
		else if (how == SER_REST && n->reversible)
			buf_append(b, n->rest.data, n->rest.len);
		else
			buf_append(b, n->xout.data, n->xout.len);
		return;
	}
	buf_append_char(b, n->kind == N_OBJ ? '{' : '[');
	for (k = n->first; k >= 0; k = c->next) {
		c = &g->n[k];
		if (how != SER_DOC && !c->kept)
			continue;
		if (!first)
			buf_append_char(b, ',');
		first = 0;
		if (how == SER_DOC)
			ws(b);
		if (n->kind == N_OBJ) {
			buf_append(b, c->keyraw.data, c->keyraw.len);
			if (how == SER_DOC)
				ws(b);
			buf_append_char(b, ':');
			if (how == SER_DOC)
				ws(b);
		}
		serialise(g, k, b, how);
		if (how == SER_DOC)
			ws(b);
	}
	buf_append_char(b, n->kind == N_OBJ ? '}' : ']');
}

/* ---- leak detection ---- */

static void
pct_decode(const char *s, size_t len, struct buf *out)
{
	size_t		 i;
	unsigned	 x;

	buf_reset(out);
	for (i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && sscanf(s + i + 1, "%2x", &x) == 1) {
			buf_append_char(out, (char)x);
			i += 2;
		} else
			buf_append_char(out, s[i]);
	}
}

/*
 * Base64 and base64url of MARKER at the three alignments, cut to the
 * characters that depend on marker bytes alone.
 */
static void
b64_needles(void)
{
	static const char	 std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char		 in[MARKER_LEN + 2];
	size_t			 k, i, n, skip;
	char			*o;

	for (k = 0; k < 3; k++) {
		memset(in, 0, sizeof(in));
		memcpy(in + k, MARKER, MARKER_LEN);
		n = k + MARKER_LEN;
		o = b64needle[k];
		/* the group holding a prefix byte depends on it: skip it */
		skip = k > 0 ? 3 : 0;
		for (i = skip; i + 3 <= n; i += 3) {
			uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			    in[i + 2];

			*o++ = std[v >> 18];
			*o++ = std[v >> 12 & 63];
			*o++ = std[v >> 6 & 63];
			*o++ = std[v & 63];
		}
		*o = '\0';
		strcpy(b64needle[k + 3], b64needle[k]);
		for (o = b64needle[k + 3]; *o != '\0'; o++)
			*o = *o == '+' ? '-' : *o == '/' ? '_' : *o;
	}
}

/* Where the marker shows in s in any encoding: a description, or NULL. */
static const char *
leak_find(struct gen *g, const char *s, size_t len)
{
	int	 k;

	if (memmem(s, len, MARKER, MARKER_LEN) != NULL)
		return "raw";
	unescape_all(s, len, &g->unesc);
	if (memmem(g->unesc.data, g->unesc.len, MARKER, MARKER_LEN) != NULL)
		return "JSON-escaped";
	pct_decode(s, len, &g->pct);
	if (memmem(g->pct.data, g->pct.len, MARKER, MARKER_LEN) != NULL)
		return "percent-encoded";
	for (k = 0; k < 6; k++)
		if (memmem(s, len, b64needle[k], strlen(b64needle[k])) != NULL)
			return k < 3 ? "base64" : "base64url";
	return NULL;
}

/* Digits of s (after unescaping), for the canaries' digit runs. */
static void
digits_of(const struct buf *in, struct buf *out)
{
	size_t	 i;

	buf_reset(out);
	for (i = 0; i < in->len; i++)
		if (in->data[i] >= '0' && in->data[i] <= '9')
			buf_append_char(out, in->data[i]);
}

/* ---- setup: real key files, two pairs ---- */

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path);
}

static int
setup_keys(void **state)
{
	struct keys_name	 pairs[2] = { { "acme", "crm" }, { "globex", "crm" } };
	struct buf		 rep = { 0 };
	char			 tk[128], dk[128], err[512];

	(void)state;
	snprintf(keydir, sizeof(keydir), "/tmp/test_property.XXXXXX");
	assert_non_null(mkdtemp(keydir));
	strcat(keydir, "/k");
	if (keys_init_dir(keydir, &rep, err, sizeof(err)) != 0)
		fail_msg("keys_init_dir: %s", err);
	snprintf(tk, sizeof(tk), "%s/token.keys", keydir);
	snprintf(dk, sizeof(dk), "%s/data.keys", keydir);
	if (keys_sync_files(tk, dk, pairs, 2, &rep, err, sizeof(err)) != 0)
		fail_msg("keys_sync_files: %s", err);
	if ((ring = keys_load_files(tk, dk, pairs, 2, "test", err,
	    sizeof(err))) == NULL)
		fail_msg("keys_load_files: %s", err);
	assert_non_null(pair_a = keys_pair_find(ring, "acme", "crm"));
	assert_non_null(pair_b = keys_pair_find(ring, "globex", "crm"));
	buf_free(&rep);
	b64_needles();
	return 0;
}

static int
teardown_keys(void **state)
{
	(void)state;
	keys_free(ring);
	*strrchr(keydir, '/') = '\0';
	nftw(keydir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* ---- the detector finds what it looks for ---- */

static void
test_detector(void **state)
{
	struct gen	*g;
	struct buf	 b = { 0 };
	const char	*enc;

	(void)state;
	assert_non_null(g = calloc(1, sizeof(*g)));
	assert_null(leak_find(g, "{\"a\":\"KqZv_CANARx\"}", 19));
	enc = leak_find(g, "x" MARKER "y", MARKER_LEN + 2);
	assert_string_equal(enc, "raw");
	/* every letter escaped */
	buf_append_str(&b, "{\"v\":\"");
	for (size_t i = 0; i < MARKER_LEN; i++)
		buf_printf(&b, "\\u%04X", (unsigned)MARKER[i]);
	buf_append_str(&b, "\"}");
	assert_string_equal(leak_find(g, b.data, b.len), "JSON-escaped");
	buf_reset(&b);
	buf_append_str(&b, "q=");
	for (size_t i = 0; i < MARKER_LEN; i++)
		buf_printf(&b, "%%%02x", (unsigned)MARKER[i]);
	assert_string_equal(leak_find(g, b.data, b.len), "percent-encoded");
	/* the marker after 0, 1, 2 other bytes, base64 */
	assert_string_equal(leak_find(g, "\"S3Fadl9DQU5BUllf\"", 18), "base64");
	assert_string_equal(leak_find(g, "\"eEtxWnZfQ0FOQVJZXw\"", 20), "base64");
	assert_string_equal(leak_find(g, "\"eHhLcVp2X0NBTkFSWV8\"", 21), "base64");
	/* base64url of 0xff 0xff + marker */
	assert_non_null(leak_find(g, "\"__9LcVp2X0NBTkFSWV8\"", 21));
	assert_null(leak_find(g, "\"__9LcVp2X0NBTk\"", 16));
	buf_free(&b);
	buf_free(&g->unesc);
	buf_free(&g->pct);
	free(g);
}

/* ---- the property ---- */

static void
fail_doc(struct gen *g, unsigned long doc, uint64_t seed, const char *what)
{
	int	 i;

	fprintf(stderr, "property: seed 0x%016llx doc %lu: %s\n",
	    (unsigned long long)seed, doc, what);
	for (i = 0; i < g->nr; i++)
		fprintf(stderr, "  rule %-15s %s\n", policy_action_name(g->r[i].act),
		    g->r[i].text.data);
	fprintf(stderr, "  doc      %s\n  out      %s\n  expected %s\n",
	    g->doc.data, g->out.data ? g->out.data : "",
	    g->want.data ? g->want.data : "");
	fprintf(stderr, "  restored %s\n  expected %s\n",
	    g->rest.data ? g->rest.data : "",
	    g->wantrest.data ? g->wantrest.data : "");
	fprintf(stderr, "  replay: SUBGATE_PROPERTY_SEED=0x%016llx "
	    "SUBGATE_PROPERTY_DOC=%lu\n", (unsigned long long)seed, doc);
	fail_msg("%s (seed 0x%016llx doc %lu)", what, (unsigned long long)seed,
	    doc);
}

static int
count_tokens(const struct gen *g, int i, const char *prefix)
{
	const struct node	*n = &g->n[i];
	int			 k, c = 0;

	if (!n->kept)
		return 0;
	if (n->kind == N_SCAL)
		return n->act == POLICY_TOKENIZE && strcmp(prefix, "tok1.") == 0;
	for (k = n->first; k >= 0; k = g->n[k].next)
		c += count_tokens(g, k, prefix);
	return c;
}

static void
test_property_tokens(void **state)
{
	struct gen		*g;
	struct json_reader	*rd;
	struct policy_rules	*rules, *resp, *cross;
	struct policy_report	 rep;
	struct policy_transform	 xf, rxf;
	struct token_ctx	 ctx, rctx;
	struct timespec		 t0, t1;
	const char		*env, *enc;
	char			 err[256], what[512];
	uint64_t		 seed;
	unsigned long		 ndocs = DEFAULT_DOCS, doc, only = (unsigned long)-1;
	unsigned long		 first = 0, nrestored_want;
	int			 i, ntok;
	size_t			 cnt[POLICY_NACTIONS], ninvalid;
	double			 secs;

	(void)state;
	if ((env = getenv("SUBGATE_PROPERTY_DOCS")) != NULL)
		ndocs = strtoul(env, NULL, 0);
	if ((env = getenv("SUBGATE_PROPERTY_SEED")) != NULL)
		seed = strtoull(env, NULL, 0);
	else
		seed = splitmix((uint64_t)time(NULL) ^ (uint64_t)getpid() << 32);
	if ((env = getenv("SUBGATE_PROPERTY_DOC")) != NULL) {
		only = strtoul(env, NULL, 0);
		first = only;
		ndocs = only + 1;
	}
	print_message("property: seed 0x%016llx, %lu documents (replay with "
	    "SUBGATE_PROPERTY_SEED=0x%016llx)\n", (unsigned long long)seed,
	    ndocs - first, (unsigned long long)seed);

	assert_non_null(g = calloc(1, sizeof(*g)));
	assert_non_null(rd = json_reader_new(READER_DEPTH));
	memset(&rep, 0, sizeof(rep));
	memset(&ctx, 0, sizeof(ctx));
	ctx.pair = pair_a;
	ctx.tenant = "acme";
	ctx.integration = "crm";
	ctx.token_domain = TOKEN_DOMAIN;
	xf.fn = token_xform_request;
	xf.arg = &ctx;
	rxf.fn = token_xform_response;
	rxf.arg = &rctx;
	clock_gettime(CLOCK_MONOTONIC, &t0);

	for (doc = first; doc < ndocs; doc++) {
		rng = splitmix(seed ^ splitmix(doc + 1)) | 1;
		g->nn = 0;
		g->ids = 0;
		g->runbase = 100000000000000ULL + (r64() % 800000000ULL) * 1000000ULL;
		gen_tree(g, -1, SEG_FREE, 0, 1);
		assert_non_null(rules = policy_rules_new());
		gen_rules(g, rules);
		decide(g, 0, -1);
		settle(g, 0, &ctx);
		name_keys(g);

		buf_reset(&g->doc);
		buf_reset(&g->want);
		buf_reset(&g->wantrest);
		buf_reset(&g->out);
		buf_reset(&g->rest);
		serialise(g, 0, &g->doc, SER_DOC);
		serialise(g, 0, &g->want, SER_OUT);
		serialise(g, 0, &g->wantrest, SER_REST);

		/* request direction */
		policy_report_reset(&rep);
		if (policy_apply_json(rules, rd, g->doc.data, g->doc.len, &xf,
		    &g->out, &rep, err, sizeof(err)) != 0) {
			snprintf(what, sizeof(what), "policy_apply_json: %s", err);
			fail_doc(g, doc, seed, what);
		}
		if ((enc = leak_find(g, g->out.data, g->out.len)) != NULL) {
			snprintf(what, sizeof(what), "a canary left, %s", enc);
			fail_doc(g, doc, seed, what);
		}
		digits_of(&g->unesc, &g->pct);
		for (i = 0; i < g->nn; i++)
			if (g->n[i].has_run && g->n[i].act != POLICY_ALLOW &&
			    memmem(g->pct.data, g->pct.len, g->n[i].run,
			    RUN_DIGITS) != NULL) {
				snprintf(what, sizeof(what), "digits %s left",
				    g->n[i].run);
				fail_doc(g, doc, seed, what);
			}
		if (g->out.len != g->want.len ||
		    memcmp(g->out.data, g->want.data, g->out.len) != 0)
			fail_doc(g, doc, seed, "output differs from the model");
		if (json_validate(g->out.data, g->out.len, READER_DEPTH, err,
		    sizeof(err)) != 0)
			fail_doc(g, doc, seed, "output is not valid JSON");
		/* the report counts every decision the model made */
		memset(cnt, 0, sizeof(cnt));
		ninvalid = 0;
		for (i = 0; i < g->nn; i++) {
			if (g->n[i].kind != N_SCAL || g->n[i].act == POLICY_DROP)
				continue;
			if (g->n[i].kept)
				cnt[g->n[i].act]++;
			else
				ninvalid++;
		}
		for (i = POLICY_HASH; i < POLICY_NACTIONS; i++)
			if (rep.count[i] != cnt[i]) {
				snprintf(what, sizeof(what), "report: %zu %s, "
				    "model %zu", rep.count[i],
				    policy_action_name((enum policy_action)i),
				    cnt[i]);
				fail_doc(g, doc, seed, what);
			}
		if (rep.dropped_invalid != ninvalid)
			fail_doc(g, doc, seed, "report: dropped_invalid");
		for (i = 0; i < POLICY_NACTIONS; i++)
			if (rep.paths[i].len > 0 && memmem(rep.paths[i].data,
			    rep.paths[i].len, MARKER,
			    MARKER_LEN) != NULL)
				fail_doc(g, doc, seed, "a canary key in the report");

		/* response direction: the forwarded document reflected back */
		assert_non_null(resp = policy_rules_new());
		assert_non_null(cross = policy_rules_new());
		nrestored_want = 0;
		for (i = 0; i < g->nr; i++) {
			if (g->r[i].act != POLICY_TOKENIZE &&
			    g->r[i].act != POLICY_FORMAT_PRESERVE)
				continue;
			if (policy_rules_add(resp, g->r[i].text.data, g->r[i].act,
			    err, sizeof(err)) != 0)
				fail_doc(g, doc, seed, err);
			if (g->r[i].act == POLICY_TOKENIZE &&
			    policy_rules_add(cross, g->r[i].text.data,
			    POLICY_TOKENIZE, err, sizeof(err)) != 0)
				fail_doc(g, doc, seed, err);
		}
		for (i = 0; i < g->nn; i++)
			if (g->n[i].kept && g->n[i].reversible)
				nrestored_want++;
		memset(&rctx, 0, sizeof(rctx));
		rctx.pair = pair_a;
		rctx.token_domain = TOKEN_DOMAIN;
		if (policy_apply_response(resp, rd, g->out.data, g->out.len, &rxf,
		    &g->rest, err, sizeof(err)) != 0)
			fail_doc(g, doc, seed, err);
		if (g->rest.len != g->wantrest.len ||
		    memcmp(g->rest.data, g->wantrest.data, g->rest.len) != 0)
			fail_doc(g, doc, seed, "restored document differs");
		if (rctx.tokens_restored != nrestored_want || rctx.tokens_foreign)
			fail_doc(g, doc, seed, "restored/foreign counts");
		g->nrestored += rctx.tokens_restored;

		/* another tenant's pair restores nothing and counts the tokens */
		ntok = count_tokens(g, 0, "tok1.");
		if (ntok > 0 && doc % 4 == 0) {
			buf_reset(&g->rest);
			memset(&rctx, 0, sizeof(rctx));
			rctx.pair = pair_b;
			rctx.token_domain = TOKEN_DOMAIN;
			if (policy_apply_response(cross, rd, g->out.data,
			    g->out.len, &rxf, &g->rest, err, sizeof(err)) != 0)
				fail_doc(g, doc, seed, err);
			if (g->rest.len != g->out.len || memcmp(g->rest.data,
			    g->out.data, g->out.len) != 0)
				fail_doc(g, doc, seed, "another pair changed the tokens");
			if (rctx.tokens_restored != 0 ||
			    rctx.tokens_foreign != (size_t)ntok)
				fail_doc(g, doc, seed, "cross-pair counts");
			g->ncross += (unsigned long)ntok;
		}
		policy_rules_free(rules);
		policy_rules_free(resp);
		policy_rules_free(cross);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec -
	    t0.tv_nsec) / 1e9;
	print_message("property: %lu documents in %.1f s; rules %lu (%lu refused "
	    "as conflicts/repeats); allowed %lu, canary values %lu, canary "
	    "keys %lu; tokenize %lu, format_preserve %lu, hash %lu, mask %lu, "
	    "dropped by format_preserve %lu; restored %lu, foreign across "
	    "pairs %lu\n", ndocs - first, secs, g->nrules, g->nrefused,
	    g->nallow, g->ncanary, g->nkeycanary, g->nxf[POLICY_TOKENIZE],
	    g->nxf[POLICY_FORMAT_PRESERVE], g->nxf[POLICY_HASH],
	    g->nxf[POLICY_MASK], g->ndropinvalid, g->nrestored, g->ncross);
	if (only == (unsigned long)-1 && ndocs >= 10000) {
		/* the generator reaches every case it is meant to */
		assert_true(g->nallow > ndocs / 10);
		assert_true(g->ncanary > ndocs / 10);
		assert_true(g->nkeycanary > ndocs / 20);
		for (i = POLICY_HASH; i < POLICY_ALLOW; i++)
			assert_true(g->nxf[i] > ndocs / 50);
		assert_true(g->ndropinvalid > 0);
		assert_true(g->ncross > ndocs / 50);
	}

	for (i = 0; i < MAXNODES; i++) {
		buf_free(&g->n[i].keyraw);
		buf_free(&g->n[i].raw);
		buf_free(&g->n[i].val);
		buf_free(&g->n[i].xout);
		buf_free(&g->n[i].rest);
	}
	for (i = 0; i < MAXRULES; i++)
		buf_free(&g->r[i].text);
	buf_free(&g->doc);
	buf_free(&g->want);
	buf_free(&g->wantrest);
	buf_free(&g->out);
	buf_free(&g->rest);
	buf_free(&g->tmp);
	buf_free(&g->unesc);
	buf_free(&g->pct);
	policy_report_free(&rep);
	json_reader_free(rd);
	free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_detector),
		cmocka_unit_test(test_property_tokens),
	};

	return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
