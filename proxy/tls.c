/* tls.c -- SSL_CTX building, peer identity, CRL state, OpenSSL error text */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* TLS 1.2 suites: ECDHE with AEAD only. TLS 1.3 suites are all AEAD. */
#define TLS12_CIPHERS							\
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"	\
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"	\
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES							\
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

static pthread_rwlock_t	 tls_crl_lock = PTHREAD_RWLOCK_INITIALIZER;
static X509_CRL		*tls_crl;
static time_t		 tls_crl_next;

const char *
tls_errors(char *buf, size_t len)
{
	unsigned long	e;
	size_t		n = 0;
	char		one[256];

	if (len == 0)
		return buf;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, one, sizeof(one));
		n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s",
		    n ? "; " : "", one);
		if (n >= len)
			break;
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "unknown TLS error");
	return buf;
}

static void
tls_harden(SSL_CTX *ctx, int min_version)
{
	SSL_CTX_set_min_proto_version(ctx, min_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* OpenSSL 3 refuses client-initiated renegotiation unless
	 * SSL_OP_ALLOW_CLIENT_RENEGOTIATION is set; NO_RENEGOTIATION refuses
	 * the rest. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
}

static int
tls_ciphers(SSL_CTX *ctx, char *err, size_t errlen)
{
	char	e[256];

	if (!SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) ||
	    !SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES)) {
		snprintf(err, errlen, "cipher configuration: %s",
		    tls_errors(e, sizeof(e)));
		return -1;
	}
	return 0;
}

static int
tls_load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *err,
    size_t errlen)
{
	char	e[256];

	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "%s: cannot load certificate: %s", cert,
		    tls_errors(e, sizeof(e)));
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "%s: cannot load private key: %s", key,
		    tls_errors(e, sizeof(e)));
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "%s does not match certificate %s", key,
		    cert);
		ERR_clear_error();
		return -1;
	}
	return 0;
}

/* A certificate on the current CRL fails verification at any depth. */
static int
tls_server_verify_cb(int ok, X509_STORE_CTX *sctx)
{
	X509	*cert;

	if (!ok)
		return 0;
	cert = X509_STORE_CTX_get_current_cert(sctx);
	if (cert != NULL && tls_crl_revoked(cert)) {
		X509_STORE_CTX_set_error(sctx, X509_V_ERR_CERT_REVOKED);
		return 0;
	}
	return 1;
}

static int
tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned int	i;

	(void)ssl;
	(void)arg;
	for (i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == 8 && i + 9 <= inlen &&
		    memcmp(in + i + 1, "http/1.1", 8) == 0) {
			*out = in + i + 1;
			*outlen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	/* An offer that leaves out http/1.1 (h2 only, say) is refused. */
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

SSL_CTX *
tls_server_ctx_new(const struct conf *c, char *err, size_t errlen)
{
	SSL_CTX			*ctx;
	STACK_OF(X509_NAME)	*names;
	char			 e[256];

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s", tls_errors(e, sizeof(e)));
		return NULL;
	}
	tls_harden(ctx, c->tls_min_version);
	/* No resumption: identity is verified on every connection. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (tls_ciphers(ctx, err, errlen) == -1 ||
	    tls_load_pair(ctx, c->tls_certificate, c->tls_private_key, err,
	    errlen) == -1)
		goto fail;
	if (SSL_CTX_load_verify_locations(ctx, c->tls_client_ca, NULL) != 1) {
		snprintf(err, errlen, "%s: cannot load client CA: %s",
		    c->tls_client_ca, tls_errors(e, sizeof(e)));
		goto fail;
	}
	if ((names = SSL_load_client_CA_file(c->tls_client_ca)) == NULL) {
		snprintf(err, errlen, "%s: no CA certificate in file",
		    c->tls_client_ca);
		goto fail;
	}
	SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
	    tls_server_verify_cb);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tls_client_ctx_new(const struct conf_account *a, char *err, size_t errlen)
{
	SSL_CTX	*ctx;
	char	 e[256];

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s", tls_errors(e, sizeof(e)));
		return NULL;
	}
	tls_harden(ctx, TLS1_2_VERSION);
	/* Processor connections are few and pooled, and a pooled one is busy:
	 * keep its record buffers instead of freeing and reallocating both
	 * (17 KB each) on every request. Client connections keep
	 * RELEASE_BUFFERS: thousands of them sit idle. */
	SSL_CTX_clear_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (tls_ciphers(ctx, err, errlen) == -1 ||
	    tls_load_pair(ctx, a->client_certificate, a->client_private_key,
	    err, errlen) == -1)
		goto fail;
	if (SSL_CTX_load_verify_locations(ctx, a->ca, NULL) != 1) {
		snprintf(err, errlen, "%s: cannot load processor CA: %s", a->ca,
		    tls_errors(e, sizeof(e)));
		goto fail;
	}
	SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int
tls_client_prepare(SSL *ssl, const struct conf_account *a)
{
	static const unsigned char alpn[] = "\x08http/1.1";

	if (SSL_set_tlsext_host_name(ssl, a->server_name) != 1)
		return -1;
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_set1_host(ssl, a->server_name) != 1)
		return -1;
	if (SSL_set_alpn_protos(ssl, alpn, sizeof(alpn) - 1) != 0)
		return -1;
	return 0;
}

