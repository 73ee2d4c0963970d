/* token.c -- AES-SIV tokens, FF1, keyed hashes, masks (pure) */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "token.h"

#define SIV_TAG		16
#define SMALL_BUF	512

/*
 * Ciphers are fetched once per process: EVP_CIPHER_fetch walks the
 * provider tables and takes locks, which per field would cost more than
 * the cryptography. Contexts are made per call (they hold mutable state
 * and the keyring is shared by worker threads), as copies of the pair's
 * keyed templates where it has them (keys.c).
 */
static pthread_once_t	 fetch_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER	*ciph_siv;
static EVP_CIPHER	*ciph_ecb[3];	/* AES-128/192/256-ECB */
static EVP_MAC		*mac_hmac;

static void
token_fetch(void)
{
	ciph_siv = EVP_CIPHER_fetch(NULL, "AES-256-SIV", NULL);
	ciph_ecb[0] = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL);
	ciph_ecb[1] = EVP_CIPHER_fetch(NULL, "AES-192-ECB", NULL);
	ciph_ecb[2] = EVP_CIPHER_fetch(NULL, "AES-256-ECB", NULL);
	mac_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static int
token_ready(void)
{
	if (pthread_once(&fetch_once, token_fetch) != 0)
		return -1;
	if (ciph_siv == NULL || ciph_ecb[0] == NULL || ciph_ecb[1] == NULL ||
	    ciph_ecb[2] == NULL || mac_hmac == NULL)
		return -1;
	return 0;
}

/* ---- encodings ---- */

static const char b64url_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char b32_alpha[] = "abcdefghijklmnopqrstuvwxyz234567";

int
token_b64url_encode(struct buf *out, const unsigned char *p, size_t n)
{
	size_t	 i, olen = (n * 4 + 2) / 3;
	char	*o;

	if (buf_reserve(out, olen) == -1)
		return -1;
	o = out->data + out->len;
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
		    p[i + 2];
		*o++ = b64url_alpha[v >> 18];
		*o++ = b64url_alpha[(v >> 12) & 63];
		*o++ = b64url_alpha[(v >> 6) & 63];
		*o++ = b64url_alpha[v & 63];
	}
	if (n - i == 1) {
		*o++ = b64url_alpha[p[i] >> 2];
		*o++ = b64url_alpha[(p[i] & 3) << 4];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 8 | p[i + 1];
		*o++ = b64url_alpha[v >> 10];
		*o++ = b64url_alpha[(v >> 4) & 63];
		*o++ = b64url_alpha[(v & 15) << 2];
	}
	out->len += olen;
	out->data[out->len] = '\0';
	return 0;
}

static int
b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

