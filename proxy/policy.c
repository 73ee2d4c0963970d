/* policy.c -- compiled field rules applied to JSON bodies and flat name tables (pure) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

/*
 * Rules are parsed into steps (key, "*", "[]", and a final "**") and merged
 * into a trie. Applying rules walks the document token by token with, per
 * open container, the set of trie nodes that can still match below it
 * ("live" nodes: an exact-key child and a "*" child can both be live). A
 * node carries the action of a scalar rule ending there (leaf) and of a
 * "**" rule ending there (dstar: the whole subtree). Once a value is under
 * a "**" rule, its subtree is decided by that action alone: the conflict
 * check in policy_rules_add guarantees that no rule of another action can
 * match anything inside it.
 *
 * Array elements that are dropped are removed from the array, so the
 * indices of the following elements shift down. Objects and arrays left
 * with no member after filtering are removed; the root object stays (it may
 * become {}). Under a "**" rule, containers that were empty in the input
 * are kept as they are, so "**" allow reproduces the document.
 */

enum step_kind {
	STEP_KEY,
	STEP_STAR,
	STEP_ARR,
	STEP_DSTAR,
};

struct step {
	enum step_kind	 kind;
	char		*key;		/* STEP_KEY: unescaped key */
	size_t		 len;
};

struct rule {
	char			*path;		/* as added */
	enum policy_action	 action;
	struct step		*steps;
	size_t			 nsteps;
};

struct pnode;

struct pkid {
	char		*key;
	size_t		 len;
	char		*disp;		/* key as written in rule syntax (quoted if needed) */
	size_t		 displen;
	uint32_t	 dhash;		/* fnv(disp), for report path hashes */
	uint32_t	 hash;
	struct pnode	*node;
};

#define PNODE_HASH_AFTER	8

struct pnode {
	struct pkid		*kids;
	size_t			 nkids;
	uint32_t		*kidtab;	/* index + 1, when nkids > PNODE_HASH_AFTER */
	size_t			 kidmask;
	struct pnode		*star;
	struct pnode		*arr;
	int			 has_leaf;
	enum policy_action	 leaf;
	int			 has_dstar;
	enum policy_action	 dstar;
};

struct policy_rules {
	struct rule	*rules;
	size_t		 nrules, cap;
	struct pnode	*root;
	size_t		 nnodes;
	size_t		*maxseg;	/* per trie depth: longest segment + 1 */
	size_t		 nmaxseg;
	size_t		 maxpath;	/* bound on a reported path's length */
};

static const char *const action_names[POLICY_NACTIONS] = {
	[POLICY_DROP] = "drop",
	[POLICY_HASH] = "hash",
	[POLICY_TOKENIZE] = "tokenize",
	[POLICY_FORMAT_PRESERVE] = "format_preserve",
	[POLICY_MASK] = "mask",
	[POLICY_ALLOW] = "allow",
};

const char *
policy_action_name(enum policy_action a)
{
	if ((int)a < 0 || a >= POLICY_NACTIONS)
		return "?";
	return action_names[a];
}

int
policy_action_parse(const char *name, enum policy_action *a)
{
	int	 i;

	for (i = 0; i < POLICY_NACTIONS; i++)
		if (strcmp(name, action_names[i]) == 0) {
			*a = (enum policy_action)i;
			return 0;
		}
	return -1;
}

