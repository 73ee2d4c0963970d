/* conn.c -- one client connection's life: handshake, identity, requests, responses */
#include <sys/queue.h>
#include <sys/socket.h>

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "conf.h"
#include "audit.h"
#include "conn.h"
#include "disclose.h"
#include "gen.h"
#include "http.h"
#include "json.h"
#include "keys.h"
#include "log.h"
#include "policy.h"
#include "rewrite.h"
#include "route.h"
#include "tls.h"
#include "tlsio.h"
#include "token.h"
#include "upstream.h"
#include "worker.h"

#define CONN_MAGIC	0x636f6e6eu
#define REQ_ID_MAX	64

enum conn_state {
	C_HANDSHAKE,	/* TLS handshake in progress */
	C_IDLE,		/* between requests */
	C_HEAD,		/* reading a request head */
	C_BODY,		/* reading a request body */
	C_AUDIT,	/* waiting for the disclosure record to be durable */
	C_UPSTREAM,	/* waiting for the processor */
	C_WRITING,	/* response queued, waiting for it to drain */
	C_CLOSING,	/* last response queued; close once it drained */
};

/* One request, from its first byte to its response. */
struct request {
	struct gen			*gen;
	char				 id[REQ_ID_MAX + 1];
	struct timespec			 t0;
	struct buf			 head;		/* copy of the request head */
	struct http_header		*hdrs;
	struct http_request		 http;
	struct route_target		 target;
	const struct conf_tenant	*tenant;
	const struct conf_integration	*ig;
	const struct conf_use		*use;
	const struct conf_endpoint	*ep;
	struct buf			 body;
	struct http_chunked		 chunked;
	size_t				 accounted;	/* bytes charged to worker->buffered */
	struct upstream_exchange	*x;
	double				 upstream_s;
	struct buf			 fwd;		/* the upstream request, until it is sent */
	size_t				 fwd_body;	/* bytes of body in fwd */
	struct disclose_wait		*wait;		/* pending disclosure ack */
	int				 submitted;	/* a disclosure record was sent */
	uint64_t			 disclosure_seq;/* 0 until durable */
	int				 outcome_done;
	int				 form;		/* body is form-urlencoded */
	size_t				 resp_bytes;	/* processor's response body */
	struct buf			 common;	/* record members shared by its records */
	struct token_ctx		 tok;		/* keys and counters of this pair */
	struct rewrite_report		 rep;		/* what the policy decided */
	int				 status;
	size_t				 bytes_in, bytes_out;
};

struct conn {
	unsigned		 magic;
	struct worker		*w;
	struct tlsio		*io;
	TAILQ_ENTRY(conn)	 entry;
	enum conn_state		 state;
	struct timespec		 born;
	struct event		*timer;
	X509			*peer;
	char			*identity;	/* from the certificate; heap, sized to
						 * fit: idle connections stay small */
	int			 have_identity;
	int			 close_after;	/* close once the response drained */
	struct request		*req;
};

static void	conn_read_cb(struct tlsio *, void *);
static void	conn_write_cb(struct tlsio *, void *);
static void	conn_event_cb(struct tlsio *, enum tlsio_event, void *);

static const struct tlsio_cbs conn_cbs = {
	conn_read_cb, conn_write_cb, conn_event_cb,
};
static void	conn_timer_cb(evutil_socket_t, short, void *);
static void	conn_free(struct conn *);
static void	conn_process(struct conn *);
static void	conn_error(struct conn *, int, const char *, const char *, int);

static double
ts_diff(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) +
	    (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void
conn_arm(struct conn *c, int ms)
{
	struct timeval	tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
}

static void
request_outcome(struct conn *c, int status, enum upstream_delivery delivery,
    int attempts, const unsigned char *spki);

static void
request_free(struct conn *c)
{
	struct request	*r = c->req;

	if (r == NULL)
		return;
	if (r->x != NULL) {
		upstream_cancel(r->x);
		r->x = NULL;
		/* The client left while the processor had the request. */
		request_outcome(c, 0, DELIVERY_UNKNOWN, 1, NULL);
	}
	disclose_cancel(r->wait);
	request_outcome(c, 0, DELIVERY_NOT_SENT, 0, NULL);
	buf_free(&r->fwd);
	buf_free(&r->common);
	c->w->buffered -= r->accounted;
	buf_free(&r->head);
	buf_free(&r->body);
	free(r->hdrs);
	route_target_free(&r->target);
	rewrite_report_free(&r->rep);
	gen_unref(r->gen);
	free(r);
	c->req = NULL;
}

void
conn_accept(struct worker *w, int fd, const struct sockaddr *sa)
{
	struct conn	*c = NULL;
	struct gen	*g;
	SSL		*ssl;
	int		 one = 1;

	(void)sa;
	if ((g = worker_gen(w)) == NULL)
		goto fail;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto fail;
	c->magic = CONN_MAGIC;
	c->w = w;
	c->state = C_HANDSHAKE;
	clock_gettime(CLOCK_MONOTONIC, &c->born);
	if ((ssl = SSL_new(g->server_ctx)) == NULL)
		goto fail;
	if ((c->io = tlsio_new(w->base, fd, ssl, 1, &conn_cbs, c)) == NULL) {
		SSL_free(ssl);
		goto fail;
	}
	fd = -1;
	if ((c->timer = evtimer_new(w->base, conn_timer_cb, c)) == NULL)
		goto fail;
	/* Bytes beyond a head and a read's worth wait in the socket until
	 * the request in flight is answered. */
	tlsio_set_read_limit(c->io, g->conf->limits.max_header_bytes + 65536);
	conn_arm(c, g->conf->limits.handshake_timeout_ms);
	TAILQ_INSERT_TAIL(&w->conns, c, entry);
	w->nconns++;
	__atomic_fetch_add(&worker_conns_total, 1, __ATOMIC_RELAXED);
	return;
fail:
	ERR_clear_error();
	if (c != NULL) {
		tlsio_free(c->io);
		if (c->timer != NULL)
			event_free(c->timer);
		free(c);
	}
	if (fd != -1)
		close(fd);
	metrics_add(w->metrics, "subgate_connections_refused_total",
	    "reason=\"resources\"", 1);
}

static void
conn_free(struct conn *c)
{
	struct worker	*w = c->w;

	assert(c->magic == CONN_MAGIC);
	request_free(c);
	if (c->timer != NULL)
		event_free(c->timer);
	tlsio_free(c->io);	/* close_notify when established */
	X509_free(c->peer);
	free(c->identity);
	TAILQ_REMOVE(&w->conns, c, entry);
	w->nconns--;
	__atomic_fetch_sub(&worker_conns_total, 1, __ATOMIC_RELAXED);
	c->magic = 0;
	free(c);
	ERR_clear_error();
	worker_conn_gone(w);
}

void
conn_drain_all(struct worker *w)
{
	struct conn	*c, *next;

	for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (c->state == C_IDLE || c->state == C_HANDSHAKE)
			conn_free(c);
		else
			c->close_after = 1;
	}
}

