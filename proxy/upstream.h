/* upstream.h -- TLS connections to processors, per-worker keep-alive pools, timeouts */
#ifndef SUBGATE_UPSTREAM_H
#define SUBGATE_UPSTREAM_H

#include <stdint.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "buf.h"
#include "gen.h"
#include "http.h"
#include "metrics.h"

enum upstream_error {
	UP_OK = 0,
	UP_DNS,			/* name did not resolve */
	UP_CONNECT,		/* TCP connect failed or refused */
	UP_TLS,			/* handshake failed (protocol, alert) */
	UP_VERIFY,		/* processor chain not trusted */
	UP_HOSTNAME,		/* certificate does not name server_name */
	UP_PIN,			/* SPKI not among pin_sha256 */
	UP_BAD_RESPONSE,	/* malformed or ambiguous response framing */
	UP_TOO_LARGE,		/* response over max_response_bytes */
	UP_CLOSED,		/* connection closed before a complete response */
	UP_TIMEOUT,		/* upstream_timeout_ms passed */
	UP_NERRORS,
};

/* "dns", "connect", "tls", "verify", "hostname", "pin", "bad_response",
 * "too_large", "closed", "timeout". */
const char *upstream_error_name(enum upstream_error e);

enum upstream_delivery {
	DELIVERY_NOT_SENT = 0,	/* no byte of the request left subgate */
	DELIVERY_PARTIAL,	/* part of the request was written */
	DELIVERY_UNKNOWN,	/* all written, no complete response */
	DELIVERY_SENT,		/* a complete response came back */
};
const char *upstream_delivery_name(enum upstream_delivery d);

/* What an exchange produced; valid during the callback only, except that
 * the callee may take body by moving it out (and zeroing it). */
struct upstream_result {
	enum upstream_error	 error;
	enum upstream_delivery	 delivery;
	int			 attempts;
	int			 status;
	struct http_header	*headers;	/* point into head */
	size_t			 nheaders;
	struct buf		 head;
	struct buf		 body;
	unsigned char		 spki[32];
	int			 have_spki;
	char			 detail[160];	/* cause for logs and error bodies: no secrets */
};

typedef void (*upstream_cb)(void *arg, struct upstream_result *res);

struct upstream_pools;
struct upstream_exchange;

struct upstream_pools *upstream_pools_new(struct event_base *base,
	    struct evdns_base *dns, struct metrics *m);
/* Close every pooled connection (shutdown, reload clean-up). */
void	upstream_pools_flush(struct upstream_pools *p);
void	upstream_pools_free(struct upstream_pools *p);

/*
 * Send req (taken: the caller's buf is emptied) to ga's processor over a
 * pooled or new connection and read the response, all within
 * upstream_timeout_ms. head_request: the method was HEAD. retry_ok: the
 * request may be sent again on a fresh connection if a pooled one turns
 * out to be closed before any response byte (idempotent methods). g is
 * referenced for the exchange's life. cb is called exactly once, unless
 * upstream_cancel is called first.
 */
struct upstream_exchange *upstream_start(struct upstream_pools *p,
	    struct gen *g, const struct gen_account *ga, struct buf *req,
	    int head_request, int retry_ok, upstream_cb cb, void *arg);
void	upstream_cancel(struct upstream_exchange *x);

#endif