long
token_b64url_decode(const char *s, size_t len, unsigned char *out)
{
	uint32_t acc = 0;
	size_t	 i, o = 0;
	int	 bits = 0, v;

	if (len % 4 == 1 || len > LONG_MAX / 3)
		return -1;
	for (i = 0; i < len; i++) {
		if ((v = b64url_val((unsigned char)s[i])) < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Canonical: the unused low bits of the last character are zero. */
	if (acc != 0)
		return -1;
	return (long)o;
}

int
token_b32_encode(struct buf *out, const unsigned char *p, size_t n)
{
	size_t	 i, olen = (n * 8 + 4) / 5;
	uint32_t acc = 0;
	int	 bits = 0;
	char	*o;

	if (buf_reserve(out, olen) == -1)
		return -1;
	o = out->data + out->len;
	for (i = 0; i < n; i++) {
		acc = (acc << 8) | p[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			*o++ = b32_alpha[(acc >> bits) & 31];
		}
		acc &= (1u << bits) - 1;
	}
	if (bits > 0)
		*o++ = b32_alpha[(acc << (5 - bits)) & 31];
	out->len += olen;
	out->data[out->len] = '\0';
	return 0;
}

long
token_b32_decode(const char *s, size_t len, unsigned char *out)
{
	uint32_t acc = 0;
	size_t	 i, o = 0;
	int	 bits = 0, v;
	unsigned char c;

	/* Lengths that no byte count produces are not canonical. */
	switch (len % 8) {
	case 1: case 3: case 6:
		return -1;
	}
	if (len > LONG_MAX / 5)
		return -1;
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a';
		else if (c >= '2' && c <= '7')
			v = c - '2' + 26;
		else
			return -1;
		acc = (acc << 5) | (uint32_t)v;
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return -1;
	return (long)o;
}

/* ---- small helpers ---- */

/* Length of the UTF-8 sequence at s (valid, shortest form, no surrogates),
 * or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t	 len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static int
utf8_valid(const char *s, size_t n)
{
	size_t i = 0, l;

	while (i < n) {
		if ((l = utf8_seq((const unsigned char *)s + i, n - i)) == 0)
			return 0;
		i += l;
	}
	return 1;
}

/* A JSON number as RFC 8259 writes it. */
static int
json_number_valid(const char *s, size_t n)
{
	size_t i = 0, d;

	if (i < n && s[i] == '-')
		i++;
	if (i >= n)
		return 0;
	if (s[i] == '0')
		i++;
	else if (s[i] >= '1' && s[i] <= '9')
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	else
		return 0;
	if (i < n && s[i] == '.') {
		for (d = ++i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	return i == n;
}

/* Append L(s): 2-byte big-endian length, then the bytes (truncated at
 * 65535, which no tenant or integration name reaches). */
static size_t
put_field(unsigned char *p, const char *s)
{
	size_t n = strlen(s);

	if (n > 0xffff)
		n = 0xffff;
	p[0] = (unsigned char)(n >> 8);
	p[1] = (unsigned char)n;
	memcpy(p + 2, s, n);
	return n + 2;
}

static size_t
field_len(const char *s)
{
	size_t n = strlen(s);

	return (n > 0xffff ? 0xffff : n) + 2;
}

/* ---- AES-SIV ---- */

/*
 * A context for one operation: a copy of the pair's keyed template when it
 * has one (read-only, shared by threads), else keyed here. NULL on failure.
 */
static EVP_CIPHER_CTX *
siv_ctx(const unsigned char *key, const EVP_CIPHER_CTX *tmpl, int enc)
{
	EVP_CIPHER_CTX *c;

	if ((c = EVP_CIPHER_CTX_new()) == NULL)
		return NULL;
	if ((tmpl != NULL ? EVP_CIPHER_CTX_copy(c, tmpl) :
	    EVP_CipherInit_ex2(c, ciph_siv, key, NULL, enc, NULL)) != 1) {
		EVP_CIPHER_CTX_free(c);
		return NULL;
	}
	return c;
}

/* out = tag || ciphertext of pt[0..n) (n > 0). 0 or -1. */
static int
siv_seal(const unsigned char *key, const EVP_CIPHER_CTX *tmpl,
    const unsigned char *ad, size_t adlen, const unsigned char *pt, size_t n,
    unsigned char *out)
{
	EVP_CIPHER_CTX	*c;
	int		 l, rc = -1;

	if (n > INT_MAX || adlen > INT_MAX ||
	    (c = siv_ctx(key, tmpl, 1)) == NULL)
		return -1;
	if (EVP_EncryptUpdate(c, NULL, &l, ad, (int)adlen) != 1 ||
	    EVP_EncryptUpdate(c, out + SIV_TAG, &l, pt, (int)n) != 1 ||
	    EVP_EncryptFinal_ex(c, out + SIV_TAG + l, &l) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, SIV_TAG, out) != 1)
		goto done;
	rc = 0;
done:
	EVP_CIPHER_CTX_free(c);
	return rc;
}

/* pt = open(in[0..n)) where in = tag || ciphertext; returns 0, 1 when it
 * does not authenticate, -1 on failure. */
static int
siv_open(const unsigned char *key, const EVP_CIPHER_CTX *tmpl,
    const unsigned char *ad, size_t adlen, const unsigned char *in, size_t n,
    unsigned char *pt)
{
	EVP_CIPHER_CTX	*c;
	int		 l, rc = -1;

	if (n <= SIV_TAG || n > INT_MAX || adlen > INT_MAX)
		return 1;
	if ((c = siv_ctx(key, tmpl, 0)) == NULL)
		return -1;
	if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, SIV_TAG,
	    (void *)(uintptr_t)in) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &l, ad, (int)adlen) != 1)
		goto done;
	rc = 1;
	if (EVP_DecryptUpdate(c, pt, &l, in + SIV_TAG, (int)(n - SIV_TAG)) != 1 ||
	    EVP_DecryptFinal_ex(c, pt + l, &l) != 1)
		goto done;
	rc = 0;
done:
	EVP_CIPHER_CTX_free(c);
	return rc;
}

/* Bytes of value || 0x80 || 0x00... padded to a multiple of 16. */
static size_t
pad_len(size_t n)
{
	return (n + 1 + 15) & ~(size_t)15;
}

/* Length of the value before the padding of p[0..n), or -1. */
static long
unpad(const unsigned char *p, size_t n)
{
	while (n > 0 && p[n - 1] == 0)
		n--;
	if (n == 0 || p[n - 1] != 0x80)
		return -1;
	return (long)(n - 1);
}

/*
 * Seal prefix(plen) || val[0..len) padded; the plaintext is wiped. Returns
 * a malloc'd tag || ciphertext with *outlen, or NULL.
 */
