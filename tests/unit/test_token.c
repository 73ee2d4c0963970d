/* test_token.c -- tok1 tokens, email tokens, FF1 known answers, hash, mask */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "keys.h"
#include "token.h"

/* ---- helpers ---- */

/* A pair with random data keys, derived the way keys.c derives them. */
static struct keys_pair *
make_pair(const char *tenant, const char *integration, size_t nversions,
    uint32_t active)
{
	unsigned char	 dk[KEYS_DATA_KEY_LEN];
	struct keys_pair *p = calloc(1, sizeof(*p));
	size_t		 i;

	assert_non_null(p);
	p->tenant = strdup(tenant);
	p->integration = strdup(integration);
	p->versions = calloc(nversions, sizeof(*p->versions));
	p->nversions = nversions;
	p->active = active;
	for (i = 0; i < nversions; i++) {
		assert_int_equal(RAND_bytes(dk, sizeof(dk)), 1);
		p->versions[i].version = (uint32_t)i + 1;
		assert_int_equal(keys_derive(dk, "tok1-siv", "0123", (uint32_t)i + 1,
		    p->versions[i].siv, KEYS_SIV_KEY_LEN), 0);
		if (i == 0) {
			assert_int_equal(keys_derive(dk, "email-siv", "0123", 1,
			    p->email_siv, sizeof(p->email_siv)), 0);
			assert_int_equal(keys_derive(dk, "ff1", "0123", 1, p->ff1,
			    sizeof(p->ff1)), 0);
			assert_int_equal(keys_derive(dk, "hash", "0123", 1, p->hash,
			    sizeof(p->hash)), 0);
		}
	}
	return p;
}

static void
free_pair(struct keys_pair *p)
{
	free(p->tenant);
	free(p->integration);
	free(p->versions);
	free(p);
}

static struct json_token
jtok(enum json_type type, const char *raw)
{
	struct json_token t;

	memset(&t, 0, sizeof(t));
	t.type = type;
	t.raw = raw;
	t.raw_len = strlen(raw);
	if (type == JSON_STRING) {	/* test strings have no escapes */
		t.str = raw + 1;
		t.str_len = t.raw_len - 2;
	}
	return t;
}

/* A string token whose value is s. */
static struct json_token
jstr(const char *s, struct buf *holder)
{
	struct json_token t;

	buf_reset(holder);
	assert_int_equal(json_write_string(holder, s, strlen(s)), 0);
	memset(&t, 0, sizeof(t));
	t.type = JSON_STRING;
	t.raw = holder->data;
	t.raw_len = holder->len;
	t.str = s;
	t.str_len = strlen(s);
	return t;
}

static void
ctx_init(struct token_ctx *c, const struct keys_pair *p)
{
	memset(c, 0, sizeof(*c));
	c->pair = p;
	c->tenant = p->tenant;
	c->integration = p->integration;
	c->token_domain = "tokens.example.com";
}

/* Detokenise the JSON string value s (unquoted) and return what came out. */
static int
detok(struct token_ctx *c, enum policy_action a, const char *s, struct buf *out)
{
	struct buf	 holder = { 0 };
	struct json_token t = jstr(s, &holder);
	int		 rc;

	buf_reset(out);
	rc = token_xform_response(c, a, &t, out);
	buf_free(&holder);
	return rc;
}

/* Strip the quotes of a JSON string holding only safe characters. */
static char *
unquote(const struct buf *b)
{
	assert_true(b->len >= 2 && b->data[0] == '"' && b->data[b->len - 1] == '"');
	return strndup(b->data + 1, b->len - 2);
}

/* ---- FF1 known answers ---- */

struct ff1_vec {
	unsigned	 radix;
	const char	*key, *tweak, *pt, *ct;
};

static const struct ff1_vec ff1_nist[] = {
	{ 10, "2B7E151628AED2A6ABF7158809CF4F3C", "-", "0123456789", "2433477484" },
	{ 10, "2B7E151628AED2A6ABF7158809CF4F3C", "39383736353433323130",
	    "0123456789", "6124200773" },
	{ 36, "2B7E151628AED2A6ABF7158809CF4F3C", "3737373770717273373737",
	    "0123456789abcdefghi", "a9tv40mll9kdu509eum" },
	{ 10, "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F", "-",
	    "0123456789", "2830668132" },
	{ 10, "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F",
	    "39383736353433323130", "0123456789", "2496655549" },
	{ 36, "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F",
	    "3737373770717273373737", "0123456789abcdefghi", "xbj3kv35jrawxv32ysr" },
	{ 10, "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94",
	    "-", "0123456789", "6657667009" },
	{ 10, "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94",
	    "39383736353433323130", "0123456789", "1001623463" },
	{ 36, "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94",
	    "3737373770717273373737", "0123456789abcdefghi", "xs8a0azh2avyalyzuwd" },
};

static void
ff1_check(const struct ff1_vec *v)
{
	unsigned char	*key, *tw = NULL;
	long		 kl, tl = 0;
	char		 out[64] = { 0 }, back[64] = { 0 };
	size_t		 n = strlen(v->pt);

	key = OPENSSL_hexstr2buf(v->key, &kl);
	assert_non_null(key);
	if (strcmp(v->tweak, "-") != 0)
		assert_non_null(tw = OPENSSL_hexstr2buf(v->tweak, &tl));
	assert_int_equal(token_ff1(key, (size_t)kl, v->radix, tw, (size_t)tl,
	    v->pt, n, out, 1), 0);
	assert_string_equal(out, v->ct);
	assert_int_equal(token_ff1(key, (size_t)kl, v->radix, tw, (size_t)tl,
	    out, n, back, 0), 0);
	assert_string_equal(back, v->pt);
	OPENSSL_free(key);
	OPENSSL_free(tw);
}

