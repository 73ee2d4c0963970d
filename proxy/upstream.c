/* upstream.c -- TLS connections to processors, per-worker keep-alive pools, timeouts */
#include <sys/queue.h>
#include <sys/socket.h>

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"
#include "tlsio.h"
#include "upstream.h"

#define UCONN_MAGIC	0x75636f6eu
#define UX_MAGIC	0x75786368u
#define POOL_MAX_IDLE	1024	/* idle processor connections per worker */

struct uconn {
	unsigned		 magic;
	struct upstream_pools	*pools;
	struct tlsio		*io;
	uint64_t		 gen_id;
	unsigned		 account;
	struct event		*idle_ev;
	TAILQ_ENTRY(uconn)	 entry;
	int			 pooled;
	unsigned char		 spki[32];
	int			 have_spki;
	struct upstream_exchange *x;	/* while in use */
};
TAILQ_HEAD(uconn_list, uconn);

struct upstream_pools {
	struct event_base	*base;
	struct evdns_base	*dns;
	struct metrics		*metrics;
	struct uconn_list	 idle;
	size_t			 nidle;
};

enum ux_state { UX_RESOLVING, UX_CONNECTING, UX_SENDING, UX_READING };

struct upstream_exchange {
	unsigned			 magic;
	struct upstream_pools		*pools;
	struct gen			*gen;
	const struct gen_account	*ga;
	struct buf			 req;
	int				 head_request;
	int				 retry_ok;
	int				 reused;	/* current conn came from the pool */
	enum ux_state			 state;
	struct uconn			*conn;
	struct evdns_getaddrinfo_request *dnsreq;
	struct event			*timer;
	upstream_cb			 cb;
	void				*arg;
	struct upstream_result		 res;
	struct http_header		*hdrs;
	struct http_limits		 lim;
	size_t				 max_body;
	int				 head_done;
	struct http_response		 resp;
	struct http_chunked		 chunked;
	int				 got_bytes;	/* any response byte seen */
	int				 written;	/* the whole request was flushed */
	int				 dns_inline, dns_done, dns_result;
	enum upstream_error		 fail;		/* set by ux_fail_later */
	struct evutil_addrinfo		*dns_ai;
};

static void	ux_send(struct upstream_exchange *);
static void	ux_connect(struct upstream_exchange *);
static void	ux_fail_later(struct upstream_exchange *, enum upstream_error,
		    const char *);
static void	uconn_read_cb(struct tlsio *, void *);
static void	uconn_write_cb(struct tlsio *, void *);
static void	uconn_event_cb(struct tlsio *, enum tlsio_event, void *);
static void	uconn_idle_read_cb(struct tlsio *, void *);
static void	uconn_idle_event_cb(struct tlsio *, enum tlsio_event, void *);

static const struct tlsio_cbs uconn_cbs = {
	uconn_read_cb, uconn_write_cb, uconn_event_cb,
};
static const struct tlsio_cbs uconn_idle_cbs = {
	uconn_idle_read_cb, NULL, uconn_idle_event_cb,
};

static const char *up_error_names[UP_NERRORS] = {
	"ok", "dns", "connect", "tls", "verify", "hostname", "pin",
	"bad_response", "too_large", "closed", "timeout",
};

const char *
upstream_error_name(enum upstream_error e)
{
	return e < UP_NERRORS ? up_error_names[e] : "unknown";
}

const char *
upstream_delivery_name(enum upstream_delivery d)
{
	static const char *n[] = { "not_sent", "partial", "unknown", "sent" };

	return d <= DELIVERY_SENT ? n[d] : "unknown";
}

struct upstream_pools *
upstream_pools_new(struct event_base *base, struct evdns_base *dns,
    struct metrics *m)
{
	struct upstream_pools	*p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->base = base;
	p->dns = dns;
	p->metrics = m;
	TAILQ_INIT(&p->idle);
	return p;
}