static uint32_t
fnv(const char *s, size_t len)
{
	uint32_t	 h = 2166136261u;
	size_t		 i;

	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

/* ---- path syntax ---- */

static void
steps_free(struct step *s, size_t n)
{
	size_t	 i;

	if (s == NULL)
		return;
	for (i = 0; i < n; i++)
		free(s[i].key);
	free(s);
}

static int
steps_push(struct step **s, size_t *n, enum step_kind kind, const char *key,
    size_t len)
{
	struct step	*ns;

	if ((ns = realloc(*s, (*n + 1) * sizeof(*ns))) == NULL)
		return -1;
	*s = ns;
	ns[*n].kind = kind;
	ns[*n].key = NULL;
	ns[*n].len = len;
	if (kind == STEP_KEY) {
		if ((ns[*n].key = malloc(len + 1)) == NULL)
			return -1;
		memcpy(ns[*n].key, key, len);
		ns[*n].key[len] = '\0';
	}
	(*n)++;
	return 0;
}

/* A byte that ends an unquoted key or is not allowed in one. */
static int
path_special(char c)
{
	return c == '.' || c == '[' || c == ']' || c == '*' || c == '"' ||
	    c == '\0';
}

/*
 * Parse a rule path into steps. 0, or -1 with a message naming the path
 * (paths are configuration, never request data).
 */
static int
path_parse(const char *path, struct step **steps, size_t *nsteps, char *err,
    size_t errlen)
{
	const char	*p = path;
	char		*key = NULL;
	size_t		 klen, n = 0, first = 1;
	struct step	*s = NULL;
	const char	*why;

	*steps = NULL;
	*nsteps = 0;
	if (*p == '\0') {
		snprintf(err, errlen, "field path is empty");
		return -1;
	}
	if ((key = malloc(strlen(path) + 1)) == NULL)
		goto nomem;
	for (;;) {
		/* one segment */
		if (*p == '.' || *p == '\0') {
			why = "has an empty segment";
			goto bad;
		}
		if (*p == '[') {
			why = first ? "starts with [] (the root is an object)" :
			    "has [] without a key before it";
			goto bad;
		}
		if (*p == ']') {
			why = "has an unmatched ]";
			goto bad;
		}
		if (*p == '*') {
			if (p[1] == '*') {
				p += 2;
				if (*p != '\0') {
					why = *p == '.' || *p == '[' ?
					    "has a segment after ** (** must be "
					    "the last segment)" :
					    "has a key containing * (quote it)";
					goto bad;
				}
				if (steps_push(&s, &n, STEP_DSTAR, NULL, 0) == -1)
					goto nomem;
				break;
			}
			p++;
			if (*p != '.' && *p != '[' && *p != '\0') {
				why = "has a key containing * (quote it)";
				goto bad;
			}
			if (steps_push(&s, &n, STEP_STAR, NULL, 0) == -1)
				goto nomem;
		} else if (*p == '"') {
			p++;
			klen = 0;
			while (*p != '"') {
				if (*p == '\0') {
					why = "has an unterminated quote";
					goto bad;
				}
				if (*p == '\\') {
					if (p[1] != '"' && p[1] != '\\') {
						why = "has a bad escape in a quoted "
						    "key (only \\\" and \\\\)";
						goto bad;
					}
					p++;
				}
				key[klen++] = *p++;
			}
			p++;
			if (steps_push(&s, &n, STEP_KEY, key, klen) == -1)
				goto nomem;
		} else {
			klen = 0;
			while (!path_special(*p))
				key[klen++] = *p++;
			if (*p == '*' || *p == '"' || *p == ']') {
				why = *p == ']' ? "has an unmatched ]" :
				    "has a key containing * or \" (quote it)";
				goto bad;
			}
			if (steps_push(&s, &n, STEP_KEY, key, klen) == -1)
				goto nomem;
		}
		if (n > 0 && s[n - 1].kind == STEP_KEY &&
		    !json_utf8_valid(s[n - 1].key, s[n - 1].len)) {
			why = "has a key that is not valid UTF-8";
			goto bad;
		}
		while (*p == '[') {
			if (p[1] != ']') {
				why = "has [ without ]";
				goto bad;
			}
			p += 2;
			if (steps_push(&s, &n, STEP_ARR, NULL, 0) == -1)
				goto nomem;
		}
		first = 0;
		if (*p == '\0')
			break;
		if (*p != '.') {
			why = *p == '*' ? "has a key containing * (quote it)" :
			    *p == ']' ? "has an unmatched ]" :
			    "has a character after a quoted key or [] that is "
			    "not '.'";
			goto bad;
		}
		p++;
	}
	free(key);
	*steps = s;
	*nsteps = n;
	return 0;
bad:
	snprintf(err, errlen, "field path \"%s\" %s", path, why);
	free(key);
	steps_free(s, n);
	return -1;
nomem:
	snprintf(err, errlen, "out of memory");
	free(key);
	steps_free(s, n);
	return -1;
}

/* Does key need quotes in rule syntax? */
static int
key_needs_quotes(const char *k, size_t len)
{
	size_t	 i;

	if (len == 0)
		return 1;
	for (i = 0; i < len; i++)
		if (k[i] == '.' || k[i] == '[' || k[i] == ']' || k[i] == '*' ||
		    k[i] == '"')
			return 1;
	return 0;
}

/* The key as written in rule syntax, NUL-terminated, malloc'd. */
static char *
key_display(const char *k, size_t len, size_t *outlen)
{
	char	*d, *q;
	size_t	 i;

	if ((d = malloc(len * 2 + 3)) == NULL)
		return NULL;
	q = d;
	if (!key_needs_quotes(k, len)) {
		memcpy(d, k, len);
		q += len;
	} else {
		*q++ = '"';
		for (i = 0; i < len; i++) {
			if (k[i] == '"' || k[i] == '\\')
				*q++ = '\\';
			*q++ = k[i];
		}
		*q++ = '"';
	}
	*q = '\0';
	*outlen = (size_t)(q - d);
	return d;
}

/* ---- conflict check ---- */

static int
step_compat(const struct step *a, const struct step *b)
{
	if (a->kind == STEP_ARR || b->kind == STEP_ARR)
		return a->kind == b->kind;
	if (a->kind == STEP_STAR || b->kind == STEP_STAR)
		return 1;
	return a->len == b->len && memcmp(a->key, b->key, a->len) == 0;
}

/* Can the two step sequences match one and the same node? */
static int
steps_overlap(const struct step *a, size_t na, const struct step *b,
    size_t nb)
{
	int	 ads = na > 0 && a[na - 1].kind == STEP_DSTAR;
	int	 bds = nb > 0 && b[nb - 1].kind == STEP_DSTAR;
	size_t	 i, m;

	if (ads)
		na--;
	if (bds)
		nb--;
	m = na < nb ? na : nb;
	for (i = 0; i < m; i++)
		if (!step_compat(&a[i], &b[i]))
			return 0;
	if (ads && bds)
		return 1;
	if (ads)
		return nb >= na;
	if (bds)
		return na >= nb;
	return na == nb;
}

static int
steps_equal(const struct step *a, size_t na, const struct step *b, size_t nb)
{
	size_t	 i;

	if (na != nb)
		return 0;
	for (i = 0; i < na; i++) {
		if (a[i].kind != b[i].kind)
			return 0;
		if (a[i].kind == STEP_KEY && (a[i].len != b[i].len ||
		    memcmp(a[i].key, b[i].key, a[i].len) != 0))
			return 0;
	}
	return 1;
}

/* ---- trie ---- */

static void
pnode_free(struct pnode *n)
{
	size_t	 i;

	if (n == NULL)
		return;
	for (i = 0; i < n->nkids; i++) {
		free(n->kids[i].key);
		free(n->kids[i].disp);
		pnode_free(n->kids[i].node);
	}
	free(n->kids);
	free(n->kidtab);
	pnode_free(n->star);
	pnode_free(n->arr);
	free(n);
}

static inline struct pnode *
pnode_kid(const struct pnode *n, const char *k, size_t len, size_t *idx)
{
	size_t	 i;

	if (n->kidtab == NULL) {
		for (i = 0; i < n->nkids; i++)
			if (n->kids[i].len == len &&
			    memcmp(n->kids[i].key, k, len) == 0) {
				*idx = i;
				return n->kids[i].node;
			}
		return NULL;
	} else {
		uint32_t	 h = fnv(k, len);
		size_t		 slot = h & n->kidmask;
		const struct pkid *c;

		while (n->kidtab[slot] != 0) {
			c = &n->kids[n->kidtab[slot] - 1];
			if (c->hash == h && c->len == len &&
			    memcmp(c->key, k, len) == 0) {
				*idx = n->kidtab[slot] - 1;
				return c->node;
			}
			slot = (slot + 1) & n->kidmask;
		}
		return NULL;
	}
}

static int
pnode_index(struct pnode *n)
{
	size_t		 cap = 16, i, slot;
	uint32_t	*t;

	while (cap < n->nkids * 4)
		cap *= 2;
	if ((t = calloc(cap, sizeof(*t))) == NULL)
		return -1;
	for (i = 0; i < n->nkids; i++) {
		slot = n->kids[i].hash & (cap - 1);
		while (t[slot] != 0)
			slot = (slot + 1) & (cap - 1);
		t[slot] = (uint32_t)(i + 1);
	}
	free(n->kidtab);
	n->kidtab = t;
	n->kidmask = cap - 1;
	return 0;
}

static struct pnode *
pnode_new(struct policy_rules *r)
{
	struct pnode	*n;

	if ((n = calloc(1, sizeof(*n))) != NULL)
		r->nnodes++;
	return n;
}

/* Merge one parsed rule into the trie. -1 on ENOMEM. */
/*
 * A reported path has at most one segment per trie level (a key named at
 * that level, "*" or "[]"), then possibly one more segment and ".**":
 * keep the sum of the longest segment per level as the bound.
 */
static int
trie_bound(struct policy_rules *r, size_t depth, size_t seglen)
{
	size_t	*m, i, sum = 0;

	if (depth >= r->nmaxseg) {
		if ((m = realloc(r->maxseg, (depth + 1) * sizeof(*m))) == NULL)
			return -1;
		for (i = r->nmaxseg; i <= depth; i++)
			m[i] = 0;
		r->maxseg = m;
		r->nmaxseg = depth + 1;
	}
	if (seglen + 1 > r->maxseg[depth])
		r->maxseg[depth] = seglen + 1;
	for (i = 0; i < r->nmaxseg; i++)
		sum += r->maxseg[i];
	r->maxpath = sum + 16;
	return 0;
}

static int
trie_add(struct policy_rules *r, const struct step *s, size_t ns,
    enum policy_action a)
{
	struct pnode	*n = r->root, *c;
	struct pkid	*k;
	size_t		 i, idx;

	for (i = 0; i < ns; i++) {
		switch (s[i].kind) {
		case STEP_DSTAR:
			n->has_dstar = 1;
			n->dstar = a;
			return 0;
		case STEP_STAR:
			if (n->star == NULL && (n->star = pnode_new(r)) == NULL)
				return -1;
			n = n->star;
			if (trie_bound(r, i, 2) == -1)
				return -1;
			break;
		case STEP_ARR:
			if (n->arr == NULL && (n->arr = pnode_new(r)) == NULL)
				return -1;
			n = n->arr;
			if (trie_bound(r, i, 2) == -1)
				return -1;
			break;
		case STEP_KEY:
			if ((c = pnode_kid(n, s[i].key, s[i].len, &idx)) != NULL) {
				n = c;
				break;
			}
			if ((k = realloc(n->kids, (n->nkids + 1) *
			    sizeof(*k))) == NULL)
				return -1;
			n->kids = k;
			k = &n->kids[n->nkids];
			memset(k, 0, sizeof(*k));
			if ((k->key = malloc(s[i].len + 1)) == NULL)
				return -1;
			memcpy(k->key, s[i].key, s[i].len + 1);
			k->len = s[i].len;
			k->hash = fnv(k->key, k->len);
			if ((k->disp = key_display(k->key, k->len,
			    &k->displen)) == NULL ||
			    (k->node = pnode_new(r)) == NULL) {
				free(k->key);
				free(k->disp);
				return -1;
			}
			k->dhash = fnv(k->disp, k->displen);
			n->nkids++;
			if (n->nkids > PNODE_HASH_AFTER && pnode_index(n) == -1)
				return -1;
			if (trie_bound(r, i, k->displen) == -1)
				return -1;
			n = k->node;
			break;
		}
	}
	n->has_leaf = 1;
	n->leaf = a;
	return 0;
}

struct policy_rules *
policy_rules_new(void)
{
	struct policy_rules	*r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	if ((r->root = pnode_new(r)) == NULL) {
		free(r);
		return NULL;
	}
	r->maxpath = 16;
	return r;
}

int
policy_rules_add(struct policy_rules *r, const char *path,
    enum policy_action a, char *err, size_t errlen)
{
	struct step	*s = NULL;
	size_t		 ns, i;
	struct rule	*nr;
	char		*copy = NULL;

	if ((int)a < 0 || a >= POLICY_NACTIONS) {
		snprintf(err, errlen, "unknown action");
		return -1;
	}
	if (path_parse(path, &s, &ns, err, errlen) == -1)
		return -1;
	for (i = 0; i < r->nrules; i++) {
		const struct rule *o = &r->rules[i];

		if (steps_equal(s, ns, o->steps, o->nsteps) && o->action == a) {
			snprintf(err, errlen, "field path \"%s\" is listed twice",
			    path);
			goto fail;
		}
		if (o->action != a && steps_overlap(s, ns, o->steps,
		    o->nsteps)) {
			snprintf(err, errlen, "field path \"%s\" (%s) conflicts "
			    "with %s rule \"%s\": both can match the same field",
			    path, action_names[a], action_names[o->action],
			    o->path);
			goto fail;
		}
	}
	if (r->nrules == r->cap) {
		size_t	 cap = r->cap ? r->cap * 2 : 8;

		if ((nr = realloc(r->rules, cap * sizeof(*nr))) == NULL)
			goto nomem;
		r->rules = nr;
		r->cap = cap;
	}
	if ((copy = strdup(path)) == NULL)
		goto nomem;
	if (trie_add(r, s, ns, a) == -1)
		goto nomem;
	nr = &r->rules[r->nrules++];
	nr->path = copy;
	nr->action = a;
	nr->steps = s;
	nr->nsteps = ns;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	free(copy);
	steps_free(s, ns);
	return -1;
}

size_t
policy_rules_count(const struct policy_rules *r)
{
	return r == NULL ? 0 : r->nrules;
}

const char *
policy_rules_path(const struct policy_rules *r, size_t i,
    enum policy_action *a)
{
	if (r == NULL || i >= r->nrules)
		return NULL;
	if (a != NULL)
		*a = r->rules[i].action;
	return r->rules[i].path;
}

void
policy_rules_free(struct policy_rules *r)
{
	size_t	 i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nrules; i++) {
		free(r->rules[i].path);
		steps_free(r->rules[i].steps, r->rules[i].nsteps);
	}
	free(r->rules);
	free(r->maxseg);
	pnode_free(r->root);
	free(r);
}

