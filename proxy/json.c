/* json.c -- strict streaming JSON reader (RFC 8259) and writer helpers (pure) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "json.h"

/*
 * The reader is a pull tokenizer over one in-memory buffer. It keeps a small
 * state machine (what may come next), the container kind per depth, and for
 * every open object the keys seen so far, so duplicates are refused after
 * unescaping. Keys without escapes are remembered as pointers into the input;
 * escaped keys are copied into an arena that is truncated when their object
 * closes. Small objects are checked by a linear scan; past JSON_HASH_AFTER
 * keys the object gets an open-addressing hash set (kept and reused).
 * Strings without escapes are handed out as pointers into the input; escaped
 * ones are unescaped into a scratch buffer that is reused. Once the buffers
 * have grown to the largest document seen, reset and next never allocate.
 */

#define JSON_HASH_AFTER	16

enum json_state {
	ST_ROOT,		/* before the root object */
	ST_OBJ_FIRST,		/* after '{': a key or '}' */
	ST_OBJ_NEXT,		/* after ',' in an object: a key */
	ST_VALUE,		/* after ':': a value */
	ST_ARR_FIRST,		/* after '[': a value or ']' */
	ST_ARR_NEXT,		/* after ',' in an array: a value */
	ST_AFTER,		/* after a value: ',' or the closing bracket */
	ST_DONE,		/* the root closed: only whitespace may follow */
	ST_EOF,
	ST_ERROR,
};

struct json_key {
	const char	*ptr;	/* into the input, or NULL: in the arena at off */
	size_t		 off;
	size_t		 len;
	uint32_t	 hash;
	unsigned char	 c0;	/* first byte (0 for ""): cheap mismatch test */
};

struct json_frame {
	size_t		 kstart;	/* first key of this object in keys[] */
	size_t		 astart;	/* arena length when the object opened */
	uint32_t	*tab;		/* hash set of key indexes + 1 (0: empty) */
	size_t		 tabcap;	/* allocated slots */
	size_t		 tabmask;	/* slots in use - 1; 0: linear scan */
	uint64_t	 seen;		/* linear scan: bit key_bit() of each key */
	int		 is_array;
};

struct json_reader {
	const unsigned char	*start, *p, *end;
	int			 max_depth;
	int			 depth;
	enum json_state		 state;
	struct json_frame	*frames;	/* [max_depth + 1], index = depth */
	struct json_key		*keys;
	size_t			 nkeys, keyscap;
	struct buf		 arena;		/* escaped keys of open objects */
	struct buf		 scratch;	/* the last unescaped string */
};

/* 1: a byte that may appear unescaped in a string and needs no check. */
static const unsigned char str_plain[256] = {
	['\x20'] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x20: '"' */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,		/* 0x30 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,		/* 0x40 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,		/* 0x50: '\\' */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,		/* 0x60 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,		/* 0x70 */
};

static const unsigned char is_ws[256] = {
	[' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1,
};

/* Hex digit value + 1; 0 for a byte that is not a hex digit. */
static const unsigned char hexval[256] = {
	['0'] = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
	['A'] = 11, 12, 13, 14, 15, 16,
	['a'] = 11, 12, 13, 14, 15, 16,
};

#define ONES	0x0101010101010101ULL
#define HIGHS	0x8080808080808080ULL

#ifdef __SSE2__
/*
 * Sixteen bytes at once: a mask with bit i set when p[i] is < 0x20, '"',
 * '\\' or >= 0x80 -- the bytes a string scan must stop at. Exact, so the
 * scan jumps straight to the first of them.
 */
static inline unsigned
sse_special(const unsigned char *p)
{
	__m128i	v = _mm_loadu_si128((const __m128i *)(const void *)p);
	__m128i	q = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
	__m128i	b = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
	__m128i	c = _mm_cmpeq_epi8(_mm_and_si128(v, _mm_set1_epi8((char)0xe0)),
		    _mm_setzero_si128());

	/* movemask of v itself: the bytes >= 0x80 */
	return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(q, b),
	    c)) | (unsigned)_mm_movemask_epi8(v);
}
#else

/*
 * Eight bytes at once: nonzero when any byte is < 0x20, '"', '\\' or
 * >= 0x80 (it may also flag a plain byte next to such a byte; never misses).
 */
