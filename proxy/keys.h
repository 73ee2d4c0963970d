/* keys.h -- key files, permissions, wrapping, derivation, wiping */
#ifndef SUBGATE_KEYS_H
#define SUBGATE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "buf.h"

struct conf;

/*
 * Files (text, one record a line, '#' comments, fields separated by one
 * space; tenant and integration names are percent-encoded outside
 * [A-Za-z0-9._~:@+-]):
 *
 * token.keys  "subgate-token-keys 1", then one line per master key
 *             "master VERSION active|retired HEX64" (exactly one active).
 * data.keys   "subgate-data-keys 1", then per data key
 *             "key TENANT INTEGRATION VERSION active|decrypt KEYID MASTERVERSION
 *             WRAPPEDHEX80" (AES-KW, RFC 3394, of 32 random bytes under the
 *             master key MASTERVERSION; KEYID: 32 hex, random, immutable) and
 *             per erased pair "shredded TENANT INTEGRATION".
 *
 * Derived keys (HKDF-SHA-256, no salt, ikm = data key, info = fields each
 * prefixed by a 2-byte big-endian length: "subgate/v1", purpose, key id,
 * decimal version):
 *   "tok1-siv"   64 bytes per version  (AES-256-SIV, tok1 tokens)
 *   "email-siv"  64 bytes, first version (AES-256-SIV, email tokens)
 *   "ff1"        32 bytes, first version (FF1 AES-256)
 *   "hash"       32 bytes, first version (HMAC-SHA-256)
 * Outputs without a version (email, FF1, hash) never rotate.
 */

#define KEYS_DATA_KEY_LEN	32
#define KEYS_SIV_KEY_LEN	64

/*
 * One data-key version of a pair, as the daemon holds it (derived only).
 * siv_enc/siv_dec: AES-256-SIV contexts keyed with siv, never used
 * directly: token.c copies them per call (EVP_CIPHER_CTX_copy reads the
 * template only, so threads may share it); NULL means "key per call".
 */
struct keys_version {
	uint32_t	 version;
	unsigned char	 siv[KEYS_SIV_KEY_LEN];
	EVP_CIPHER_CTX	*siv_enc, *siv_dec;
};

/*
 * A (tenant, integration) pair's derived key material. Owned by its
 * keyring, read-only once loaded (shared by worker threads); token.c reads
 * the fields. When shredded is set, nversions is 0 and the keys are zero.
 */
struct keys_pair {
	char			*tenant;
	char			*integration;
	int			 shredded;
	uint32_t		 active;	/* the version that mints */
	struct keys_version	*versions;
	size_t			 nversions;
	unsigned char		 email_siv[KEYS_SIV_KEY_LEN];
	EVP_CIPHER_CTX		*email_enc, *email_dec;	/* templates, as above */
	unsigned char		 ff1[32];
	EVP_CIPHER_CTX		*ff1_ecb;	/* keyed AES-256-ECB, as above */
	unsigned char		 hash[32];
	EVP_MAC_CTX		*hash_mac;	/* keyed HMAC-SHA-256, as above */
};

struct keyring;

/* A pair name, as the key-file functions take them. */
struct keys_name {
	const char	*tenant;
	const char	*integration;
};

/*
 * Load the keys the config needs: reads c->keys_token_keys and
 * c->keys_data_keys (refused when readable by group or others or not owned
 * by the current user), unwraps each data key of every (tenant,
 * integration) pair the config names, derives the per-pair keys and wipes
 * the master keys and raw data keys before returning. A pair without a
 * data key is an error naming the pair and `subgatectl keys sync`; a
 * shredded pair loads as shredded. Returns the keyring (caller owns; free
 * with keys_free) or NULL with err.
 */
struct keyring *keys_load(const struct conf *c, char *err, size_t errlen);
/* keys_load on explicit files and pairs; conf_path is named in messages. */
struct keyring *keys_load_files(const char *token_keys, const char *data_keys,
	    const struct keys_name *pairs, size_t npairs, const char *conf_path,
	    char *err, size_t errlen);
/* The pair, borrowed from the keyring, or NULL when the keyring lacks it. */
const struct keys_pair *keys_pair_find(const struct keyring *k,
	    const char *tenant, const char *integration);
