/* gen.c -- configuration generations: build, reference counting, the current one */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "gen.h"
#include "keys.h"
#include "policy.h"
#include "tls.h"

static pthread_mutex_t	 gen_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct gen	*gen_now;
static uint64_t		 gen_epoch = 1;	/* bumped by every gen_install */

unsigned
gen_implemented_actions(void)
{
	return (1u << POLICY_NACTIONS) - 1;
}

/*
 * Two uses share upstream connections only when everything about the
 * account is the same: upstream, server name, CA, client certificate and
 * pins (conf's key) and the credentials subgate sets on the requests.
 */
static int
gen_same_account(const struct conf_account *a, const struct conf_account *b)
{
	size_t	i;

	if (a == b)
		return 1;
	if (strcmp(a->key, b->key) != 0 || a->nset != b->nset)
		return 0;
	for (i = 0; i < a->nset; i++)
		if (strcmp(a->set[i].name, b->set[i].name) != 0 ||
		    strcmp(a->set[i].file, b->set[i].file) != 0)
			return 0;
	return 1;
}

static int
gen_add_account(struct gen *g, const struct conf_account *a, char *err,
    size_t errlen)
{
	struct gen_account	*ga;
	size_t			 i;
	char			 e[512];

	for (i = 0; i < g->naccounts; i++)
		if (gen_same_account(g->accounts[i].account, a))
			return 0;
	ga = realloc(g->accounts, (g->naccounts + 1) * sizeof(*ga));
	if (ga == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	g->accounts = ga;
	ga = &g->accounts[g->naccounts];
	ga->account = a;
	ga->index = (unsigned)g->naccounts;
	if ((ga->ctx = tls_client_ctx_new(a, e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "%s: upstream %s: %s", g->conf->path,
		    a->upstream, e);
		return -1;
	}
	g->naccounts++;
	return 0;
}

static void
gen_hash_file(EVP_MD_CTX *md, const char *path)
{
	unsigned char	 chunk[4096];
	size_t		 n;
	FILE		*f;

	if (path == NULL || (f = fopen(path, "r")) == NULL)
		return;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		EVP_DigestUpdate(md, chunk, n);
	fclose(f);
}

static void
gen_hash_str(EVP_MD_CTX *md, const char *s)
{
	EVP_DigestUpdate(md, s, strlen(s) + 1);
}

static void
gen_hash_rules(EVP_MD_CTX *md, const char *tag, const struct policy_rules *r)
{
	enum policy_action	a;
	size_t			i;

	gen_hash_str(md, tag);
	for (i = 0; r != NULL && i < policy_rules_count(r); i++) {
		gen_hash_str(md, policy_rules_path(r, i, &a));
		gen_hash_str(md, policy_action_name(a));
	}
}

static void
gen_hash_names(EVP_MD_CTX *md, const char *tag, const struct policy_names *n)
{
	enum policy_action	a;
	size_t			i;

	gen_hash_str(md, tag);
	for (i = 0; n != NULL && i < policy_names_count(n); i++) {
		gen_hash_str(md, policy_names_at(n, i, &a));
		gen_hash_str(md, policy_action_name(a));
	}
}

/* The rules as parsed, so a change in an @include'd file counts too. */
static void
gen_hash_policy(EVP_MD_CTX *md, const struct conf *c)
{
	size_t	i, j, k;

	for (i = 0; i < c->nintegrations; i++) {
		const struct conf_integration *ig = &c->integrations[i];
		gen_hash_str(md, ig->name);
		gen_hash_str(md, ig->prefix);
		gen_hash_str(md, ig->token_domain ? ig->token_domain : "");
		gen_hash_names(md, "headers.allow", ig->headers_allow);
		for (j = 0; j < ig->nendpoints; j++) {
			const struct conf_endpoint *ep = &ig->endpoints[j];
			gen_hash_str(md, ep->method);
			gen_hash_str(md, ep->path);
			for (k = 0; k < ep->pattern.nparams; k++) {
				gen_hash_str(md, ep->params[k].name);
				gen_hash_str(md,
				    policy_action_name(ep->params[k].action));
			}
			gen_hash_names(md, "query", ep->query);
			gen_hash_str(md, ep->has_request ? "request" : "-");
			gen_hash_rules(md, "request", ep->request);
			gen_hash_rules(md, "subjects", ep->subjects);
			gen_hash_rules(md, "response", ep->response);
		}
	}
	for (i = 0; i < c->ntenants; i++) {
		gen_hash_str(md, c->tenants[i].id);
		for (j = 0; j < c->tenants[i].nclients; j++)
			gen_hash_str(md, c->tenants[i].clients[j]);
	}
}

/*
 * The policy hash recorded with every disclosure: everything that decides
 * what leaves and to whom -- the config text and the rules as parsed
 * (included files too), each recipient account (its key, the CA file's
 * contents, the credentials it sets) and the key versions of each
 * (tenant, integration) pair.
 */
static void
gen_hash(struct gen *g)
{
	EVP_MD_CTX			*md = EVP_MD_CTX_new();
	const struct keys_pair		*p;
	unsigned char			 h[32];
	unsigned int			 hl = 0;
	size_t				 i, t, u, v;
	char				 num[64];

	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	gen_hash_file(md, g->conf->path);
	gen_hash_policy(md, g->conf);
	for (i = 0; i < g->naccounts; i++) {
		const struct conf_account *a = g->accounts[i].account;
		gen_hash_str(md, a->key);
		gen_hash_file(md, a->ca);
		for (v = 0; v < a->nset; v++) {
			gen_hash_str(md, a->set[v].name);
			gen_hash_str(md, a->set[v].file);
		}
	}
	for (t = 0; t < g->conf->ntenants; t++) {
		const struct conf_tenant *te = &g->conf->tenants[t];
		for (u = 0; u < te->nuses; u++) {
			gen_hash_str(md, te->id);
			gen_hash_str(md, te->uses[u].integration->name);
			p = keys_pair_find(g->keys, te->id,
			    te->uses[u].integration->name);
			if (p == NULL)
				continue;
			snprintf(num, sizeof(num), "%d/%u/%zu", p->shredded,
			    p->active, p->nversions);
			gen_hash_str(md, num);
			for (v = 0; v < p->nversions; v++) {
				snprintf(num, sizeof(num), "%u",
				    p->versions[v].version);
				gen_hash_str(md, num);
			}
		}
	}
	EVP_DigestFinal_ex(md, h, &hl);
	EVP_MD_CTX_free(md);
	for (i = 0; i < 32; i++)
		snprintf(g->policy_hash + 2 * i, 3, "%02x", h[i]);
}

struct gen *
gen_build(const char *path, uint64_t id, char *err, size_t errlen)
{
	struct gen	*g;
	size_t		 t, u;
	char		 e[512];

	if ((g = calloc(1, sizeof(*g))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	g->refs = 1;
	g->id = id;
	if ((g->conf = conf_load(path, gen_implemented_actions(), err,
	    errlen)) == NULL)
		goto fail;
	if ((g->server_ctx = tls_server_ctx_new(g->conf, e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "%s: tls: %s", path, e);
		goto fail;
	}
	for (t = 0; t < g->conf->ntenants; t++)
		for (u = 0; u < g->conf->tenants[t].nuses; u++)
			if (gen_add_account(g, &g->conf->tenants[t].uses[u].account,
			    err, errlen) == -1)
				goto fail;
	/* No disclosure without a durable record (invariant 3): the audit
	 * log, and so its keys, are not optional. */
	if (!g->conf->has_audit || !g->conf->has_keys) {
		snprintf(err, errlen, "%s: %s section missing: every call "
		    "subgate forwards is recorded in the audit log first; add "
		    "keys and audit sections (see subgatectl keys init and "
		    "conf/subgate.conf)", path, g->conf->has_keys ? "audit" :
		    "keys");
		goto fail;
	}
	if ((g->keys = keys_load(g->conf, err, errlen)) == NULL)
		goto fail;
	if (keys_load_index(g->conf->keys_audit_index, g->index_key, e,
	    sizeof(e)) == -1) {
		snprintf(err, errlen, "%s: keys.audit_index: %s", path, e);
		goto fail;
	}
	/* body_hmac key: HKDF of the index key, so compliance staff holding
	 * the index key can check a body they have. */
	if (keys_derive(g->index_key, "body-hmac", "audit-index", 1,
	    g->body_key, sizeof(g->body_key)) == -1) {
		snprintf(err, errlen, "%s: cannot derive the body_hmac key", path);
		goto fail;
	}
	gen_hash(g);
	return g;
fail:
	gen_unref(g);
	return NULL;
}

void
gen_ref(struct gen *g)
{
	__atomic_fetch_add(&g->refs, 1, __ATOMIC_RELAXED);
}

void
gen_unref(struct gen *g)
{
	size_t	i;

	if (g == NULL || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (i = 0; i < g->naccounts; i++)
		SSL_CTX_free(g->accounts[i].ctx);
	free(g->accounts);
	SSL_CTX_free(g->server_ctx);
	keys_free(g->keys);
	OPENSSL_cleanse(g->index_key, sizeof(g->index_key));
	OPENSSL_cleanse(g->body_key, sizeof(g->body_key));
	conf_free(g->conf);
	free(g);
}

const struct gen_account *
gen_account_for(const struct gen *g, const struct conf_use *u)
{
	size_t	i;

	for (i = 0; i < g->naccounts; i++)
		if (gen_same_account(g->accounts[i].account, &u->account))
			return &g->accounts[i];
	return NULL;
}

struct gen *
gen_current(void)
{
	struct gen	*g;

	pthread_mutex_lock(&gen_mtx);
	if ((g = gen_now) != NULL)
		gen_ref(g);
	pthread_mutex_unlock(&gen_mtx);
	return g;
}

void
gen_install(struct gen *g)
{
	struct gen	*old;

	pthread_mutex_lock(&gen_mtx);
	old = gen_now;
	gen_now = g;
	__atomic_add_fetch(&gen_epoch, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&gen_mtx);
	gen_unref(old);
}

struct gen *
gen_cached(struct gen **cache, uint64_t *epoch)
{
	uint64_t	e = __atomic_load_n(&gen_epoch, __ATOMIC_ACQUIRE);
	struct gen	*g;

	if (*cache == NULL || *epoch != e) {
		g = gen_current();
		gen_unref(*cache);
		*cache = g;
		*epoch = e;
	}
	return *cache;
}