static unsigned char *
seal_value(const unsigned char *key, const EVP_CIPHER_CTX *tmpl,
    const unsigned char *ad, size_t adlen,
    const unsigned char *prefix, size_t plen, const char *val, size_t len,
    size_t *outlen)
{
	unsigned char	 small[SMALL_BUF], *pt, *ct;
	size_t		 n;

	if (len > (size_t)INT_MAX - 64)
		return NULL;
	n = pad_len(plen + len);
	pt = n <= sizeof(small) ? small : malloc(n);
	ct = malloc(n + SIV_TAG);
	if (pt == NULL || ct == NULL)
		goto fail;
	if (plen > 0)
		memcpy(pt, prefix, plen);
	if (len > 0)
		memcpy(pt + plen, val, len);
	pt[plen + len] = 0x80;
	memset(pt + plen + len + 1, 0, n - plen - len - 1);
	if (siv_seal(key, tmpl, ad, adlen, pt, n, ct) == -1)
		goto fail;
	OPENSSL_cleanse(pt, n);
	if (pt != small)
		free(pt);
	*outlen = n + SIV_TAG;
	return ct;
fail:
	if (pt != NULL) {
		OPENSSL_cleanse(pt, n);
		if (pt != small)
			free(pt);
	}
	free(ct);
	return NULL;
}

/* ---- tok1 ---- */

enum tok_type { TOK_STRING = 's', TOK_NUMBER = 'n', TOK_TRUE = 't',
    TOK_FALSE = 'f', TOK_NULL = 'z' };

static size_t
tok_ad(const struct keys_pair *p, uint32_t version, unsigned char *ad)
{
	size_t n = 0;

	n += put_field(ad + n, "tok1");
	n += put_field(ad + n, p->tenant);
	n += put_field(ad + n, p->integration);
	ad[n++] = (unsigned char)(version >> 24);
	ad[n++] = (unsigned char)(version >> 16);
	ad[n++] = (unsigned char)(version >> 8);
	ad[n++] = (unsigned char)version;
	return n;
}

static size_t
pair_ad_len(const struct keys_pair *p)
{
	return field_len("email") + field_len(p->tenant) +
	    field_len(p->integration) + 4;
}

static const struct keys_version *
pair_version(const struct keys_pair *p, uint32_t v)
{
	size_t i;

	for (i = 0; i < p->nversions; i++)
		if (p->versions[i].version == v)
			return &p->versions[i];
	return NULL;
}

/* Append the tok1 token of (type, val) to out. 0 or -1. */
static int
tok_mint(const struct keys_pair *p, int type, const char *val, size_t len,
    struct buf *out)
{
	const struct keys_version *kv;
	unsigned char	*ad, *ct, tb = (unsigned char)type;
	size_t		 adlen, ctlen;
	int		 rc = -1;

	if ((kv = pair_version(p, p->active)) == NULL)
		return -1;
	if ((ad = malloc(pair_ad_len(p))) == NULL)
		return -1;
	adlen = tok_ad(p, kv->version, ad);
	ct = seal_value(kv->siv, kv->siv_enc, ad, adlen, &tb, 1, val, len,
	    &ctlen);
	free(ad);
	if (ct == NULL)
		return -1;
	if (buf_printf(out, "tok1.%u.", (unsigned)kv->version) == -1 ||
	    token_b64url_encode(out, ct, ctlen) == -1)
		goto done;
	rc = 0;
done:
	free(ct);
	return rc;
}

/*
 * Open the tok1 token s[0..n) of this pair. 0 with *type and the value
 * appended to val; 1 when it is not a (canonical) token of this pair; -1
 * on failure.
 */
static int
tok_open(const struct keys_pair *p, const char *s, size_t n, int *type,
    struct buf *val)
{
	const struct keys_version *kv;
	unsigned char	 small[SMALL_BUF], *raw = NULL, *pt = NULL, *ad = NULL;
	size_t		 i, adlen;
	uint64_t	 ver = 0;
	long		 rawlen, vlen;
	int		 rc = 1, r;