void
conn_abort_all(struct worker *w)
{
	struct conn	*c;

	while ((c = TAILQ_FIRST(&w->conns)) != NULL)
		conn_free(c);
}

/* Why a handshake failed, as a metric label. */
static const char *
conn_handshake_reason(struct conn *c, unsigned long e)
{
	SSL	*ssl = tlsio_ssl(c->io);
	long	 v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

	switch (v) {
	case X509_V_OK:
		break;
	case X509_V_ERR_CERT_REVOKED:
		return "revoked";
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "expired";
	default:
		return "untrusted";
	}
	if (e == 0)
		return "closed";
	switch (ERR_GET_REASON(e)) {
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		return "no_certificate";
	case SSL_R_NO_APPLICATION_PROTOCOL:
		return "alpn";
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_VERSION_TOO_LOW:
		return "protocol_version";
	case SSL_R_NO_SHARED_CIPHER:
		return "no_shared_cipher";
	case SSL_R_HTTP_REQUEST:
		return "plain_http";
	default:
		return "handshake";
	}
}

static struct log_ratelimit conn_hs_rl;

static void
conn_handshake_failed(struct conn *c, const char *reason)
{
	unsigned long	suppressed;
	char		label[64];

	snprintf(label, sizeof(label), "reason=\"%s\"", reason);
	metrics_add(c->w->metrics, "subgate_tls_handshake_failures_total",
	    label, 1);
	if (log_ratelimit_ok(&conn_hs_rl, 10, &suppressed))
		log_info("tls handshake refused reason=%s%s", reason,
		    suppressed ? " (earlier refusals suppressed)" : "");
	conn_free(c);
}

static void
conn_handshake_done(struct conn *c)
{
	SSL		*ssl = tlsio_ssl(c->io);
	struct gen	*g;
	char		 id[512];

	c->peer = SSL_get1_peer_certificate(ssl);
	if (c->peer == NULL || SSL_get_verify_result(ssl) != X509_V_OK) {
		conn_handshake_failed(c, "no_certificate");
		return;
	}
	if (tls_peer_identity(c->peer, id, sizeof(id)) == 0)
		c->identity = strdup(id);
	c->have_identity = c->identity != NULL;
	metrics_add(c->w->metrics, "subgate_tls_handshakes_total", "", 1);
	c->state = C_IDLE;
	evtimer_del(c->timer);
	if ((g = worker_gen(c->w)) != NULL)
		conn_arm(c, g->conf->limits.client_timeout_ms);
}

static void
conn_event_cb(struct tlsio *t, enum tlsio_event e, void *arg)
{
	struct conn	*c = arg;

	(void)t;
	assert(c->magic == CONN_MAGIC);
	if (e == TLSIO_CONNECTED) {
		conn_handshake_done(c);
		return;
	}
	if (c->state == C_HANDSHAKE) {
		/* The first queued error names the cause. */
		conn_handshake_failed(c, conn_handshake_reason(c,
		    tlsio_ssl_error(c->io)));
		return;
	}
	/* EOF or error: the client is gone; in-flight work is dropped. */
	conn_free(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn	*c = arg;
	const char	*phase;

	(void)fd;
	(void)what;
	assert(c->magic == CONN_MAGIC);
	switch (c->state) {
	case C_HANDSHAKE:
		conn_handshake_failed(c, "timeout");
		return;
	case C_IDLE:
		phase = "phase=\"idle\"";
		break;
	case C_HEAD:
	case C_BODY:
		phase = "phase=\"request\"";
		break;
	case C_AUDIT:
		/* Not durable in time: the record may still land, so the
		 * outcome says nothing was sent. */
		disclose_cancel(c->req->wait);
		c->req->wait = NULL;
		metrics_add(c->w->metrics, "subgate_audit_failures_total",
		    "cause=\"timeout\"", 1);
		conn_error(c, 503, "audit_unavailable", "the disclosure was not "
		    "recorded within audit_timeout_ms; nothing was sent", 0);
		return;
	case C_WRITING:
	case C_CLOSING:
		/* The client does not take its answer. */
		phase = "phase=\"write\"";
		break;
	default:
		return;
	}
	metrics_add(c->w->metrics, "subgate_client_timeouts_total", phase, 1);
	conn_free(c);
}

/* Is s a well-formed client request id? */
static int
request_id_ok(const char *s, size_t len)
{
	size_t	i;

	if (len == 0 || len > REQ_ID_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		    ch == ':' || ch == '-'))
			return 0;
	}
	return 1;
}

/*
 * A request id: a random per-worker prefix drawn once and a counter, so
 * ids are unique across workers and restarts without a RAND call per
 * request.
 */
static void
request_id_new(struct worker *w, char *out)
{
	static const char	 hex[] = "0123456789abcdef";
	uint64_t		 n;
	int			 i;

	if (!w->id_ready) {
		unsigned char r[8];
		if (RAND_bytes(r, sizeof(r)) != 1)
			memset(r, 0, sizeof(r));
		for (i = 0; i < 8; i++) {
			w->id_prefix[2 * i] = hex[r[i] >> 4];
			w->id_prefix[2 * i + 1] = hex[r[i] & 15];
		}
		w->id_ready = 1;
	}
	memcpy(out, w->id_prefix, 16);
	n = ++w->id_counter;
	for (i = 31; i >= 16; i--, n >>= 4)
		out[i] = hex[n & 15];
	out[32] = '\0';
}

/* The method for logs: a standard one by name, anything a client made up
 * as "other" (it is the client's text). */
