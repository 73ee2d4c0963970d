/* worker.c -- worker threads: event loop, listener, connections, upstream pools */
#include <sys/socket.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "conn.h"
#include "gen.h"
#include "log.h"
#include "worker.h"

int worker_conns_total;

struct gen *
worker_gen(struct worker *w)
{
	return gen_cached(&w->gen, &w->gen_epoch);
}

/* Runs after the I/O callbacks of an iteration (lowest priority). */
static void
worker_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	(void)fd;
	(void)what;
	w->flush_armed = 0;
	disclose_flush(w->audit);
	worker_flush_log(w);
}

void
worker_flush_log(struct worker *w)
{
	if (w->logbuf.len > 0) {
		log_line(w->logbuf.data, w->logbuf.len);
		w->logbuf.len = 0;	/* no values in it: nothing to wipe */
		w->logbuf.data[0] = '\0';
	}
}

void
worker_defer_flush(void *arg)
{
	struct worker	*w = arg;

	if (!w->flush_armed) {
		w->flush_armed = 1;
		event_active(w->flush_ev, EV_TIMEOUT, 0);
	}
}

static void
worker_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct worker	*w = arg;
	struct gen	*g;
	int		 max;

	(void)l;
	(void)salen;
	if ((g = worker_gen(w)) == NULL) {
		close(fd);
		return;
	}
	max = g->conf->limits.max_connections;
	if (w->draining ||
	    __atomic_load_n(&worker_conns_total, __ATOMIC_RELAXED) >= max) {
		metrics_add(w->metrics, "subgate_connections_refused_total",
		    w->draining ? "reason=\"draining\"" :
		    "reason=\"max_connections\"", 1);
		close(fd);
		return;
	}
	metrics_add(w->metrics, "subgate_connections_accepted_total", "", 1);
	conn_accept(w, fd, sa);
}

static void
worker_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct worker	*w = arg;

	(void)l;
	/* EMFILE and friends: count, and let the loop go on. */
	log_warn("worker %d: accept", w->id);
	metrics_add(w->metrics, "subgate_connections_refused_total",
	    "reason=\"accept_error\"", 1);
}

struct worker *
worker_new(int id, int listen_fd, int audit_fd, char *err, size_t errlen)
{
	struct worker		*w;
	struct gen		*g;
	struct event_config	*cfg;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		goto nomem;
	w->magic = WORKER_MAGIC;
	w->id = id;
	w->listen_fd = listen_fd;
	TAILQ_INIT(&w->conns);
	/* The changelist folds an add and a delete of the same event within
	 * one loop iteration into nothing: a write that completes at once
	 * (most responses) costs no epoll_ctl. */
	if ((cfg = event_config_new()) == NULL)
		goto nomem;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	w->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	/* Three priorities: the flush event runs after everything else. */
	if (w->base == NULL || event_base_priority_init(w->base, 3) == -1 ||
	    (w->metrics = metrics_new()) == NULL)
		goto nomem;
	w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (w->dns == NULL)
		w->dns = evdns_base_new(w->base, 0);	/* no resolv.conf */
	if (w->dns == NULL ||
	    (w->pools = upstream_pools_new(w->base, w->dns, w->metrics)) == NULL)
		goto nomem;
	g = gen_current();
	w->json_depth = g ? g->conf->limits.max_json_depth : 32;
	gen_unref(g);
	if ((w->flush_ev = event_new(w->base, -1, 0, worker_flush_cb, w)) == NULL ||
	    event_priority_set(w->flush_ev, 2) == -1)
		goto nomem;
	if ((w->json = json_reader_new(w->json_depth)) == NULL ||
	    (w->audit = disclose_new(w->base, audit_fd, w->metrics,
	    worker_defer_flush, w)) == NULL)
		goto nomem;
	w->listener = evconnlistener_new(w->base, worker_accept_cb, w,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED, -1, listen_fd);
	if (w->listener == NULL) {
		snprintf(err, errlen, "worker %d: cannot create listener", id);
		goto fail;
	}
	w->listen_fd = -1;
	evconnlistener_set_error_cb(w->listener, worker_accept_error_cb);
	return w;
nomem:
	snprintf(err, errlen, "worker %d: out of memory", id);
fail:
	worker_free(w);
	return NULL;
}

static void *
worker_main(void *arg)
{
	struct worker	*w = arg;

	evconnlistener_enable(w->listener);
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

int
worker_start(struct worker *w)
{
	return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void
worker_conn_gone(struct worker *w)
{
	if (w->draining && w->nconns == 0)
		event_base_loopexit(w->base, NULL);
}

/* Runs in the worker's thread. */
static void
worker_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	(void)fd;
	(void)what;
	w->draining = 1;
	if (w->listener != NULL) {
		evconnlistener_free(w->listener);
		w->listener = NULL;
	}
	conn_drain_all(w);
	upstream_pools_flush(w->pools);
	if (w->nconns == 0)
		event_base_loopexit(w->base, NULL);
}

static void
worker_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	(void)fd;
	(void)what;
	w->draining = 1;
	conn_abort_all(w);
	event_base_loopexit(w->base, NULL);
}

void
worker_drain(struct worker *w)
{
	event_base_once(w->base, -1, EV_TIMEOUT, worker_drain_cb, w, NULL);
}

void
worker_stop(struct worker *w)
{
	event_base_once(w->base, -1, EV_TIMEOUT, worker_stop_cb, w, NULL);
}

void
worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	conn_abort_all(w);
	if (w->listener != NULL)
		evconnlistener_free(w->listener);
	if (w->listen_fd != -1)
		close(w->listen_fd);
	upstream_pools_free(w->pools);
	if (w->flush_ev != NULL) {
		worker_flush_cb(-1, 0, w);
		event_free(w->flush_ev);
	}
	disclose_free(w->audit);
	buf_free(&w->logbuf);
	buf_free(&w->labels);
	EVP_MAC_CTX_free(w->body_mac);
	json_reader_free(w->json);
	if (w->dns != NULL)
		evdns_base_free(w->dns, 0);
	metrics_free(w->metrics);
	gen_unref(w->gen);
	if (w->base != NULL)
		event_base_free(w->base);
	free(w);
}