	if (n < 5 || memcmp(s, "tok1.", 5) != 0)
		return 1;
	/* Version: decimal, no leading zero, 1..2^32-1. */
	for (i = 5; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		ver = ver * 10 + (uint64_t)(s[i] - '0');
		if (ver > UINT32_MAX)
			return 1;
	}
	if (i == 5 || i >= n || s[i] != '.' || s[5] == '0' ||
	    (kv = pair_version(p, (uint32_t)ver)) == NULL)
		return 1;
	i++;
	if ((n - i) / 4 * 3 + 3 > sizeof(small)) {
		if ((raw = malloc((n - i) / 4 * 3 + 3)) == NULL)
			return -1;
	} else
		raw = small;
	rawlen = token_b64url_decode(s + i, n - i, raw);
	if (rawlen < SIV_TAG + 16 || (rawlen - SIV_TAG) % 16 != 0)
		goto done;
	rc = -1;
	if ((pt = malloc((size_t)rawlen)) == NULL ||
	    (ad = malloc(pair_ad_len(p))) == NULL)
		goto done;
	adlen = tok_ad(p, kv->version, ad);
	if ((r = siv_open(kv->siv, kv->siv_dec, ad, adlen, raw,
	    (size_t)rawlen, pt)) != 0) {
		rc = r;
		goto done;
	}
	rc = 1;
	if ((vlen = unpad(pt, (size_t)rawlen - SIV_TAG)) < 1)
		goto done;
	vlen--;		/* the type byte */
	switch (pt[0]) {
	case TOK_STRING:
		if (!utf8_valid((char *)pt + 1, (size_t)vlen))
			goto done;
		break;
	case TOK_NUMBER:
		if (!json_number_valid((char *)pt + 1, (size_t)vlen))
			goto done;
		break;
	case TOK_TRUE:
	case TOK_FALSE:
	case TOK_NULL:
		if (vlen != 0)
			goto done;
		break;
	default:
		goto done;
	}
	rc = -1;
	if (buf_append(val, pt + 1, (size_t)vlen) == -1)
		goto done;
	*type = pt[0];
	rc = 0;
done:
	if (pt != NULL) {
		OPENSSL_cleanse(pt, (size_t)rawlen);
		free(pt);
	}
	if (raw != small)
		free(raw);
	free(ad);
	return rc;
}

/* ---- email tokens ---- */

static size_t
email_ad(const struct keys_pair *p, unsigned char *ad)
{
	size_t n = 0;

	n += put_field(ad + n, "email");
	n += put_field(ad + n, p->tenant);
	n += put_field(ad + n, p->integration);
	return n;
}

/* Append the email token of s[0..len) under domain to out. 0 or -1. */
static int
email_mint(const struct keys_pair *p, const char *domain, const char *s,
    size_t len, struct buf *out)
{
	struct buf	 b32 = { 0 };
	unsigned char	*ad, *ct;
	size_t		 adlen, ctlen, i, take;
	int		 rc = -1;

	if ((ad = malloc(pair_ad_len(p))) == NULL)
		return -1;
	adlen = email_ad(p, ad);
	ct = seal_value(p->email_siv, p->email_enc, ad, adlen, NULL, 0, s, len,
	    &ctlen);
	free(ad);
	if (ct == NULL)
		return -1;
	if (token_b32_encode(&b32, ct, ctlen) == -1)
		goto done;
	take = b32.len < 64 ? b32.len : 64;
	if (buf_append(out, b32.data, take) == -1 ||
	    buf_append_char(out, '@') == -1)
		goto done;
	for (i = take; i < b32.len; i += take) {
		take = b32.len - i < 63 ? b32.len - i : 63;
		if (buf_append(out, b32.data + i, take) == -1 ||
		    buf_append_char(out, '.') == -1)
			goto done;
	}
	if (buf_append_str(out, domain) == -1)
		goto done;
	rc = 0;
done:
	buf_free(&b32);
	free(ct);
	return rc;
}

/*
 * Decode the email token s[0..n) under domain. 0 with the email appended
 * to val, 1 when it is not a canonical email token of this pair, -1 on
 * failure.
 */
static int
email_open(const struct keys_pair *p, const char *domain, const char *s,
    size_t n, struct buf *val)
{
	const char	*at, *dom, *lab, *dot;
	struct buf	 b32 = { 0 };
	unsigned char	*raw = NULL, *pt = NULL, *ad = NULL;
	size_t		 dlen = strlen(domain), domlen, local;
	long		 rawlen = 0, vlen;
	int		 rc = -1, r;

	if ((at = memchr(s, '@', n)) == NULL)
		return 1;
	local = (size_t)(at - s);
	dom = at + 1;
	domlen = n - local - 1;
	if (dlen == 0 || domlen < dlen ||
	    strncasecmp(dom + domlen - dlen, domain, dlen) != 0)
		return 1;
	if (local == 0 || local > 64 ||
	    buf_append(&b32, s, local) == -1)
		goto fail;
	rc = 1;
	if (domlen > dlen) {
		/* Labels: the local part is full, each label 63 but the last. */
		if (local != 64 || domlen < dlen + 2 ||
		    dom[domlen - dlen - 1] != '.')
			goto fail;
		lab = dom;
		while (lab < dom + domlen - dlen) {
			dot = memchr(lab, '.', (size_t)(dom + domlen - dlen - lab));
			if (dot == NULL || dot == lab || dot - lab > 63)
				goto fail;
			if (dot - lab < 63 && dot + 1 != dom + domlen - dlen)
				goto fail;
			rc = -1;
			if (buf_append(&b32, lab, (size_t)(dot - lab)) == -1)
				goto fail;
			rc = 1;
			lab = dot + 1;
		}
	}
	rc = -1;
	if ((raw = malloc(b32.len * 5 / 8 + 1)) == NULL)
		goto fail;
	rc = 1;
	rawlen = token_b32_decode(b32.data, b32.len, raw);
	if (rawlen < SIV_TAG + 16 || (rawlen - SIV_TAG) % 16 != 0)
		goto fail;
	rc = -1;
	if ((pt = malloc((size_t)rawlen)) == NULL ||
	    (ad = malloc(pair_ad_len(p))) == NULL)
		goto fail;
	if ((r = siv_open(p->email_siv, p->email_dec, ad, email_ad(p, ad), raw,
	    (size_t)rawlen, pt)) != 0) {
		rc = r;
		goto fail;
	}
	rc = 1;
	if ((vlen = unpad(pt, (size_t)rawlen - SIV_TAG)) < 0 ||
	    memchr(pt, '@', (size_t)vlen) == NULL ||
	    !utf8_valid((char *)pt, (size_t)vlen))
		goto fail;
	rc = -1;
	if (buf_append(val, pt, (size_t)vlen) == -1)
		goto fail;
	rc = 0;
fail:
	if (pt != NULL) {
		OPENSSL_cleanse(pt, (size_t)rawlen);
		free(pt);
	}
	free(raw);
	free(ad);
	buf_free(&b32);
	return rc;
}

