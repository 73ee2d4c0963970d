/* wrk_mtls_shim.c -- LD_PRELOAD shim: every new SSL_CTX presents SHIM_CERT / SHIM_KEY (wrk has no client-certificate option) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/ssl.h>

/*
 * Build: cc -shared -fPIC -o wrk_mtls_shim.so wrk_mtls_shim.c -ldl -lssl
 * Use:   LD_PRELOAD=./wrk_mtls_shim.so SHIM_CERT=c.crt SHIM_KEY=c.key wrk ...
 * A certificate or key that does not load aborts the process: a benchmark
 * without the client certificate would measure refusals.
 */
SSL_CTX *
SSL_CTX_new(const SSL_METHOD *method)
{
	static SSL_CTX	*(*real)(const SSL_METHOD *);
	const char	*cert = getenv("SHIM_CERT"), *key = getenv("SHIM_KEY");
	SSL_CTX		*ctx;

	if (real == NULL &&
	    (real = (SSL_CTX *(*)(const SSL_METHOD *))dlsym(RTLD_NEXT,
	    "SSL_CTX_new")) == NULL) {
		fprintf(stderr, "wrk_mtls_shim: no SSL_CTX_new\n");
		abort();
	}
	if ((ctx = real(method)) == NULL || cert == NULL || key == NULL)
		return ctx;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		fprintf(stderr, "wrk_mtls_shim: cannot load %s / %s\n", cert, key);
		abort();
	}
	return ctx;
}
