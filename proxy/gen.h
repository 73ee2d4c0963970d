/* gen.h -- configuration generations: everything a request needs, built off the data path */
#ifndef SUBGATE_GEN_H
#define SUBGATE_GEN_H

#include <stdint.h>

#include <openssl/ssl.h>

#include "conf.h"

/* One distinct processor account of a generation and its TLS context. */
struct gen_account {
	const struct conf_account	*account;	/* borrowed from gen->conf */
	SSL_CTX				*ctx;
	unsigned			 index;
};

/*
 * An immutable, reference-counted generation: the config, the inbound
 * SSL_CTX, one outbound SSL_CTX per distinct account, and (once keys land)
 * the unwrapped data keys. Each request holds a reference from its start
 * to its end, so a reload applies to the next request on every connection.
 */
struct gen {
	int			 refs;
	uint64_t		 id;
	struct conf		*conf;
	SSL_CTX			*server_ctx;
	struct gen_account	*accounts;
	size_t			 naccounts;
	char			 policy_hash[65];	/* hex SHA-256 */
	struct keyring		*keys;			/* data keys of every pair */
	unsigned char		 index_key[32];		/* subject hashes */
	unsigned char		 body_key[32];		/* body_hmac, derived from the index key */
};

/* The actions this build implements (bit per enum policy_action). */
unsigned gen_implemented_actions(void);

/*
 * Load the config at path and build a generation. Returns NULL with the
 * reason in err (config errors carry FILE:LINE). Does not install it.
 */
struct gen *gen_build(const char *path, uint64_t id, char *err, size_t errlen);
void	gen_ref(struct gen *g);
void	gen_unref(struct gen *g);

/* The account of a tenant's use of an integration (never NULL for a use of g). */
const struct gen_account *gen_account_for(const struct gen *g,
	    const struct conf_use *u);

/* The generation in force: gen_current() returns it with a reference the
 * caller drops with gen_unref. gen_install takes ownership of g. */
struct gen *gen_current(void);
void	gen_install(struct gen *g);

/*
 * A thread's cached view of the generation in force, refreshed when a new
 * one is installed: no lock on the request path. Returns the cached
 * generation, borrowed (valid until the next call from the same thread);
 * take gen_ref to keep it longer. *cache holds a reference.
 */
struct gen *gen_cached(struct gen **cache, uint64_t *epoch);

#endif
