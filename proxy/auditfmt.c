/* auditfmt.c -- disclosure log on-disk format: frames, sealing, chain, checkpoints (pure) */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#include "auditfmt.h"
#include "log.h"

static const char hdr_magic[8] = { 'S', 'G', 'A', 'U', 'D', 'I', 'T', '1' };
static const char ck_context[] = "subgate/v1 audit-checkpoint";
static const char kek_info[] = "subgate/v1 audit-kek";

#define HDR_FIXED	(1 + 8 + 2 + 8 * 4 + 32 + 32 + 1 + 1)
#define CK_FIXED	(1 + 1 + 8 * 4 + 32 + 32 + 8 + 8 + 32 + 1 + 64)
#define REC_PLAIN	17

/* ---- byte helpers ---- */

static int
append_u64(struct buf *b, uint64_t v)
{
	unsigned char	 p[8];

	auditfmt_put_u64(p, v);
	return buf_append(b, p, 8);
}

/* A bounds-checked reader over a body. */
struct cur {
	const unsigned char	*p;
	size_t			 n;
	int			 bad;
};

static const unsigned char *
cur_take(struct cur *c, size_t n)
{
	const unsigned char	*p;

	if (c->bad || c->n < n) {
		c->bad = 1;
		return NULL;
	}
	p = c->p;
	c->p += n;
	c->n -= n;
	return p;
}

static uint64_t
cur_u64(struct cur *c)
{
	const unsigned char	*p = cur_take(c, 8);

	return p ? auditfmt_get_u64(p) : 0;
}

static unsigned
cur_u8(struct cur *c)
{
	const unsigned char	*p = cur_take(c, 1);

	return p ? p[0] : 0;
}

static void
cur_copy(struct cur *c, void *dst, size_t n)
{
	const unsigned char	*p = cur_take(c, n);

	if (p != NULL)
		memcpy(dst, p, n);
	else
		memset(dst, 0, n);
}