static const char *
request_method_name(const struct request *r)
{
	static const char *const known[] = { "GET", "HEAD", "POST", "PUT",
	    "PATCH", "DELETE", "OPTIONS", NULL };
	size_t	i;

	if (r->ep != NULL)
		return r->ep->method;
	if (r->http.head_len == 0)
		return "-";
	for (i = 0; known[i] != NULL; i++)
		if (strlen(known[i]) == r->http.method_len &&
		    memcmp(known[i], r->http.method, r->http.method_len) == 0)
			return known[i];
	return "other";
}

/* Append "." and the three digits of v % 1000. 0 or -1. */
static int
append_frac3(struct buf *b, unsigned long long v)
{
	char	d[4];

	d[0] = '.';
	d[1] = (char)('0' + v / 100 % 10);
	d[2] = (char)('0' + v / 10 % 10);
	d[3] = (char)('0' + v % 10);
	return buf_append(b, d, 4);
}

/* Append us microseconds as milliseconds with three decimals. 0 or -1. */
static int
append_ms(struct buf *b, unsigned long long us)
{
	return buf_append_u64(b, us / 1000) | append_frac3(b, us % 1000);
}

/*
 * Prometheus label text for a request into w->labels: integration, tenant
 * (when the admin section asks for it) and status code; or the integration
 * alone. Names from the config, never request data. NULL when memory ran
 * out (the observation is dropped, never recorded under cut labels).
 */
static const char *
request_labels(struct worker *w, const char *ig, const char *tenant,
    int status)
{
	struct buf	*b = &w->labels;
	int		 e = 0;

	if (b->data != NULL)
		buf_truncate(b, 0);
	e |= buf_append_str(b, "integration=\"");
	e |= buf_append_str(b, ig);
	e |= buf_append_char(b, '"');
	if (tenant != NULL) {
		e |= buf_append_str(b, ",tenant=\"");
		e |= buf_append_str(b, tenant);
		e |= buf_append_char(b, '"');
	}
	if (status > 0) {
		e |= buf_append_str(b, ",code=\"");
		e |= buf_append_u64(b, (unsigned long long)status);
		e |= buf_append_char(b, '"');
	}
	return e == 0 ? b->data : NULL;
}

/*
 * The per-request log line and metrics. Never a value, path or query. The
 * line joins the worker's log buffer, written at the end of the event-loop
 * iteration (one write for every request that finished in it).
 */
static void
request_account(struct conn *c)
{
	struct request	*r = c->req;
	struct worker	*w = c->w;
	struct buf	*lb = &w->logbuf;
	struct timespec	 now, wall;
	struct tm	 tm;
	double		 dur;
	unsigned long long dus;
	const char	*ig = r->ig ? r->ig->name : "-";
	const char	*tenant = r->tenant ? r->tenant->id : "-";
	const char	*labels;
	size_t		 start;
	int		 tenant_labels, e = 0;

	clock_gettime(CLOCK_MONOTONIC, &now);
	dur = ts_diff(&r->t0, &now);
	tenant_labels = r->gen && r->gen->conf->admin_tenant_labels;
	if ((labels = request_labels(w, ig, tenant_labels ? tenant : NULL,
	    r->status)) != NULL)
		metrics_add(w->metrics, "subgate_requests_total", labels, 1);
	metrics_observe(w->metrics, "subgate_request_duration_seconds", "",
	    dur);
	if (r->rep.fields.count[POLICY_DROP] + r->rep.fields.dropped_nonscalar >
	    0 && (labels = request_labels(w, ig, NULL, 0)) != NULL)
		metrics_add(w->metrics, "subgate_fields_dropped_total", labels,
		    r->rep.fields.count[POLICY_DROP] +
		    r->rep.fields.dropped_nonscalar);
	if (!log_enabled(LOG_LVL_INFO))
		return;
	clock_gettime(CLOCK_REALTIME, &wall);
	if (wall.tv_sec != w->log_sec) {
		gmtime_r(&wall.tv_sec, &tm);
		strftime(w->log_ts, sizeof(w->log_ts), "%Y-%m-%dT%H:%M:%S", &tm);
		w->log_sec = wall.tv_sec;
	}
	dus = (unsigned long long)(dur * 1e6);
	start = lb->len;
	e |= buf_append_str(lb, "time=");
	e |= buf_append_str(lb, w->log_ts);
	e |= append_frac3(lb, (unsigned long long)wall.tv_nsec / 1000000);
	e |= buf_append_str(lb, "Z level=info msg=request request_id=");
	e |= buf_append_str(lb, r->id);
	e |= buf_append_str(lb, " tenant=");
	e |= buf_append_str(lb, tenant);
	e |= buf_append_str(lb, " integration=");
	e |= buf_append_str(lb, ig);
	e |= buf_append_str(lb, " method=");
	e |= buf_append_str(lb, request_method_name(r));
	e |= buf_append_str(lb, " endpoint=\"");
	e |= buf_append_str(lb, r->ep ? r->ep->path : "-");
	e |= buf_append_str(lb, "\" status=");
	e |= buf_append_u64(lb, (unsigned long long)r->status);
	e |= buf_append_str(lb, " bytes_in=");
	e |= buf_append_u64(lb, r->bytes_in);
	e |= buf_append_str(lb, " bytes_out=");
	e |= buf_append_u64(lb, r->bytes_out);
	e |= buf_append_str(lb, " duration_ms=");
	e |= append_ms(lb, dus);
	e |= buf_append_str(lb, " upstream_ms=");
	e |= append_ms(lb, (unsigned long long)(r->upstream_s * 1e6));
	e |= buf_append_char(lb, '\n');
	if (e != 0) {		/* out of memory: no half line */
		buf_truncate(lb, start);
		return;
	}
	if (lb->len >= LOG_FLUSH_BYTES)
		worker_flush_log(w);
	else
		worker_defer_flush(w);
}

/* Queue a complete response and move on (keep-alive or close). */
static void
conn_respond(struct conn *c, struct buf *head, const char *body, size_t blen)
{
	/* One write: head and body leave in as few TLS records as fit. */
	if (blen > 0)
		buf_append(head, body, blen);
	c->req->bytes_out = head->len;
	request_account(c);
	c->state = c->close_after ? C_CLOSING : C_WRITING;
	/* A client that does not read its answer is cut off. */
	conn_arm(c, c->req->gen->conf->limits.client_timeout_ms);
	if (tlsio_write(c->io, head->data, head->len) == -1)
		c->state = C_CLOSING;	/* the event callback frees it */
}

/*
 * Open a record of the given type with the members every record of a
 * request shares. The disclosure (routing complete) keeps them in
 * r->common; the outcome after it copies them instead of writing them
 * again.
 */