static void
test_ff1_nist_embedded(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ff1_nist) / sizeof(ff1_nist[0]); i++)
		ff1_check(&ff1_nist[i]);
}

/* The shared vector file, when the checkout has it beside the clone. */
static void
test_ff1_nist_file(void **state)
{
	FILE		*f = fopen("../../../shared/vectors/ff1-nist-sp800-38g.txt", "r");
	char		 line[512], k[100], t[100], pt[100], ct[100];
	struct ff1_vec	 v;
	int		 n = 0;

	(void)state;
	if (f == NULL) {
		skip();
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (line[0] == '#' || sscanf(line, "%u %99s %99s %99s %99s",
		    &v.radix, k, t, pt, ct) != 5)
			continue;
		v.key = k, v.tweak = t, v.pt = pt, v.ct = ct;
		ff1_check(&v);
		n++;
	}
	fclose(f);
	assert_int_equal(n, 9);
}

static void
test_ff1_round_trips(void **state)
{
	static const size_t keylens[] = { 16, 24, 32 };
	unsigned char	 key[32], tw[11] = "tweak-bytes";
	char		 in[80], out[80], back[80];
	size_t		 n, i, k, same;
	unsigned	 radix;

	(void)state;
	for (k = 0; k < 3; k++) {
		assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
		for (n = 6; n <= TOKEN_FF1_MAX_DIGITS; n++) {
			for (i = 0; i < n; i++)
				in[i] = (char)('0' + rand() % 10);
			assert_int_equal(token_ff1(key, keylens[k], 10, tw,
			    sizeof(tw), in, n, out, 1), 0);
			for (i = 0; i < n; i++)
				assert_true(out[i] >= '0' && out[i] <= '9');
			assert_int_equal(token_ff1(key, keylens[k], 10, tw,
			    sizeof(tw), out, n, back, 0), 0);
			assert_memory_equal(back, in, n);
			if (n >= 10)
				assert_memory_not_equal(out, in, n);
		}
	}
	/* Every radix at a length that the 2^120 bound admits. */
	for (radix = 2; radix <= 36; radix++) {
		for (n = 20; n <= 40; n += 10) {
			for (i = 0; i < n; i++)
				in[i] = "0123456789abcdefghijklmnopqrstuvwxyz"
				    [rand() % radix];
			if (token_ff1(key, 32, radix, NULL, 0, in, n, out, 1) != 0) {
				/* only refused when radix^(n/2) passes 2^120 */
				assert_true(radix > 16);
				continue;
			}
			assert_int_equal(token_ff1(key, 32, radix, NULL, 0, out,
			    n, back, 0), 0);
			assert_memory_equal(back, in, n);
			for (i = 0, same = 0; i < n; i++)
				same += out[i] == in[i];
			assert_true(same < n);
		}
	}
	/* Refused: too short for the radix, bad radix, bad symbols, too long. */
	assert_int_equal(token_ff1(key, 32, 10, NULL, 0, "12345", 5, out, 1), -1);
	assert_int_equal(token_ff1(key, 32, 2, NULL, 0, "1010101010", 10, out, 1),
	    -1);
	assert_int_equal(token_ff1(key, 32, 37, NULL, 0, "123456", 6, out, 1), -1);
	assert_int_equal(token_ff1(key, 32, 10, NULL, 0, "12345a", 6, out, 1), -1);
	assert_int_equal(token_ff1(key, 20, 10, NULL, 0, "123456", 6, out, 1), -1);
	memset(in, '1', 74);
	assert_int_equal(token_ff1(key, 32, 10, NULL, 0, in, 74, out, 1), -1);
}

/* ---- encodings (RFC 4648 section 10 vectors) ---- */

static void
test_encodings(void **state)
{
	static const char *plain[] = { "", "f", "fo", "foo", "foob", "fooba",
	    "foobar" };
	static const char *b32[] = { "", "my", "mzxq", "mzxw6", "mzxw6yq",
	    "mzxw6ytb", "mzxw6ytboi" };
	static const char *b64[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg",
	    "Zm9vYmE", "Zm9vYmFy" };
	unsigned char	 dec[16];
	struct buf	 b = { 0 };
	size_t		 i;

	(void)state;
	for (i = 0; i < 7; i++) {
		buf_reset(&b);
		assert_int_equal(token_b32_encode(&b, (const unsigned char *)plain[i],
		    strlen(plain[i])), 0);
		assert_string_equal(b.data != NULL ? b.data : "", b32[i]);
		assert_int_equal(token_b32_decode(b32[i], strlen(b32[i]), dec),
		    (long)strlen(plain[i]));
		assert_memory_equal(dec, plain[i], strlen(plain[i]));
		buf_reset(&b);
		assert_int_equal(token_b64url_encode(&b,
		    (const unsigned char *)plain[i], strlen(plain[i])), 0);
		assert_string_equal(b.data != NULL ? b.data : "", b64[i]);
		assert_int_equal(token_b64url_decode(b64[i], strlen(b64[i]), dec),
		    (long)strlen(plain[i]));
	}
	/* Case-insensitive base32; non-canonical forms refused. */
	assert_int_equal(token_b32_decode("MZXW6YTBOI", 10, dec), 6);
	assert_int_equal(token_b32_decode("mz", 2, dec), -1);	/* trailing bits */
	assert_int_equal(token_b32_decode("mzx", 3, dec), -1);	/* bad length */
	assert_int_equal(token_b32_decode("my======", 8, dec), -1);
	assert_int_equal(token_b64url_decode("Zh", 2, dec), -1);
	assert_int_equal(token_b64url_decode("Zg==", 4, dec), -1);
	assert_int_equal(token_b64url_decode("Z", 1, dec), -1);
	assert_int_equal(token_b64url_decode("Zm+v", 4, dec), -1);
	buf_free(&b);
}