/* ---- report ---- */

void
policy_report_reset(struct policy_report *rep)
{
	int	 i;

	for (i = 0; i < POLICY_NACTIONS; i++) {
		buf_truncate(&rep->paths[i], 0);
		rep->npaths[i] = 0;
		rep->count[i] = 0;
	}
	rep->dropped_nonscalar = 0;
	rep->dropped_invalid = 0;
}

void
policy_report_free(struct policy_report *rep)
{
	int	 i;

	if (rep == NULL)
		return;
	for (i = 0; i < POLICY_NACTIONS; i++)
		buf_free(&rep->paths[i]);
	memset(rep, 0, sizeof(*rep));
}

/* Is path[0..len) one of the NUL-terminated entries of b? */
static int
paths_contain(const struct buf *b, const char *path, size_t len)
{
	const char	*p = b->data, *end = b->data + b->len, *z;

	while (p < end) {
		z = memchr(p, '\0', (size_t)(end - p));
		if ((size_t)(z - p) == len && memcmp(p, path, len) == 0)
			return 1;
		p = z + 1;
	}
	return 0;
}

int
policy_report_add(struct policy_report *rep, enum policy_action a,
    const char *path, size_t len)
{
	if ((int)a < 0 || a >= POLICY_NACTIONS)
		return -1;
	if (memchr(path, '\0', len) != NULL)
		return -1;
	if (paths_contain(&rep->paths[a], path, len))
		return 0;
	if (buf_reserve(&rep->paths[a], len + 1) == -1)
		return -1;
	buf_append(&rep->paths[a], path, len);
	buf_append_char(&rep->paths[a], '\0');
	rep->npaths[a]++;
	return 0;
}

/* ---- applying rules to a JSON document ---- */

enum pw_mode {
	PW_MATCH,	/* live trie nodes decide each member */
	PW_SUB,		/* under "**" (or, for responses, unmatched): one action */
};

struct pw_frame {
	size_t			 live, nlive;	/* slice of pw->live */
	enum pw_mode		 mode;
	enum policy_action	 sub;
	size_t			 mark;		/* out length before this container's prefix */
	size_t			 emitted;	/* members written */
	size_t			 seen;		/* members read */
	size_t			 pathlen;	/* report path of this container */
	uint32_t		 pathhash;
	int			 is_array;
};

#define PW_STACK_FRAMES	64
#define PW_STACK_LIVE	256
#define PW_STACK_PATH	2048
#define PW_DEDUP_SLOTS	512

struct pw_dedup {
	uint32_t	 hash;
	uint32_t	 off;		/* offset in rep->paths[a] + 1; 0: empty */
	uint32_t	 len;
	uint8_t		 action;
};

/*
 * Report paths are hashed segment by segment as they are built (a key's
 * segment hash is precomputed in the trie), so deduplicating a decision
 * costs one probe, not a pass over the path. Equal paths have equal segment
 * sequences, hence equal hashes.
 */
#define SEG_STAR	0x2a2a2a2au
#define SEG_ARR		0x5b5d5b5du
#define SEG_DSTAR	0x2a2e2a2au

static inline uint32_t
path_hash_step(uint32_t h, uint32_t seg)
{
	return ((h << 7 | h >> 25) ^ seg) * 0x9e3779b1u;
}

struct pwalk {
	const struct policy_rules	*rules;
	struct json_reader		*r;
	const struct policy_transform	*xf;
	struct buf			*out;
	struct policy_report		*rep;
	int				 response;

	const struct pnode		**live;
	size_t				 livecap;
	struct pw_frame			*frames;
	size_t				 nframes;	/* allocated */
	char				*path;
	size_t				 pathlen, pathcap;
	uint32_t			 pathhash;

	struct pw_dedup			*dedup;		/* NULL: linear */
	size_t				 ndedup;

	char				*err;
	size_t				 errlen;
};

static int
pw_fail(struct pwalk *w, const char *why)
{
	snprintf(w->err, w->errlen, "%s", why);
	return -1;
}