/* Non-zero when the pair was crypto-shredded (its calls get 403). */
int	keys_pair_shredded(const struct keys_pair *p);
/* Wipe and free everything. Accepts NULL. */
void	keys_free(struct keyring *k);

/*
 * A throw-away pair for `policy explain`: its keys are derived from a
 * FIXED, PUBLIC data key, so output is reproducible and protects nothing.
 * Never use it for traffic. Free with keys_pair_free. NULL on ENOMEM.
 */
struct keys_pair *keys_pair_demo(const char *tenant, const char *integration);
/* Wipe and free a pair made by keys_pair_demo. Accepts NULL. */
void	keys_pair_free(struct keys_pair *p);

/*
 * HKDF-SHA-256 of the data key with info ("subgate/v1", purpose, key_id,
 * decimal version), each field preceded by its 2-byte big-endian length.
 * 0, or -1 (OpenSSL failure).
 */
int	keys_derive(const unsigned char data_key[KEYS_DATA_KEY_LEN],
	    const char *purpose, const char *key_id, uint32_t version,
	    unsigned char *out, size_t outlen);

/*
 * subgatectl keys init: create in dir (made 0700 when missing) token.keys
 * (one active master key), audit-index.key (64 hex + newline),
 * audit-signer.key (Ed25519, PEM PKCS#8) and .pub (PEM SPKI),
 * audit-reader.pub (X25519, PEM SPKI) and offline/audit-reader.key
 * (X25519, PEM PKCS#8). Private files 0600, public 0644, all created with
 * O_EXCL: nothing existing is overwritten (checked before anything is
 * written). Appends the names written to report. 0 or -1 with err.
 */
int	keys_init_dir(const char *dir, struct buf *report, char *err,
	    size_t errlen);

/*
 * The file operations below read token_keys and data_keys (a missing
 * data_keys is empty), change them, and replace data_keys atomically
 * (temporary file 0600, fsync, rename, directory fsync). Each appends one
 * line per change to report. 0, or -1 with err (the files unchanged).
 */

/* Create a version-1 active data key for each pair that has none and is
 * not shredded. */
int	keys_sync_files(const char *token_keys, const char *data_keys,
	    const struct keys_name *pairs, size_t npairs, struct buf *report,
	    char *err, size_t errlen);
/* Add a new version (decrypt only) to the pair; *version set to it. */
int	keys_rotate_files(const char *token_keys, const char *data_keys,
	    const char *tenant, const char *integration, uint32_t *version,
	    struct buf *report, char *err, size_t errlen);
/* Make version the one that mints (the previous one stays for decrypt). */
int	keys_activate_files(const char *token_keys, const char *data_keys,
	    const char *tenant, const char *integration, uint32_t version,
	    struct buf *report, char *err, size_t errlen);
/*
 * Replace the wrapped keys of the pair (integration NULL: of every pair of
 * the tenant in data_keys or in pairs) with a tombstone.
 */
int	keys_shred_files(const char *token_keys, const char *data_keys,
	    const char *tenant, const char *integration,
	    const struct keys_name *pairs, size_t npairs, struct buf *report,
	    char *err, size_t errlen);
/*
 * Add a master key version, make it active and re-wrap every data key
 * under it, in three crash-safe steps: token_keys gains the new master
 * (old ones retired but kept), data_keys is re-wrapped, then token_keys
 * drops the retired masters no data key uses.
 */
int	keys_rotate_master_files(const char *token_keys, const char *data_keys,
	    uint32_t *version, struct buf *report, char *err, size_t errlen);

/*
 * The (tenant, integration) pairs the config names, in config order.
 * Returns a malloc'd array (names borrowed from c) with *n set, or NULL
 * (ENOMEM, or none: *n = 0).
 */
struct keys_name *keys_conf_pairs(const struct conf *c, size_t *n);

/*
 * Read the audit index key (64 hex characters and a newline, owner-only
 * file) into key. 0, or -1 with err. The caller wipes key.
 */
int	keys_load_index(const char *path, unsigned char key[32], char *err,
	    size_t errlen);

#endif