/* ---- tok1 ---- */

static const char *const scalars[][2] = {
	{ "s", "\"alice@example.com\"" }, { "s", "\"\"" }, { "s", "\"42\"" },
	{ "s", "\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\"" },
	{ "s", "\"a string that is quite a lot longer than sixteen bytes, "
	    "so several blocks\"" },
	{ "n", "42" }, { "n", "-0.5e+10" }, { "n", "0" }, { "n", "12345678901234567890123" },
	{ "t", "true" }, { "f", "false" }, { "z", "null" },
};

static enum json_type
scalar_type(const char *k)
{
	switch (k[0]) {
	case 's': return JSON_STRING;
	case 'n': return JSON_NUMBER;
	case 't': return JSON_TRUE;
	case 'f': return JSON_FALSE;
	default: return JSON_NULL;
	}
}

static void
test_tok_round_trip_types(void **state)
{
	struct keys_pair *p = make_pair("acme", "crm", 1, 1);
	struct token_ctx c;
	struct buf	 out = { 0 }, back = { 0 }, again = { 0 };
	char		*tok, *tok42s = NULL, *tok42n = NULL;
	size_t		 i;

	(void)state;
	ctx_init(&c, p);
	for (i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
		struct json_token t = jtok(scalar_type(scalars[i][0]), scalars[i][1]);

		buf_reset(&out);
		assert_int_equal(token_xform_request(&c, POLICY_TOKENIZE, &t, &out), 0);
		tok = unquote(&out);
		assert_true(strncmp(tok, "tok1.1.", 7) == 0);
		/* deterministic */
		buf_reset(&again);
		assert_int_equal(token_xform_request(&c, POLICY_TOKENIZE, &t, &again), 0);
		assert_string_equal(out.data, again.data);
		assert_int_equal(detok(&c, POLICY_TOKENIZE, tok, &back), 0);
		assert_string_equal(back.data, scalars[i][1]);
		if (strcmp(scalars[i][1], "\"42\"") == 0)
			tok42s = strdup(tok);
		if (strcmp(scalars[i][1], "42") == 0)
			tok42n = strdup(tok);
		free(tok);
	}
	assert_int_equal(c.tokens_restored, sizeof(scalars) / sizeof(scalars[0]));
	assert_int_equal(c.tokens_foreign, 0);
	/* The number 42 and the string "42" are different tokens. */
	assert_non_null(tok42s);
	assert_non_null(tok42n);
	assert_string_not_equal(tok42s, tok42n);
	free(tok42s);
	free(tok42n);
	buf_free(&out);
	buf_free(&back);
	buf_free(&again);
	free_pair(p);
}

static void
test_tok_format_and_canonical(void **state)
{
	struct keys_pair *p = make_pair("acme", "crm", 2, 1);
	struct token_ctx c;
	struct buf	 out = { 0 }, back = { 0 };
	struct json_token t = jtok(JSON_STRING, "\"hello\"");
	char		*tok, bad[256];
	size_t		 i, len;

	(void)state;
	ctx_init(&c, p);
	assert_int_equal(token_xform_request(&c, POLICY_TOKENIZE, &t, &out), 0);
	tok = unquote(&out);
	/* 1 type byte + 5 + padding = 16; + 16 tag = 32 bytes = 43 chars */
	len = strlen(tok);
	assert_int_equal(len, 7 + 43);
	for (i = 7; i < len; i++)
		assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
		    "rstuvwxyz0123456789-_", tok[i]));

	/* Other encodings of the same bytes are not tokens. */
	snprintf(bad, sizeof(bad), "%s=", tok);			/* padded */
	assert_int_equal(detok(&c, POLICY_TOKENIZE, bad, &back), 0);
	assert_int_equal(back.len, strlen(bad) + 2);	/* copied as it was */
	assert_memory_equal(back.data + 1, bad, strlen(bad));
	snprintf(bad, sizeof(bad), "tok1.01.%s", tok + 7);	/* leading zero */
	assert_int_equal(detok(&c, POLICY_TOKENIZE, bad, &back), 0);
	snprintf(bad, sizeof(bad), "tok1.2.%s", tok + 7);	/* wrong version */
	assert_int_equal(detok(&c, POLICY_TOKENIZE, bad, &back), 0);
	snprintf(bad, sizeof(bad), "tok1.3.%s", tok + 7);	/* unknown version */
	assert_int_equal(detok(&c, POLICY_TOKENIZE, bad, &back), 0);
	snprintf(bad, sizeof(bad), "TOK1.1.%s", tok + 7);
	assert_int_equal(detok(&c, POLICY_TOKENIZE, bad, &back), 0);
	/* last char: 43 chars carry 258 bits, the low 2 must be zero */
	snprintf(bad, sizeof(bad), "%s", tok);
	bad[len - 1] = bad[len - 1] == 'A' ? 'B' : (char)(bad[len - 1] ^ 1);
	assert_int_equal(detok(&c, POLICY_TOKENIZE, bad, &back), 0);
	assert_int_equal(c.tokens_foreign, 5);	/* "TOK1." is not a token */
	assert_int_equal(c.tokens_restored, 0);
	/* A non-token string is copied and not counted. */
	assert_int_equal(detok(&c, POLICY_TOKENIZE, "just text", &back), 0);
	assert_string_equal(back.data, "\"just text\"");
	assert_int_equal(c.tokens_foreign, 5);
	/* The real one decodes. */
	assert_int_equal(detok(&c, POLICY_TOKENIZE, tok, &back), 0);
	assert_string_equal(back.data, "\"hello\"");
	free(tok);
	buf_free(&out);
	buf_free(&back);
	free_pair(p);
}