/* ---- FF1 (NIST SP 800-38G) ---- */

typedef unsigned __int128 u128;

struct ff1 {
	EVP_CIPHER_CTX	*ecb;
	unsigned	 radix;
	size_t		 n, u, v, b, d;
	u128		 mu, mv;	/* radix^u, radix^v */
	unsigned char	 state[16];	/* CBC-MAC of P || Q without its last block */
	unsigned char	 last[16];	/* Q's last block, i and NUM(B) to fill in */
};

static int
aes_block(EVP_CIPHER_CTX *c, const unsigned char in[16], unsigned char out[16])
{
	int l;

	return EVP_EncryptUpdate(c, out, &l, in, 16) == 1 && l == 16 ? 0 : -1;
}

/* tmpl: a keyed AES-ECB context to copy (the pair's), or NULL to key one
 * from key here. */
static int
ff1_setup(struct ff1 *f, const unsigned char *key, size_t keylen,
    const EVP_CIPHER_CTX *tmpl, unsigned radix, const unsigned char *tweak,
    size_t t, size_t n)
{
	unsigned char	 blk[16];
	const EVP_CIPHER *ciph;
	u128		 m, lim = (u128)1 << 120;
	size_t		 i, j, qlen, pad, bits;

	memset(f, 0, sizeof(*f));
	if (token_ready() == -1 || radix < 2 || radix > 36 || n < 2 ||
	    n > 0xffffffffu || t > 0xffffffffu)
		return -1;
	/* radix^n >= 10^6 (SP 800-38G Rev. 1); saturates past it. */
	for (m = 1, i = 0; i < n && m < 1000000; i++)
		m *= radix;
	if (m < 1000000)
		return -1;
	f->radix = radix;
	f->n = n;
	f->u = n / 2;
	f->v = n - f->u;
	for (f->mv = 1, i = 0; i < f->v; i++) {
		f->mv *= radix;
		if (f->mv > lim)
			return -1;
		if (i + 1 == f->u)
			f->mu = f->mv;
	}
	if (f->u == 0)
		f->mu = 1;
	for (bits = 0, m = f->mv - 1; m != 0; m >>= 1)
		bits++;
	f->b = (bits + 7) / 8;
	f->d = 4 * ((f->b + 3) / 4) + 4;
	switch (keylen) {
	case 16: ciph = ciph_ecb[0]; break;
	case 24: ciph = ciph_ecb[1]; break;
	case 32: ciph = ciph_ecb[2]; break;
	default: return -1;
	}
	if ((f->ecb = EVP_CIPHER_CTX_new()) == NULL)
		return -1;
	if (tmpl != NULL ? EVP_CIPHER_CTX_copy(f->ecb, tmpl) != 1 :
	    (EVP_EncryptInit_ex2(f->ecb, ciph, key, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_set_padding(f->ecb, 0) != 1))
		return -1;

	/* P, then Q = T || 0^pad || i || NUM(B)^b with only the last block
	 * varying (b <= 15), so the MAC of the rest is computed once. */
	blk[0] = 1; blk[1] = 2; blk[2] = 1;
	blk[3] = (unsigned char)(radix >> 16);
	blk[4] = (unsigned char)(radix >> 8);
	blk[5] = (unsigned char)radix;
	blk[6] = 10;
	blk[7] = (unsigned char)(f->u & 0xff);
	for (i = 0; i < 4; i++) {
		blk[8 + i] = (unsigned char)(n >> (24 - 8 * i));
		blk[12 + i] = (unsigned char)(t >> (24 - 8 * i));
	}
	if (aes_block(f->ecb, blk, f->state) == -1)
		return -1;
	pad = (16 - (t + f->b + 1) % 16) % 16;
	qlen = t + pad + 1 + f->b;
	for (i = 0; i + 16 <= qlen - 16; i += 16) {
		for (j = 0; j < 16; j++)
			blk[j] = f->state[j] ^ (i + j < t ? tweak[i + j] : 0);
		if (aes_block(f->ecb, blk, f->state) == -1)
			return -1;
	}
	for (j = 0; j < 16; j++)
		f->last[j] = i + j < t ? tweak[i + j] : 0;
	return 0;
}

static void
ff1_cleanup(struct ff1 *f)
{
	EVP_CIPHER_CTX_free(f->ecb);
	OPENSSL_cleanse(f, sizeof(*f));
}

/* y mod mm for round i with NUM_radix of the other half num. */
static int
ff1_round(struct ff1 *f, unsigned i, u128 num, u128 mm, u128 *y)
{
	unsigned char	 blk[16], r[32];
	size_t		 j;
	u128		 acc = 0;

	memcpy(blk, f->last, 16);
	blk[15 - f->b] = (unsigned char)i;
	for (j = 0; j < f->b; j++)
		blk[15 - j] = (unsigned char)(num >> (8 * j));
	for (j = 0; j < 16; j++)
		blk[j] ^= f->state[j];
	if (aes_block(f->ecb, blk, r) == -1)
		return -1;
	if (f->d > 16) {	/* d <= 20: one more block, R xor [1]^16 */
		memcpy(blk, r, 16);
		blk[15] ^= 1;
		if (aes_block(f->ecb, blk, r + 16) == -1)
			return -1;
	}
	/* y = NUM(S) mod mm. The first 15 bytes fit in 120 bits: one
	 * reduction for them; then one per byte (acc < mm <= 2^120, so
	 * acc << 8 still fits). Six 128-bit divisions at most, not d. */
	for (j = 0; j < f->d && j < 15; j++)
		acc = (acc << 8) | r[j];
	acc %= mm;
	for (; j < f->d; j++)
		acc = ((acc << 8) | r[j]) % mm;
	*y = acc;
	OPENSSL_cleanse(blk, sizeof(blk));
	OPENSSL_cleanse(r, sizeof(r));
	return 0;
}

static int
ff1_digit(char c, unsigned radix)
{
	int v;

	if (c >= '0' && c <= '9')
		v = c - '0';
	else if (c >= 'a' && c <= 'z')
		v = c - 'a' + 10;
	else if (c >= 'A' && c <= 'Z')
		v = c - 'A' + 10;
	else
		return -1;
	return (unsigned)v < radix ? v : -1;
}

static int
ff1_num(const char *s, size_t n, unsigned radix, u128 *out)
{
	u128	x = 0;
	size_t	i;
	int	v;

	for (i = 0; i < n; i++) {
		if ((v = ff1_digit(s[i], radix)) < 0)
			return -1;
		x = x * radix + (unsigned)v;
	}
	*out = x;
	return 0;
}

static void
ff1_str(u128 x, unsigned radix, char *out, size_t m)
{
	while (m-- > 0) {
		out[m] = "0123456789abcdefghijklmnopqrstuvwxyz"[x % radix];
		x /= radix;
	}
}

static int
ff1_crypt(struct ff1 *f, const char *in, char *out, int enc)
{
	u128	 a, b, y, c, mm;
	int	 i;

	if (ff1_num(in, f->u, f->radix, &a) == -1 ||
	    ff1_num(in + f->u, f->v, f->radix, &b) == -1)
		return -1;
	for (i = 0; i < 10; i++) {
		int r = enc ? i : 9 - i;

		mm = (r & 1) ? f->mv : f->mu;
		if (enc) {
			if (ff1_round(f, (unsigned)r, b, mm, &y) == -1)
				return -1;
			c = (a + y) % mm;
			a = b;
			b = c;
		} else {
			if (ff1_round(f, (unsigned)r, a, mm, &y) == -1)
				return -1;
			c = (b + mm - y) % mm;
			b = a;
			a = c;
		}
	}
	ff1_str(a, f->radix, out, f->u);
	ff1_str(b, f->radix, out + f->u, f->v);
	a = b = c = y = 0;
	return 0;
}

static int
ff1_run(const unsigned char *key, size_t keylen, const EVP_CIPHER_CTX *tmpl,
    unsigned radix, const unsigned char *tweak, size_t tweaklen,
    const char *in, size_t n, char *out, int enc)
{
	struct ff1	f;
	int		rc = -1;

	if (ff1_setup(&f, key, keylen, tmpl, radix, tweak, tweaklen, n) == 0)
		rc = ff1_crypt(&f, in, out, enc);
	ff1_cleanup(&f);
	return rc;
}

int
token_ff1(const unsigned char *key, size_t keylen, unsigned radix,
    const unsigned char *tweak, size_t tweaklen, const char *in, size_t n,
    char *out, int enc)
{
	return ff1_run(key, keylen, NULL, radix, tweak, tweaklen, in, n, out,
	    enc);
}

/*
 * FF1 the ASCII digits of s[0..n) in place into out (n bytes), everything
 * else kept. 0, 1 (digit count out of range), -1.
 */
static int
ff1_value(const struct keys_pair *p, const char *s, size_t n, char *out,
    int enc)
{
	char		 dig[TOKEN_FF1_MAX_DIGITS];
	unsigned char	*tw;
	size_t		 i, nd = 0, twlen;
	int		 rc;

	for (i = 0; i < n; i++)
		if (s[i] >= '0' && s[i] <= '9') {
			if (nd == TOKEN_FF1_MAX_DIGITS)
				return 1;
			dig[nd++] = s[i];
		}
	if (nd < 6)
		return 1;
	twlen = field_len(p->tenant) + field_len(p->integration);
	if ((tw = malloc(twlen)) == NULL)
		return -1;
	put_field(tw + put_field(tw, p->tenant), p->integration);
	rc = ff1_run(p->ff1, sizeof(p->ff1), p->ff1_ecb, 10, tw, twlen, dig, nd,
	    dig, enc);
	free(tw);
	if (rc == 0) {
		for (i = 0, nd = 0; i < n; i++)
			out[i] = (s[i] >= '0' && s[i] <= '9') ? dig[nd++] : s[i];
	}
	OPENSSL_cleanse(dig, sizeof(dig));
	return rc;
}

/* ---- hash and mask ---- */

/* A context for one HMAC-SHA-256 under the pair's hash key: a copy of its
 * keyed template (no key set-up, no digest lookup), else keyed here. */
static EVP_MAC_CTX *
hash_ctx(const struct keys_pair *p)
{
	OSSL_PARAM	 params[2];
	EVP_MAC_CTX	*m;

	if (p->hash_mac != NULL)
		return EVP_MAC_CTX_dup(p->hash_mac);
	if (token_ready() == -1 || (m = EVP_MAC_CTX_new(mac_hmac)) == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)(uintptr_t)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(m, p->hash, sizeof(p->hash), params) != 1) {
		EVP_MAC_CTX_free(m);
		return NULL;
	}
	return m;
}