/*
 * Find the current path under action a in the dedup set; 1 if present.
 * Otherwise, when off != UINT32_MAX, insert it (stored at off).
 */
static int
pw_dedup_put(struct pwalk *w, enum policy_action a, uint32_t off)
{
	uint32_t		 h = w->pathhash ^ (uint32_t)a * 0x85ebca6bu;
	size_t			 slot = h & (PW_DEDUP_SLOTS - 1);
	struct pw_dedup		*d;
	const struct buf	*b = &w->rep->paths[a];

	for (;;) {
		d = &w->dedup[slot];
		if (d->off == 0)
			break;
		if (d->hash == h && d->action == a && d->len == w->pathlen &&
		    memcmp(b->data + d->off - 1, w->path, w->pathlen) == 0)
			return 1;
		slot = (slot + 1) & (PW_DEDUP_SLOTS - 1);
	}
	if (off == UINT32_MAX)
		return 0;
	d->hash = h;
	d->action = (uint8_t)a;
	d->off = off + 1;
	d->len = (uint32_t)w->pathlen;
	w->ndedup++;
	return 0;
}

/* Record a decision at the current path. */
static int
pw_report(struct pwalk *w, enum policy_action a)
{
	struct policy_report	*rep = w->rep;
	struct buf		*b;
	size_t			 off;

	if (rep == NULL)
		return 0;
	rep->count[a]++;
	if (w->dedup == NULL)
		return policy_report_add(rep, a, w->path, w->pathlen);
	if (pw_dedup_put(w, a, UINT32_MAX) == 1)
		return 0;
	b = &rep->paths[a];
	off = b->len;
	if (buf_reserve(b, w->pathlen + 1) == -1)
		return -1;
	buf_append(b, w->path, w->pathlen);
	buf_append_char(b, '\0');
	rep->npaths[a]++;
	if (off >= UINT32_MAX - 1 || w->pathlen >= UINT32_MAX ||
	    w->ndedup >= PW_DEDUP_SLOTS / 2)
		w->dedup = NULL;	/* rare: fall back to linear search */
	else
		pw_dedup_put(w, a, (uint32_t)off);
	return 0;
}

static inline int
pw_path_set(struct pwalk *w, size_t base, uint32_t basehash, const char *seg,
    size_t len, uint32_t seghash, int dot)
{
	char	*p = w->path + base;

	/* rules->maxpath bounds every path the walk builds; this is a guard */
	if (base + len + 5 > w->pathcap)
		return -1;
	if (dot && base > 0)
		*p++ = '.';
	memcpy(p, seg, len);
	p += len;
	*p = '\0';
	w->pathlen = (size_t)(p - w->path);
	w->pathhash = path_hash_step(basehash, seghash);
	return 0;
}

static int
is_scalar(enum json_type t)
{
	return t == JSON_STRING || t == JSON_NUMBER || t == JSON_TRUE ||
	    t == JSON_FALSE || t == JSON_NULL;
}

/* buf_append's inline path, which also keeps the buffer's max. */
static inline int
out_put(struct pwalk *w, const char *p, size_t n)
{
	return buf_append(w->out, p, n);
}

/* Consume the rest of a container whose BEGIN token was just read. */
static int
pw_skip(struct pwalk *w, int depth)
{
	struct json_token	 t;

	for (;;) {
		if (json_next(w->r, &t, w->err, w->errlen) == -1)
			return -1;
		if ((t.type == JSON_OBJECT_END || t.type == JSON_ARRAY_END) &&
		    t.depth == depth)
			return 0;
	}
}

/* A decided scalar: write it (prefix already written), transform or drop. */
static int
pw_scalar(struct pwalk *w, struct pw_frame *f, enum policy_action a,
    const struct json_token *v, size_t mark)
{
	size_t	 after = w->out->len;
	int	 rc;

	if (a == POLICY_ALLOW) {
		if (out_put(w, v->raw, v->raw_len) == -1)
			return pw_fail(w, "output too large");
		f->emitted++;
		return pw_report(w, a);
	}
	if (a == POLICY_DROP) {
		buf_truncate(w->out, mark);
		return pw_report(w, POLICY_DROP);
	}
	if (w->xf == NULL || w->xf->fn == NULL)
		return pw_fail(w, "no transform for action");
	rc = w->xf->fn(w->xf->arg, a, v, w->out);
	if (rc == -1)
		return pw_fail(w, "transform failed");
	if (rc == 1) {
		if (w->response) {
			/* responses are never filtered: keep the token */
			buf_truncate(w->out, after);
			if (out_put(w, v->raw, v->raw_len) == -1)
				return pw_fail(w, "output too large");
			f->emitted++;
			return 0;
		}
		buf_truncate(w->out, mark);
		if (w->rep != NULL)
			w->rep->dropped_invalid++;
		return pw_report(w, POLICY_DROP);
	}
	f->emitted++;
	return pw_report(w, a);
}

static int
pw_grow_frames(struct pwalk *w, struct pw_frame *stack, int depth)
{
	struct pw_frame	*nf;
	size_t		 n = w->nframes * 2;

	if ((size_t)depth < w->nframes)
		return 0;
	while (n <= (size_t)depth)
		n *= 2;
	if (w->frames == stack) {
		if ((nf = malloc(n * sizeof(*nf))) == NULL)
			return -1;
		memcpy(nf, stack, w->nframes * sizeof(*nf));
	} else if ((nf = realloc(w->frames, n * sizeof(*nf))) == NULL)
		return -1;
	w->frames = nf;
	w->nframes = n;
	return 0;
}