static int
tls_copy_name(const unsigned char *s, int len, char *out, size_t outlen)
{
	int	i;

	if (len <= 0 || (size_t)len >= outlen)
		return -1;
	for (i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return -1;
	memcpy(out, s, (size_t)len);
	out[len] = '\0';
	return 0;
}

int
tls_peer_identity(X509 *cert, char *out, size_t outlen)
{
	GENERAL_NAMES		*sans;
	const GENERAL_NAME	*gn;
	X509_NAME		*subj;
	X509_NAME_ENTRY		*ne;
	ASN1_STRING		*s;
	int			 want, i, n, idx, rc = -1;

	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (want = GEN_URI; sans != NULL && rc == -1; want = GEN_DNS) {
		n = sk_GENERAL_NAME_num(sans);
		for (i = 0; i < n; i++) {
			gn = sk_GENERAL_NAME_value(sans, i);
			if (gn->type != want)
				continue;
			s = want == GEN_URI ? gn->d.uniformResourceIdentifier :
			    gn->d.dNSName;
			rc = tls_copy_name(ASN1_STRING_get0_data(s),
			    ASN1_STRING_length(s), out, outlen);
			break;
		}
		if (want == GEN_DNS)
			break;
	}
	GENERAL_NAMES_free(sans);
	if (rc == 0)
		return 0;
	if ((subj = X509_get_subject_name(cert)) == NULL)
		return -1;
	idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	if (idx < 0 || X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0)
		return -1;	/* none, or ambiguous */
	ne = X509_NAME_get_entry(subj, idx);
	s = X509_NAME_ENTRY_get_data(ne);
	return tls_copy_name(ASN1_STRING_get0_data(s), ASN1_STRING_length(s),
	    out, outlen);
}

int
tls_spki_sha256(X509 *cert, unsigned char out[32])
{
	unsigned char	*der = NULL;
	int		 len;

	if ((len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der)) <= 0)
		return -1;
	SHA256(der, (size_t)len, out);
	OPENSSL_free(der);
	return 0;
}

int
tls_pins_ok(X509 *cert, const struct conf_account *a)
{
	unsigned char	h[32];
	size_t		i;

	if (a->npins == 0)
		return 1;
	if (tls_spki_sha256(cert, h) == -1)
		return 0;
	for (i = 0; i < a->npins; i++)
		if (CRYPTO_memcmp(h, a->pin_bin[i], 32) == 0)
			return 1;
	return 0;
}

static time_t
tls_asn1_time(const ASN1_TIME *t)
{
	struct tm	tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

int
tls_crl_reload(const char *path, const char *ca_path, char *err, size_t errlen)
{
	X509_CRL	*crl = NULL, *old;
	X509		*ca = NULL;
	EVP_PKEY	*pk;
	FILE		*f = NULL;
	int		 verified = 0;
	char		 e[256];

	if (path == NULL) {
		crl = NULL;
		goto swap;
	}
	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: cannot open CRL: %s", path,
		    strerror(errno));
		return -1;
	}
	crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	if (crl == NULL) {
		snprintf(err, errlen, "%s: not a PEM CRL: %s", path,
		    tls_errors(e, sizeof(e)));
		return -1;
	}
	/* The CRL must be signed by one of the client CAs. */
	if ((f = fopen(ca_path, "r")) == NULL) {
		snprintf(err, errlen, "%s: cannot open CA: %s", ca_path,
		    strerror(errno));
		goto fail;
	}
	while (!verified && (ca = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		if (X509_NAME_cmp(X509_get_subject_name(ca),
		    X509_CRL_get_issuer(crl)) == 0 &&
		    (pk = X509_get0_pubkey(ca)) != NULL &&
		    X509_CRL_verify(crl, pk) == 1)
			verified = 1;
		X509_free(ca);
	}
	fclose(f);
	ERR_clear_error();
	if (!verified) {
		snprintf(err, errlen, "%s: CRL is not signed by a CA in %s",
		    path, ca_path);
		goto fail;
	}
swap:
	pthread_rwlock_wrlock(&tls_crl_lock);
	old = tls_crl;
	tls_crl = crl;
	tls_crl_next = crl ? tls_asn1_time(X509_CRL_get0_nextUpdate(crl)) : 0;
	pthread_rwlock_unlock(&tls_crl_lock);
	X509_CRL_free(old);
	return 0;
fail:
	X509_CRL_free(crl);
	return -1;
}

int
tls_crl_revoked(X509 *cert)
{
	X509_REVOKED	*rev = NULL;
	int		 revoked = 0;

	pthread_rwlock_rdlock(&tls_crl_lock);
	if (tls_crl != NULL &&
	    X509_NAME_cmp(X509_get_issuer_name(cert),
	    X509_CRL_get_issuer(tls_crl)) == 0 &&
	    X509_CRL_get0_by_cert(tls_crl, &rev, cert) == 1)
		revoked = 1;
	pthread_rwlock_unlock(&tls_crl_lock);
	return revoked;
}

time_t
tls_crl_next_update(void)
{
	time_t	t;

	pthread_rwlock_rdlock(&tls_crl_lock);
	t = tls_crl_next;
	pthread_rwlock_unlock(&tls_crl_lock);
	return t;
}

time_t
tls_cert_file_not_after(const char *path)
{
	FILE	*f;
	X509	*x;
	time_t	 t;

	if ((f = fopen(path, "r")) == NULL)
		return 0;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL) {
		ERR_clear_error();
		return 0;
	}
	t = tls_asn1_time(X509_get0_notAfter(x));
	X509_free(x);
	return t;
}