static inline uint64_t
swar_special(const unsigned char *p)
{
	uint64_t	 v, q, b;

	memcpy(&v, p, 8);
	q = v ^ (ONES * 0x22);
	b = v ^ (ONES * 0x5c);
	return (((v - ONES * 0x20) & ~v) | ((q - ONES) & ~q) |
	    ((b - ONES) & ~b) | v) & HIGHS;
}
#endif

/*
 * Length of the valid UTF-8 sequence starting with a byte >= 0x80 at p, or 0
 * (RFC 3629 table: no overlongs, no surrogates, nothing past U+10FFFF).
 */
static inline size_t
utf8_seq(const unsigned char *p, const unsigned char *end)
{
	unsigned char	 c = p[0], lo = 0x80, hi = 0xbf;
	size_t		 n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

int
json_utf8_valid(const char *s, size_t len)
{
	const unsigned char	*p = (const unsigned char *)s, *end = p + len;
	size_t			 n;

	while (p < end) {
		while (end - p >= 8) {
			uint64_t v;

			memcpy(&v, p, 8);
			if (v & HIGHS)
				break;
			p += 8;
		}
		if (p == end)
			break;
		if (*p < 0x80) {
			p++;
			continue;
		}
		if ((n = utf8_seq(p, end)) == 0)
			return 0;
		p += n;
	}
	return 1;
}

struct json_reader *
json_reader_new(int max_depth)
{
	struct json_reader	*r;

	if (max_depth < 1)
		max_depth = 1;
	if (max_depth > 1 << 20)
		return NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->max_depth = max_depth;
	if ((r->frames = calloc((size_t)max_depth + 1,
	    sizeof(*r->frames))) == NULL) {
		free(r);
		return NULL;
	}
	json_reader_reset(r, "", 0);
	return r;
}

void
json_reader_reset(struct json_reader *r, const char *buf, size_t len)
{
	r->start = r->p = (const unsigned char *)buf;
	r->end = r->start + len;
	r->depth = 0;
	r->state = ST_ROOT;
	r->nkeys = 0;
	buf_truncate(&r->arena, 0);
	buf_truncate(&r->scratch, 0);
}

size_t
json_reader_offset(const struct json_reader *r)
{
	return (size_t)(r->p - r->start);
}

void
json_reader_free(struct json_reader *r)
{
	int	 i;

	if (r == NULL)
		return;
	for (i = 0; i <= r->max_depth; i++)
		free(r->frames[i].tab);
	free(r->frames);
	free(r->keys);
	buf_free(&r->arena);
	buf_free(&r->scratch);
	free(r);
}

static int
json_fail(struct json_reader *r, const unsigned char *at, const char *why,
    char *err, size_t errlen)
{
	r->p = at;
	r->state = ST_ERROR;
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "invalid JSON at byte %zu: %s",
		    (size_t)(at - r->start), why);
	return -1;
}