/* Every single-character change of a token is rejected. */
static void
test_tok_single_char_changes(void **state)
{
	static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
	    "rstuvwxyz0123456789-_.=+/ 0";
	struct keys_pair *p = make_pair("acme", "crm", 3, 1);
	struct token_ctx c;
	struct json_token t = jtok(JSON_STRING, "\"jane.doe@example.org\"");
	struct buf	 out = { 0 }, back = { 0 };
	char		*tok, *mod;
	size_t		 i, j, len, tried = 0;

	(void)state;
	ctx_init(&c, p);
	assert_int_equal(token_xform_request(&c, POLICY_TOKENIZE, &t, &out), 0);
	tok = unquote(&out);
	len = strlen(tok);
	mod = strdup(tok);
	for (i = 0; i < len; i++) {
		for (j = 0; j < sizeof(alpha) - 1; j++) {
			if (alpha[j] == tok[i])
				continue;
			mod[i] = alpha[j];
			assert_int_equal(detok(&c, POLICY_TOKENIZE, mod, &back), 0);
			/* left as it was */
			assert_int_equal(back.len, len + 2);
			assert_memory_equal(back.data + 1, mod, len);
			tried++;
		}
		mod[i] = tok[i];
	}
	assert_int_equal(c.tokens_restored, 0);
	assert_true(tried > 60 * len);
	/* Truncations and an extension too. */
	for (i = 0; i < len; i++) {
		mod[i] = '\0';
		assert_int_equal(detok(&c, POLICY_TOKENIZE, mod, &back), 0);
		mod[i] = tok[i];
	}
	assert_int_equal(c.tokens_restored, 0);
	free(tok);
	free(mod);
	buf_free(&out);
	buf_free(&back);
	free_pair(p);
}

static void
test_pair_separation(void **state)
{
	struct keys_pair *pairs[5];
	struct token_ctx c;
	struct buf	 out = { 0 }, back = { 0 };
	char		*tok;
	size_t		 i, j;

	(void)state;
	pairs[0] = make_pair("acme", "crm", 1, 1);
	pairs[1] = make_pair("acme", "calendar", 1, 1);
	pairs[2] = make_pair("globex", "crm", 1, 1);
	/* Same (public) data key, names differ: the AD alone separates. */
	pairs[3] = keys_pair_demo("acme", "crm");
	pairs[4] = keys_pair_demo("acme", "crm2");
	for (i = 0; i < 5; i++) {
		struct json_token t = jtok(JSON_STRING, "\"bob@example.com\"");

		ctx_init(&c, pairs[i]);
		buf_reset(&out);
		assert_int_equal(token_xform_request(&c, POLICY_TOKENIZE, &t, &out), 0);
		tok = unquote(&out);
		for (j = 0; j < 5; j++) {
			ctx_init(&c, pairs[j]);
			assert_int_equal(detok(&c, POLICY_TOKENIZE, tok, &back), 0);
			if (i == j)
				assert_string_equal(back.data, "\"bob@example.com\"");
			else {
				assert_int_equal(c.tokens_foreign, 1);
				assert_int_equal(c.tokens_restored, 0);
			}
		}
		free(tok);
		/* Email tokens too. */
		ctx_init(&c, pairs[i]);
		buf_reset(&out);
		assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE, &t,
		    &out), 0);
		tok = unquote(&out);
		for (j = 0; j < 5; j++) {
			ctx_init(&c, pairs[j]);
			assert_int_equal(detok(&c, POLICY_FORMAT_PRESERVE, tok, &back), 0);
			assert_int_equal(c.tokens_restored, i == j);
		}
		free(tok);
	}
	for (i = 0; i < 3; i++)
		free_pair(pairs[i]);
	keys_pair_free(pairs[3]);
	keys_pair_free(pairs[4]);
	buf_free(&out);
	buf_free(&back);
}