static void
record_common(struct buf *j, const char *type, const struct conn *c,
    struct request *r)
{
	size_t	start;

	buf_reset(j);
	(void)buf_reserve(j, 1024);	/* a record's usual size: no regrowth */
	buf_append_char(j, '{');
	disclose_str(j, "type", type);
	if (r->common.len > 0) {
		buf_append(j, r->common.data, r->common.len);
		return;
	}
	start = j->len;
	disclose_str(j, "request_id", r->id);
	disclose_str(j, "tenant", r->tenant ? r->tenant->id : NULL);
	disclose_str(j, "client", c->have_identity ? c->identity : NULL);
	disclose_str(j, "integration", r->ig ? r->ig->name : NULL);
	disclose_str(j, "processor", r->use ?
	    r->use->account.server_name : NULL);
	disclose_str(j, "method", request_method_name(r));
	disclose_str(j, "endpoint", r->ep ? r->ep->path : NULL);
	if (r->ep != NULL && r->use != NULL)
		buf_append(&r->common, j->data + start, j->len - start);
}

/*
 * Why the call of an authenticated client was refused. The chain verified
 * (else there is no connection), so this is recorded, an unknown identity
 * included; refusals before that are only counted.
 */
static void
request_denial(struct conn *c, const char *reason)
{
	struct request	*r = c->req;
	struct buf	 j = { 0 };

	if (c->peer == NULL || r->gen == NULL)
		return;
	record_common(&j, "denial", c, r);
	disclose_str(&j, "reason", reason);
	disclose_num(&j, "status", (uint64_t)r->status);
	if (r->gen != NULL)
		disclose_str(&j, "policy", r->gen->policy_hash);
	buf_append_char(&j, '}');
	disclose_note(c->w->audit, j.data, j.len);
	buf_free(&j);
}

/* What became of a disclosure. Once per disclosure. */
static void
request_outcome(struct conn *c, int status, enum upstream_delivery delivery,
    int attempts, const unsigned char *spki)
{
	struct request	*r = c->req;
	struct buf	 j = { 0 };
	struct timespec	 now;
	unsigned char	 b64[64];
	unsigned long long us;

	if (!r->submitted || r->outcome_done)
		return;
	r->outcome_done = 1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	record_common(&j, "outcome", c, r);
	if (r->disclosure_seq != 0)
		disclose_num(&j, "disclosure_seq", r->disclosure_seq);
	else	/* not acknowledged: linked by request_id only */
		disclose_str(&j, "disclosure_seq", NULL);
	disclose_num(&j, "status", (uint64_t)status);
	disclose_num(&j, "request_bytes", r->fwd_body);
	disclose_num(&j, "response_bytes", r->resp_bytes);
	us = (unsigned long long)(ts_diff(&r->t0, &now) * 1e6);
	buf_append_str(&j, ",\"duration_ms\":");
	buf_append_u64(&j, us / 1000);
	buf_append_char(&j, '.');
	buf_append_char(&j, (char)('0' + us / 100 % 10));
	buf_append_char(&j, (char)('0' + us / 10 % 10));
	buf_append_char(&j, (char)('0' + us % 10));
	disclose_str(&j, "delivery", upstream_delivery_name(delivery));
	disclose_num(&j, "attempts", (uint64_t)attempts);
	if (spki != NULL) {
		EVP_EncodeBlock(b64, spki, 32);
		disclose_str(&j, "processor_spki", (const char *)b64);
	} else
		disclose_str(&j, "processor_spki", NULL);
	buf_append_char(&j, '}');
	disclose_note(c->w->audit, j.data, j.len);
	buf_free(&j);
}

/* Subject hashes: one HMAC(index key, normalised value) per value found at
 * the endpoint's subject paths of the service's body. */
struct subjects {
	const struct gen	*gen;
	const char		*cc;
	struct buf		*out;
	size_t			 n;
};

/* The hash of one value, when it is an email or a phone number. */
static void
subject_add(struct subjects *s, const char *val, size_t len)
{
	char	 hex[65];

	if (audit_subject_hash(s->gen->index_key, val, len, s->cc, hex) == 1) {
		buf_append_str(s->out, s->n++ ? ",\"" : "\"");
		buf_append(s->out, hex, 64);
		buf_append_char(s->out, '"');
	}
}

/* policy_collect_json's transform: strings and numbers (no sink). */
static int
subjects_collect(void *arg, enum policy_action a, const struct json_token *v,
    struct buf *sink)
{
	(void)a;
	(void)sink;
	if (v->type == JSON_STRING)
		subject_add(arg, v->str, v->str_len);
	else if (v->type == JSON_NUMBER)
		subject_add(arg, v->raw, v->raw_len);
	return 0;
}

/*
 * A form body's subjects: the values of the fields the subject rules name
 * at the root (decided as policy_rules_root decides form fields). The body
 * was read whole by rewrite_request, so it decodes.
 */
static void
subjects_form(struct subjects *s, const struct policy_rules *subjects,
    const char *body, size_t len)
{
	struct route_query_iter	 qi;
	char			 err[64];

	route_query_init(&qi, body, len);
	while (route_query_next(&qi, err, sizeof(err)) == 1)
		if (qi.has_value && policy_rules_root(subjects, qi.name.data,
		    qi.name.len, NULL) != POLICY_DROP)
			subject_add(s, qi.value.data, qi.value.len);
	route_query_free(&qi);	/* wipes the decoded values */
}

/*
 * body_hmac with the worker's MAC context, keyed once per generation: a
 * one-shot HMAC() fetches the algorithm on every call.
 */
static void
conn_body_hmac(struct conn *c, const unsigned char *p, size_t len,
    unsigned char mac[32])
{
	struct worker	*w = c->w;
	struct gen	*g = c->req->gen;
	OSSL_PARAM	 params[2];
	size_t		 outl = 0;

	if (len == 0 && w->empty_mac_gen == g->id) {
		memcpy(mac, w->empty_mac, 32);	/* every GET: computed once */
		return;
	}
	if (w->body_mac == NULL) {
		EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
		w->body_mac = m ? EVP_MAC_CTX_new(m) : NULL;
		EVP_MAC_free(m);
		w->body_mac_gen = 0;
	}
	params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256",
	    0);
	params[1] = OSSL_PARAM_construct_end();
	if (w->body_mac == NULL ||
	    (w->body_mac_gen != g->id ? EVP_MAC_init(w->body_mac, g->body_key,
	    sizeof(g->body_key), params) : EVP_MAC_init(w->body_mac, NULL, 0,
	    NULL)) != 1 ||
	    EVP_MAC_update(w->body_mac, p, len) != 1 ||
	    EVP_MAC_final(w->body_mac, mac, &outl, 32) != 1) {
		/* Cannot happen with a working libcrypto; never leave it
		 * unset. */
		memset(mac, 0, 32);
		w->body_mac_gen = 0;
		return;
	}
	w->body_mac_gen = g->id;
	if (len == 0) {
		memcpy(w->empty_mac, mac, 32);
		w->empty_mac_gen = g->id;
	}
}