static int
hash_value(const struct keys_pair *p, const char *s, size_t n, struct buf *out)
{
	EVP_MAC_CTX	*m;
	unsigned char	 md[32];
	size_t		 mdlen;
	int		 rc = -1;

	if ((m = hash_ctx(p)) == NULL)
		return -1;
	if (EVP_MAC_update(m, (const unsigned char *)s, n) != 1 ||
	    EVP_MAC_final(m, md, &mdlen, sizeof(md)) != 1)
		goto done;
	if (buf_append_str(out, "h1.") == -1 ||
	    token_b32_encode(out, md, TOKEN_HASH_BITS / 8) == -1)
		goto done;
	rc = 0;
done:
	EVP_MAC_CTX_free(m);
	OPENSSL_cleanse(md, sizeof(md));
	return rc;
}

/* s is valid UTF-8. */
static int
mask_value(const char *s, size_t n, struct buf *out)
{
	size_t i, cps = 0, keep_from, l;

	for (i = 0; i < n; i += l, cps++)
		if ((l = utf8_seq((const unsigned char *)s + i, n - i)) == 0)
			return -1;
	if (cps <= 4) {
		for (i = 0; i < cps; i++)
			if (buf_append_char(out, '*') == -1)
				return -1;
		return 0;
	}
	for (i = 0, keep_from = cps - 4, cps = 0; cps < keep_from; i += l, cps++) {
		l = utf8_seq((const unsigned char *)s + i, n - i);
		if (buf_append_char(out, '*') == -1)
			return -1;
	}
	return buf_append(out, s + i, n - i);
}

