/* token.h -- AES-SIV tokens, FF1, keyed hashes, masks (pure) */
#ifndef SUBGATE_TOKEN_H
#define SUBGATE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "json.h"
#include "keys.h"
#include "policy.h"

/*
 * Formats (DESIGN.md "Policy"):
 *
 * tokenize    "tok1." VERSION "." base64url(tag16 || ciphertext), unpadded,
 *             canonical; AES-256-SIV with one associated-data string
 *             L("tok1") L(tenant) L(integration) [version]^4 (L = 2-byte
 *             big-endian length, then the bytes) over
 *             type || value || 0x80 || 0x00... to a multiple of 16 bytes,
 *             type 's' (string, UTF-8), 'n' (number, as written), 't', 'f',
 *             'z' (true, false, null: no value bytes).
 * email       SIV as above under the pair's email key, AD L("email")
 *             L(tenant) L(integration), plaintext value || 0x80 || 0x00...;
 *             lower-case unpadded base32 of tag || ciphertext; the first 64
 *             characters are the local part, the rest DNS labels of 63 (the
 *             last one shorter) in front of token_domain. Decoded
 *             case-insensitively; any other layout is not a token.
 * FF1         the value's ASCII digits, taken together, FF1-AES-256 radix 10
 *             with tweak L(tenant) L(integration); everything else kept in
 *             place. 6 to TOKEN_FF1_MAX_DIGITS digits, else dropped.
 * hash        "h1." + lower-case unpadded base32 of the first 160 bits
 *             (TOKEN_HASH_BITS) of HMAC-SHA-256(pair hash key, text).
 * mask        every code point but the last 4 replaced by '*'; 4 or fewer:
 *             all of them.
 */

#define TOKEN_FF1_MAX_DIGITS	72
#define TOKEN_HASH_BITS		160

/*
 * Per-request transform state: the pair is borrowed (keyring shared,
 * read-only); the counters are the caller's (one context per request, not
 * shared between threads). tenant and integration are informational: the
 * cryptography binds the pair's own names.
 */
struct token_ctx {
	const struct keys_pair	*pair;
	const char		*tenant;
	const char		*integration;
	const char		*token_domain;	/* NULL: email values are dropped */
	size_t			 tokens_restored;	/* values turned back into plaintext */
	size_t			 tokens_foreign;	/* "tok1."/email tokens that did not decode */
};

/*
 * Request direction, a struct policy_transform fn (arg: struct token_ctx).
 * For a scalar under action a (tokenize, format_preserve, hash, mask)
 * writes the complete JSON value to out and returns 0; returns 1 to drop
 * it (format_preserve of fewer than 6 digits, a boolean or null, or an
 * email without token_domain); -1 on a hard error (a shredded pair, an
 * action that transforms nothing, OpenSSL or memory failure).
 */
int	token_xform_request(void *ctx, enum policy_action a,
	    const struct json_token *v, struct buf *out);

/*
 * Response direction. a == POLICY_TOKENIZE (a detokenize path): a string
 * holding a valid tok1 token of this pair (any version it holds) is
 * replaced by the original JSON value with its type; anything else is
 * copied raw, and strings starting "tok1." count as tokens_foreign.
 * a == POLICY_FORMAT_PRESERVE: an email token under token_domain of this
 * pair becomes the email, another string with 6+ digits has them
 * FF1-decrypted; what does not decode is copied raw (a failing email
 * token counts as foreign). Returns 0, or -1 (memory).
 */
int	token_xform_response(void *ctx, enum policy_action a,
	    const struct json_token *v, struct buf *out);

/*
 * The request transforms for text without JSON (path parameters, query
 * parameters, form fields): s[0..len) is the decoded value, treated as a
 * string; out gets the raw replacement text (no quotes, not escaped).
 * Invalid UTF-8 is dropped. Returns 0, 1 (drop) or -1 as above.
 */
int	token_apply_text(struct token_ctx *ctx, enum policy_action a,
	    const char *s, size_t len, struct buf *out);

/*
 * Low-level, exposed for tests and benchmarks.
 */

/*
 * FF1 (NIST SP 800-38G) with AES under key (16, 24 or 32 bytes), radix 2..36,
 * alphabet 0-9a-z (upper-case accepted on input). Encrypts (enc != 0) or
 * decrypts in[0..n) into out[0..n). n must satisfy radix^n >= 1000000 and
 * radix^ceil(n/2) <= 2^120. 0, or -1 (bad length, radix or symbol).
 */
int	token_ff1(const unsigned char *key, size_t keylen, unsigned radix,
	    const unsigned char *tweak, size_t tweaklen, const char *in,
	    size_t n, char *out, int enc);

/* Unpadded base64url of p[0..n) appended to out. 0 or -1. */
int	token_b64url_encode(struct buf *out, const unsigned char *p, size_t n);
/* Decode canonical unpadded base64url (no padding, zero trailing bits).
 * out holds at least len * 3 / 4 bytes. Returns the length or -1. */
long	token_b64url_decode(const char *s, size_t len, unsigned char *out);
/* Lower-case unpadded base32 (RFC 4648 alphabet). 0 or -1. */
int	token_b32_encode(struct buf *out, const unsigned char *p, size_t n);
/* Decode canonical unpadded base32, case-insensitive; out holds len*5/8. */
long	token_b32_decode(const char *s, size_t len, unsigned char *out);

#endif