static void
uconn_free(struct uconn *c)
{
	if (c == NULL)
		return;
	assert(c->magic == UCONN_MAGIC);
	if (c->pooled) {
		TAILQ_REMOVE(&c->pools->idle, c, entry);
		c->pools->nidle--;
	}
	if (c->idle_ev != NULL)
		event_free(c->idle_ev);
	tlsio_free(c->io);	/* the SSL and the socket with it */
	c->magic = 0;
	free(c);
}

void
upstream_pools_flush(struct upstream_pools *p)
{
	struct uconn	*c;

	while ((c = TAILQ_FIRST(&p->idle)) != NULL)
		uconn_free(c);
}

void
upstream_pools_free(struct upstream_pools *p)
{
	if (p == NULL)
		return;
	upstream_pools_flush(p);
	free(p);
}

/* An idle pooled connection: any byte or close from the processor ends it. */
static void
uconn_idle_read_cb(struct tlsio *t, void *arg)
{
	(void)t;
	uconn_free(arg);
}

static void
uconn_idle_event_cb(struct tlsio *t, enum tlsio_event e, void *arg)
{
	(void)t;
	(void)e;
	uconn_free(arg);
}

static void
uconn_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	uconn_free(arg);
}

static void
uconn_pool(struct upstream_pools *p, struct uconn *c, int idle_ms)
{
	struct timeval	tv;
	struct uconn	*old;

	c->x = NULL;
	if (c->idle_ev == NULL &&
	    (c->idle_ev = evtimer_new(p->base, uconn_idle_timeout, c)) == NULL) {
		uconn_free(c);
		return;
	}
	tv.tv_sec = idle_ms / 1000;
	tv.tv_usec = (idle_ms % 1000) * 1000;
	evtimer_add(c->idle_ev, &tv);
	tlsio_setcb(c->io, &uconn_idle_cbs, c);
	TAILQ_INSERT_HEAD(&p->idle, c, entry);
	c->pooled = 1;
	p->nidle++;
	/* Bound the pool: drop the least recently used connection. */
	if (p->nidle > POOL_MAX_IDLE && (old = TAILQ_LAST(&p->idle,
	    uconn_list)) != NULL)
		uconn_free(old);
}

static struct uconn *
uconn_take(struct upstream_pools *p, uint64_t gen_id, unsigned account)
{
	struct uconn	*c, *next;

	for (c = TAILQ_FIRST(&p->idle); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (c->gen_id != gen_id) {
			/* A pool from an older generation: its trust settings
			 * may have changed; never reuse it. */
			uconn_free(c);
			continue;
		}
		if (c->account != account)
			continue;
		TAILQ_REMOVE(&p->idle, c, entry);
		p->nidle--;
		c->pooled = 0;
		evtimer_del(c->idle_ev);
		return c;
	}
	return NULL;
}

static void
ux_free(struct upstream_exchange *x)
{
	if (x->dnsreq != NULL)
		evdns_getaddrinfo_cancel(x->dnsreq);
	if (x->timer != NULL)
		event_free(x->timer);
	if (x->conn != NULL) {
		x->conn->x = NULL;
		uconn_free(x->conn);
	}
	buf_free(&x->req);
	buf_free(&x->res.head);
	buf_free(&x->res.body);
	free(x->hdrs);
	gen_unref(x->gen);
	x->magic = 0;
	free(x);
}