static uint32_t
key_hash(const char *s, size_t len)
{
	uint32_t	 h = 2166136261u;
	size_t		 i;

	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

static inline const char *
key_bytes(const struct json_reader *r, const struct json_key *k)
{
	return k->ptr != NULL ? k->ptr : r->arena.data + k->off;
}

/*
 * One of 64 bits from a key's length and first and last bytes: a small
 * object whose keys' bits do not include it cannot hold the key, so most
 * keys skip the linear duplicate scan.
 */
static inline uint64_t
key_bit(const char *s, size_t len)
{
	unsigned	 h = (unsigned)len;

	if (len > 0)
		h = h * 31 + (unsigned char)s[0] * 7 +
		    (unsigned char)s[len - 1];
	return (uint64_t)1 << (h & 63);
}

/* Insert key index i (already in keys[]) into the frame's hash set. */
static void
tab_insert(struct json_reader *r, struct json_frame *f, size_t i)
{
	size_t	 slot = r->keys[i].hash & f->tabmask;

	while (f->tab[slot] != 0)
		slot = (slot + 1) & f->tabmask;
	f->tab[slot] = (uint32_t)(i + 1);
}

/* (Re)build the frame's hash set for n keys. -1 on ENOMEM. */
static int
tab_build(struct json_reader *r, struct json_frame *f, size_t n)
{
	size_t	 want = 64, i;

	while (want < n * 4)
		want *= 2;
	if (want > f->tabcap) {
		uint32_t *t;

		if ((t = realloc(f->tab, want * sizeof(*t))) == NULL)
			return -1;
		f->tab = t;
		f->tabcap = want;
	}
	f->tabmask = want - 1;
	memset(f->tab, 0, want * sizeof(*f->tab));
	for (i = f->kstart; i < r->nkeys; i++)
		tab_insert(r, f, i);
	return 0;
}

/*
 * Remember key s[0..len) of the object at the current depth, refusing a
 * duplicate. escaped: s lives in the scratch buffer and must be copied.
 * Returns 0, 1 for a duplicate, -1 on ENOMEM.
 */
static int
key_remember(struct json_reader *r, const char *s, size_t len, int escaped)
{
	struct json_frame	*f = &r->frames[r->depth];
	struct json_key		*k;
	size_t			 i, n = r->nkeys - f->kstart;
	uint32_t		 h = 0;

	if (len > UINT32_MAX || r->nkeys >= UINT32_MAX - 1)
		return -1;
	if (f->tabmask == 0) {
		unsigned char	 c0 = len ? (unsigned char)s[0] : 0;
		uint64_t	 bit = key_bit(s, len);

		if (f->seen & bit) {
			for (i = f->kstart; i < r->nkeys; i++) {
				k = &r->keys[i];
				if (k->len == len && k->c0 == c0 &&
				    memcmp(key_bytes(r, k), s, len) == 0)
					return 1;
			}
		}
		f->seen |= bit;
	} else {
		size_t	 slot;

		h = key_hash(s, len);
		slot = h & f->tabmask;
		while (f->tab[slot] != 0) {
			k = &r->keys[f->tab[slot] - 1];
			if (k->hash == h && k->len == len &&
			    memcmp(key_bytes(r, k), s, len) == 0)
				return 1;
			slot = (slot + 1) & f->tabmask;
		}
	}
	if (r->nkeys == r->keyscap) {
		size_t	 cap = r->keyscap ? r->keyscap * 2 : 64;

		if ((k = realloc(r->keys, cap * sizeof(*k))) == NULL)
			return -1;
		r->keys = k;
		r->keyscap = cap;
	}
	k = &r->keys[r->nkeys];
	k->len = len;
	k->c0 = len ? (unsigned char)s[0] : 0;
	if (escaped) {
		k->ptr = NULL;
		k->off = r->arena.len;
		if (buf_append(&r->arena, s, len) == -1)
			return -1;
	} else
		k->ptr = s;
	r->nkeys++;
	n++;
	if (f->tabmask != 0) {
		k->hash = h;
		if (n * 2 > f->tabmask + 1)
			return tab_build(r, f, n);
		tab_insert(r, f, r->nkeys - 1);
	} else if (n > JSON_HASH_AFTER) {
		for (i = f->kstart; i < r->nkeys; i++)
			r->keys[i].hash = key_hash(key_bytes(r, &r->keys[i]),
			    r->keys[i].len);
		return tab_build(r, f, n);
	}
	return 0;
}

static int
put_utf8(struct buf *b, uint32_t cp)
{
	char	 u[4];
	size_t	 n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return buf_append(b, u, n);
}

static inline int
hex4(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
	uint32_t	 a, b, c, d;

	if (end - p < 4)
		return -1;
	a = hexval[p[0]];
	b = hexval[p[1]];
	c = hexval[p[2]];
	d = hexval[p[3]];
	if (a == 0 || b == 0 || c == 0 || d == 0)
		return -1;
	*cp = (a - 1) << 12 | (b - 1) << 8 | (c - 1) << 4 | (d - 1);
	return 0;
}

/*
 * Scan the string whose opening quote is at r->p. Fills raw/str in t.
 * Returns 0 or -1 (error already written).
 */
static inline __attribute__((always_inline)) int
scan_string(struct json_reader *r, struct json_token *t, int is_key,
    int *escaped, char *err, size_t errlen)
{
	const unsigned char	*p = r->p + 1, *end = r->end, *q;
	int			 esc = 0;
	size_t			 n;
	uint32_t		 cp, lo;

	q = p;
	for (;;) {
#ifdef __SSE2__
		while (end - p >= 16) {
			unsigned m = sse_special(p);

			if (m != 0) {
				p += __builtin_ctz(m);
				break;
			}
			p += 16;
		}
#else
		while (end - p >= 8 && swar_special(p) == 0)
			p += 8;
#endif
		while (p < end && str_plain[*p])
			p++;
		if (p == end)
			return json_fail(r, r->p, "unterminated string", err,
			    errlen);
		if (*p == '"')
			break;
		if (*p >= 0x80) {
			if ((n = utf8_seq(p, end)) == 0)
				return json_fail(r, p, "invalid UTF-8", err,
				    errlen);
			p += n;
			continue;
		}
		if (*p < 0x20)
			return json_fail(r, p,
			    "control character in string", err, errlen);
		/* a backslash */
		if (!esc) {
			esc = 1;
			buf_truncate(&r->scratch, 0);
		}
		if (buf_append(&r->scratch, q, (size_t)(p - q)) == -1)
			goto nomem;
		if (end - p < 2)
			return json_fail(r, p, "unterminated string", err,
			    errlen);
		switch (p[1]) {
		case '"':
		case '\\':
		case '/':
			cp = p[1];
			break;
		case 'b':
			cp = '\b';
			break;
		case 'f':
			cp = '\f';
			break;
		case 'n':
			cp = '\n';
			break;
		case 'r':
			cp = '\r';
			break;
		case 't':
			cp = '\t';
			break;
		case 'u':
			if (hex4(p + 2, end, &cp) == -1)
				return json_fail(r, p, "bad \\u escape", err,
				    errlen);
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return json_fail(r, p, "lone low surrogate",
				    err, errlen);
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (end - p < 12 || p[6] != '\\' ||
				    p[7] != 'u' || hex4(p + 8, end, &lo) == -1 ||
				    lo < 0xdc00 || lo > 0xdfff)
					return json_fail(r, p,
					    "lone high surrogate", err, errlen);
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				    (lo - 0xdc00);
				p += 6;
			}
			if (cp == 0 && is_key)
				return json_fail(r, p, "NUL in object key",
				    err, errlen);
			p += 4;
			break;
		default:
			return json_fail(r, p, "bad escape", err, errlen);
		}
		if (put_utf8(&r->scratch, cp) == -1)
			goto nomem;
		p += 2;
		q = p;
	}
	t->raw = (const char *)r->p;
	t->raw_len = (size_t)(p + 1 - r->p);
	if (esc) {
		if (buf_append(&r->scratch, q, (size_t)(p - q)) == -1)
			goto nomem;
		t->str = r->scratch.data;
		t->str_len = r->scratch.len;
	} else {
		t->str = (const char *)r->p + 1;
		t->str_len = (size_t)(p - r->p - 1);
	}
	*escaped = esc;
	r->p = p + 1;
	return 0;
nomem:
	return json_fail(r, p, "out of memory", err, errlen);
}

