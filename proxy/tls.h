/* tls.h -- SSL_CTX building, peer identity, CRL state, OpenSSL error text */
#ifndef SUBGATE_TLS_H
#define SUBGATE_TLS_H

#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf.h"

#define TLS_VERIFY_DEPTH	4

/* Drain OpenSSL's error queue into buf as one line; returns buf. */
const char *tls_errors(char *buf, size_t len);

/*
 * The inbound context: TLS 1.2+ (tls_min_version), AEAD suites only, no
 * renegotiation, no compression, no tickets and no session cache (every
 * connection presents and verifies its certificate), a client certificate
 * required and verified against client_ca and the current CRL, ALPN
 * http/1.1 (an offer without it is refused). Returns NULL with err.
 */
SSL_CTX	*tls_server_ctx_new(const struct conf *c, char *err, size_t errlen);

/*
 * The outbound context for one account: presents the client certificate,
 * verifies the processor's chain against ca (the host name is set per
 * connection with tls_client_prepare). Returns NULL with err.
 */
SSL_CTX	*tls_client_ctx_new(const struct conf_account *a, char *err,
	    size_t errlen);
/* SNI, host name check and ALPN on a new outbound SSL. 0 or -1. */
int	tls_client_prepare(SSL *ssl, const struct conf_account *a);

/*
 * The identity of a verified peer: first URI SAN, else first DNS SAN, else
 * the subject CN. 0, or -1 when the certificate names none (or one with a
 * NUL or a control character).
 */
int	tls_peer_identity(X509 *cert, char *out, size_t outlen);
/* SHA-256 of the certificate's SubjectPublicKeyInfo. 0 or -1. */
int	tls_spki_sha256(X509 *cert, unsigned char out[32]);
/* Does the processor's certificate match one of the account's pins (or are
 * there none)? */
int	tls_pins_ok(X509 *cert, const struct conf_account *a);

/*
 * CRL state shared by all threads. tls_crl_reload reads path (or clears the
 * state when path is NULL), checks its signature against the CA
 * certificate(s) in ca_path, and swaps it in; on failure the old CRL stays
 * and -1 is returned with err. tls_crl_revoked says whether cert is on the
 * current CRL (checked at every handshake and on every request).
 * tls_crl_next_update: 0 when there is no CRL.
 */
int	tls_crl_reload(const char *path, const char *ca_path, char *err,
	    size_t errlen);
int	tls_crl_revoked(X509 *cert);
time_t	tls_crl_next_update(void);
/* notAfter of the first certificate in a PEM file, 0 on error. */
time_t	tls_cert_file_not_after(const char *path);

#endif