static void
ux_finish(struct upstream_exchange *x, enum upstream_error e, const char *detail)
{
	struct upstream_pools	*p = x->pools;
	struct uconn		*c = x->conn;

	x->res.error = e;
	if (detail != NULL && x->res.detail[0] == '\0')
		snprintf(x->res.detail, sizeof(x->res.detail), "%s", detail);
	if (e == UP_OK)
		x->res.delivery = DELIVERY_SENT;
	else if (x->state < UX_SENDING)
		x->res.delivery = DELIVERY_NOT_SENT;
	else if (x->written || x->got_bytes)
		x->res.delivery = DELIVERY_UNKNOWN;
	else
		x->res.delivery = DELIVERY_PARTIAL;
	if (e == UP_OK && c != NULL && x->resp.keep_alive &&
	    x->resp.framing != HTTP_BODY_CLOSE &&
	    evbuffer_get_length(tlsio_input(c->io)) == 0) {
		x->conn = NULL;
		uconn_pool(p, c, x->gen->conf->limits.upstream_idle_ms);
	}
	if (e != UP_OK)
		metrics_add(p->metrics, "subgate_upstream_errors_total",
		    e == UP_DNS ? "cause=\"dns\"" : e == UP_CONNECT ?
		    "cause=\"connect\"" : e == UP_TLS ? "cause=\"tls\"" :
		    e == UP_VERIFY ? "cause=\"verify\"" : e == UP_HOSTNAME ?
		    "cause=\"hostname\"" : e == UP_PIN ? "cause=\"pin\"" :
		    e == UP_BAD_RESPONSE ? "cause=\"bad_response\"" :
		    e == UP_TOO_LARGE ? "cause=\"too_large\"" : e == UP_CLOSED ?
		    "cause=\"closed\"" : "cause=\"timeout\"", 1);
	x->cb(x->arg, &x->res);
	ux_free(x);
}

static void
ux_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_exchange	*x = arg;

	(void)fd;
	(void)what;
	assert(x->magic == UX_MAGIC);
	if (x->fail != UP_OK) {
		ux_finish(x, x->fail, NULL);
		return;
	}
	ux_finish(x, UP_TIMEOUT, "no complete response within upstream_timeout_ms");
}

/*
 * Fail from the event loop, never inside upstream_start: its caller must
 * have the exchange pointer before the callback can run.
 */
static void
ux_fail_later(struct upstream_exchange *x, enum upstream_error e,
    const char *detail)
{
	struct timeval	now = { 0, 0 };

	x->fail = e;
	snprintf(x->res.detail, sizeof(x->res.detail), "%s", detail);
	evtimer_add(x->timer, &now);
}

struct upstream_exchange *
upstream_start(struct upstream_pools *p, struct gen *g,
    const struct gen_account *ga, struct buf *req, int head_request,
    int retry_ok, upstream_cb cb, void *arg)
{
	struct upstream_exchange	*x;
	const struct conf_limits	*l = &g->conf->limits;
	struct timeval			 tv;

	if ((x = calloc(1, sizeof(*x))) == NULL)
		return NULL;
	x->magic = UX_MAGIC;
	x->pools = p;
	gen_ref(g);
	x->gen = g;
	x->ga = ga;
	x->req = *req;
	memset(req, 0, sizeof(*req));
	x->head_request = head_request;
	x->retry_ok = retry_ok;
	x->cb = cb;
	x->arg = arg;
	x->lim.max_header_bytes = l->max_header_bytes;
	x->lim.max_headers = l->max_headers;
	x->max_body = l->max_response_bytes;
	if ((x->hdrs = malloc(l->max_headers * sizeof(*x->hdrs))) == NULL ||
	    (x->timer = evtimer_new(p->base, ux_timeout, x)) == NULL) {
		ux_free(x);
		return NULL;
	}
	tv.tv_sec = l->upstream_timeout_ms / 1000;
	tv.tv_usec = (l->upstream_timeout_ms % 1000) * 1000;
	evtimer_add(x->timer, &tv);

	if ((x->conn = uconn_take(p, g->id, ga->index)) != NULL) {
		x->reused = 1;
		x->conn->x = x;
		x->res.attempts = 1;
		memcpy(x->res.spki, x->conn->spki, 32);
		x->res.have_spki = x->conn->have_spki;
		ux_send(x);
	} else
		ux_connect(x);
	return x;
}

void
upstream_cancel(struct upstream_exchange *x)
{
	if (x == NULL)
		return;
	assert(x->magic == UX_MAGIC);
	ux_free(x);
}