static int
scan_number(struct json_reader *r, struct json_token *t, char *err,
    size_t errlen)
{
	const unsigned char	*p = r->p, *end = r->end;

	if (*p == '-')
		p++;
	if (p == end)
		return json_fail(r, p, "bad number", err, errlen);
	if (*p == '0') {
		p++;
		if (p < end && *p >= '0' && *p <= '9')
			return json_fail(r, p, "leading zero in number", err,
			    errlen);
	} else if (*p >= '1' && *p <= '9') {
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	} else
		return json_fail(r, p, "bad number", err, errlen);
	if (p < end && *p == '.') {
		p++;
		if (p == end || *p < '0' || *p > '9')
			return json_fail(r, p, "bad fraction", err, errlen);
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p == end || *p < '0' || *p > '9')
			return json_fail(r, p, "bad exponent", err, errlen);
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	t->type = JSON_NUMBER;
	t->raw = (const char *)r->p;
	t->raw_len = (size_t)(p - r->p);
	r->p = p;
	return 0;
}

static int
scan_value(struct json_reader *r, struct json_token *t, char *err,
    size_t errlen)
{
	const unsigned char	*p = r->p;
	size_t			 left = (size_t)(r->end - p);
	struct json_frame	*f;
	int			 esc;

	t->str = NULL;
	t->str_len = 0;
	switch (*p) {
	case '"':
		if (scan_string(r, t, 0, &esc, err, errlen) == -1)
			return -1;
		t->type = JSON_STRING;
		break;
	case '{':
	case '[':
		if (r->depth >= r->max_depth)
			return json_fail(r, p, "nesting too deep", err, errlen);
		r->depth++;
		f = &r->frames[r->depth];
		if (*p == '{') {
			f->is_array = 0;
			f->kstart = r->nkeys;
			f->astart = r->arena.len;
			f->tabmask = 0;
			f->seen = 0;
			t->type = JSON_OBJECT_BEGIN;
			r->state = ST_OBJ_FIRST;
		} else {
			f->is_array = 1;
			t->type = JSON_ARRAY_BEGIN;
			r->state = ST_ARR_FIRST;
		}
		t->raw = (const char *)p;
		t->raw_len = 1;
		t->depth = r->depth;
		r->p = p + 1;
		return 0;
	case 't':
		if (left < 4 || memcmp(p, "true", 4) != 0)
			goto literal;
		t->type = JSON_TRUE;
		t->raw_len = 4;
		goto lit_ok;
	case 'f':
		if (left < 5 || memcmp(p, "false", 5) != 0)
			goto literal;
		t->type = JSON_FALSE;
		t->raw_len = 5;
		goto lit_ok;
	case 'n':
		if (left < 4 || memcmp(p, "null", 4) != 0)
			goto literal;
		t->type = JSON_NULL;
		t->raw_len = 4;
lit_ok:
		t->raw = (const char *)p;
		r->p = p + t->raw_len;
		break;
	case '-':
	case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		if (scan_number(r, t, err, errlen) == -1)
			return -1;
		break;
	case '/':
		return json_fail(r, p, "comments are not allowed", err, errlen);
	default:
		goto literal;
	}
	t->depth = r->depth;
	r->state = ST_AFTER;
	return 0;
literal:
	return json_fail(r, p, "unexpected character (expected a value)",
	    err, errlen);
}