static int
pw_run(struct pwalk *w, struct pw_frame *stack)
{
	const struct pnode	**live = w->live, *n, *c;
	struct pw_frame		*f, *nf;
	struct json_token	 t, v;
	const char		*keyraw = NULL, *disp;
	size_t			 keyrawlen = 0, displen, mark, i, cs, ce, idx;
	uint32_t		 dhash = 0;
	int			 depth, dstar, leaf, descend, prc;
	enum policy_action	 da = POLICY_DROP, la = POLICY_DROP;

	if (json_next(w->r, &t, w->err, w->errlen) == -1)
		return -1;
	/* the reader refuses any root but an object */
	f = &w->frames[1];
	memset(f, 0, sizeof(*f));
	f->mark = w->out->len;
	w->pathlen = 0;
	w->pathhash = 0;
	w->path[0] = '\0';
	if (w->rules->root->has_dstar) {
		f->mode = PW_SUB;
		f->sub = w->rules->root->dstar;
		pw_path_set(w, 0, 0, "**", 2, SEG_DSTAR, 0);
		f->pathlen = w->pathlen;
		f->pathhash = w->pathhash;
	} else {
		f->mode = PW_MATCH;
		f->live = 0;
		f->nlive = 1;
		live[0] = w->rules->root;
	}
	if (out_put(w, "{", 1) == -1)
		return pw_fail(w, "output too large");
	depth = 1;

	for (;;) {
		if (json_next(w->r, &t, w->err, w->errlen) == -1)
			return -1;
		f = &w->frames[depth];
		if (t.type == JSON_OBJECT_END || t.type == JSON_ARRAY_END) {
			if (depth == 1) {
				if (out_put(w, "}", 1) == -1)
					return pw_fail(w, "output too large");
				if (json_next(w->r, &t, w->err, w->errlen) == -1)
					return -1;
				return 0;	/* t is JSON_EOF */
			}
			if (!w->response && f->emitted == 0 &&
			    (f->mode == PW_MATCH || f->seen > 0)) {
				buf_truncate(w->out, f->mark);
			} else {
				if (out_put(w, f->is_array ? "]" : "}", 1) == -1)
					return pw_fail(w, "output too large");
				w->frames[depth - 1].emitted++;
			}
			depth--;
			continue;
		}
		f->seen++;
		mark = w->out->len;
		cs = ce = f->live + f->nlive;
		disp = NULL;
		displen = 0;
		if (!f->is_array) {
			/* t is a key: match it before the value overwrites it */
			keyraw = t.raw;
			keyrawlen = t.raw_len;
			if (f->mode == PW_MATCH) {
				for (i = f->live; i < f->live + f->nlive; i++) {
					n = live[i];
					if (n->nkids > 0 && (c = pnode_kid(n, t.str,
					    t.str_len, &idx)) != NULL) {
						live[ce++] = c;
						disp = n->kids[idx].disp;
						displen = n->kids[idx].displen;
						dhash = n->kids[idx].dhash;
					}
					if (n->star != NULL)
						live[ce++] = n->star;
				}
			}
			if (json_next(w->r, &v, w->err, w->errlen) == -1)
				return -1;
		} else {
			v = t;
			if (f->mode == PW_MATCH)
				for (i = f->live; i < f->live + f->nlive; i++)
					if (live[i]->arr != NULL)
						live[ce++] = live[i]->arr;
		}
		/* the member's prefix: separator and key */
		if (f->emitted > 0 && out_put(w, ",", 1) == -1)
			return pw_fail(w, "output too large");
		if (!f->is_array && (out_put(w, keyraw, keyrawlen) == -1 ||
		    out_put(w, ":", 1) == -1))
			return pw_fail(w, "output too large");

		if (f->mode == PW_SUB) {
			if (is_scalar(v.type)) {
				if (pw_scalar(w, f, f->sub, &v, mark) == -1)
					return -1;
				continue;
			}
			da = f->sub;
			goto push_sub;
		}

		if (f->is_array)
			prc = pw_path_set(w, f->pathlen, f->pathhash, "[]", 2,
			    SEG_ARR, 0);
		else if (disp != NULL)
			prc = pw_path_set(w, f->pathlen, f->pathhash, disp,
			    displen, dhash, 1);
		else
			prc = pw_path_set(w, f->pathlen, f->pathhash, "*", 1,
			    SEG_STAR, 1);
		if (prc != 0)
			return pw_fail(w, "field path too long");
		dstar = leaf = 0;
		for (i = cs; i < ce; i++) {
			n = live[i];
			if (n->has_dstar) {
				dstar = 1;
				da = n->dstar;
			}
			if (n->has_leaf) {
				leaf = 1;
				la = n->leaf;
			}
		}
		if (dstar) {
			memcpy(w->path + w->pathlen, ".**", 4);
			w->pathlen += 3;
			w->pathhash = path_hash_step(w->pathhash, SEG_DSTAR);
			if (is_scalar(v.type)) {
				if (pw_scalar(w, f, da, &v, mark) == -1)
					return -1;
				continue;
			}
			if (da != POLICY_DROP || w->response)
				goto push_sub;
			buf_truncate(w->out, mark);
			if (pw_report(w, POLICY_DROP) == -1)
				return pw_fail(w, "out of memory");
			if (pw_skip(w, v.depth) == -1)
				return -1;
			continue;
		}
		if (is_scalar(v.type)) {
			if (leaf) {
				if (pw_scalar(w, f, la, &v, mark) == -1)
					return -1;
			} else if (w->response) {
				if (out_put(w, v.raw, v.raw_len) == -1)
					return pw_fail(w, "output too large");
				f->emitted++;
			} else {
				buf_truncate(w->out, mark);
				if (pw_report(w, POLICY_DROP) == -1)
					return pw_fail(w, "out of memory");
			}
			continue;
		}
		/* a container: keep the live nodes that can match inside it */
		i = cs;
		while (i < ce) {
			n = live[i];
			if (v.type == JSON_OBJECT_BEGIN)
				descend = n->nkids > 0 || n->star != NULL;
			else
				descend = n->arr != NULL;
			if (descend)
				i++;
			else
				live[i] = live[--ce];
		}
		if (ce > cs) {
			if (pw_grow_frames(w, stack, depth + 1) == -1)
				return pw_fail(w, "out of memory");
			nf = &w->frames[depth + 1];
			nf->mode = PW_MATCH;
			nf->live = cs;
			nf->nlive = ce - cs;
			goto push;
		}
		if (w->response) {
			/* copied as is */
			da = POLICY_ALLOW;
			goto push_sub;
		}
		buf_truncate(w->out, mark);
		if (leaf && w->rep != NULL)
			w->rep->dropped_nonscalar++;
		if (pw_report(w, POLICY_DROP) == -1)
			return pw_fail(w, "out of memory");
		if (pw_skip(w, v.depth) == -1)
			return -1;
		continue;
push_sub:
		if (pw_grow_frames(w, stack, depth + 1) == -1)
			return pw_fail(w, "out of memory");
		nf = &w->frames[depth + 1];
		nf->mode = PW_SUB;
		nf->sub = da;
		nf->live = cs;
		nf->nlive = 0;
push:
		nf->mark = mark;
		nf->emitted = 0;
		nf->seen = 0;
		nf->pathlen = w->pathlen;
		nf->pathhash = w->pathhash;
		nf->is_array = v.type == JSON_ARRAY_BEGIN;
		if (out_put(w, nf->is_array ? "[" : "{", 1) == -1)
			return pw_fail(w, "output too large");
		depth++;
	}
}

static int
pw_apply(const struct policy_rules *rules, struct json_reader *r,
    const char *in, size_t len, const struct policy_transform *xf,
    struct buf *out, struct policy_report *rep, int response, char *err,
    size_t errlen)
{
	struct pwalk		 w;
	struct pw_frame		 stack[PW_STACK_FRAMES];
	const struct pnode	*livestack[PW_STACK_LIVE];
	char			 pathstack[PW_STACK_PATH];
	struct pw_dedup		 dedup[PW_DEDUP_SLOTS];
	size_t			 start = out->len;
	char			 dummy[1];
	int			 rc = -1, i;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	memset(&w, 0, sizeof(w));
	w.rules = rules;
	w.r = r;
	w.xf = xf;
	w.out = out;
	w.rep = response ? NULL : rep;
	w.response = response;
	w.err = err;
	w.errlen = errlen;
	w.frames = stack;
	w.nframes = PW_STACK_FRAMES;
	w.live = livestack;
	w.livecap = PW_STACK_LIVE;
	w.path = pathstack;
	w.pathcap = PW_STACK_PATH;
	if (rules->nnodes + 1 > PW_STACK_LIVE) {
		w.livecap = rules->nnodes + 1;
		w.live = calloc(w.livecap, sizeof(const struct pnode *));
		if (w.live == NULL)
			goto nomem;
	}
	if (rules->maxpath > PW_STACK_PATH) {
		w.pathcap = rules->maxpath;
		if ((w.path = malloc(w.pathcap)) == NULL)
			goto nomem;
	}
	if (w.rep != NULL) {
		/* a report that already holds paths is deduplicated linearly */
		for (i = 0; i < POLICY_NACTIONS; i++)
			if (rep->npaths[i] != 0)
				break;
		if (i == POLICY_NACTIONS) {
			memset(dedup, 0, sizeof(dedup));
			w.dedup = dedup;
		}
	}
	/* a response comes back about as long as it went in: one
	 * allocation instead of a chain of doublings (within out's bound) */
	if (response && (out->max == 0 || len <= out->max - out->len))
		(void)buf_reserve(out, len);
	json_reader_reset(r, in, len);
	rc = pw_run(&w, stack);
	goto done;
nomem:
	snprintf(err, errlen, "out of memory");
done:
	if (rc == -1)
		buf_truncate(out, start);
	if (w.frames != stack)
		free(w.frames);
	if (w.live != livestack)
		free((void *)w.live);
	if (w.path != pathstack)
		free(w.path);
	return rc;
}