static void
ux_open(struct upstream_exchange *x, const struct sockaddr *sa, int salen)
{
	struct upstream_pools	*p = x->pools;
	struct uconn		*c;
	SSL			*ssl;
	int			 one = 1;
	evutil_socket_t		 fd;

	x->state = UX_CONNECTING;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto fail;
	c->magic = UCONN_MAGIC;
	c->pools = p;
	c->gen_id = x->gen->id;
	c->account = x->ga->index;
	c->x = x;
	x->conn = c;
	if ((ssl = SSL_new(x->ga->ctx)) == NULL)
		goto fail;
	if (tls_client_prepare(ssl, x->ga->account) == -1) {
		SSL_free(ssl);
		goto fail;
	}
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		SSL_free(ssl);
		goto fail;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, sa, (socklen_t)salen) == -1 && errno != EINPROGRESS) {
		char detail[160];
		snprintf(detail, sizeof(detail), "cannot connect to processor: "
		    "%s", strerror(errno));
		close(fd);
		SSL_free(ssl);
		ux_fail_later(x, UP_CONNECT, detail);
		return;
	}
	if ((c->io = tlsio_new(p->base, fd, ssl, 0, &uconn_cbs, c)) == NULL) {
		close(fd);
		SSL_free(ssl);
		goto fail;
	}
	return;
fail:
	ERR_clear_error();
	ux_fail_later(x, UP_CONNECT, "out of resources");
}

static void
ux_dns_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct upstream_exchange	*x = arg;

	x->dnsreq = NULL;
	if (result == EVUTIL_EAI_CANCEL)
		return;
	if (x->dns_inline) {
		/* Answered inside evdns_getaddrinfo: ux_connect goes on. */
		x->dns_result = result;
		x->dns_ai = ai;
		x->dns_done = 1;
		return;
	}
	if (result != 0 || ai == NULL) {
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		ux_fail_later(x, UP_DNS, "upstream name did not resolve");
		return;
	}
	ux_open(x, ai->ai_addr, (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
}

static void
ux_connect(struct upstream_exchange *x)
{
	const struct conf_account	*a = x->ga->account;
	struct sockaddr_storage		 ss;
	struct evutil_addrinfo		 hints;
	char				 spec[300], port[8];
	int				 sslen = sizeof(ss);

	x->res.attempts++;
	x->state = UX_RESOLVING;
	snprintf(spec, sizeof(spec), strchr(a->host, ':') ? "[%s]:%d" : "%s:%d",
	    a->host, a->port);
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) == 0) {
		ux_open(x, (struct sockaddr *)&ss, sslen);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%d", a->port);
	x->dns_inline = 1;
	x->dns_done = 0;
	x->dnsreq = evdns_getaddrinfo(x->pools->dns, a->host, port, &hints,
	    ux_dns_cb, x);
	x->dns_inline = 0;
	if (x->dns_done) {
		x->dnsreq = NULL;
		ux_dns_cb(x->dns_result, x->dns_ai, x);
	}
}

static void
ux_send(struct upstream_exchange *x)
{
	x->state = UX_SENDING;
	tlsio_setcb(x->conn->io, &uconn_cbs, x->conn);
	/* A failure shows up as an event callback from the loop. */
	tlsio_write(x->conn->io, x->req.data, x->req.len);
}

/* A pooled connection failed before any response byte: the processor
 * probably closed it while idle. Send once more on a fresh one when the
 * method allows it. Returns 1 when a retry started. */
static int
ux_retry(struct upstream_exchange *x)
{
	if (!x->reused || x->got_bytes || !x->retry_ok || x->res.attempts > 1)
		return 0;
	x->conn->x = NULL;
	uconn_free(x->conn);
	x->conn = NULL;
	x->reused = 0;
	x->written = 0;
	ux_connect(x);
	return 1;
}