/* ---- the transforms ---- */

/*
 * Apply action a to (type, s[0..n)); json: write a JSON string, else raw
 * text. 0, 1 (drop), -1.
 */
static int
xform(struct token_ctx *ctx, enum policy_action a, int type, const char *s,
    size_t n, struct buf *out, int json)
{
	const struct keys_pair *p = ctx->pair;
	struct buf	 tmp = { 0 };
	size_t		 mark = out->len;
	int		 rc = -1;

	if (p == NULL || p->shredded || token_ready() == -1)
		return -1;
	switch (a) {
	case POLICY_TOKENIZE:
	case POLICY_HASH:
		if (json && buf_append_char(out, '"') == -1)
			goto fail;
		if (a == POLICY_TOKENIZE)
			rc = tok_mint(p, type, s, n, out);
		else
			rc = hash_value(p, s, n, out);
		if (rc == -1 || (json && buf_append_char(out, '"') == -1))
			goto fail;
		return 0;
	case POLICY_MASK:
		if (type == TOK_TRUE || type == TOK_FALSE || type == TOK_NULL)
			rc = buf_append_str(&tmp, "****");
		else
			rc = mask_value(s, n, &tmp);
		break;
	case POLICY_FORMAT_PRESERVE:
		if (type != TOK_STRING && type != TOK_NUMBER) {
			rc = 1;
			break;
		}
		if (memchr(s, '@', n) != NULL) {
			if (ctx->token_domain == NULL || *ctx->token_domain == '\0')
				rc = 1;
			else
				rc = email_mint(p, ctx->token_domain, s, n, &tmp);
			break;
		}
		if ((rc = buf_reserve(&tmp, n)) == -1)
			break;
		if ((rc = ff1_value(p, s, n, tmp.data, 1)) == 0) {
			tmp.len = n;
			tmp.data[n] = '\0';
		}
		break;
	default:
		return -1;
	}
	if (rc != 0)
		goto fail;
	rc = -1;
	if ((json ? json_write_string(out, tmp.data, tmp.len) :
	    buf_append(out, tmp.data, tmp.len)) == -1)
		goto fail;
	buf_free(&tmp);
	return 0;
fail:
	buf_truncate(out, mark);
	buf_free(&tmp);
	return rc;
}