int
policy_apply_json(const struct policy_rules *rules, struct json_reader *r,
    const char *in, size_t len, const struct policy_transform *xf,
    struct buf *out, struct policy_report *rep, char *err, size_t errlen)
{
	return pw_apply(rules, r, in, len, xf, out, rep, 0, err, errlen);
}

int
policy_apply_response(const struct policy_rules *rules,
    struct json_reader *r, const char *in, size_t len,
    const struct policy_transform *xf, struct buf *out, char *err,
    size_t errlen)
{
	return pw_apply(rules, r, in, len, xf, out, NULL, 1, err, errlen);
}

/* ---- collecting: the response walk's transform calls, nothing written ---- */

/*
 * The same decisions as pw_run makes in response mode, but only for the
 * calls to the transform: a value that cannot lead to a call (no rule
 * looks at it or into it, or its rule is allow or drop) is skipped
 * unread with json_skip_value/json_skip_container. Recursion follows the
 * trie only (one level per rule segment); a "**" subtree is walked flat.
 */
struct pcollect {
	struct json_reader		*r;
	const struct policy_transform	*xf;
	const struct pnode		**live;
	char				*err;
	size_t				 errlen;
};

static inline int
pc_transforms(enum policy_action a)
{
	return a != POLICY_ALLOW && a != POLICY_DROP;
}

static int
pc_fail(struct pcollect *c, const char *why)
{
	snprintf(c->err, c->errlen, "%s", why);
	return -1;
}

static int
pc_call(struct pcollect *c, enum policy_action a, const struct json_token *v)
{
	if (c->xf == NULL || c->xf->fn == NULL)
		return pc_fail(c, "no transform for action");
	if (c->xf->fn(c->xf->arg, a, v, NULL) == -1)
		return pc_fail(c, "transform failed");
	return 0;
}

/* Every scalar of the container at depth whose BEGIN was read, under a. */
static int
pc_sub(struct pcollect *c, enum policy_action a, int depth)
{
	struct json_token	 t;

	for (;;) {
		if (json_next(c->r, &t, c->err, c->errlen) == -1)
			return -1;
		if ((t.type == JSON_OBJECT_END || t.type == JSON_ARRAY_END) &&
		    t.depth == depth)
			return 0;
		if (is_scalar(t.type) && pc_call(c, a, &t) == -1)
			return -1;
	}
}

/*
 * The members of the container whose BEGIN was read, matched by the live
 * nodes live[lo..hi), up to its END.
 */
static int
pc_match(struct pcollect *c, size_t lo, size_t hi, int is_array)
{
	const struct pnode	**live = c->live, *n, *k;
	struct json_token	 t, v;
	size_t			 i, cs = hi, ce, idx;
	int			 dstar, leaf, want;
	enum policy_action	 da = POLICY_DROP, la = POLICY_DROP;

	for (;;) {
		ce = cs;
		if (is_array) {
			/* the same live nodes for every element */
			for (i = lo; i < hi; i++)
				if (live[i]->arr != NULL)
					live[ce++] = live[i]->arr;
		} else {
			if (json_next(c->r, &t, c->err, c->errlen) == -1)
				return -1;
			if (t.type == JSON_OBJECT_END)
				return 0;
			for (i = lo; i < hi; i++) {
				n = live[i];
				if (n->nkids > 0 && (k = pnode_kid(n, t.str,
				    t.str_len, &idx)) != NULL)
					live[ce++] = k;
				if (n->star != NULL)
					live[ce++] = n->star;
			}
		}
		dstar = leaf = want = 0;
		for (i = cs; i < ce; i++) {
			n = live[i];
			if (n->has_dstar) {
				dstar = 1;
				da = n->dstar;
			}
			if (n->has_leaf) {
				leaf = 1;
				la = n->leaf;
			}
			if (n->nkids > 0 || n->star != NULL || n->arr != NULL)
				want = 1;
		}
		if (dstar)
			want = pc_transforms(da);
		else if (leaf && pc_transforms(la))
			want = 1;
		if (!want) {
			if (is_array)
				return json_skip_container(c->r, c->err,
				    c->errlen);
			if (json_skip_value(c->r, c->err, c->errlen) == -1)
				return -1;
			continue;
		}
		if (json_next(c->r, &v, c->err, c->errlen) == -1)
			return -1;
		if (v.type == JSON_ARRAY_END)
			return 0;	/* is_array: the array ended */
		if (is_scalar(v.type)) {
			if (!dstar && !leaf)
				continue;
			if (!dstar)
				da = la;
			if (pc_transforms(da) && pc_call(c, da, &v) == -1)
				return -1;
			continue;
		}
		if (dstar) {
			if (pc_sub(c, da, v.depth) == -1)
				return -1;
			continue;
		}
		/* keep the live nodes that can match inside the container */
		i = cs;
		while (i < ce) {
			n = live[i];
			if (v.type == JSON_OBJECT_BEGIN ?
			    n->nkids > 0 || n->star != NULL : n->arr != NULL)
				i++;
			else
				live[i] = live[--ce];
		}
		if (ce == cs) {
			if (json_skip_container(c->r, c->err, c->errlen) == -1)
				return -1;
		} else if (pc_match(c, cs, ce,
		    v.type == JSON_ARRAY_BEGIN) == -1)
			return -1;
	}
}

int
policy_collect_json(const struct policy_rules *rules, struct json_reader *r,
    const char *in, size_t len, const struct policy_transform *xf,
    char *err, size_t errlen)
{
	struct pcollect		 c;
	struct json_token	 t;
	const struct pnode	*livestack[PW_STACK_LIVE];
	const struct pnode	*root = rules->root;
	char			 dummy[1];
	int			 rc = -1;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	memset(&c, 0, sizeof(c));
	c.r = r;
	c.xf = xf;
	c.err = err;
	c.errlen = errlen;
	c.live = livestack;
	if (rules->nnodes + 1 > PW_STACK_LIVE &&
	    (c.live = calloc(rules->nnodes + 1,
	    sizeof(const struct pnode *))) == NULL)
		return pc_fail(&c, "out of memory");
	json_reader_reset(r, in, len);
	/* the reader refuses any root but an object */
	if (json_next(r, &t, err, errlen) == -1)
		goto done;
	if (root->has_dstar) {
		if (pc_transforms(root->dstar) ?
		    pc_sub(&c, root->dstar, 1) == -1 :
		    json_skip_container(r, err, errlen) == -1)
			goto done;
	} else {
		c.live[0] = root;
		if (pc_match(&c, 0, 1, 0) == -1)
			goto done;
	}
	if (json_next(r, &t, err, errlen) == -1)
		goto done;
	rc = 0;
done:
	if (c.live != livestack)
		free((void *)c.live);
	return rc;
}

/* ---- root-level names (form fields) ---- */

enum policy_action
policy_rules_root(const struct policy_rules *r, const char *name, size_t len,
    struct buf *repath)
{
	const struct pnode	*root = r->root, *kid = NULL, *star;
	enum policy_action	 a = POLICY_DROP;
	size_t			 idx = 0;
	int			 dstar = 0, leaf = 0;