/* Why did the handshake fail? */
static enum upstream_error
ux_tls_cause(struct uconn *c, char *detail, size_t len)
{
	SSL	*ssl = tlsio_ssl(c->io);
	long	 v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	char	 e[256];

	if (v == X509_V_ERR_HOSTNAME_MISMATCH) {
		snprintf(detail, len, "processor certificate does not name "
		    "the integration's server_name");
		ERR_clear_error();
		return UP_HOSTNAME;
	}
	if (v != X509_V_OK) {
		snprintf(detail, len, "processor certificate not trusted: %s",
		    X509_verify_cert_error_string(v));
		ERR_clear_error();
		return UP_VERIFY;
	}
	if (tlsio_ssl_error(c->io) != 0)
		ERR_error_string_n(tlsio_ssl_error(c->io), e, sizeof(e));
	else
		snprintf(e, sizeof(e), "processor closed the connection");
	snprintf(detail, len, "TLS handshake with processor failed: %.120s", e);
	return UP_TLS;
}

static void
uconn_event_cb(struct tlsio *t, enum tlsio_event what, void *arg)
{
	struct uconn			*c = arg;
	struct upstream_exchange	*x = c->x;
	X509				*cert;
	SSL				*ssl;
	char				 detail[200];

	(void)t;
	assert(c->magic == UCONN_MAGIC && x != NULL && x->magic == UX_MAGIC);
	if (what == TLSIO_CONNECTED) {
		ssl = tlsio_ssl(c->io);
		cert = SSL_get0_peer_certificate(ssl);
		if (cert == NULL || SSL_get_verify_result(ssl) != X509_V_OK) {
			ux_finish(x, UP_VERIFY, "processor presented no verified certificate");
			return;
		}
		if (tls_spki_sha256(cert, c->spki) == 0) {
			c->have_spki = 1;
			memcpy(x->res.spki, c->spki, 32);
			x->res.have_spki = 1;
		}
		if (!tls_pins_ok(cert, x->ga->account)) {
			ux_finish(x, UP_PIN, "processor key does not match pin_sha256");
			return;
		}
		ux_send(x);
		return;
	}
	if (x->state == UX_CONNECTING) {
		if (!tlsio_tcp_connected(c->io)) {
			snprintf(detail, sizeof(detail), "cannot connect to "
			    "processor: %s", tlsio_errno(c->io) ?
			    strerror(tlsio_errno(c->io)) :
			    "connection refused or unreachable");
			ux_finish(x, UP_CONNECT, detail);
			return;
		}
		ux_finish(x, ux_tls_cause(c, detail, sizeof(detail)), detail);
		return;
	}
	/* After the request went out. */
	if (ux_retry(x))
		return;
	if (what == TLSIO_EOF && x->head_done &&
	    x->resp.framing == HTTP_BODY_CLOSE) {
		/* The close delimits the body; take what is left. */
		struct evbuffer *in = tlsio_input(c->io);
		size_t len = evbuffer_get_length(in);
		if (buf_reserve(&x->res.body, len) == -1) {
			ux_finish(x, UP_TOO_LARGE, "response larger than max_response_bytes");
			return;
		}
		evbuffer_remove(in, x->res.body.data + x->res.body.len, len);
		x->res.body.len += len;
		x->res.body.data[x->res.body.len] = '\0';
		ux_finish(x, UP_OK, NULL);
		return;
	}
	ERR_clear_error();
	ux_finish(x, UP_CLOSED, "processor closed the connection before a "
	    "complete response");
}

static void
uconn_write_cb(struct tlsio *t, void *arg)
{
	struct uconn	*c = arg;

	(void)t;
	if (c->x != NULL)
		c->x->written = 1;
}

/* Parse what arrived. Finishes the exchange when the response is complete
 * (or wrong). */