int
token_xform_request(void *arg, enum policy_action a,
    const struct json_token *v, struct buf *out)
{
	struct token_ctx *ctx = arg;

	switch (v->type) {
	case JSON_STRING:
		return xform(ctx, a, TOK_STRING, v->str, v->str_len, out, 1);
	case JSON_NUMBER:
		return xform(ctx, a, TOK_NUMBER, v->raw, v->raw_len, out, 1);
	case JSON_TRUE:
		return xform(ctx, a, TOK_TRUE, a == POLICY_TOKENIZE ? "" : "true",
		    a == POLICY_TOKENIZE ? 0 : 4, out, 1);
	case JSON_FALSE:
		return xform(ctx, a, TOK_FALSE, a == POLICY_TOKENIZE ? "" : "false",
		    a == POLICY_TOKENIZE ? 0 : 5, out, 1);
	case JSON_NULL:
		return xform(ctx, a, TOK_NULL, a == POLICY_TOKENIZE ? "" : "null",
		    a == POLICY_TOKENIZE ? 0 : 4, out, 1);
	default:
		return -1;
	}
}

int
token_apply_text(struct token_ctx *ctx, enum policy_action a, const char *s,
    size_t len, struct buf *out)
{
	if (!utf8_valid(s, len))
		return 1;
	return xform(ctx, a, TOK_STRING, s, len, out, 0);
}

int
token_xform_response(void *arg, enum policy_action a,
    const struct json_token *v, struct buf *out)
{
	struct token_ctx *ctx = arg;
	const struct keys_pair *p = ctx->pair;
	struct buf	 val = { 0 };
	size_t		 mark = out->len;
	int		 type = 0, r = 1;

	if (v->type != JSON_STRING || p == NULL || p->shredded ||
	    token_ready() == -1)
		return buf_append(out, v->raw, v->raw_len);
	if (a == POLICY_TOKENIZE) {
		if ((r = tok_open(p, v->str, v->str_len, &type, &val)) == 0) {
			switch (type) {
			case TOK_STRING:
				r = json_write_string(out, val.data, val.len);
				break;
			case TOK_NUMBER:
				r = buf_append(out, val.data, val.len);
				break;
			case TOK_TRUE:
				r = buf_append_str(out, "true");
				break;
			case TOK_FALSE:
				r = buf_append_str(out, "false");
				break;
			default:
				r = buf_append_str(out, "null");
				break;
			}
		} else if (r == 1 && v->str_len >= 5 &&
		    memcmp(v->str, "tok1.", 5) == 0)
			ctx->tokens_foreign++;
	} else if (a == POLICY_FORMAT_PRESERVE) {
		if (memchr(v->str, '@', v->str_len) != NULL) {
			if (ctx->token_domain != NULL && *ctx->token_domain != '\0') {
				r = email_open(p, ctx->token_domain, v->str,
				    v->str_len, &val);
				if (r == 0)
					r = json_write_string(out, val.data, val.len);
				else if (r == 1)
					ctx->tokens_foreign++;
			}
		} else if (buf_reserve(&val, v->str_len) == -1)
			r = -1;
		else if ((r = ff1_value(p, v->str, v->str_len, val.data, 0)) == 0) {
			val.len = v->str_len;
			val.data[val.len] = '\0';
			r = json_write_string(out, val.data, val.len);
		}
	}
	buf_free(&val);
	if (r == 0) {
		ctx->tokens_restored++;
		return 0;
	}
	buf_truncate(out, mark);
	if (r == -1)
		return -1;
	return buf_append(out, v->raw, v->raw_len);
}