/*
 * The disclosure record: who sends which fields of whose data to which
 * processor under which policy. Paths, counts and keyed hashes only.
 */
static void
request_disclosure(struct conn *c, struct buf *j)
{
	struct request		*r = c->req;
	struct buf		 list = { 0 };
	struct subjects		 sj = { r->gen, r->tenant->phone_country_code,
				    &list, 0 };
	struct policy_transform	 xf = { subjects_collect, &sj };
	unsigned char		 mac[32];
	char			 err[64];

	record_common(j, "disclosure", c, r);
	disclose_report(j, "fields", &r->rep.fields);
	disclose_report(j, "params", &r->rep.params);
	disclose_report(j, "query", &r->rep.query);
	disclose_report(j, "headers", &r->rep.headers);
	disclose_num(j, "body_bytes", r->fwd_body);
	conn_body_hmac(c, (const unsigned char *)r->fwd.data + r->fwd.len -
	    r->fwd_body, r->fwd_body, mac);
	buf_append_str(j, ",\"body_hmac\":\"");
	buf_append_hex(j, mac, 32);
	buf_append_char(j, '"');
	/*
	 * A JSON body was read whole by rewrite_request's policy_apply_json
	 * with this reader (the request is refused otherwise), so the
	 * collect-only walk may skip what no subject path reaches.
	 */
	if (r->ep->subjects != NULL && r->body.len > 0 && r->form)
		subjects_form(&sj, r->ep->subjects, r->body.data, r->body.len);
	else if (r->ep->subjects != NULL && r->body.len > 0)
		policy_collect_json(r->ep->subjects, c->w->json, r->body.data,
		    r->body.len, &xf, err, sizeof(err));
	buf_append_str(j, ",\"subjects_hmac\":[");
	buf_append(j, list.data, list.len);
	buf_append_char(j, ']');
	disclose_str(j, "policy", r->gen->policy_hash);
	disclose_num(j, "generation", r->gen->id);
	buf_append_char(j, '}');
	buf_free(&list);
}

/*
 * Answer with one of subgate's own errors:
 * {"error":{"code":...,"message":...,"request_id":...}}. message is fixed
 * text or an upstream cause, never request data.
 */
static void
conn_error(struct conn *c, int status, const char *code, const char *message,
    int close_conn)
{
	struct request	*r = c->req;
	struct buf	 body = { 0 }, head = { 0 };

	r->status = status;
	if (!r->submitted)
		request_denial(c, code);
	else
		request_outcome(c, status, DELIVERY_NOT_SENT, 0, NULL);
	/* A body we did not read would be taken for the next request. */
	if (close_conn || ((c->state == C_HEAD || c->state == C_BODY) &&
	    r->http.head_len > 0 && r->http.framing != HTTP_BODY_NONE))
		c->close_after = 1;
	buf_append_str(&body, "{\"error\":{\"code\":");
	json_write_string(&body, code, strlen(code));
	buf_append_str(&body, ",\"message\":");
	json_write_string(&body, message, strlen(message));
	buf_append_str(&body, ",\"request_id\":");
	json_write_string(&body, r->id, strlen(r->id));
	buf_append_str(&body, "}}\n");
	buf_printf(&head, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\nX-Request-Id: %s\r\nCache-Control: no-store\r\n%s\r\n",
	    status, http_reason(status), body.len, r->id,
	    c->close_after ? "Connection: close\r\n" : "");
	/* A refused request's body is never read: close rather than resync. */
	conn_respond(c, &head, body.data, r->http.head_len &&
	    r->http.method_len == 4 && memcmp(r->http.method, "HEAD", 4) == 0 ?
	    0 : body.len);
	buf_free(&head);
	buf_free(&body);
}

static void
conn_write_cb(struct tlsio *t, void *arg)
{
	struct conn	*c = arg;
	struct timespec	 now;
	struct gen	*g;

	(void)t;
	assert(c->magic == CONN_MAGIC);
	if (tlsio_output_len(c->io) != 0)
		return;
	if (c->state == C_CLOSING) {
		conn_free(c);
		return;
	}
	if (c->state != C_WRITING)
		return;
	request_free(c);
	g = worker_gen(c->w);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (c->w->draining || g == NULL || ts_diff(&c->born, &now) * 1000 >=
	    g->conf->limits.max_connection_age_ms) {
		conn_free(c);
		return;
	}
	c->state = C_IDLE;
	conn_arm(c, g->conf->limits.client_timeout_ms);
	if (evbuffer_get_length(tlsio_input(c->io)) > 0)
		conn_process(c);
	else
		tlsio_read_more(c->io);
}

static int
conn_request_new(struct conn *c)
{
	struct request	*r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	c->req = r;
	if ((r->gen = worker_gen(c->w)) == NULL)
		return -1;
	gen_ref(r->gen);
	/* The parser fills what it uses: no need to zero. */
	if ((r->hdrs = malloc(r->gen->conf->limits.max_headers *
	    sizeof(*r->hdrs))) == NULL)
		return -1;
	request_id_new(c->w, r->id);
	return 0;
}

/* Is the header's media type application/json (;charset=utf-8 allowed)? */
static int
content_type_json(const struct http_header *h)
{
	return h != NULL && rewrite_content_type(h->value, h->value_len) == 0;
}

/*
 * A complete head arrived: decide who is calling what, under which
 * generation. Returns 0 to go on reading the body, -1 when a response has
 * been queued already.
 */