/* Rotation: versions decode with their own key; minting uses the active one. */
static void
test_tok_versions(void **state)
{
	struct keys_pair *p = make_pair("acme", "crm", 2, 1);
	struct token_ctx c;
	struct json_token t = jtok(JSON_STRING, "\"x@y.z\"");
	struct buf	 out = { 0 }, back = { 0 };
	char		*v1, *v2;

	(void)state;
	ctx_init(&c, p);
	assert_int_equal(token_xform_request(&c, POLICY_TOKENIZE, &t, &out), 0);
	v1 = unquote(&out);
	p->active = 2;
	buf_reset(&out);
	assert_int_equal(token_xform_request(&c, POLICY_TOKENIZE, &t, &out), 0);
	v2 = unquote(&out);
	assert_true(strncmp(v1, "tok1.1.", 7) == 0);
	assert_true(strncmp(v2, "tok1.2.", 7) == 0);
	assert_int_equal(detok(&c, POLICY_TOKENIZE, v1, &back), 0);
	assert_string_equal(back.data, "\"x@y.z\"");
	assert_int_equal(detok(&c, POLICY_TOKENIZE, v2, &back), 0);
	assert_string_equal(back.data, "\"x@y.z\"");
	/* A version-1 body under the version-2 label is not a token. */
	v1[5] = '2';
	assert_int_equal(detok(&c, POLICY_TOKENIZE, v1, &back), 0);
	assert_int_equal(c.tokens_foreign, 1);
	free(v1);
	free(v2);
	buf_free(&out);
	buf_free(&back);
	free_pair(p);
}

/* ---- HKDF ---- */

/* RFC 5869 by hand with HMAC, as an independent check of the info layout. */
static void
hkdf_ref(const unsigned char *ikm, const unsigned char *info, size_t ilen,
    unsigned char *out, size_t outlen)
{
	unsigned char	 salt[32] = { 0 }, prk[32], t[32], msg[600];
	size_t		 done = 0, tl = 0, n;
	unsigned char	 ctr = 1;

	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, salt, 32,
	    ikm, 32, prk, sizeof(prk), &n));
	while (done < outlen) {
		memcpy(msg, t, tl);
		memcpy(msg + tl, info, ilen);
		msg[tl + ilen] = ctr++;
		assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, prk,
		    32, msg, tl + ilen + 1, t, sizeof(t), &n));
		tl = 32;
		memcpy(out + done, t, outlen - done < 32 ? outlen - done : 32);
		done += 32;
	}
}

static void
test_hkdf_separation(void **state)
{
	unsigned char	 dk[32], a[64], b[64], ref[64];
	static const unsigned char info[] = "\x00\x0asubgate/v1\x00\x03" "ff1"
	    "\x00\x04" "abcd\x00\x01" "7";

	(void)state;
	memset(dk, 7, sizeof(dk));
	assert_int_equal(keys_derive(dk, "ff1", "abcd", 7, a, 64), 0);
	hkdf_ref(dk, info, sizeof(info) - 1, ref, 64);
	assert_memory_equal(a, ref, 64);
	assert_int_equal(keys_derive(dk, "ff1", "abcd", 7, b, 64), 0);
	assert_memory_equal(a, b, 64);
	assert_int_equal(keys_derive(dk, "hash", "abcd", 7, b, 64), 0);
	assert_memory_not_equal(a, b, 32);
	assert_int_equal(keys_derive(dk, "ff1", "abcd", 8, b, 64), 0);
	assert_memory_not_equal(a, b, 32);
	assert_int_equal(keys_derive(dk, "ff1", "abce", 7, b, 64), 0);
	assert_memory_not_equal(a, b, 32);
	/* Length prefixes: moving a byte between fields changes the key. */
	assert_int_equal(keys_derive(dk, "ff1a", "bcd", 7, b, 64), 0);
	assert_memory_not_equal(a, b, 32);
	dk[0] ^= 1;
	assert_int_equal(keys_derive(dk, "ff1", "abcd", 7, b, 64), 0);
	assert_memory_not_equal(a, b, 32);
}

/* ---- email tokens ---- */

static void
test_email_tokens(void **state)
{
	struct keys_pair *p = make_pair("acme", "crm", 1, 1);
	struct token_ctx c;
	struct buf	 holder = { 0 }, out = { 0 }, back = { 0 }, want = { 0 };
	struct json_token t;
	char		 email[300], *tok, *at, *lab, *dot, *up;
	size_t		 n, i, nlabels_seen = 0;

	(void)state;
	ctx_init(&c, p);
	for (n = 1; n <= 200; n += 7) {
		memset(email, 'a', n);
		memcpy(email + n, "@Example.COM", 13);
		t = jstr(email, &holder);
		buf_reset(&out);
		assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE,
		    &t, &out), 0);
		tok = unquote(&out);
		at = strchr(tok, '@');
		assert_non_null(at);
		assert_true(at - tok <= 64 && at - tok > 0);
		for (i = 0; tok + i < at; i++)
			assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz234567",
			    tok[i]));
		/* labels of at most 63 in front of the token domain */
		assert_true(strlen(at + 1) >= strlen(c.token_domain));
		assert_string_equal(at + 1 + strlen(at + 1) -
		    strlen(c.token_domain), c.token_domain);
		for (lab = at + 1; (dot = strchr(lab, '.')) != NULL &&
		    strcmp(lab, c.token_domain) != 0; lab = dot + 1) {
			assert_true(dot - lab <= 63 && dot - lab > 0);
			nlabels_seen++;
		}
		/* round trip, and upper-case decodes too */
		assert_int_equal(detok(&c, POLICY_FORMAT_PRESERVE, tok, &back), 0);
		buf_reset(&want);
		json_write_string(&want, email, strlen(email));
		assert_string_equal(back.data, want.data);
		up = strdup(tok);
		for (i = 0; up[i] != '\0'; i++)
			if (up[i] >= 'a' && up[i] <= 'z')
				up[i] = (char)(up[i] - 32);
		assert_int_equal(detok(&c, POLICY_FORMAT_PRESERVE, up, &back), 0);
		assert_string_equal(back.data, want.data);
		/* forged: one character changed */
		up[3] = up[3] == 'A' ? 'B' : 'A';
		assert_int_equal(detok(&c, POLICY_FORMAT_PRESERVE, up, &back), 0);
		assert_true(back.len == strlen(up) + 2);
		free(up);
		free(tok);
	}
	assert_true(nlabels_seen > 0);
	assert_int_equal(c.tokens_foreign, 29);
	/* Deterministic. */
	t = jstr("z@example.com", &holder);
	buf_reset(&out);
	assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE, &t, &out), 0);
	buf_reset(&back);
	assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE, &t, &back), 0);
	assert_string_equal(out.data, back.data);
	/* Another domain, a relabelled token: not decoded. */
	tok = unquote(&out);
	at = strchr(tok, '@');
	snprintf(email, sizeof(email), "%.*s@tokens.example.net",
	    (int)(at - tok), tok);
	assert_int_equal(detok(&c, POLICY_FORMAT_PRESERVE, email, &back), 0);
	assert_int_equal(back.len, strlen(email) + 2);	/* untouched */
	assert_memory_equal(back.data + 1, email, strlen(email));
	free(tok);
	/* No token domain: the email is dropped. */
	c.token_domain = NULL;
	assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE, &t, &out), 1);
	buf_free(&holder);
	buf_free(&out);
	buf_free(&back);
	buf_free(&want);
	free_pair(p);
}