static void
hex(char *out, const unsigned char *p, size_t n)
{
	static const char	 digits[] = "0123456789abcdef";
	size_t			 i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
unhex(const char *s, size_t slen, unsigned char *out, size_t n)
{
	size_t	 i;
	int	 hi, lo;

	if (slen != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		hi = OPENSSL_hexchar2int((unsigned char)s[2 * i]);
		lo = OPENSSL_hexchar2int((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

static int
is_zero(const unsigned char *p, size_t n)
{
	/* A preallocated tail is megabytes of zeros: compare, don't loop. */
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* ---- CRC-32C ---- */

static uint32_t		 crc_table[256];
static pthread_once_t	 crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
	uint32_t	 c;
	int		 i, k;

	for (i = 0; i < 256; i++) {
		c = (uint32_t)i;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw(uint32_t crc, const unsigned char *s, size_t n)
{
	uint64_t	c = ~crc, w;

	for (; n >= 8; n -= 8, s += 8) {
		memcpy(&w, s, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	while (n-- > 0)
		c = __builtin_ia32_crc32qi((uint32_t)c, *s++);
	return ~(uint32_t)c;
}
#endif

uint32_t
auditfmt_crc32c(uint32_t crc, const void *p, size_t n)
{
	const unsigned char	*s = p;

#if defined(__x86_64__)
	/* The SSE4.2 CRC32 instruction computes exactly CRC-32C, 8 bytes a
	 * step: the frame checksums are on the audit writer's hot path. */
	static int	hw = -1;

	if (hw == -1)
		hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	if (hw)
		return crc32c_hw(crc, s, n);
#endif
	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (n-- > 0)
		crc = crc_table[(crc ^ *s++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- frames ---- */

int
auditfmt_frame_encode(struct buf *out, const void *body, size_t len)
{
	unsigned char	 h[AUDITFMT_FRAME_HDR];

	if (len == 0 || len > AUDITFMT_MAX_BODY)
		return -1;
	auditfmt_put_u32(h, (uint32_t)len);
	auditfmt_put_u32(h + 4, auditfmt_crc32c(0, h, 4));
	auditfmt_put_u32(h + 8, auditfmt_crc32c(0, body, len));
	if (buf_reserve(out, sizeof(h) + len) == -1)
		return -1;
	buf_append(out, h, sizeof(h));
	buf_append(out, body, len);
	return 0;
}

int
auditfmt_frame_decode(const unsigned char *in, size_t len,
    const unsigned char **body, size_t *body_len, size_t *frame_len)
{
	uint32_t	 n;

	if (len < AUDITFMT_FRAME_HDR)
		return 0;
	/*
	 * The writer preallocates its segment with zeros, so a write torn by
	 * a crash leaves the pages it lost as zeros: a damaged frame with
	 * nothing but zeros after it is a torn tail. The zeros must follow
	 * the whole frame (its header, when the length is not readable).
	 */
	if (auditfmt_get_u32(in + 4) != auditfmt_crc32c(0, in, 4))
		return is_zero(in, len) || (len > AUDITFMT_FRAME_HDR &&
		    is_zero(in + AUDITFMT_FRAME_HDR, len - AUDITFMT_FRAME_HDR)) ?
		    0 : -1;
	n = auditfmt_get_u32(in);
	if (n == 0 || n > AUDITFMT_MAX_BODY)
		return -1;
	if (len - AUDITFMT_FRAME_HDR < n)
		return 0;
	if (auditfmt_get_u32(in + 8) != auditfmt_crc32c(0, in + AUDITFMT_FRAME_HDR, n))
		return len - AUDITFMT_FRAME_HDR > n &&
		    is_zero(in + AUDITFMT_FRAME_HDR + n,
		    len - AUDITFMT_FRAME_HDR - n) ? 0 : -1;
	*body = in + AUDITFMT_FRAME_HDR;
	*body_len = n;
	*frame_len = AUDITFMT_FRAME_HDR + (size_t)n;
	return 1;
}

/*
 * AES-256-GCM and SHA-256 are fetched once for the process: the implicit
 * EVP_aes_256_gcm()/EVP_sha256() look the implementation up again on every
 * init (name map, lock, parameter scans), and the audit writer seals and
 * chains every record.
 */
static EVP_CIPHER	*alg_gcm;
static EVP_MD		*alg_sha256;
static pthread_key_t	 chain_key;
static int		 chain_key_ok;
static pthread_once_t	 alg_once = PTHREAD_ONCE_INIT;

static void
chain_ctx_free(void *p)
{
	EVP_MD_CTX_free(p);
}

static void
alg_init(void)
{
	alg_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	alg_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	chain_key_ok = pthread_key_create(&chain_key, chain_ctx_free) == 0;
}

static const EVP_CIPHER *
gcm_cipher(void)
{
	pthread_once(&alg_once, alg_init);
	return alg_gcm;
}

/*
 * Each thread keeps one digest context for the chain, re-initialised per
 * frame (no allocation) and freed when the thread exits. It only ever
 * hashes chain heads and frames as written to disk (ciphertext or public
 * checkpoints), so nothing in it needs wiping.
 */
static EVP_MD_CTX *
chain_ctx(void)
{
	EVP_MD_CTX	*ctx;

	pthread_once(&alg_once, alg_init);
	if (alg_sha256 == NULL || !chain_key_ok)
		return NULL;
	if ((ctx = pthread_getspecific(chain_key)) != NULL)
		return ctx;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return NULL;
	if (pthread_setspecific(chain_key, ctx) != 0) {
		EVP_MD_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void
auditfmt_chain_extend(unsigned char head[32], const unsigned char *frame,
    size_t len)
{
	EVP_MD_CTX	*ctx = chain_ctx();
	unsigned int	 n = 32;

	/* Only allocation can fail here; a zero head then fails verification. */
	if (ctx == NULL || EVP_DigestInit_ex2(ctx, alg_sha256, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, head, 32) != 1 ||
	    EVP_DigestUpdate(ctx, frame, len) != 1 ||
	    EVP_DigestFinal_ex(ctx, head, &n) != 1)
		memset(head, 0, 32);
}

/* ---- segment header ---- */

int
auditfmt_header_encode(struct buf *out, const struct auditfmt_header *h)
{
	unsigned char	 v[2] = { 0, 1 };
	size_t		 ilen = strlen(h->instance), i;
	int		 rc = 0;

	if (ilen > AUDITFMT_INSTANCE_MAX || h->nreaders == 0 ||
	    h->nreaders > AUDITFMT_MAX_READERS)
		return -1;
	rc |= buf_append_char(out, AUDITFMT_HEADER);
	rc |= buf_append(out, hdr_magic, sizeof(hdr_magic));
	rc |= buf_append(out, v, 2);
	rc |= append_u64(out, h->segment_id);
	rc |= append_u64(out, h->first_seq);
	rc |= append_u64(out, h->created_ms);
	rc |= append_u64(out, h->prev_segment_id);
	rc |= buf_append(out, h->prev_head, 32);
	rc |= buf_append(out, h->signer_pub, 32);
	rc |= buf_append_char(out, (char)ilen);
	rc |= buf_append(out, h->instance, ilen);
	rc |= buf_append_char(out, (char)h->nreaders);
	for (i = 0; i < h->nreaders; i++) {
		rc |= buf_append(out, h->readers[i].id, 32);
		rc |= buf_append(out, h->readers[i].eph, 32);
		rc |= buf_append(out, h->readers[i].wrapped, 48);
	}
	return rc ? -1 : 0;
}

int
auditfmt_header_decode(const unsigned char *body, size_t len,
    struct auditfmt_header *h, char *err, size_t errlen)
{
	struct cur		 c = { body, len, 0 };
	const unsigned char	*p;
	size_t			 ilen, i;

	memset(h, 0, sizeof(*h));
	if (cur_u8(&c) != AUDITFMT_HEADER) {
		seterr(err, errlen, "not a segment header");
		return -1;
	}
	p = cur_take(&c, 10);
	if (p == NULL || memcmp(p, hdr_magic, 8) != 0 || p[8] != 0 ||
	    p[9] != 1) {
		seterr(err, errlen, "unknown segment format");
		return -1;
	}
	h->segment_id = cur_u64(&c);
	h->first_seq = cur_u64(&c);
	h->created_ms = cur_u64(&c);
	h->prev_segment_id = cur_u64(&c);
	cur_copy(&c, h->prev_head, 32);
	cur_copy(&c, h->signer_pub, 32);
	ilen = cur_u8(&c);
	if ((p = cur_take(&c, ilen)) != NULL)
		memcpy(h->instance, p, ilen);
	h->nreaders = cur_u8(&c);
	if (h->nreaders == 0 || h->nreaders > AUDITFMT_MAX_READERS)
		c.bad = 1;
	for (i = 0; !c.bad && i < h->nreaders; i++) {
		cur_copy(&c, h->readers[i].id, 32);
		cur_copy(&c, h->readers[i].eph, 32);
		cur_copy(&c, h->readers[i].wrapped, 48);
	}
	if (c.bad || c.n != 0) {
		seterr(err, errlen, "malformed segment header");
		memset(h, 0, sizeof(*h));
		return -1;
	}
	return 0;
}

int
auditfmt_pub_raw(EVP_PKEY *k, unsigned char out[32])
{
	size_t	 n = 32;

	if (EVP_PKEY_get_raw_public_key(k, out, &n) != 1 || n != 32)
		return -1;
	return 0;
}

static void
reader_id(const unsigned char pub[32], unsigned char id[32])
{
	SHA256(pub, 32, id);
}

/* KEK from the X25519 agreement of priv with peer; eph/rpub name the pair. */
static int
derive_kek(EVP_PKEY *priv, EVP_PKEY *peer, uint64_t segment_id,
    const unsigned char eph[32], const unsigned char rpub[32],
    unsigned char kek[32])
{
	EVP_PKEY_CTX	*dctx = NULL;
	EVP_KDF		*kdf = NULL;
	EVP_KDF_CTX	*kctx = NULL;
	OSSL_PARAM	 params[4];
	unsigned char	 ss[32], info[sizeof(kek_info) - 1 + 8 + 64];
	size_t		 sslen = sizeof(ss);
	int		 rc = -1;

	if ((dctx = EVP_PKEY_CTX_new(priv, NULL)) == NULL ||
	    EVP_PKEY_derive_init(dctx) != 1 ||
	    EVP_PKEY_derive_set_peer(dctx, peer) != 1 ||
	    EVP_PKEY_derive(dctx, ss, &sslen) != 1 || sslen != 32)
		goto fail;
	/* An all-zero shared secret means a small-order peer key. */
	if (is_zero(ss, 32))
		goto fail;
	memcpy(info, kek_info, sizeof(kek_info) - 1);
	auditfmt_put_u64(info + sizeof(kek_info) - 1, segment_id);
	memcpy(info + sizeof(kek_info) - 1 + 8, eph, 32);
	memcpy(info + sizeof(kek_info) - 1 + 40, rpub, 32);
	if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL ||
	    (kctx = EVP_KDF_CTX_new(kdf)) == NULL)
		goto fail;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
	    (char *)(uintptr_t)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ss,
	    sslen);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    info, sizeof(info));
	params[3] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, kek, 32, params) != 1)
		goto fail;
	rc = 0;
 fail:
	OPENSSL_cleanse(ss, sizeof(ss));
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	EVP_PKEY_CTX_free(dctx);
	return rc;
}

/*
 * AES-256-GCM on ctx. key NULL: ctx is already keyed (only the IV is set,
 * which skips the key schedule and the GHASH table). The plaintext (enc)
 * is the concatenation of the nin pieces in[] (lengths inlen[]); the
 * ciphertext (dec) is in[0] with the tag at its end. enc: out = ct | tag;
 * dec: out = pt.
 */
static int
gcm_run(EVP_CIPHER_CTX *ctx, int enc, const unsigned char *key,
    const unsigned char iv[12], const unsigned char *aad, size_t aadlen,
    const unsigned char *const *in, const size_t *inlen, size_t nin,
    unsigned char *out)
{
	const EVP_CIPHER	*cipher = NULL;
	size_t			 dlen = 0, off = 0, len, i;
	int			 n;

	for (i = 0; i < nin; i++) {
		if (inlen[i] > INT32_MAX || dlen > INT32_MAX - inlen[i])
			return -1;
		dlen += inlen[i];
	}
	if (!enc) {
		if (nin != 1 || dlen < AUDITFMT_TAG)
			return -1;
		dlen -= AUDITFMT_TAG;
	}
	if (key != NULL && (cipher = gcm_cipher()) == NULL)
		return -1;
	if (EVP_CipherInit_ex(ctx, cipher, NULL, key, iv, enc) != 1)
		return -1;
	if (aadlen > 0 && EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1)
		return -1;
	if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AUDITFMT_TAG,
	    (void *)(uintptr_t)(in[0] + dlen)) != 1)
		return -1;
	for (i = 0; i < nin; i++) {
		len = enc ? inlen[i] : dlen;
		if (len == 0)
			continue;
		if (EVP_CipherUpdate(ctx, out + off, &n, in[i], (int)len) != 1)
			goto fail;
		off += (size_t)n;
	}
	/* GCM is a stream mode: every update writes what it was given. */
	if (off != dlen || EVP_CipherFinal_ex(ctx, out + dlen, &n) != 1)
		goto fail;
	if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AUDITFMT_TAG,
	    out + dlen) != 1)
		goto fail;
	return 0;
 fail:
	OPENSSL_cleanse(out, dlen);
	return -1;
}

/* AES-256-GCM, one shot. enc: out = ct | tag; dec: in = ct | tag. */
static int
gcm(int enc, const unsigned char key[32], const unsigned char iv[12],
    const unsigned char *aad, size_t aadlen, const unsigned char *in,
    size_t inlen, unsigned char *out)
{
	EVP_CIPHER_CTX	*ctx;
	int		 rc;

	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return -1;
	rc = gcm_run(ctx, enc, key, iv, aad, aadlen, &in, &inlen, 1, out);
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

static void
wrap_aad(unsigned char aad[40], uint64_t segment_id, const unsigned char id[32])
{
	auditfmt_put_u64(aad, segment_id);
	memcpy(aad + 8, id, 32);
}

int
auditfmt_header_seal_key(struct auditfmt_header *h,
    const unsigned char dkey[32], EVP_PKEY *const *readers, size_t n,
    char *err, size_t errlen)
{
	EVP_PKEY		*eph = NULL;
	struct auditfmt_reader	*r;
	unsigned char		 rpub[32], kek[32], aad[40], iv[12] = { 0 };
	size_t			 i;
	int			 rc = -1;

	if (n == 0 || n > AUDITFMT_MAX_READERS) {
		seterr(err, errlen, "between 1 and %d audit reader keys needed",
		    AUDITFMT_MAX_READERS);
		return -1;
	}
	for (i = 0; i < n; i++) {
		r = &h->readers[i];
		if (auditfmt_pub_raw(readers[i], rpub) == -1 ||
		    EVP_PKEY_get_base_id(readers[i]) != EVP_PKEY_X25519) {
			seterr(err, errlen, "audit reader key %zu is not X25519",
			    i + 1);
			goto fail;
		}
		reader_id(rpub, r->id);
		if ((eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519")) == NULL ||
		    auditfmt_pub_raw(eph, r->eph) == -1 ||
		    derive_kek(eph, readers[i], h->segment_id, r->eph, rpub,
		    kek) == -1) {
			seterr(err, errlen, "key agreement with audit reader "
			    "key %zu failed", i + 1);
			goto fail;
		}
		wrap_aad(aad, h->segment_id, r->id);
		if (gcm(1, kek, iv, aad, sizeof(aad), dkey, 32, r->wrapped)) {
			seterr(err, errlen, "wrapping the segment key failed");
			goto fail;
		}
		OPENSSL_cleanse(kek, sizeof(kek));
		EVP_PKEY_free(eph);
		eph = NULL;
	}
	h->nreaders = n;
	rc = 0;
 fail:
	OPENSSL_cleanse(kek, sizeof(kek));
	EVP_PKEY_free(eph);
	return rc;
}

int
auditfmt_header_open_key(const struct auditfmt_header *h, EVP_PKEY *reader,
    unsigned char dkey[32], char *err, size_t errlen)
{
	EVP_PKEY			*peer = NULL;
	const struct auditfmt_reader	*r = NULL;
	unsigned char			 rpub[32], id[32], kek[32], aad[40];
	unsigned char			 iv[12] = { 0 };
	size_t				 i;
	int				 rc = -1;

	if (auditfmt_pub_raw(reader, rpub) == -1) {
		seterr(err, errlen, "reader key is not X25519");
		return -1;
	}
	reader_id(rpub, id);
	for (i = 0; i < h->nreaders; i++)
		if (memcmp(h->readers[i].id, id, 32) == 0)
			r = &h->readers[i];
	if (r == NULL) {
		seterr(err, errlen, "segment %" PRIu64 " is not readable with "
		    "this reader key", h->segment_id);
		return -1;
	}
	if ((peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, r->eph,
	    32)) == NULL || derive_kek(reader, peer, h->segment_id, r->eph,
	    rpub, kek) == -1) {
		seterr(err, errlen, "segment %" PRIu64 ": key agreement failed",
		    h->segment_id);
		goto fail;
	}
	wrap_aad(aad, h->segment_id, r->id);
	if (gcm(0, kek, iv, aad, sizeof(aad), r->wrapped, 48, dkey) == -1) {
		seterr(err, errlen, "segment %" PRIu64 ": wrapped key does not "
		    "authenticate", h->segment_id);
		goto fail;
	}
	rc = 0;
 fail:
	OPENSSL_cleanse(kek, sizeof(kek));
	EVP_PKEY_free(peer);
	return rc;
}

/* ---- records ---- */

static void
rec_nonce(unsigned char iv[12], uint64_t frame_index)
{
	memset(iv, 0, 4);
	auditfmt_put_u64(iv + 4, frame_index);
}

int
auditfmt_record_seal(struct buf *out, const unsigned char dkey[32],
    uint64_t segment_id, uint64_t frame_index, uint64_t seq, uint64_t time_ms,
    const char *json, size_t len)
{
	unsigned char	 aad[8 + REC_PLAIN], iv[12];

	if (len > AUDITFMT_MAX_BODY - REC_PLAIN - AUDITFMT_TAG ||
	    buf_reserve(out, REC_PLAIN + len + AUDITFMT_TAG) == -1)
		return -1;
	auditfmt_put_u64(aad, segment_id);
	aad[8] = AUDITFMT_RECORD;
	auditfmt_put_u64(aad + 9, seq);
	auditfmt_put_u64(aad + 17, time_ms);
	rec_nonce(iv, frame_index);
	buf_append(out, aad + 8, REC_PLAIN);
	if (gcm(1, dkey, iv, aad, sizeof(aad), (const unsigned char *)json, len,
	    (unsigned char *)out->data + out->len) == -1) {
		buf_truncate(out, out->len - REC_PLAIN);
		return -1;
	}
	out->len += len + AUDITFMT_TAG;
	out->data[out->len] = '\0';
	return 0;
}

int
auditfmt_record_peek(const unsigned char *body, size_t len, uint64_t *seq,
    uint64_t *time_ms)
{
	if (len < REC_PLAIN + AUDITFMT_TAG || body[0] != AUDITFMT_RECORD)
		return -1;
	*seq = auditfmt_get_u64(body + 1);
	*time_ms = auditfmt_get_u64(body + 9);
	return 0;
}

/* Open a record body with ctx (keyed already when key is NULL). */
static int
record_open(EVP_CIPHER_CTX *ctx, const unsigned char *key, struct buf *out,
    uint64_t segment_id, uint64_t frame_index, const unsigned char *body,
    size_t len)
{
	unsigned char		 aad[8 + REC_PLAIN], iv[12];
	const unsigned char	*ct = body + REC_PLAIN;
	size_t			 ptlen, ctlen;

	buf_truncate(out, 0);
	if (len < REC_PLAIN + AUDITFMT_TAG || body[0] != AUDITFMT_RECORD)
		return -1;
	ctlen = len - REC_PLAIN;
	ptlen = ctlen - AUDITFMT_TAG;
	if (buf_reserve(out, ptlen) == -1)
		return -1;
	auditfmt_put_u64(aad, segment_id);
	memcpy(aad + 8, body, REC_PLAIN);
	rec_nonce(iv, frame_index);
	if (gcm_run(ctx, 0, key, iv, aad, sizeof(aad), &ct, &ctlen, 1,
	    (unsigned char *)out->data) == -1)
		return -1;
	out->len = ptlen;
	out->data[ptlen] = '\0';
	return 0;
}

int
auditfmt_record_open(struct buf *out, const unsigned char dkey[32],
    uint64_t segment_id, uint64_t frame_index, const unsigned char *body,
    size_t len)
{
	EVP_CIPHER_CTX	*ctx;
	int		 rc;

	buf_truncate(out, 0);
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return -1;
	rc = record_open(ctx, dkey, out, segment_id, frame_index, body, len);
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

/* A segment data key, expanded once into an AES-256-GCM context. */
struct auditfmt_segkey {
	EVP_CIPHER_CTX	*ctx;
};

struct auditfmt_segkey *
auditfmt_segkey_new(const unsigned char dkey[32])
{
	struct auditfmt_segkey	*k;
	const EVP_CIPHER	*cipher;

	if ((cipher = gcm_cipher()) == NULL ||
	    (k = calloc(1, sizeof(*k))) == NULL)
		return NULL;
	if ((k->ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_CipherInit_ex(k->ctx, cipher, NULL, dkey, NULL, 1) != 1) {
		auditfmt_segkey_free(k);
		return NULL;
	}
	return k;
}

void
auditfmt_segkey_free(struct auditfmt_segkey *k)
{
	if (k == NULL)
		return;
	/* The provider wipes its key schedule when the context is freed. */
	EVP_CIPHER_CTX_free(k->ctx);
	free(k);
}

int
auditfmt_segkey_seal_frame(struct auditfmt_segkey *k, struct buf *out,
    uint64_t segment_id, uint64_t frame_index, uint64_t seq, uint64_t time_ms,
    const char *head, size_t headlen, const char *rest, size_t restlen)
{
	unsigned char		 aad[8 + REC_PLAIN], iv[12], *f;
	const unsigned char	*in[2];
	size_t			 inlen[2], blen;

	if (headlen > AUDITFMT_MAX_BODY - REC_PLAIN - AUDITFMT_TAG ||
	    restlen > AUDITFMT_MAX_BODY - REC_PLAIN - AUDITFMT_TAG - headlen)
		return -1;
	blen = REC_PLAIN + headlen + restlen + AUDITFMT_TAG;
	if (buf_reserve(out, AUDITFMT_FRAME_HDR + blen) == -1)
		return -1;
	f = (unsigned char *)out->data + out->len;
	auditfmt_put_u64(aad, segment_id);
	aad[8] = AUDITFMT_RECORD;
	auditfmt_put_u64(aad + 9, seq);
	auditfmt_put_u64(aad + 17, time_ms);
	memcpy(f + AUDITFMT_FRAME_HDR, aad + 8, REC_PLAIN);
	rec_nonce(iv, frame_index);
	in[0] = (const unsigned char *)head;
	inlen[0] = headlen;
	in[1] = (const unsigned char *)rest;
	inlen[1] = restlen;
	if (gcm_run(k->ctx, 1, NULL, iv, aad, sizeof(aad), in, inlen, 2,
	    f + AUDITFMT_FRAME_HDR + REC_PLAIN) == -1) {
		/* Bytes past out->len are not wiped by buf_truncate. */
		OPENSSL_cleanse(f, AUDITFMT_FRAME_HDR + REC_PLAIN);
		return -1;
	}
	auditfmt_put_u32(f, (uint32_t)blen);
	auditfmt_put_u32(f + 4, auditfmt_crc32c(0, f, 4));
	auditfmt_put_u32(f + 8, auditfmt_crc32c(0, f + AUDITFMT_FRAME_HDR, blen));
	out->len += AUDITFMT_FRAME_HDR + blen;
	out->data[out->len] = '\0';
	return 0;
}

int
auditfmt_segkey_open(struct auditfmt_segkey *k, struct buf *out,
    uint64_t segment_id, uint64_t frame_index, const unsigned char *body,
    size_t len)
{
	return record_open(k->ctx, NULL, out, segment_id, frame_index, body,
	    len);
}

/* ---- checkpoints ---- */

static int
ck_encode_unsigned(struct buf *out, const struct auditfmt_checkpoint *c)
{
	size_t	 ilen = strlen(c->instance);
	int	 rc = 0;

	if (ilen > AUDITFMT_INSTANCE_MAX)
		return -1;
	rc |= buf_append_char(out, AUDITFMT_CHECKPOINT);
	rc |= buf_append_char(out, (char)c->kind);
	rc |= append_u64(out, c->segment_id);
	rc |= append_u64(out, c->last_seq);
	rc |= append_u64(out, c->count);
	rc |= append_u64(out, c->time_ms);
	rc |= buf_append(out, c->head, 32);
	rc |= buf_append(out, c->next_pub, 32);
	rc |= append_u64(out, c->aux1);
	rc |= append_u64(out, c->aux2);
	rc |= buf_append(out, c->aux_head, 32);
	rc |= buf_append_char(out, (char)ilen);
	rc |= buf_append(out, c->instance, ilen);
	return rc ? -1 : 0;
}

/* The signed message: context string | unsigned body. */
static int
ck_message(struct buf *m, const struct auditfmt_checkpoint *c)
{
	if (buf_append(m, ck_context, sizeof(ck_context) - 1) == -1)
		return -1;
	return ck_encode_unsigned(m, c);
}

int
auditfmt_checkpoint_sign(struct buf *out, struct auditfmt_checkpoint *c,
    EVP_PKEY *signer)
{
	struct buf	 m = { 0 };
	EVP_MD_CTX	*ctx = NULL;
	size_t		 siglen = 64;
	int		 rc = -1;

	if (ck_message(&m, c) == -1 || (ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(ctx, NULL, NULL, NULL, signer) != 1 ||
	    EVP_DigestSign(ctx, c->sig, &siglen, (unsigned char *)m.data,
	    m.len) != 1 || siglen != 64)
		goto fail;
	if (ck_encode_unsigned(out, c) == -1 ||
	    buf_append(out, c->sig, 64) == -1)
		goto fail;
	rc = 0;
 fail:
	EVP_MD_CTX_free(ctx);
	buf_free(&m);
	return rc;
}

int
auditfmt_checkpoint_decode(const unsigned char *body, size_t len,
    struct auditfmt_checkpoint *c, char *err, size_t errlen)
{
	struct cur		 cu = { body, len, 0 };
	const unsigned char	*p;
	size_t			 ilen;

	memset(c, 0, sizeof(*c));
	if (cur_u8(&cu) != AUDITFMT_CHECKPOINT) {
		seterr(err, errlen, "not a checkpoint");
		return -1;
	}
	c->kind = (int)cur_u8(&cu);
	c->segment_id = cur_u64(&cu);
	c->last_seq = cur_u64(&cu);
	c->count = cur_u64(&cu);
	c->time_ms = cur_u64(&cu);
	cur_copy(&cu, c->head, 32);
	cur_copy(&cu, c->next_pub, 32);
	c->aux1 = cur_u64(&cu);
	c->aux2 = cur_u64(&cu);
	cur_copy(&cu, c->aux_head, 32);
	ilen = cur_u8(&cu);
	if ((p = cur_take(&cu, ilen)) != NULL)
		memcpy(c->instance, p, ilen);
	cur_copy(&cu, c->sig, 64);
	if (cu.bad || cu.n != 0 || c->kind < AUDITFMT_CK_PERIODIC ||
	    c->kind > AUDITFMT_CK_RETENTION) {
		seterr(err, errlen, "malformed checkpoint");
		memset(c, 0, sizeof(*c));
		return -1;
	}
	return 0;
}

int
auditfmt_checkpoint_verify(const struct auditfmt_checkpoint *c,
    const unsigned char pub[32])
{
	struct buf	 m = { 0 };
	EVP_PKEY	*k = NULL;
	EVP_MD_CTX	*ctx = NULL;
	int		 ok = 0;

	if (ck_message(&m, c) == -1 ||
	    (k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub,
	    32)) == NULL || (ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k) != 1)
		goto out;
	ok = EVP_DigestVerify(ctx, c->sig, 64, (unsigned char *)m.data,
	    m.len) == 1;
 out:
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(k);
	buf_free(&m);
	return ok;
}

static const char *const kind_names[] = {
	NULL, "periodic", "close", "recovery", "retention"
};

const char *
auditfmt_kind_name(int kind)
{
	if (kind < AUDITFMT_CK_PERIODIC || kind > AUDITFMT_CK_RETENTION)
		return "unknown";
	return kind_names[kind];
}

int
auditfmt_checkpoint_line(struct buf *out, const struct auditfmt_checkpoint *c)
{
	char	 t[32], h[65], n[65], s[129];

	auditfmt_time_format(c->time_ms, t);
	hex(h, c->head, 32);
	hex(n, c->next_pub, 32);
	hex(s, c->sig, 64);
	return buf_printf(out, "v1 kind=%s instance=%s segment=%" PRIu64
	    " seq=%" PRIu64 " count=%" PRIu64 " time=%s head=%s next=%s sig=%s",
	    auditfmt_kind_name(c->kind), c->instance, c->segment_id,
	    c->last_seq, c->count, t, h, n, s);
}

static int
parse_u64(const char *s, size_t n, uint64_t *v)
{
	uint64_t	 x = 0;
	size_t		 i;

	if (n == 0 || n > 20)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' ||
		    x > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*v = x;
	return 0;
}

int
auditfmt_checkpoint_parse_line(const char *line, struct auditfmt_checkpoint *c,
    char *err, size_t errlen)
{
	const char	*p, *k, *eq, *e;
	char		 tbuf[64];
	unsigned	 seen = 0;
	size_t		 kl, vl;
	int		 i, bad = 0;

	memset(c, 0, sizeof(*c));
	if ((p = strstr(line, "v1 ")) == NULL) {
		seterr(err, errlen, "not a checkpoint line (no \"v1 \")");
		return -1;
	}
	p += 3;
	while (*p != '\0' && !bad) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '\n' || *p == '\r')
			break;
		k = p;
		e = p + strcspn(p, " \t\r\n");
		if ((eq = memchr(k, '=', (size_t)(e - k))) == NULL) {
			bad = 1;
			break;
		}
		kl = (size_t)(eq - k);
		vl = (size_t)(e - eq - 1);
		eq++;
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
		if (KEY("kind")) {
			for (i = AUDITFMT_CK_PERIODIC; i <= AUDITFMT_CK_RETENTION;
			    i++)
				if (strlen(kind_names[i]) == vl &&
				    memcmp(kind_names[i], eq, vl) == 0)
					c->kind = i;
			bad |= c->kind == 0;
			seen |= 1;
		} else if (KEY("instance")) {
			bad |= vl > AUDITFMT_INSTANCE_MAX;
			if (!bad)
				memcpy(c->instance, eq, vl);
		} else if (KEY("segment")) {
			bad |= parse_u64(eq, vl, &c->segment_id);
			seen |= 2;
		} else if (KEY("seq")) {
			bad |= parse_u64(eq, vl, &c->last_seq);
			seen |= 4;
		} else if (KEY("count")) {
			bad |= parse_u64(eq, vl, &c->count);
		} else if (KEY("time")) {
			bad |= vl >= sizeof(tbuf);
			if (!bad) {
				memcpy(tbuf, eq, vl);
				tbuf[vl] = '\0';
				bad |= auditfmt_time_parse(tbuf, &c->time_ms);
			}
		} else if (KEY("head")) {
			bad |= unhex(eq, vl, c->head, 32);
			seen |= 8;
		} else if (KEY("next")) {
			bad |= unhex(eq, vl, c->next_pub, 32);
		} else if (KEY("sig")) {
			bad |= unhex(eq, vl, c->sig, 64);
			seen |= 16;
		}
#undef KEY
		p = e;
	}
	if (bad || seen != 31) {
		seterr(err, errlen, "malformed checkpoint line (kind, segment, "
		    "seq, head and sig are needed)");
		return -1;
	}
	return 0;
}

/* ---- scanning ---- */

/* The longest checkpoint frame: header, fixed fields, instance, sig. */
#define CK_FRAME_MAX	(AUDITFMT_FRAME_HDR + 2 + 4 * 8 + 32 + 32 + 2 * 8 + \
	    32 + 1 + AUDITFMT_INSTANCE_MAX + 64)

/* 1 if an intact close checkpoint frame, starting at or after from, covers
 * the last non-zero byte (end - 1) of data[0..len). */
static int
close_ends(const unsigned char *data, size_t len, size_t from, size_t end)
{
	struct auditfmt_checkpoint	 ck;
	const unsigned char		*body;
	size_t				 p, blen, flen;

	p = end > from + CK_FRAME_MAX ? end - CK_FRAME_MAX : from;
	for (; p + AUDITFMT_FRAME_HDR < end; p++)
		if (auditfmt_frame_decode(data + p, len - p, &body, &blen,
		    &flen) == 1 && p + flen >= end &&
		    body[0] == AUDITFMT_CHECKPOINT &&
		    auditfmt_checkpoint_decode(body, blen, &ck, NULL, 0) == 0 &&
		    ck.kind == AUDITFMT_CK_CLOSE)
			return 1;
	return 0;
}

int
auditfmt_tail_torn(const unsigned char *data, size_t len, size_t off)
{
	size_t	 end;

	if (off >= len)
		return 1;
	/* The header is synced in a segment's first batch, before any other
	 * (and that batch fits in its first page): damage to it is never a
	 * lost last batch. */
	if (off == 0)
		return 0;
	/* Anything non-zero beyond the window: not one lost batch. */
	if (len - off > AUDITFMT_MAX_BATCH &&
	    !is_zero(data + off + AUDITFMT_MAX_BATCH,
	    len - off - AUDITFMT_MAX_BATCH))
		return 0;
	for (end = len < off + AUDITFMT_MAX_BATCH ? len :
	    off + AUDITFMT_MAX_BATCH; end > off && data[end - 1] == 0; end--)
		;
	/* A closed segment was cut and synced before its close batch. */
	return !close_ends(data, len, off, end);
}

void
auditfmt_segment_scan(const unsigned char *data, size_t len,
    struct auditfmt_scan *s)
{
	struct auditfmt_checkpoint	 ck;
	const unsigned char		*body;
	size_t				 blen, flen, off = 0;
	uint64_t			 seq, t;
	int				 r;

	memset(s, 0, sizeof(*s));
	while (off < len) {
		r = auditfmt_frame_decode(data + off, len - off, &body, &blen,
		    &flen);
		if (r == 0) {
			/* Zeros from a frame boundary on: preallocated space. */
			s->tail = is_zero(data + off, len - off) ?
			    AUDITFMT_TAIL_CLEAN : AUDITFMT_TAIL_TORN;
			break;
		}
		if (r == -1) {
			/* Damage in the last batch's window: a lost batch. */
			if (!s->closed && auditfmt_tail_torn(data, len, off))
				s->tail = AUDITFMT_TAIL_TORN;
			else
				s->tail = AUDITFMT_TAIL_CORRUPT;
			break;
		}
		if (s->frames == 0) {
			if (auditfmt_header_decode(body, blen, &s->header, NULL,
			    0) == -1)
				goto corrupt;
			s->has_header = 1;
			memcpy(s->head, s->header.prev_head, 32);
			memcpy(s->signer_pub, s->header.signer_pub, 32);
			s->last_seq = s->header.first_seq - 1;
			s->last_time_ms = s->header.created_ms;
			s->closed = 0;
		} else if (body[0] == AUDITFMT_RECORD) {
			if (auditfmt_record_peek(body, blen, &seq, &t) == -1)
				goto corrupt;
			s->last_seq = seq;
			s->last_time_ms = t;
			s->records++;
			s->closed = 0;
		} else if (body[0] == AUDITFMT_CHECKPOINT) {
			if (auditfmt_checkpoint_decode(body, blen, &ck, NULL,
			    0) == -1)
				goto corrupt;
			memcpy(s->signer_pub, ck.next_pub, 32);
			s->closed = ck.kind == AUDITFMT_CK_CLOSE;
		} else
			goto corrupt;
		auditfmt_chain_extend(s->head, data + off, flen);
		off += flen;
		s->frames++;
		s->valid_len = off;
	}
	return;
 corrupt:
	s->tail = AUDITFMT_TAIL_CORRUPT;
}

int
auditfmt_segment_recovery(const unsigned char *data, size_t len,
    struct auditfmt_checkpoint *c)
{
	const unsigned char	*body;
	size_t			 blen, flen;

	if (auditfmt_frame_decode(data, len, &body, &blen, &flen) != 1 ||
	    body[0] != AUDITFMT_HEADER)
		return 0;
	data += flen;
	len -= flen;
	if (auditfmt_frame_decode(data, len, &body, &blen, &flen) != 1 ||
	    auditfmt_checkpoint_decode(body, blen, c, NULL, 0) == -1)
		return 0;
	return c->kind == AUDITFMT_CK_RECOVERY;
}

/* ---- verification ---- */

struct vstate {
	unsigned char	 key[32];
	unsigned char	 head[32];
	int		 have_head;
	uint64_t	 next_seq;	/* 0: not known yet */
	char		*msg;
	size_t		 msglen;
	enum auditfmt_verdict verdict;
	uint64_t	 max_kept;
	uint64_t	 first_id;
	unsigned char	 first_prev_head[32];
	int		 retention_anchor_ok;
	struct auditfmt_checkpoint anchor;
	int		 have_anchor, anchor_found;
	struct auditfmt_verify_stats st;
	/* retention statements to check against the kept headers */
	struct auditfmt_checkpoint *ret;
	size_t		 nret;
};

static enum auditfmt_verdict
vfail(struct vstate *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static enum auditfmt_verdict
vfail(struct vstate *v, const char *fmt, ...)
{
	va_list	 ap;

	if (v->verdict != AUDITFMT_TAMPERED && v->msg != NULL &&
	    v->msglen > 0) {
		va_start(ap, fmt);
		vsnprintf(v->msg, v->msglen, fmt, ap);
		va_end(ap);
	}
	v->verdict = AUDITFMT_TAMPERED;
	return v->verdict;
}

/* Key chain of deleted segments: verify each hand-over from the first key. */
static int
verify_keychain(struct vstate *v, const unsigned char *kc, size_t len)
{
	struct auditfmt_checkpoint	 ck;
	const unsigned char		*body, *lastf = NULL;
	size_t				 blen, flen, lastlen = 0, off = 0;
	uint64_t			 prevseq = 0;
	int				 r, have_last = 0;
	struct auditfmt_checkpoint	 last;

	while (off < len) {
		r = auditfmt_frame_decode(kc + off, len - off, &body, &blen,
		    &flen);
		if (r != 1 || auditfmt_checkpoint_decode(body, blen, &ck, NULL,
		    0) == -1) {
			vfail(v, "keychain offset %zu: damaged entry", off);
			return -1;
		}
		if (ck.segment_id >= v->first_id)
			break;
		if (ck.last_seq < prevseq) {
			vfail(v, "keychain offset %zu: checkpoints out of order",
			    off);
			return -1;
		}
		if (!auditfmt_checkpoint_verify(&ck, v->key)) {
			vfail(v, "keychain: bad signature on checkpoint "
			    "(segment %" PRIu64 " seq %" PRIu64 ")",
			    ck.segment_id, ck.last_seq);
			return -1;
		}
		memcpy(v->key, ck.next_pub, 32);
		prevseq = ck.last_seq;
		last = ck;
		have_last = 1;
		lastf = kc + off;
		lastlen = flen;
		off += flen;
	}
	/* A cleanly closed predecessor fixes the chain head we must find. */
	if (have_last && last.kind == AUDITFMT_CK_CLOSE &&
	    last.segment_id == v->first_id - 1) {
		memcpy(v->head, last.head, 32);
		auditfmt_chain_extend(v->head, lastf, lastlen);
		v->have_head = 1;
		v->next_seq = last.last_seq + 1;
	}
	return 0;
}

static void
check_anchor(struct vstate *v, const struct auditfmt_checkpoint *ck,
    uint64_t id, size_t off)
{
	if (!v->have_anchor || memcmp(ck->sig, v->anchor.sig, 64) != 0)
		return;
	if (ck->segment_id != v->anchor.segment_id ||
	    ck->last_seq != v->anchor.last_seq ||
	    memcmp(ck->head, v->anchor.head, 32) != 0) {
		vfail(v, "segment %" PRIu64 " offset %zu: checkpoint differs "
		    "from the anchor", id, off);
		return;
	}
	v->anchor_found = 1;
}

/*
 * One segment, frames in data[0..limit). recovered: the next segment's
 * recovery checkpoint says limit is where this one's valid frames end.
 * Returns 1 if the segment ended with a close checkpoint.
 */
static int
verify_segment(struct vstate *v, const struct auditfmt_segdata *sg,
    size_t limit, int recovered, int last, int first, uint64_t prev_id,
    uint64_t prev_len)
{
	struct auditfmt_header		 h;
	struct auditfmt_checkpoint	 ck, *nr;
	const unsigned char		*body;
	size_t				 blen, flen, off = 0;
	uint64_t			 fi = 0, records = 0, seq, t;
	int				 r, closed = 0;
	char				 e[128];

	while (off < limit && v->verdict != AUDITFMT_TAMPERED) {
		r = auditfmt_frame_decode(sg->data + off, limit - off, &body,
		    &blen, &flen);
		if (r == -1 && (!last || recovered || closed ||
		    !auditfmt_tail_torn(sg->data, limit, off)))
			return vfail(v, "segment %" PRIu64 " offset %zu: damaged "
			    "frame (checksum or length)", sg->id, off), 0;
		if (r == -1) {
			if (v->verdict == AUDITFMT_INTACT && v->msg != NULL)
				snprintf(v->msg, v->msglen, "segment %" PRIu64
				    " offset %zu: torn tail (damage within the "
				    "last batch: a write a crash cut short), not "
				    "yet closed by a recovery checkpoint", sg->id,
				    off);
			v->verdict = AUDITFMT_TORN;
			break;
		}
		/* Zeros from a frame boundary on end the data, as EOF does. */
		if (r == 0 && is_zero(sg->data + off, limit - off))
			break;
		if (r == 0) {
			if (recovered)
				return vfail(v, "segment %" PRIu64 " offset %zu: "
				    "frame crosses the end the recovery "
				    "checkpoint states (%zu)", sg->id, off,
				    limit), 0;
			if (!last)
				return vfail(v, "segment %" PRIu64 " offset %zu: "
				    "incomplete frame in a segment that was "
				    "neither closed nor recovered", sg->id,
				    off), 0;
			if (v->verdict == AUDITFMT_INTACT && v->msg != NULL)
				snprintf(v->msg, v->msglen, "segment %" PRIu64
				    " offset %zu: torn tail (partial frame), "
				    "not yet closed by a recovery checkpoint",
				    sg->id, off);
			v->verdict = AUDITFMT_TORN;
			break;
		}
		if (closed)
			return vfail(v, "segment %" PRIu64 " offset %zu: frame "
			    "after the close checkpoint", sg->id, off), 0;
		if (fi == 0) {
			if (auditfmt_header_decode(body, blen, &h, e,
			    sizeof(e)) == -1)
				return vfail(v, "segment %" PRIu64 ": %s", sg->id,
				    e), 0;
			if (h.segment_id != sg->id)
				return vfail(v, "segment %" PRIu64 ": header says "
				    "segment %" PRIu64 " (renamed or replayed "
				    "segment)", sg->id, h.segment_id), 0;
			if (first && sg->id == 1 && (h.prev_segment_id != 0 ||
			    !is_zero(h.prev_head, 32) || h.first_seq != 1))
				return vfail(v, "segment 1: header does not "
				    "start a log"), 0;
			if (!first && h.prev_segment_id != prev_id)
				return vfail(v, "segment %" PRIu64 ": header "
				    "names predecessor %" PRIu64, sg->id,
				    h.prev_segment_id), 0;
			if (v->have_head && memcmp(h.prev_head, v->head, 32))
				return vfail(v, "segment %" PRIu64 ": chain "
				    "does not continue from the previous "
				    "segment (modified, missing or reordered "
				    "frames)", sg->id), 0;
			if (v->next_seq != 0 && h.first_seq != v->next_seq)
				return vfail(v, "segment %" PRIu64 ": starts at "
				    "seq %" PRIu64 ", %" PRIu64 " expected "
				    "(records missing or replayed)", sg->id,
				    h.first_seq, v->next_seq), 0;
			if (memcmp(h.signer_pub, v->key, 32) != 0)
				return vfail(v, "segment %" PRIu64 ": signing "
				    "key was not certified by the previous "
				    "checkpoint%s", sg->id, first &&
				    sg->id > 1 ? " (earlier segments missing "
				    "or keychain damaged)" : ""), 0;
			if (first)
				memcpy(v->first_prev_head, h.prev_head, 32);
			memcpy(v->head, h.prev_head, 32);
			v->have_head = 1;
			v->next_seq = h.first_seq;
		} else if (body[0] == AUDITFMT_RECORD) {
			if (auditfmt_record_peek(body, blen, &seq, &t) == -1)
				return vfail(v, "segment %" PRIu64 " offset %zu: "
				    "malformed record", sg->id, off), 0;
			if (seq != v->next_seq)
				return vfail(v, "segment %" PRIu64 " offset %zu: "
				    "record seq %" PRIu64 " where %" PRIu64
				    " expected (records missing, reordered or "
				    "replayed)", sg->id, off, seq,
				    v->next_seq), 0;
			v->next_seq++;
			records++;
			v->st.records++;
		} else if (body[0] == AUDITFMT_CHECKPOINT) {
			if (auditfmt_checkpoint_decode(body, blen, &ck, e,
			    sizeof(e)) == -1)
				return vfail(v, "segment %" PRIu64 " offset %zu: "
				    "%s", sg->id, off, e), 0;
			if (memcmp(ck.head, v->head, 32) != 0)
				return vfail(v, "segment %" PRIu64 " offset %zu: "
				    "chain head differs from checkpoint seq %"
				    PRIu64 " (frames before it modified, "
				    "removed or reordered)", sg->id, off,
				    ck.last_seq), 0;
			if (ck.segment_id != sg->id ||
			    ck.last_seq != v->next_seq - 1 ||
			    ck.count != records)
				return vfail(v, "segment %" PRIu64 " offset %zu: "
				    "checkpoint does not match the frames "
				    "before it (segment, seq or count)",
				    sg->id, off), 0;
			if (!auditfmt_checkpoint_verify(&ck, v->key))
				return vfail(v, "segment %" PRIu64 " offset %zu: "
				    "bad signature on checkpoint seq %" PRIu64,
				    sg->id, off, ck.last_seq), 0;
			if (ck.kind == AUDITFMT_CK_RECOVERY) {
				if (fi != 1)
					return vfail(v, "segment %" PRIu64
					    " offset %zu: misplaced recovery "
					    "checkpoint", sg->id, off), 0;
				if (!first && (ck.aux1 != prev_id ||
				    ck.aux2 != prev_len ||
				    memcmp(ck.aux_head, h.prev_head, 32)))
					return vfail(v, "segment %" PRIu64
					    ": recovery checkpoint does not "
					    "match segment %" PRIu64, sg->id,
					    prev_id), 0;
			} else if (ck.kind == AUDITFMT_CK_RETENTION) {
				if (ck.aux2 > v->max_kept)
					v->max_kept = ck.aux2;
				nr = realloc(v->ret, (v->nret + 1) *
				    sizeof(*v->ret));
				if (nr == NULL)
					return vfail(v, "out of memory"), 0;
				v->ret = nr;
				v->ret[v->nret++] = ck;
			} else if (ck.kind == AUDITFMT_CK_CLOSE)
				closed = 1;
			check_anchor(v, &ck, sg->id, off);
			memcpy(v->key, ck.next_pub, 32);
			v->st.checkpoints++;
		} else
			return vfail(v, "segment %" PRIu64 " offset %zu: %s",
			    sg->id, off, body[0] == AUDITFMT_HEADER ?
			    "second segment header" : "unknown frame type"), 0;
		auditfmt_chain_extend(v->head, sg->data + off, flen);
		off += flen;
		fi++;
	}
	if (v->verdict == AUDITFMT_TAMPERED)
		return 0;
	if (fi == 0 && !recovered) {
		if (!last)
			return vfail(v, "segment %" PRIu64 " is empty", sg->id), 0;
		if (v->verdict == AUDITFMT_INTACT && v->msg != NULL)
			snprintf(v->msg, v->msglen, "segment %" PRIu64 ": torn "
			    "(no complete header), not yet recovered", sg->id);
		v->verdict = AUDITFMT_TORN;
	}
	return closed;
}

enum auditfmt_verdict
auditfmt_verify_log(const unsigned char pub[32],
    const struct auditfmt_segdata *segs, size_t nsegs,
    const unsigned char *keychain, size_t keychain_len, const char *anchor,
    char *msg, size_t msglen, struct auditfmt_verify_stats *stats)
{
	struct vstate			 v;
	struct auditfmt_checkpoint	 rck;
	struct auditfmt_scan		 sc;
	size_t				 i, j, limit;
	uint64_t			 prev_id = 0, prev_len = 0;
	int				 closed = 0, recovered, first_seen = 0;
	char				 e[128];

	memset(&v, 0, sizeof(v));
	memcpy(v.key, pub, 32);
	v.msg = msg;
	v.msglen = msglen;
	if (msg != NULL && msglen > 0)
		snprintf(msg, msglen, "intact");
	if (anchor != NULL) {
		if (auditfmt_checkpoint_parse_line(anchor, &v.anchor, e,
		    sizeof(e)) == -1) {
			vfail(&v, "anchor: %s", e);
			goto done;
		}
		v.have_anchor = 1;
	}
	if (nsegs == 0) {
		vfail(&v, "no segments in the log");
		goto done;
	}
	v.first_id = segs[0].id;
	if (v.first_id > 1 && keychain != NULL &&
	    verify_keychain(&v, keychain, keychain_len) == -1)
		goto done;
	for (i = 0; i < nsegs && v.verdict != AUDITFMT_TAMPERED; i++) {
		if (i > 0 && segs[i].id != prev_id + 1) {
			vfail(&v, "segment%s %" PRIu64 "..%" PRIu64 " missing",
			    segs[i].id - prev_id > 2 ? "s" : "", prev_id + 1,
			    segs[i].id - 1);
			break;
		}
		if (i > 0 && !closed) {
			/* The predecessor must have been recovered here. */
			if (!auditfmt_segment_recovery(segs[i].data, segs[i].len,
			    &rck) || rck.aux1 != prev_id) {
				vfail(&v, "segment %" PRIu64 " was neither "
				    "closed nor recovered", prev_id);
				break;
			}
		}
		limit = segs[i].len;
		recovered = 0;
		if (i + 1 < nsegs && auditfmt_segment_recovery(segs[i + 1].data,
		    segs[i + 1].len, &rck) && rck.aux1 == segs[i].id) {
			if (rck.aux2 > segs[i].len) {
				vfail(&v, "segment %" PRIu64 " is %zu bytes, "
				    "shorter than its recovery checkpoint "
				    "states (%" PRIu64 ")", segs[i].id,
				    segs[i].len, rck.aux2);
				break;
			}
			limit = (size_t)rck.aux2;
			recovered = 1;
		}
		closed = verify_segment(&v, &segs[i], limit, recovered,
		    i + 1 == nsegs, !first_seen, prev_id, prev_len);
		first_seen = 1;
		prev_id = segs[i].id;
		prev_len = limit;
		v.st.segments++;
	}
	if (v.verdict == AUDITFMT_TAMPERED)
		goto done;
	if (v.first_id > 1) {
		if (v.max_kept < v.first_id) {
			vfail(&v, "segments 1..%" PRIu64 " missing and no "
			    "retention record deletes them", v.first_id - 1);
			goto done;
		}
		/* The signed anchor must match the kept segment's header. */
		for (j = 0; j < v.nret; j++) {
			if (v.ret[j].aux2 < v.first_id ||
			    v.ret[j].aux2 > segs[nsegs - 1].id)
				continue;
			for (i = 0; i < nsegs; i++)
				if (segs[i].id == v.ret[j].aux2)
					break;
			auditfmt_segment_scan(segs[i].data, segs[i].len, &sc);
			if (!sc.has_header || memcmp(sc.header.prev_head,
			    v.ret[j].aux_head, 32) != 0) {
				vfail(&v, "segment %" PRIu64 ": header does not "
				    "match the retention anchor", segs[i].id);
				goto done;
			}
		}
	}
	if (v.have_anchor && !v.anchor_found) {
		if (v.next_seq == 0 || v.anchor.last_seq >= v.next_seq)
			vfail(&v, "log is shorter than the anchor (anchor seq %"
			    PRIu64 ", log ends at seq %" PRIu64 ")",
			    v.anchor.last_seq, v.next_seq ? v.next_seq - 1 : 0);
		else if (v.anchor.segment_id >= v.first_id)
			vfail(&v, "anchor checkpoint (segment %" PRIu64 " seq %"
			    PRIu64 ") is not in the log", v.anchor.segment_id,
			    v.anchor.last_seq);
	}
 done:
	v.st.last_seq = v.next_seq ? v.next_seq - 1 : 0;
	if (stats != NULL)
		*stats = v.st;
	free(v.ret);
	return v.verdict;
}

/* ---- names and time ---- */

void
auditfmt_segment_name(char *out, size_t outlen, uint64_t id)
{
	snprintf(out, outlen, "seg-%020" PRIu64 ".sga", id);
}

int
auditfmt_segment_parse_name(const char *name, uint64_t *id)
{
	if (strlen(name) != 28 || strncmp(name, "seg-", 4) != 0 ||
	    strcmp(name + 24, ".sga") != 0)
		return 0;
	if (parse_u64(name + 4, 20, id) == -1 || *id == 0)
		return 0;
	return 1;
}

void
auditfmt_time_format(uint64_t ms, char out[32])
{
	struct tm	 tm;
	time_t		 t = (time_t)(ms / 1000);
	char		 tmp[96];

	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
	tmp[31] = '\0';
	memcpy(out, tmp, 32);
}

static int
digits(const char **p, int n, int *v)
{
	int	 i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if (**p < '0' || **p > '9')
			return -1;
		*v = *v * 10 + (**p - '0');
		(*p)++;
	}
	return 0;
}

int
auditfmt_time_parse(const char *s, uint64_t *ms)
{
	struct tm	 tm;
	const char	*p = s;
	int		 y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, fd = 0;
	int		 oh, om, sign;
	int64_t		 t, off = 0;

	memset(&tm, 0, sizeof(tm));
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) ||
	    *p++ != '-' || digits(&p, 2, &d))
		return -1;
	if (*p != '\0') {
		if ((*p != 'T' && *p != 't' && *p != ' ') || (p++, 0) ||
		    digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) ||
		    *p++ != ':' || digits(&p, 2, &sec))
			return -1;
		if (*p == '.') {
			p++;
			if (*p < '0' || *p > '9')
				return -1;
			while (*p >= '0' && *p <= '9') {
				if (fd < 3) {
					frac = frac * 10 + (*p - '0');
					fd++;
				}
				p++;
			}
			while (fd < 3) {
				frac *= 10;
				fd++;
			}
		}
		if (*p == 'Z' || *p == 'z')
			p++;
		else if (*p == '+' || *p == '-') {
			sign = *p++ == '-' ? -1 : 1;
			if (digits(&p, 2, &oh) || *p++ != ':' ||
			    digits(&p, 2, &om) || oh > 23 || om > 59)
				return -1;
			off = sign * (int64_t)(oh * 3600 + om * 60);
		} else
			return -1;
		if (*p != '\0')
			return -1;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60 || y < 1970)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = (int64_t)timegm(&tm) - off;
	if (t < 0)
		return -1;
	*ms = (uint64_t)t * 1000 + (uint64_t)frac;
	return 0;
}

/* ---- subject hashes ---- */

/*
 * An email: NFC, then lower case (Unicode's full mappings, no language's
 * special rules), then NFC again, so that canonically equivalent spellings
 * of an address, and its upper- and lower-case spellings, hash alike. ASCII,
 * the common case, is lower-cased here. libunistring's results land in the
 * stack buffers when they fit; whatever holds the address is wiped.
 * 1, 0 (not UTF-8), or -1.
 */
static int
normalise_email(const unsigned char *s, size_t n, struct buf *out)
{
	uint8_t		 nbuf[256], lbuf[256], *nfc, *low = NULL;
	size_t		 i, nlen = sizeof(nbuf), llen = sizeof(lbuf), at;
	int		 rc = -1;

	for (i = 0; i < n && s[i] < 0x80; i++)
		;
	if (i == n) {
		at = out->len;
		if (buf_append(out, s, n) == -1)
			return -1;
		for (i = at; i < out->len; i++)
			if (out->data[i] >= 'A' && out->data[i] <= 'Z')
				out->data[i] = (char)(out->data[i] + 32);
		return 1;
	}
	if (u8_check(s, n) != NULL)
		return 0;
	if ((nfc = u8_normalize(UNINORM_NFC, s, n, nbuf, &nlen)) == NULL)
		goto done;
	if ((low = u8_tolower(nfc, nlen, NULL, UNINORM_NFC, lbuf,
	    &llen)) == NULL)
		goto done;
	rc = buf_append(out, low, llen) == -1 ? -1 : 1;
 done:
	if (nfc != NULL && nfc != nbuf) {
		explicit_bzero(nfc, nlen);
		free(nfc);
	}
	if (low != NULL && low != lbuf) {
		explicit_bzero(low, llen);
		free(low);
	}
	explicit_bzero(nbuf, sizeof(nbuf));
	explicit_bzero(lbuf, sizeof(lbuf));
	return rc;
}

static int
normalise_phone(const char *s, size_t n, const char *cc, struct buf *out)
{
	size_t	 i, ndig = 0;
	int	 intl = 0;

	for (i = 0; i < n; i++)
		if (s[i] >= '0' && s[i] <= '9')
			ndig++;
	if (ndig < 6)
		return 0;
	if (s[0] == '+')
		intl = 1;
	else if (n >= 2 && s[0] == '0' && s[1] == '0') {
		intl = 1;
		s += 2;
		n -= 2;
	}
	if (!intl && cc != NULL)
		for (; *cc != '\0'; cc++)
			if (*cc >= '0' && *cc <= '9' &&
			    buf_append_char(out, *cc) == -1)
				return -1;
	for (i = 0; i < n; i++)
		if (s[i] >= '0' && s[i] <= '9' &&
		    buf_append_char(out, s[i]) == -1)
			return -1;
	return 1;
}

int
audit_subject_normalise(const char *value, size_t len,
    const char *phone_country_code, struct buf *out)
{
	int	 r;

	buf_truncate(out, 0);
	while (len > 0 && (*value == ' ' || *value == '\t' || *value == '\n' ||
	    *value == '\r')) {
		value++;
		len--;
	}
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' ||
	    value[len - 1] == '\n' || value[len - 1] == '\r'))
		len--;
	if (len == 0)
		return 0;
	if (memchr(value, '@', len) != NULL)
		r = normalise_email((const unsigned char *)value, len, out);
	else
		r = normalise_phone(value, len, phone_country_code, out);
	if (r != 1)
		buf_truncate(out, 0);
	return r == 1 ? 1 : 0;
}