static void
uconn_read_cb(struct tlsio *t, void *arg)
{
	struct uconn			*c = arg;
	struct upstream_exchange	*x = c->x;
	struct evbuffer			*in = tlsio_input(t);
	size_t				 len, consumed, i, limit;
	const char			*p;
	char				 err[128];
	int				 rc, too_large = 0;

	if (x == NULL)
		return;
	if (evbuffer_get_length(in) > 0)
		x->got_bytes = 1;
	while (!x->head_done) {
		len = evbuffer_get_length(in);
		limit = len < x->lim.max_header_bytes + 4 ? len :
		    x->lim.max_header_bytes + 4;
		if ((p = (const char *)evbuffer_pullup(in, (ssize_t)limit)) == NULL)
			return;
		x->resp.headers = x->hdrs;
		rc = http_parse_response(p, limit, &x->lim, x->head_request,
		    &x->resp, err, sizeof(err));
		if (rc == HTTP_AGAIN)
			return;
		if (rc == HTTP_ERROR) {
			ux_finish(x, UP_BAD_RESPONSE, err);
			return;
		}
		if (x->resp.status < 200) {
			evbuffer_drain(in, x->resp.head_len);
			continue;
		}
		/* Keep the head: headers point into our own copy. */
		buf_reset(&x->res.head);
		if (buf_append(&x->res.head, p, x->resp.head_len) == -1) {
			ux_finish(x, UP_TOO_LARGE, "out of memory");
			return;
		}
		for (i = 0; i < x->resp.nheaders; i++) {
			x->hdrs[i].name = x->res.head.data +
			    (x->hdrs[i].name - p);
			x->hdrs[i].value = x->res.head.data +
			    (x->hdrs[i].value - p);
		}
		evbuffer_drain(in, x->resp.head_len);
		x->head_done = 1;
		x->res.status = x->resp.status;
		x->res.headers = x->hdrs;
		x->res.nheaders = x->resp.nheaders;
		x->res.body.max = x->max_body;
		if (x->resp.framing == HTTP_BODY_LENGTH &&
		    x->resp.content_length > x->max_body) {
			ux_finish(x, UP_TOO_LARGE, "response larger than max_response_bytes");
			return;
		}
		if (x->resp.framing == HTTP_BODY_CHUNKED)
			http_chunked_init(&x->chunked, x->lim.max_header_bytes);
	}
	switch (x->resp.framing) {
	case HTTP_BODY_NONE:
		ux_finish(x, UP_OK, NULL);
		return;
	case HTTP_BODY_LENGTH:
		len = evbuffer_get_length(in);
		if (len > x->resp.content_length - x->res.body.len)
			len = x->resp.content_length - x->res.body.len;
		if (buf_reserve(&x->res.body, len) == -1) {
			ux_finish(x, UP_TOO_LARGE, "response larger than max_response_bytes");
			return;
		}
		evbuffer_remove(in, x->res.body.data + x->res.body.len, len);
		x->res.body.len += len;
		x->res.body.data[x->res.body.len] = '\0';
		if (x->res.body.len == x->resp.content_length)
			ux_finish(x, UP_OK, NULL);
		return;
	case HTTP_BODY_CHUNKED:
		len = evbuffer_get_length(in);
		if (len == 0)
			return;
		if ((p = (const char *)evbuffer_pullup(in, -1)) == NULL)
			return;
		rc = http_chunked_decode(&x->chunked, p, len, &consumed,
		    &x->res.body, &too_large, err, sizeof(err));
		evbuffer_drain(in, consumed);
		if (rc == HTTP_ERROR)
			ux_finish(x, too_large ? UP_TOO_LARGE : UP_BAD_RESPONSE,
			    too_large ? "response larger than max_response_bytes" : err);
		else if (rc == HTTP_DONE)
			ux_finish(x, UP_OK, NULL);
		return;
	case HTTP_BODY_CLOSE:
		len = evbuffer_get_length(in);
		if (buf_reserve(&x->res.body, len) == -1) {
			ux_finish(x, UP_TOO_LARGE, "response larger than max_response_bytes");
			return;
		}
		evbuffer_remove(in, x->res.body.data + x->res.body.len, len);
		x->res.body.len += len;
		x->res.body.data[x->res.body.len] = '\0';
		return;
	}
}
