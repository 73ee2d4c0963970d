/* gen.c -- configuration generations: build, reference counting, the current one */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "gen.h"
#include "keys.h"
#include "policy.h"
#include "tls.h"

static pthread_mutex_t	 gen_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct gen	*gen_now;

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

/* A hash of everything that decides what leaves and to whom: the config
 * text as loaded plus the CA and pin material it names. */
static void
gen_hash(struct gen *g)
{
	EVP_MD_CTX	*md = EVP_MD_CTX_new();
	unsigned char	 h[32], chunk[4096];
	unsigned int	 hl = 0;
	size_t		 i, n;
	FILE		*f;
	const char	*files[2];
	int		 k;

	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	files[0] = g->conf->path;
	for (i = 0; i <= g->naccounts; i++) {
		files[1] = i < g->naccounts ? g->accounts[i].account->ca : NULL;
		for (k = i == 0 ? 0 : 1; k < 2; k++) {
			if (files[k] == NULL || (f = fopen(files[k], "r")) == NULL)
				continue;
			while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
				EVP_DigestUpdate(md, chunk, n);
			fclose(f);
		}
		if (i < g->naccounts)
			EVP_DigestUpdate(md, g->accounts[i].account->key,
			    strlen(g->accounts[i].account->key));
	}
	EVP_DigestFinal_ex(md, h, &hl);
	EVP_MD_CTX_free(md);
	for (i = 0; i < 32; i++)
		snprintf(g->policy_hash + 2 * i, 3, "%02x", h[i]);
}

static int
gen_rules_transform(const struct policy_rules *r)
{
	enum policy_action	a;
	size_t			i;

	for (i = 0; r != NULL && i < policy_rules_count(r); i++) {
		policy_rules_path(r, i, &a);
		if (a != POLICY_ALLOW && a != POLICY_DROP)
			return 1;
	}
	return 0;
}

/* Does the config use an action that needs keys? Names the first place. */
static int
gen_needs_keys(const struct conf *c, char *where, size_t len)
{
	enum policy_action	 a;
	size_t			 i, j, k;

	for (i = 0; i < c->nintegrations; i++) {
		const struct conf_integration *ig = &c->integrations[i];
		for (j = 0; j < ig->nendpoints; j++) {
			const struct conf_endpoint *ep = &ig->endpoints[j];
			int use = gen_rules_transform(ep->request) ||
			    ep->response != NULL;
			for (k = 0; k < ep->pattern.nparams; k++)
				if (ep->params[k].action != POLICY_ALLOW)
					use = 1;
			for (k = 0; ep->query != NULL &&
			    k < policy_names_count(ep->query); k++) {
				policy_names_at(ep->query, k, &a);
				if (a != POLICY_ALLOW && a != POLICY_DROP)
					use = 1;
			}
			if (use) {
				snprintf(where, len, "integrations[%s].endpoints"
				    "[%s %s]", ig->name, ep->method, ep->path);
				return 1;
			}
		}
	}
	return 0;
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
	if (g->conf->has_keys) {
		if ((g->keys = keys_load(g->conf, err, errlen)) == NULL)
			goto fail;
	} else if (gen_needs_keys(g->conf, e, sizeof(e))) {
		snprintf(err, errlen, "%s: %s uses an action other than allow: "
		    "add a keys section (see subgatectl keys init)", path, e);
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
	pthread_mutex_unlock(&gen_mtx);
	gen_unref(old);
}