/* HMAC is fetched once: a one-shot HMAC() looks the algorithm up on
 * every call, and subject hashes are taken on the request path. */
static EVP_MAC		*subject_mac;
static pthread_key_t	 subject_tkey;
static int		 subject_tkey_ok;
static pthread_once_t	 subject_mac_once = PTHREAD_ONCE_INIT;

/*
 * Each thread keeps one context keyed with the last index key it saw:
 * re-initialising with the same key skips the digest lookup that keying
 * costs. The cached key copy is the index key the daemon holds anyway;
 * both are wiped and freed when the thread exits.
 */
struct subject_cache {
	EVP_MAC_CTX	*ctx;
	unsigned char	 key[32];
};

static void
subject_cache_free(void *p)
{
	struct subject_cache	*c = p;

	EVP_MAC_CTX_free(c->ctx);
	OPENSSL_cleanse(c, sizeof(*c));
	free(c);
}

static void
subject_mac_init(void)
{
	subject_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	subject_tkey_ok = pthread_key_create(&subject_tkey,
	    subject_cache_free) == 0;
}

static struct subject_cache *
subject_cache(void)
{
	struct subject_cache	*c;

	pthread_once(&subject_mac_once, subject_mac_init);
	if (subject_mac == NULL || !subject_tkey_ok)
		return NULL;
	if ((c = pthread_getspecific(subject_tkey)) != NULL)
		return c;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->ctx = EVP_MAC_CTX_new(subject_mac)) == NULL ||
	    pthread_setspecific(subject_tkey, c) != 0) {
		EVP_MAC_CTX_free(c->ctx);
		free(c);
		return NULL;
	}
	return c;
}