	if (repath != NULL)
		buf_truncate(repath, 0);
	if (root->has_dstar) {
		if (repath != NULL)
			buf_append_str(repath, "**");
		return root->dstar;
	}
	/* the same live nodes, in the same order, as pw_run at the root */
	if (root->nkids > 0)
		kid = pnode_kid(root, name, len, &idx);
	star = root->star;
	if (kid != NULL && kid->has_dstar) {
		dstar = 1;
		a = kid->dstar;
	}
	if (star != NULL && star->has_dstar) {
		dstar = 1;
		a = star->dstar;
	}
	if (!dstar) {
		if (kid != NULL && kid->has_leaf) {
			leaf = 1;
			a = kid->leaf;
		}
		if (star != NULL && star->has_leaf) {
			leaf = 1;
			a = star->leaf;
		}
		if (!leaf)
			a = POLICY_DROP;
	}
	if (repath != NULL) {
		if (kid != NULL)
			buf_append(repath, root->kids[idx].disp,
			    root->kids[idx].displen);
		else
			buf_append_char(repath, '*');
		if (dstar)
			buf_append_str(repath, ".**");
	}
	return a;
}

/* ---- explain: per-node decisions with the deciding rule ---- */

/*
 * A naive matcher over the rule list rather than the trie: explain wants
 * the rule as written, and speed does not matter there. It decides as the
 * trie walk does (tests/unit/test_ctl_policy.c checks that they agree).
 */
struct xseg {
	int	 arr;		/* an array element */
	size_t	 off, len;	/* key bytes in the walk's key buffer */
	size_t	 index;		/* element index */
};

static int
xstep_ok(const struct step *s, const struct xseg *g, const char *keys)
{
	if (g->arr)
		return s->kind == STEP_ARR;
	if (s->kind == STEP_STAR)
		return 1;
	return s->kind == STEP_KEY && s->len == g->len &&
	    memcmp(s->key, keys + g->off, g->len) == 0;
}

/* Does rule match the node g[0..n), or (**) an ancestor's subtree? */
static int
xrule_match(const struct rule *ru, const struct xseg *g, size_t n,
    const char *keys, int *dstar)
{
	size_t	 m = ru->nsteps, i;

	*dstar = m > 0 && ru->steps[m - 1].kind == STEP_DSTAR;
	if (*dstar)
		m--;
	if (*dstar ? m > n : m != n)
		return 0;
	for (i = 0; i < m; i++)
		if (!xstep_ok(&ru->steps[i], &g[i], keys))
			return 0;
	return 1;
}

/* Is a more specific than b: shorter ** prefix, then a key before a *. */
static int
xrule_better(const struct rule *a, const struct rule *b)
{
	size_t	 i;

	if (a->nsteps != b->nsteps)
		return a->nsteps < b->nsteps;
	for (i = 0; i < a->nsteps; i++)
		if (a->steps[i].kind != b->steps[i].kind)
			return a->steps[i].kind == STEP_KEY;
	return 0;
}

/* The deciding rule for node g[0..n) or NULL; *dstar: it is a ** rule. */
static const struct rule *
xdecide(const struct policy_rules *r, const struct xseg *g, size_t n,
    const char *keys, int *dstar)
{
	const struct rule	*best = NULL;
	size_t			 i;
	int			 ds, bestds = 0;

	for (i = 0; i < r->nrules; i++) {
		const struct rule *ru = &r->rules[i];

		if (!xrule_match(ru, g, n, keys, &ds))
			continue;
		if (best == NULL || (ds && !bestds) ||
		    (ds == bestds && xrule_better(ru, best))) {
			best = ru;
			bestds = ds;
		}
	}
	*dstar = bestds;
	return best;
}

/* Can a rule match something inside the container at g[0..n)? */
static int
xdescends(const struct policy_rules *r, const struct xseg *g, size_t n,
    const char *keys, int is_array)
{
	size_t	 i, j;

	for (i = 0; i < r->nrules; i++) {
		const struct rule *ru = &r->rules[i];
		enum step_kind k;

		if (ru->nsteps <= n)
			continue;
		for (j = 0; j < n; j++)
			if (!xstep_ok(&ru->steps[j], &g[j], keys))
				break;
		if (j < n)
			continue;
		k = ru->steps[n].kind;
		if (is_array ? k == STEP_ARR : (k == STEP_KEY || k == STEP_STAR))
			return 1;
	}
	return 0;
}

/* The concrete path of g[0..n) in path. */
static int
xpath(struct buf *path, const struct xseg *g, size_t n, const char *keys)
{
	char	*d;
	size_t	 i, dl;

	buf_truncate(path, 0);
	for (i = 0; i < n; i++) {
		if (g[i].arr) {
			if (buf_printf(path, "[%zu]", g[i].index) == -1)
				return -1;
			continue;
		}
		if (i > 0 && buf_append_char(path, '.') == -1)
			return -1;
		if ((d = key_display(keys + g[i].off, g[i].len, &dl)) == NULL)
			return -1;
		if (buf_append(path, d, dl) == -1) {
			free(d);
			return -1;
		}
		free(d);
	}
	/* an empty buffer has no data to point at */
	if (path->data == NULL && buf_append(path, "", 0) == -1)
		return -1;
	return 0;
}

struct xwalk {
	const struct policy_rules	*rules;
	struct json_reader		*r;
	struct xseg			*g;
	size_t				 cap;
	struct buf			 keys;
	struct buf			 path;
	int	(*cb)(void *, const struct policy_decision *);
	void				*arg;
	char				*err;
	size_t				 errlen;
};

static int
xfail(struct xwalk *x, const char *why)
{
	snprintf(x->err, x->errlen, "%s", why);
	return -1;
}

/* Report node g[0..n). 1 when reported, 0 when it needs no line, -1. */
static int
xemit(struct xwalk *x, size_t n, const struct json_token *v, int container,
    int is_array)
{
	struct policy_decision	 d;
	const struct rule	*ru;
	int			 ds;

	ru = xdecide(x->rules, x->g, n, x->keys.data, &ds);
	memset(&d, 0, sizeof(d));
	if (container == POLICY_NONSCALAR) {
		/* a scalar rule naming a container that no rule enters */
		if (ru == NULL || ds || xdescends(x->rules, x->g, n,
		    x->keys.data, is_array))
			return 0;
		d.action = POLICY_DROP;
	} else if (container == POLICY_EMPTY && !ds) {
		/* an emptied container is dropped; only ** keeps one */
		d.action = POLICY_DROP;
		ru = NULL;
	} else
		d.action = ru != NULL ? ru->action : POLICY_DROP;
	d.rule = ru != NULL ? ru->path : NULL;
	d.value = v;
	d.container = container;
	if (xpath(&x->path, x->g, n, x->keys.data) == -1)
		return xfail(x, "out of memory");
	d.path = x->path.data;
	d.pathlen = x->path.len;
	if (x->cb(x->arg, &d) == -1)
		return xfail(x, "stopped");
	return 1;
}

static int	xvalue(struct xwalk *, const struct json_token *, size_t);

/*
 * The members of the container at g[0..n) whose BEGIN was read, up to its
 * END. Returns how many, or -1.
 */