/* A long label split differently is not canonical. */
static void
test_email_canonical_layout(void **state)
{
	struct keys_pair *p = make_pair("acme", "crm", 1, 1);
	struct token_ctx c;
	struct buf	 holder = { 0 }, out = { 0 }, back = { 0 };
	struct json_token t;
	char		 email[200], *tok, moved[400], *at;

	(void)state;
	ctx_init(&c, p);
	memset(email, 'q', 40);
	strcpy(email + 40, "@example.com");
	t = jstr(email, &holder);
	assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE, &t, &out), 0);
	tok = unquote(&out);
	at = strchr(tok, '@');
	assert_int_equal(at - tok, 64);
	/* move the last local character into the first label */
	snprintf(moved, sizeof(moved), "%.63s@%c%s", tok, tok[63], at + 1);
	assert_int_equal(detok(&c, POLICY_FORMAT_PRESERVE, moved, &back), 0);
	assert_int_equal(back.len, strlen(moved) + 2);
	assert_memory_equal(back.data + 1, moved, strlen(moved));
	assert_int_equal(c.tokens_restored, 0);
	assert_int_equal(detok(&c, POLICY_FORMAT_PRESERVE, tok, &back), 0);
	assert_int_equal(c.tokens_restored, 1);
	free(tok);
	buf_free(&holder);
	buf_free(&out);
	buf_free(&back);
	free_pair(p);
}

/* ---- FF1 values ---- */

static void
test_format_preserve_digits(void **state)
{
	static const char *phones[] = { "+1 (555) 123-4567", "555-0100-22",
	    "00 44 20 7946 0958", "123456", "4111 1111 1111 1111",
	    "call 12 34 56 78 90 12 34 56 78 90 12 34 56 78 90 12 34 56 78 90" };
	struct keys_pair *p = make_pair("acme", "crm", 1, 1);
	struct keys_pair *q = make_pair("acme", "calendar", 1, 1);
	struct token_ctx c, cq;
	struct buf	 holder = { 0 }, out = { 0 }, back = { 0 }, out2 = { 0 };
	struct json_token t;
	char		*enc;
	size_t		 i, j, ndiff;

	(void)state;
	ctx_init(&c, p);
	ctx_init(&cq, q);
	for (i = 0; i < sizeof(phones) / sizeof(phones[0]); i++) {
		t = jstr(phones[i], &holder);
		buf_reset(&out);
		assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE,
		    &t, &out), 0);
		enc = unquote(&out);
		assert_int_equal(strlen(enc), strlen(phones[i]));
		for (j = 0, ndiff = 0; phones[i][j] != '\0'; j++) {
			int d = phones[i][j] >= '0' && phones[i][j] <= '9';

			if (!d)
				assert_int_equal(enc[j], phones[i][j]);
			else
				assert_true(enc[j] >= '0' && enc[j] <= '9');
			ndiff += enc[j] != phones[i][j];
		}
		assert_true(ndiff > 0);
		assert_int_equal(detok(&c, POLICY_FORMAT_PRESERVE, enc, &back), 0);
		buf_reset(&out2);
		json_write_string(&out2, phones[i], strlen(phones[i]));
		assert_string_equal(back.data, out2.data);
		/* another integration enciphers differently */
		buf_reset(&out2);
		assert_int_equal(token_xform_request(&cq, POLICY_FORMAT_PRESERVE,
		    &t, &out2), 0);
		assert_string_not_equal(out.data, out2.data);
		free(enc);
	}
	/* Fewer than 6 digits, booleans, null: dropped, nothing written. */
	for (i = 0; i < 4; i++) {
		static const char *few[] = { "12345", "no digits", "1-2-3-4-5", "" };

		t = jstr(few[i], &holder);
		buf_reset(&out);
		assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE,
		    &t, &out), 1);
		assert_int_equal(out.len, 0);
	}
	t = jtok(JSON_TRUE, "true");
	assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE, &t, &out), 1);
	t = jtok(JSON_NULL, "null");
	assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE, &t, &out), 1);
	/* A number gives a string of as many digits. */
	t = jtok(JSON_NUMBER, "5551234567");
	buf_reset(&out);
	assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE, &t, &out), 0);
	assert_int_equal(out.len, 12);
	assert_int_equal(out.data[0], '"');
	buf_free(&holder);
	buf_free(&out);
	buf_free(&out2);
	buf_free(&back);
	free_pair(p);
	free_pair(q);
}