static int
close_container(struct json_reader *r, struct json_token *t)
{
	struct json_frame	*f = &r->frames[r->depth];

	if (f->is_array)
		t->type = JSON_ARRAY_END;
	else {
		t->type = JSON_OBJECT_END;
		r->nkeys = f->kstart;
		buf_truncate(&r->arena, f->astart);
		f->tabmask = 0;
	}
	t->raw = (const char *)r->p;
	t->raw_len = 1;
	t->str = NULL;
	t->str_len = 0;
	t->depth = r->depth;
	r->p++;
	r->depth--;
	r->state = r->depth == 0 ? ST_DONE : ST_AFTER;
	return 0;
}

static int
scan_key(struct json_reader *r, struct json_token *t, char *err,
    size_t errlen)
{
	const unsigned char	*p;
	int			 esc, rc;

	if (scan_string(r, t, 1, &esc, err, errlen) == -1)
		return -1;
	if ((rc = key_remember(r, t->str, t->str_len, esc)) != 0)
		return json_fail(r, (const unsigned char *)t->raw,
		    rc == 1 ? "duplicate key" : "out of memory", err, errlen);
	t->type = JSON_KEY;
	t->depth = r->depth;
	p = r->p;
	while (p < r->end && is_ws[*p])
		p++;
	if (p == r->end || *p != ':')
		return json_fail(r, p, "expected ':' after a key", err, errlen);
	r->p = p + 1;
	r->state = ST_VALUE;
	return 0;
}