static int
xcontainer(struct xwalk *x, size_t n, int is_array)
{
	struct json_token	 t, v;
	struct xseg		*ng;
	int			 count = 0;

	if (n + 1 >= x->cap) {
		if ((ng = realloc(x->g, x->cap * 2 * sizeof(*ng))) == NULL)
			return xfail(x, "out of memory");
		x->g = ng;
		x->cap *= 2;
	}
	for (;;) {
		if (json_next(x->r, &t, x->err, x->errlen) == -1)
			return -1;
		if (t.type == JSON_OBJECT_END || t.type == JSON_ARRAY_END)
			return count;
		memset(&x->g[n], 0, sizeof(x->g[n]));
		if (is_array) {
			x->g[n].arr = 1;
			x->g[n].index = (size_t)count;
			v = t;
		} else {
			/* keys are copied: the token is gone after json_next */
			x->g[n].off = x->keys.len;
			x->g[n].len = t.str_len;
			if (buf_append(&x->keys, t.str, t.str_len) == -1)
				return xfail(x, "out of memory");
			if (json_next(x->r, &v, x->err, x->errlen) == -1)
				return -1;
		}
		if (xvalue(x, &v, n + 1) == -1)
			return -1;
		if (!is_array)
			buf_truncate(&x->keys, x->g[n].off);
		count++;
	}
}

/* The value at g[0..n) whose first token is t. 0 or -1. */
static int
xvalue(struct xwalk *x, const struct json_token *t, size_t n)
{
	int	 is_array, said, count;

	if (t->type != JSON_OBJECT_BEGIN && t->type != JSON_ARRAY_BEGIN)
		return xemit(x, n, t, 0, 0) == -1 ? -1 : 0;
	is_array = t->type == JSON_ARRAY_BEGIN;
	if ((said = xemit(x, n, NULL, POLICY_NONSCALAR, is_array)) == -1)
		return -1;
	if ((count = xcontainer(x, n, is_array)) == -1)
		return -1;
	if (count == 0 && !said && xemit(x, n, NULL, POLICY_EMPTY,
	    is_array) == -1)
		return -1;
	return 0;
}

int
policy_explain_json(const struct policy_rules *rules, struct json_reader *r,
    const char *in, size_t len,
    int (*cb)(void *arg, const struct policy_decision *d), void *arg,
    char *err, size_t errlen)
{
	struct xwalk		 x;
	struct json_token	 t;
	char			 dummy[1];
	int			 rc = -1;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	memset(&x, 0, sizeof(x));
	x.rules = rules;
	x.r = r;
	x.cb = cb;
	x.arg = arg;
	x.err = err;
	x.errlen = errlen;
	x.cap = 16;
	if ((x.g = calloc(x.cap, sizeof(*x.g))) == NULL ||
	    buf_append(&x.keys, "", 0) == -1) {
		xfail(&x, "out of memory");
		goto done;
	}
	json_reader_reset(r, in, len);
	/* the reader refuses any root but an object */
	if (json_next(r, &t, err, errlen) == -1 ||
	    xcontainer(&x, 0, 0) == -1 ||
	    json_next(r, &t, err, errlen) == -1)
		goto done;
	rc = 0;
done:
	free(x.g);
	buf_free(&x.keys);
	buf_free(&x.path);
	return rc;
}

enum policy_action
policy_explain_root(const struct policy_rules *r, const char *name,
    size_t len, const char **rule)
{
	struct xseg		 g;
	const struct rule	*ru;
	int			 ds;

	/* the name is the key bytes: g.off 0 into name itself */
	memset(&g, 0, sizeof(g));
	g.len = len;
	ru = xdecide(r, &g, 1, name, &ds);
	if (rule != NULL)
		*rule = ru != NULL ? ru->path : NULL;
	return ru != NULL ? ru->action : POLICY_DROP;
}

/* ---- flat name tables ---- */

#define NAMES_HASH_AFTER	16

struct pname {
	char			*name;
	size_t			 len;
	uint32_t		 hash;
	enum policy_action	 action;
};

struct policy_names {
	int		 ci;
	struct pname	*v;
	size_t		 n, cap;
	uint32_t	*tab;		/* index + 1 */
	size_t		 tabmask;
};

static uint32_t
names_hash(const struct policy_names *n, const char *s, size_t len)
{
	uint32_t	 h = 2166136261u;
	size_t		 i;
	unsigned char	 c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (n->ci && c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		h = (h ^ c) * 16777619u;
	}
	return h;
}

static int
names_eq(const struct policy_names *n, const struct pname *e, const char *s,
    size_t len)
{
	if (e->len != len)
		return 0;
	return n->ci ? strncasecmp(e->name, s, len) == 0 :
	    memcmp(e->name, s, len) == 0;
}

static const struct pname *
names_find(const struct policy_names *n, const char *s, size_t len)
{
	size_t		 i, slot;
	uint32_t	 h;

	if (n->tab == NULL) {
		for (i = 0; i < n->n; i++)
			if (names_eq(n, &n->v[i], s, len))
				return &n->v[i];
		return NULL;
	}
	h = names_hash(n, s, len);
	for (slot = h & n->tabmask; n->tab[slot] != 0;
	    slot = (slot + 1) & n->tabmask) {
		const struct pname *e = &n->v[n->tab[slot] - 1];

		if (e->hash == h && names_eq(n, e, s, len))
			return e;
	}
	return NULL;
}

struct policy_names *
policy_names_new(int case_insensitive)
{
	struct policy_names	*n;

	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	n->ci = case_insensitive != 0;
	return n;
}

int
policy_names_add(struct policy_names *n, const char *name,
    enum policy_action a, char *err, size_t errlen)
{
	size_t		 len = strlen(name), cap, i, slot;
	struct pname	*v;
	uint32_t	*t;

	if ((int)a < 0 || a >= POLICY_NACTIONS) {
		snprintf(err, errlen, "unknown action");
		return -1;
	}
	if (names_find(n, name, len) != NULL) {
		snprintf(err, errlen, "\"%s\" is listed twice", name);
		return -1;
	}
	if (n->n == n->cap) {
		cap = n->cap ? n->cap * 2 : 8;
		if ((v = realloc(n->v, cap * sizeof(*v))) == NULL)
			goto nomem;
		n->v = v;
		n->cap = cap;
	}
	v = &n->v[n->n];
	if ((v->name = strdup(name)) == NULL)
		goto nomem;
	v->len = len;
	v->hash = names_hash(n, name, len);
	v->action = a;
	n->n++;
	if (n->n > NAMES_HASH_AFTER) {
		cap = 64;
		while (cap < n->n * 4)
			cap *= 2;
		if ((t = calloc(cap, sizeof(*t))) == NULL) {
			n->n--;
			free(v->name);
			goto nomem;
		}
		for (i = 0; i < n->n; i++) {
			slot = n->v[i].hash & (cap - 1);
			while (t[slot] != 0)
				slot = (slot + 1) & (cap - 1);
			t[slot] = (uint32_t)(i + 1);
		}
		free(n->tab);
		n->tab = t;
		n->tabmask = cap - 1;
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

enum policy_action
policy_names_lookup(const struct policy_names *n, const char *name,
    size_t len)
{
	const struct pname	*e;

	if (n == NULL || (e = names_find(n, name, len)) == NULL)
		return POLICY_DROP;
	return e->action;
}

size_t
policy_names_count(const struct policy_names *n)
{
	return n == NULL ? 0 : n->n;
}

const char *
policy_names_at(const struct policy_names *n, size_t i, enum policy_action *a)
{
	if (n == NULL || i >= n->n)
		return NULL;
	if (a != NULL)
		*a = n->v[i].action;
	return n->v[i].name;
}

void
policy_names_free(struct policy_names *n)
{
	size_t	 i;

	if (n == NULL)
		return;
	for (i = 0; i < n->n; i++)
		free(n->v[i].name);
	free(n->v);
	free(n->tab);
	free(n);
}