/* ---- mask and hash ---- */

static void
test_mask_table(void **state)
{
	static const struct {
		enum json_type	 type;
		const char	*raw, *want;
	} rows[] = {
		{ JSON_STRING, "\"4111111111111111\"", "\"************1111\"" },
		{ JSON_STRING, "\"abcde\"", "\"*bcde\"" },
		{ JSON_STRING, "\"abcd\"", "\"****\"" },
		{ JSON_STRING, "\"ab\"", "\"**\"" },
		{ JSON_STRING, "\"\"", "\"\"" },
		{ JSON_STRING, "\"h\xc3\xa9llo w\xc3\xb6rld\"", "\"*******\xc3\xb6rld\"" },
		{ JSON_STRING, "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x83\x86"
		    "\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\"",
		    "\"***\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\"" },
		{ JSON_STRING, "\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
		    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"",
		    "\"*\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"" },
		{ JSON_STRING, "\"\xc3\xa9\xc3\xa9\xc3\xa9\"", "\"***\"" },
		{ JSON_NUMBER, "1234567", "\"***4567\"" },
		{ JSON_NUMBER, "-1.5", "\"****\"" },
		{ JSON_TRUE, "true", "\"****\"" },
		{ JSON_FALSE, "false", "\"****\"" },
		{ JSON_NULL, "null", "\"****\"" },
	};
	struct keys_pair *p = keys_pair_demo("acme", "crm");
	struct token_ctx c;
	struct buf	 out = { 0 };
	size_t		 i;

	(void)state;
	ctx_init(&c, p);
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct json_token t = jtok(rows[i].type, rows[i].raw);

		buf_reset(&out);
		assert_int_equal(token_xform_request(&c, POLICY_MASK, &t, &out), 0);
		assert_string_equal(out.data, rows[i].want);
	}
	/* With a quote among the last four: still a valid JSON string. */
	{
		struct buf h = { 0 };
		struct json_token t = jstr("secret\"end", &h);

		buf_reset(&out);
		assert_int_equal(token_xform_request(&c, POLICY_MASK, &t, &out), 0);
		assert_string_equal(out.data, "\"******\\\"end\"");
		buf_free(&h);
	}
	buf_free(&out);
	keys_pair_free(p);
}

/*
 * The keyed templates a real pair carries (keys.c) give exactly what keying
 * per value gives: the same pair with its templates taken away (as the
 * hand-made pairs above are) produces the same hash, FF1 and token, and
 * FF1 still decrypts.
 */