int
json_next(struct json_reader *r, struct json_token *t, char *err,
    size_t errlen)
{
	const unsigned char	*p;

again:
	p = r->p;
	while (p < r->end && is_ws[*p])
		p++;
	r->p = p;
	if (p == r->end) {
		switch (r->state) {
		case ST_DONE:
		case ST_EOF:
			r->state = ST_EOF;
			memset(t, 0, sizeof(*t));
			t->type = JSON_EOF;
			return 0;
		case ST_ROOT:
			return json_fail(r, p, "empty document", err, errlen);
		case ST_ERROR:
			goto error;
		default:
			return json_fail(r, p, "unexpected end of document",
			    err, errlen);
		}
	}
	switch (r->state) {
	case ST_AFTER:
		if (*p == ',') {
			r->p = p + 1;
			r->state = r->frames[r->depth].is_array ?
			    ST_ARR_NEXT : ST_OBJ_NEXT;
			goto again;
		}
		if (*p == (r->frames[r->depth].is_array ? ']' : '}'))
			return close_container(r, t);
		if (*p == '/')
			break;
		return json_fail(r, p, r->frames[r->depth].is_array ?
		    "expected ',' or ']'" : "expected ',' or '}'", err, errlen);
	case ST_OBJ_FIRST:
		if (*p == '"')
			return scan_key(r, t, err, errlen);
		if (*p == '}')
			return close_container(r, t);
		if (*p == '/')
			break;
		return json_fail(r, p, "expected a key or '}'", err, errlen);
	case ST_OBJ_NEXT:
		if (*p == '"')
			return scan_key(r, t, err, errlen);
		if (*p == '}')
			return json_fail(r, p, "trailing comma", err, errlen);
		if (*p == '/')
			break;
		return json_fail(r, p, "expected a key", err, errlen);
	case ST_ARR_FIRST:
		if (*p == ']')
			return close_container(r, t);
		return scan_value(r, t, err, errlen);
	case ST_ARR_NEXT:
		if (*p == ']')
			return json_fail(r, p, "trailing comma", err, errlen);
		return scan_value(r, t, err, errlen);
	case ST_VALUE:
		return scan_value(r, t, err, errlen);
	case ST_ROOT:
		if (*p == '{')
			return scan_value(r, t, err, errlen);
		if (r->end - p >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
			return json_fail(r, p, "byte order mark", err, errlen);
		if (*p == '/')
			break;
		return json_fail(r, p, "the root is not an object", err,
		    errlen);
	case ST_DONE:
	case ST_EOF:
		return json_fail(r, p, "trailing data after the root object",
		    err, errlen);
	case ST_ERROR:
		goto error;
	}
	return json_fail(r, p, "comments are not allowed", err, errlen);
error:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "invalid JSON at byte %zu",
		    json_reader_offset(r));
	return -1;
}

/* ---- skipping values of a document known to be valid ---- */

/* 1: a byte that ends a number or literal (or cannot start one). */
static const unsigned char scalar_end[256] = {
	[' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1, [','] = 1, [':'] = 1,
	['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1,
};

/* What skim() stops at outside strings: 1 opens, 2 closes, 3 a quote. */
static const unsigned char skim_class[256] = {
	['{'] = 1, ['['] = 1, ['}'] = 2, [']'] = 2, ['"'] = 3,
};

/*
 * The byte after the closing quote of the string whose opening quote is at
 * p, or NULL when the string does not end before end. A backslash hides
 * the byte after it; nothing else is looked at.
 */
static inline const unsigned char *
skim_string(const unsigned char *p, const unsigned char *end)
{
	p++;
	for (;;) {
#ifdef __SSE2__
		while (end - p >= 16) {
			__m128i	v = _mm_loadu_si128((const __m128i *)
				    (const void *)p);
			unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
			    _mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
			    _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));

			if (m != 0) {
				p += __builtin_ctz(m);
				break;
			}
			p += 16;
		}
#else
		while (end - p >= 8 && swar_special(p) == 0)
			p += 8;
#endif
		while (p < end && *p != '"' && *p != '\\')
			p++;
		if (p == end)
			return NULL;
		if (*p == '"')
			return p + 1;
		if (end - p < 2)
			return NULL;
		p += 2;
	}
}

/*
 * From p inside level open containers: the byte after the bracket that
 * closes the outermost of them, or NULL when the input ends first.
 * Brackets are balanced by count, not by kind.
 */
static const unsigned char *
skim(const unsigned char *p, const unsigned char *end, size_t level)
{
	for (;;) {
#ifdef __SSE2__
		while (end - p >= 16) {
			/* '"', and with bit 5 set '{' for '{' '[', '}' for
			 * '}' ']' */
			__m128i	v = _mm_loadu_si128((const __m128i *)
				    (const void *)p);
			__m128i	l = _mm_or_si128(v, _mm_set1_epi8(0x20));
			unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
			    _mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
			    _mm_or_si128(_mm_cmpeq_epi8(l, _mm_set1_epi8('{')),
			    _mm_cmpeq_epi8(l, _mm_set1_epi8('}')))));

			if (m != 0) {
				p += __builtin_ctz(m);
				break;
			}
			p += 16;
		}