static int
conn_request_head(struct conn *c)
{
	struct request			*r = c->req;
	const struct conf		*cf = r->gen->conf;
	const struct conf_integration	*ig;
	const struct http_header	*h;
	const char			*vals[ROUTE_MAX_PARAMS];
	size_t				 lens[ROUTE_MAX_PARAMS], i;
	char				 err[128];
	int				 has_body, kind;

	h = http_header_find(r->http.headers, r->http.nheaders, "X-Request-Id");
	if (h != NULL && request_id_ok(h->value, h->value_len)) {
		memcpy(r->id, h->value, h->value_len);
		r->id[h->value_len] = '\0';
	}
	if (c->w->draining) {
		conn_error(c, 503, "draining", "subgate is shutting down; retry "
		    "on another instance", 1);
		return -1;
	}
	/* Identity, revocation and tenant are decided per request, under the
	 * generation in force now (invariant 9). */
	if (tls_crl_revoked(c->peer)) {
		conn_error(c, 403, "client_not_allowed", "client certificate "
		    "has been revoked", 1);
		return -1;
	}
	if (!c->have_identity || (r->tenant = conf_tenant_by_client(cf,
	    c->identity)) == NULL) {
		conn_error(c, 403, "client_not_allowed", "client certificate "
		    "identity is not a tenant's client", 1);
		return -1;
	}
	if (route_parse_target(r->http.target, r->http.target_len, &r->target,
	    err, sizeof(err)) == -1) {
		char msg[200];
		snprintf(msg, sizeof(msg), "request path refused: %s", err);
		conn_error(c, 400, "bad_request", msg, 1);
		return -1;
	}
	for (i = 0; i < cf->nintegrations; i++) {
		ig = &cf->integrations[i];
		if (route_prefix_match(&ig->prefix_pat, &r->target)) {
			r->ig = ig;
			break;
		}
	}
	if (r->ig == NULL) {
		conn_error(c, 404, "no_such_integration", "no integration has "
		    "this path prefix", 0);
		return -1;
	}
	if ((r->use = conf_tenant_use(r->tenant, r->ig)) == NULL) {
		conn_error(c, 403, "integration_not_allowed", "tenant may not "
		    "use this integration", 0);
		return -1;
	}
	r->tok.tenant = r->tenant->id;
	r->tok.integration = r->ig->name;
	r->tok.token_domain = r->ig->token_domain;
	if (r->gen->keys != NULL) {
		r->tok.pair = keys_pair_find(r->gen->keys, r->tenant->id,
		    r->ig->name);
		if (r->tok.pair == NULL || keys_pair_shredded(r->tok.pair)) {
			conn_error(c, 403, "pair_shredded", "this tenant's data "
			    "keys for the integration were shredded", 0);
			return -1;
		}
	}
	/* The most specific pattern wins: /contacts/search before
	 * /contacts/{id}; conf_load refuses two of the same shape. */
	for (i = 0; i < r->ig->nendpoints; i++) {
		const struct conf_endpoint *ep = &r->ig->endpoints[i];
		if (strlen(ep->method) == r->http.method_len &&
		    memcmp(ep->method, r->http.method, r->http.method_len) == 0 &&
		    route_pattern_match(&ep->pattern, &r->target,
		    r->ig->prefix_pat.nseg, vals, lens) &&
		    (r->ep == NULL || ep->pattern.nparams < r->ep->pattern.nparams))
			r->ep = ep;
	}
	if (r->ep == NULL) {
		conn_error(c, 403, "endpoint_not_allowed", "method and path are "
		    "not a listed endpoint of this integration", 0);
		return -1;
	}
	has_body = r->http.framing == HTTP_BODY_CHUNKED ||
	    (r->http.framing == HTTP_BODY_LENGTH && r->http.content_length > 0);
	if (has_body && !r->ep->has_request) {
		conn_error(c, 400, "bad_request", "this endpoint takes no "
		    "request body", 1);
		return -1;
	}
	if (has_body) {
		if (http_header_find(r->http.headers, r->http.nheaders,
		    "Content-Encoding") != NULL) {
			conn_error(c, 415, "unsupported_media_type", "compressed "
			    "request bodies are not accepted", 1);
			return -1;
		}
		h = http_header_find(r->http.headers, r->http.nheaders,
		    "Content-Type");
		if (h == NULL || (kind = rewrite_content_type(h->value,
		    h->value_len)) == -1) {
			conn_error(c, 415, "unsupported_media_type", "request "
			    "body must be application/json or "
			    "application/x-www-form-urlencoded", 1);
			return -1;
		}
		r->form = kind == 1;
	}
	if (r->http.framing == HTTP_BODY_LENGTH &&
	    r->http.content_length > cf->limits.max_body_bytes) {
		conn_error(c, 413, "payload_too_large", "request body is larger "
		    "than max_body_bytes", 1);
		return -1;
	}
	if (has_body && r->http.framing == HTTP_BODY_LENGTH) {
		if (c->w->buffered + r->http.content_length >
		    cf->limits.max_buffered_bytes) {
			conn_error(c, 503, "overloaded", "gateway buffer limit "
			    "reached; retry later", 1);
			return -1;
		}
		r->accounted = r->http.content_length;
		c->w->buffered += r->accounted;
	}
	r->body.max = cf->limits.max_body_bytes;
	if (r->http.framing == HTTP_BODY_CHUNKED)
		http_chunked_init(&r->chunked, cf->limits.max_header_bytes);
	if (r->http.expect_continue && r->http.minor == 1 && has_body)
		tlsio_write(c->io, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	return 0;
}

static void
conn_upstream_done(void *arg, struct upstream_result *res);
static void
conn_audit_done(void *arg, int durable, uint64_t seq);

/*
 * The request is complete: build what the processor will receive from the
 * policy decision alone (invariant 1) and send it.
 */
static void
conn_forward(struct conn *c)
{
	struct request		*r = c->req;
	struct rewrite_in	 in;
	struct buf		 out = { 0 }, rec = { 0 };
	size_t			 body_len;
	char			 err[160], msg[256];

	/* Reads stay on (a client that leaves cancels the call); pipelined
	 * bytes wait in the input, bounded by the read watermark. */
	c->state = C_UPSTREAM;
	evtimer_del(c->timer);
	memset(&in, 0, sizeof(in));
	in.ig = r->ig;
	in.ep = r->ep;
	in.acct = &r->use->account;
	in.target = &r->target;
	in.headers = r->http.headers;
	in.nheaders = r->http.nheaders;
	in.body = r->body.data;
	in.body_len = r->body.len;
	in.request_id = r->id;
	in.tok = &r->tok;
	in.json = c->w->json;
	in.form = r->form;
	if (rewrite_request(&in, &out, &body_len, &r->rep, err,
	    sizeof(err)) == -1) {
		snprintf(msg, sizeof(msg), "request refused: %s", err);
		buf_free(&out);
		conn_error(c, 400, "bad_request", msg, 0);
		return;
	}
	r->fwd = out;		/* taken: sent once the record is durable */
	memset(&out, 0, sizeof(out));
	r->fwd_body = body_len;
	/* No disclosure without a durable record (invariant 3). */
	request_disclosure(c, &rec);
	r->submitted = 1;
	r->wait = disclose_submit(c->w->audit, rec.data, rec.len,
	    conn_audit_done, c);
	buf_free(&rec);
	if (r->wait == NULL) {
		conn_error(c, 503, "audit_unavailable", "the disclosure could "
		    "not be recorded; nothing was sent", 0);
		return;
	}
	c->state = C_AUDIT;
	conn_arm(c, r->gen->conf->limits.audit_timeout_ms);
}

/* The disclosure record is durable (or not): send, or refuse with 503. */
static void
conn_audit_done(void *arg, int durable, uint64_t seq)
{
	struct conn		*c = arg;
	struct request		*r = c->req;
	const struct gen_account *ga;
	const char		*m;

	assert(c->magic == CONN_MAGIC && c->state == C_AUDIT);
	r->wait = NULL;
	evtimer_del(c->timer);
	if (!durable) {
		metrics_add(c->w->metrics, "subgate_audit_failures_total",
		    "cause=\"unavailable\"", 1);
		conn_error(c, 503, "audit_unavailable", "the disclosure could "
		    "not be recorded durably; nothing was sent", 0);
		return;
	}
	r->disclosure_seq = seq;
	c->state = C_UPSTREAM;
	m = r->ep->method;
	ga = gen_account_for(r->gen, r->use);
	r->x = upstream_start(c->w->pools, r->gen, ga, &r->fwd,
	    strcmp(m, "HEAD") == 0,
	    strcmp(m, "POST") != 0 && strcmp(m, "PATCH") != 0,
	    conn_upstream_done, c);
	if (r->x == NULL)
		conn_error(c, 502, "upstream_error", "cannot start upstream "
		    "exchange", 0);
}

/*
 * Turn this pair's tokens at the endpoint's response paths back into
 * values. A body that is not valid JSON passes unchanged (it came from the
 * processor and goes to the service; nothing leaves) and is counted.
 */
static void
conn_detokenize(struct conn *c, struct buf *body)
{
	struct request		*r = c->req;
	struct policy_transform	 xf = { token_xform_response, &r->tok };
	struct buf		 out = { 0 };
	char			 err[128], labels[128];

	snprintf(labels, sizeof(labels), "integration=\"%s\"", r->ig->name);
	if (policy_apply_response(r->ep->response, c->w->json, body->data,
	    body->len, &xf, &out, err, sizeof(err)) == -1) {
		metrics_add(c->w->metrics,
		    "subgate_responses_not_detokenized_total", labels, 1);
		buf_free(&out);
		return;
	}
	buf_free(body);
	*body = out;
	if (r->tok.tokens_restored)
		metrics_add(c->w->metrics, "subgate_tokens_restored_total",
		    labels, r->tok.tokens_restored);
	if (r->tok.tokens_foreign)
		metrics_add(c->w->metrics, "subgate_tokens_untouched_total",
		    labels, r->tok.tokens_foreign);
}

static void
conn_upstream_done(void *arg, struct upstream_result *res)
{
	struct conn		*c = arg;
	struct request		*r = c->req;
	struct buf		 head = { 0 };
	struct timespec		 now;
	char			 msg[256];
	size_t			 i;
	const struct http_header *h;

	assert(c->magic == CONN_MAGIC);
	r->x = NULL;	/* the exchange frees itself after this callback */
	clock_gettime(CLOCK_MONOTONIC, &now);
	r->upstream_s = ts_diff(&r->t0, &now);
	metrics_observe(c->w->metrics, "subgate_upstream_duration_seconds", "",
	    r->upstream_s);
	if (res->error == UP_TIMEOUT) {
		request_outcome(c, 504, res->delivery, res->attempts,
		    res->have_spki ? res->spki : NULL);
		conn_error(c, 504, "upstream_timeout", "the processor did not "
		    "answer within upstream_timeout_ms", 0);
		return;
	}
	if (res->error != UP_OK) {
		request_outcome(c, 502, res->delivery, res->attempts,
		    res->have_spki ? res->spki : NULL);
		snprintf(msg, sizeof(msg), "processor %s: %s",
		    upstream_error_name(res->error), res->detail);
		conn_error(c, 502, "upstream_error", msg, 0);
		return;
	}
	if (r->ep->response != NULL && res->body.len > 0 &&
	    http_header_find(res->headers, res->nheaders,
	    "Content-Encoding") != NULL) {
		request_outcome(c, 502, res->delivery, res->attempts,
		    res->have_spki ? res->spki : NULL);
		conn_error(c, 502, "upstream_error", "processor sent a "
		    "compressed response on an endpoint that detokenises", 0);
		return;
	}
	r->resp_bytes = res->body.len;
	/* The answer waits in this worker until the client has it: it counts
	 * against max_buffered_bytes like a request body. */
	if (c->w->buffered + res->body.len >
	    r->gen->conf->limits.max_buffered_bytes) {
		request_outcome(c, 503, res->delivery, res->attempts,
		    res->have_spki ? res->spki : NULL);
		conn_error(c, 503, "overloaded", "gateway buffer limit reached; "
		    "retry later", 0);
		return;
	}
	r->accounted += res->body.len;
	c->w->buffered += res->body.len;
	if (r->ep->response != NULL && res->body.len > 0 &&
	    content_type_json(http_header_find(res->headers, res->nheaders,
	    "Content-Type")))
		conn_detokenize(c, &res->body);
	r->status = res->status;
	buf_append_str(&head, "HTTP/1.1 ");
	buf_append_u64(&head, (unsigned)res->status);
	buf_append_char(&head, ' ');
	buf_append_str(&head, http_reason(res->status));
	buf_append_str(&head, "\r\n");
	for (i = 0; i < res->nheaders; i++) {
		h = &res->headers[i];
		if (http_is_hop_by_hop(h->name, h->name_len) ||
		    (h->name_len == 14 && strncasecmp(h->name,
		    "Content-Length", 14) == 0) ||
		    (h->name_len == 12 && strncasecmp(h->name,
		    "X-Request-Id", 12) == 0))
			continue;
		http_header_append(&head, h->name, h->name_len, h->value,
		    h->value_len);
	}
	http_header_append(&head, "X-Request-Id", 12, r->id, strlen(r->id));
	if (res->status != 204 && res->status != 304) {
		if (strcmp(r->ep->method, "HEAD") == 0 &&
		    (h = http_header_find(res->headers, res->nheaders,
		    "Content-Length")) != NULL)
			http_header_append(&head, "Content-Length", 14, h->value,
			    h->value_len);
		else {
			buf_append_str(&head, "Content-Length: ");
			buf_append_u64(&head, res->body.len);
			buf_append_str(&head, "\r\n");
		}
	}
	if (!r->http.keep_alive)
		c->close_after = 1;
	if (c->close_after)
		buf_append_str(&head, "Connection: close\r\n");
	else if (r->http.minor == 0)
		buf_append_str(&head, "Connection: keep-alive\r\n");
	buf_append_str(&head, "\r\n");
	conn_respond(c, &head, res->body.data, res->body.len);
	request_outcome(c, res->status, res->delivery, res->attempts,
	    res->have_spki ? res->spki : NULL);
	buf_free(&head);
}

/* Feed the body; returns 1 when complete, 0 for more, -1 after an error
 * response. */
static int
conn_read_body(struct conn *c, struct evbuffer *in)
{
	struct request	*r = c->req;
	size_t		 len = evbuffer_get_length(in), want, consumed;
	const char	*p;
	char		 err[128], msg[200];
	int		 rc, too_large = 0;

	switch (r->http.framing) {
	case HTTP_BODY_NONE:
		return 1;
	case HTTP_BODY_LENGTH:
		want = r->http.content_length - r->body.len;
		if (len > want)
			len = want;
		if (buf_reserve(&r->body, len) == -1) {
			conn_error(c, 413, "payload_too_large", "request body "
			    "is larger than max_body_bytes", 1);
			return -1;
		}
		evbuffer_remove(in, r->body.data + r->body.len, len);
		r->body.len += len;
		r->body.data[r->body.len] = '\0';
		r->bytes_in += len;
		return r->body.len == r->http.content_length;
	case HTTP_BODY_CHUNKED:
		if (len == 0)
			return 0;
		p = (const char *)evbuffer_pullup(in, -1);
		rc = http_chunked_decode(&r->chunked, p, len, &consumed,
		    &r->body, &too_large, err, sizeof(err));
		evbuffer_drain(in, consumed);
		r->bytes_in += consumed;
		if (rc == HTTP_ERROR) {
			if (too_large)
				conn_error(c, 413, "payload_too_large", "request "
				    "body is larger than max_body_bytes", 1);
			else {
				snprintf(msg, sizeof(msg), "bad chunked body: %s",
				    err);
				conn_error(c, 400, "bad_request", msg, 1);
			}
			return -1;
		}
		if (r->body.len > r->accounted) {
			if (c->w->buffered + (r->body.len - r->accounted) >
			    r->gen->conf->limits.max_buffered_bytes) {
				conn_error(c, 503, "overloaded", "gateway buffer "
				    "limit reached; retry later", 1);
				return -1;
			}
			c->w->buffered += r->body.len - r->accounted;
			r->accounted = r->body.len;
		}
		return rc == HTTP_DONE;
	default:
		return -1;
	}
}

static void
conn_process(struct conn *c)
{
	struct evbuffer		*in = tlsio_input(c->io);
	struct request		*r;
	struct http_limits	 lim;
	const char		*p;
	size_t			 len, limit, i;
	char			 err[128], msg[200];
	int			 rc, status;

	if (c->state == C_IDLE) {
		if (evbuffer_get_length(in) == 0)
			return;
		if (conn_request_new(c) == -1) {
			conn_free(c);
			return;
		}
		c->state = C_HEAD;
		conn_arm(c, c->req->gen->conf->limits.client_timeout_ms);
	}
	r = c->req;
	if (c->state == C_HEAD) {
		lim.max_header_bytes = r->gen->conf->limits.max_header_bytes;
		lim.max_headers = r->gen->conf->limits.max_headers;
		len = evbuffer_get_length(in);
		limit = len < lim.max_header_bytes + 1 ? len :
		    lim.max_header_bytes + 1;
		p = (const char *)evbuffer_pullup(in, (ssize_t)limit);
		r->http.headers = r->hdrs;
		rc = http_parse_request(p, limit, &lim, &r->http, &status, err,
		    sizeof(err));
		if (rc == HTTP_AGAIN)
			return;
		if (rc == HTTP_ERROR) {
			r->http.head_len = 0;
			snprintf(msg, sizeof(msg), "malformed request: %s", err);
			metrics_add(c->w->metrics, "subgate_http_errors_total",
			    status == 431 ? "reason=\"headers_too_large\"" :
			    "reason=\"malformed\"", 1);
			conn_error(c, status, status == 431 ? "headers_too_large" :
			    "bad_request", msg, 1);
			return;
		}
		/* Keep the head: the header views point into our copy. */
		if (buf_append(&r->head, p, r->http.head_len) == -1) {
			conn_free(c);
			return;
		}
		for (i = 0; i < r->http.nheaders; i++) {
			r->hdrs[i].name = r->head.data + (r->hdrs[i].name - p);
			r->hdrs[i].value = r->head.data + (r->hdrs[i].value - p);
		}
		r->http.method = r->head.data + (r->http.method - p);
		r->http.target = r->head.data + (r->http.target - p);
		if (r->http.host != NULL)
			r->http.host = r->head.data + (r->http.host - p);
		evbuffer_drain(in, r->http.head_len);
		r->bytes_in = r->http.head_len;
		if (!r->http.keep_alive)
			c->close_after = 1;
		if (conn_request_head(c) == -1)
			return;
		c->state = C_BODY;
	}
	if (c->state == C_BODY) {
		if (conn_read_body(c, in) == 1)
			conn_forward(c);
	}
}

static void
conn_read_cb(struct tlsio *t, void *arg)
{
	struct conn	*c = arg;

	(void)t;
	assert(c->magic == CONN_MAGIC);
	if (c->state == C_IDLE || c->state == C_HEAD || c->state == C_BODY)
		conn_process(c);
}