static void
test_templates_match_keying_per_value(void **state)
{
	static const char *const vals[] = { "\"+15551234567\"",
	    "\"4111 1111 1111 1111\"", "\"ada@example.com\"" };
	static const enum policy_action acts[] = { POLICY_HASH,
	    POLICY_FORMAT_PRESERVE, POLICY_TOKENIZE };
	struct keys_pair *p = keys_pair_demo("acme", "crm");
	struct keys_pair bare;
	struct keys_version v;
	struct token_ctx c, cb;
	struct buf	 a = { 0 }, b = { 0 }, back = { 0 };
	struct json_token t;
	char		*ct, *pt;
	size_t		 i, j;

	(void)state;
	assert_non_null(p);
	assert_non_null(p->hash_mac);
	assert_non_null(p->ff1_ecb);
	bare = *p;
	v = p->versions[0];
	v.siv_enc = v.siv_dec = NULL;
	bare.versions = &v;
	bare.email_enc = bare.email_dec = NULL;
	bare.ff1_ecb = NULL;
	bare.hash_mac = NULL;
	ctx_init(&c, p);
	ctx_init(&cb, &bare);
	for (i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
		for (j = 0; j < sizeof(vals) / sizeof(vals[0]); j++) {
			buf_reset(&a);
			buf_reset(&b);
			t = jtok(JSON_STRING, vals[j]);
			assert_int_equal(token_xform_request(&c, acts[i], &t, &a),
			    0);
			assert_int_equal(token_xform_request(&cb, acts[i], &t,
			    &b), 0);
			assert_int_equal(a.len, b.len);
			assert_memory_equal(a.data, b.data, a.len);
		}
	/* FF1 back through the template and through keying here */
	buf_reset(&a);
	t = jtok(JSON_STRING, vals[1]);
	assert_int_equal(token_xform_request(&c, POLICY_FORMAT_PRESERVE, &t, &a),
	    0);
	ct = unquote(&a);
	assert_string_not_equal(ct, "4111 1111 1111 1111");
	for (i = 0; i < 2; i++) {
		assert_int_equal(detok(i == 0 ? &c : &cb,
		    POLICY_FORMAT_PRESERVE, ct, &back), 0);
		pt = unquote(&back);
		assert_string_equal(pt, "4111 1111 1111 1111");
		free(pt);
	}
	free(ct);
	buf_free(&a);
	buf_free(&b);
	buf_free(&back);
	keys_pair_free(p);
}

static void
test_hash_table(void **state)
{
	struct keys_pair *p = make_pair("acme", "crm", 1, 1);
	struct keys_pair *q = make_pair("acme", "calendar", 1, 1);
	struct token_ctx c, cq;
	struct buf	 out = { 0 }, out2 = { 0 }, want = { 0 };
	struct json_token t;
	unsigned char	 md[32];
	size_t		 mdlen, i;

	(void)state;
	ctx_init(&c, p);
	ctx_init(&cq, q);
	t = jtok(JSON_STRING, "\"+15551234567\"");
	assert_int_equal(token_xform_request(&c, POLICY_HASH, &t, &out), 0);
	/* "h1." + 160 bits in base32 = 32 characters */
	assert_int_equal(out.len, 2 + 3 + 32);
	assert_true(strncmp(out.data, "\"h1.", 4) == 0);
	for (i = 4; i < out.len - 1; i++)
		assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz234567",
		    out.data[i]));
	/* Known answer from the key: HMAC-SHA-256, first 20 bytes. */
	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, p->hash, 32,
	    (const unsigned char *)"+15551234567", 12, md, sizeof(md), &mdlen));
	buf_append_str(&want, "\"h1.");
	token_b32_encode(&want, md, 20);
	buf_append_char(&want, '"');
	assert_string_equal(out.data, want.data);
	/* Per pair, per value, deterministic; numbers and booleans hash text. */
	assert_int_equal(token_xform_request(&cq, POLICY_HASH, &t, &out2), 0);
	assert_string_not_equal(out.data, out2.data);
	buf_reset(&out2);
	assert_int_equal(token_xform_request(&c, POLICY_HASH, &t, &out2), 0);
	assert_string_equal(out.data, out2.data);
	t = jtok(JSON_NUMBER, "15551234567");
	buf_reset(&out2);
	assert_int_equal(token_xform_request(&c, POLICY_HASH, &t, &out2), 0);
	assert_string_not_equal(out.data, out2.data);
	t = jtok(JSON_TRUE, "true");
	buf_reset(&out2);
	assert_int_equal(token_xform_request(&c, POLICY_HASH, &t, &out2), 0);
	assert_true(strncmp(out2.data, "\"h1.", 4) == 0);
	buf_free(&out);
	buf_free(&out2);
	buf_free(&want);
	free_pair(p);
	free_pair(q);
}

/* ---- text variants, shredded pairs ---- */

static void
test_text_and_shredded(void **state)
{
	struct keys_pair *p = make_pair("acme", "crm", 1, 1);
	struct token_ctx c;
	struct buf	 out = { 0 }, back = { 0 };

	(void)state;
	ctx_init(&c, p);
	assert_int_equal(token_apply_text(&c, POLICY_TOKENIZE, "C-1001", 6, &out), 0);
	assert_true(strncmp(out.data, "tok1.1.", 7) == 0);
	assert_int_equal(detok(&c, POLICY_TOKENIZE, out.data, &back), 0);
	assert_string_equal(back.data, "\"C-1001\"");
	buf_reset(&out);
	assert_int_equal(token_apply_text(&c, POLICY_MASK, "a\"bcdef", 7, &out), 0);
	assert_string_equal(out.data, "***cdef");	/* raw, not JSON */
	buf_reset(&out);
	assert_int_equal(token_apply_text(&c, POLICY_FORMAT_PRESERVE, "555-12",
	    6, &out), 1);
	assert_int_equal(token_apply_text(&c, POLICY_FORMAT_PRESERVE,
	    "555-123-4567", 12, &out), 0);
	assert_int_equal(out.len, 12);
	assert_int_equal(out.data[3], '-');
	buf_reset(&out);
	assert_int_equal(token_apply_text(&c, POLICY_HASH, "x", 1, &out), 0);
	assert_int_equal(out.len, 35);
	/* invalid UTF-8 is dropped */
	buf_reset(&out);
	assert_int_equal(token_apply_text(&c, POLICY_MASK, "\xff\xfe", 2, &out), 1);
	/* actions that transform nothing are errors */
	assert_int_equal(token_apply_text(&c, POLICY_ALLOW, "x", 1, &out), -1);
	/* a shredded pair refuses everything */
	p->shredded = 1;
	assert_int_equal(token_apply_text(&c, POLICY_TOKENIZE, "x", 1, &out), -1);
	buf_free(&out);
	buf_free(&back);
	free_pair(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ff1_nist_embedded),
		cmocka_unit_test(test_ff1_nist_file),
		cmocka_unit_test(test_ff1_round_trips),
		cmocka_unit_test(test_encodings),
		cmocka_unit_test(test_tok_round_trip_types),
		cmocka_unit_test(test_tok_format_and_canonical),
		cmocka_unit_test(test_tok_single_char_changes),
		cmocka_unit_test(test_pair_separation),
		cmocka_unit_test(test_tok_versions),
		cmocka_unit_test(test_hkdf_separation),
		cmocka_unit_test(test_email_tokens),
		cmocka_unit_test(test_email_canonical_layout),
		cmocka_unit_test(test_format_preserve_digits),
		cmocka_unit_test(test_mask_table),
		cmocka_unit_test(test_hash_table),
		cmocka_unit_test(test_templates_match_keying_per_value),
		cmocka_unit_test(test_text_and_shredded),
	};

	srand(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