#endif
		while (p < end && skim_class[*p] == 0)
			p++;
		if (p == end)
			return NULL;
		switch (skim_class[*p]) {
		case 1:
			level++;
			p++;
			break;
		case 2:
			p++;
			if (--level == 0)
				return p;
			break;
		default:
			if ((p = skim_string(p, end)) == NULL)
				return NULL;
			break;
		}
	}
}

int
json_skip_value(struct json_reader *r, char *err, size_t errlen)
{
	const unsigned char	*p = r->p, *end = r->end, *q;

	if (r->state != ST_VALUE && r->state != ST_ARR_FIRST &&
	    r->state != ST_ARR_NEXT)
		return json_fail(r, p, "no value to skip here", err, errlen);
	while (p < end && is_ws[*p])
		p++;
	if (p == end)
		return json_fail(r, p, "unexpected end of document", err,
		    errlen);
	switch (*p) {
	case '"':
		q = skim_string(p, end);
		break;
	case '{':
	case '[':
		q = skim(p + 1, end, 1);
		break;
	default:
		if (scalar_end[*p])
			return json_fail(r, p, "expected a value", err, errlen);
		for (q = p + 1; q < end && !scalar_end[*q]; q++)
			;
		break;
	}
	if (q == NULL)
		return json_fail(r, p, "unterminated value", err, errlen);
	r->p = q;
	r->state = ST_AFTER;
	return 0;
}

int
json_skip_container(struct json_reader *r, char *err, size_t errlen)
{
	const unsigned char	*q;
	struct json_token	 t;

	if (r->depth == 0 || r->state == ST_ERROR)
		return json_fail(r, r->p, "no open container to skip", err,
		    errlen);
	if ((q = skim(r->p, r->end, 1)) == NULL)
		return json_fail(r, r->p, "unterminated container", err,
		    errlen);
	/* q - 1 is the closing bracket: close as json_next would */
	r->p = q - 1;
	return close_container(r, &t);
}

int
json_validate(const char *buf, size_t len, int max_depth, char *err,
    size_t errlen)
{
	struct json_reader	*r;
	struct json_token	 t;
	int			 rc = -1;

	if ((r = json_reader_new(max_depth)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	json_reader_reset(r, buf, len);
	do {
		if (json_next(r, &t, err, errlen) == -1)
			goto done;
	} while (t.type != JSON_EOF);
	rc = 0;
done:
	json_reader_free(r);
	return rc;
}

/* Nonzero: the byte needs escaping in a JSON string literal. */
static const unsigned char needs_esc[256] = {
	[0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1,
};

int
json_write_string(struct buf *out, const char *s, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*p = (const unsigned char *)s, *end = p + len;
	const unsigned char	*q;
	char			 e[6];
	size_t			 n;

	if (buf_reserve(out, len + 2) == -1 || buf_append_char(out, '"') == -1)
		return -1;
	while (p < end) {
		q = p;
		while (p < end && !needs_esc[*p])
			p++;
		if (p > q && buf_append(out, q, (size_t)(p - q)) == -1)
			return -1;
		if (p == end)
			break;
		e[0] = '\\';
		n = 2;
		switch (*p) {
		case '"':	e[1] = '"'; break;
		case '\\':	e[1] = '\\'; break;
		case '\b':	e[1] = 'b'; break;
		case '\f':	e[1] = 'f'; break;
		case '\n':	e[1] = 'n'; break;
		case '\r':	e[1] = 'r'; break;
		case '\t':	e[1] = 't'; break;
		default:
			e[1] = 'u';
			e[2] = '0';
			e[3] = '0';
			e[4] = hex[*p >> 4];
			e[5] = hex[*p & 0xf];
			n = 6;
			break;
		}
		if (buf_append(out, e, n) == -1)
			return -1;
		p++;
	}
	return buf_append_char(out, '"');
}