static int
subject_hmac(const unsigned char key[32], const char *p, size_t len,
    unsigned char mac[32])
{
	struct subject_cache	*c;
	OSSL_PARAM		 params[2];
	size_t			 outl = 0;
	int			 same;

	if ((c = subject_cache()) == NULL)
		return -1;
	same = CRYPTO_memcmp(c->key, key, 32) == 0 &&
	    EVP_MAC_CTX_get_mac_size(c->ctx) == 32;
	params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256",
	    0);
	params[1] = OSSL_PARAM_construct_end();
	if ((same ? EVP_MAC_init(c->ctx, NULL, 0, NULL) :
	    EVP_MAC_init(c->ctx, key, 32, params)) != 1)
		return -1;
	memcpy(c->key, key, 32);
	if (EVP_MAC_update(c->ctx, (const unsigned char *)p, len) != 1 ||
	    EVP_MAC_final(c->ctx, mac, &outl, 32) != 1 || outl != 32)
		return -1;
	return 0;
}

int
audit_subject_hash(const unsigned char index_key[32], const char *value,
    size_t len, const char *phone_country_code, char out[65])
{
	struct buf	 n = { 0 };
	unsigned char	 mac[32];
	int		 r;

	out[0] = '\0';
	r = audit_subject_normalise(value, len, phone_country_code, &n);
	if (r == 1 && subject_hmac(index_key, n.data, n.len, mac) == 0)
		hex(out, mac, 32);
	else
		r = 0;
	buf_free(&n);
	OPENSSL_cleanse(mac, sizeof(mac));
	return r;
}
