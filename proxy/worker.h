/* worker.h -- worker threads: event loop, listener, connections, upstream pools */
#ifndef SUBGATE_WORKER_H
#define SUBGATE_WORKER_H

#include <sys/queue.h>

#include <pthread.h>
#include <stddef.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>

#include "disclose.h"
#include "json.h"
#include "metrics.h"
#include "upstream.h"

struct conn;
TAILQ_HEAD(conn_list, conn);

#define WORKER_MAGIC	0x776f726bu

struct worker {
	unsigned		 magic;
	int			 id;
	pthread_t		 thread;
	struct event_base	*base;
	struct evdns_base	*dns;
	struct evconnlistener	*listener;
	int			 listen_fd;	/* until the listener takes it */
	struct metrics		*metrics;
	struct upstream_pools	*pools;
	struct json_reader	*json;		/* one request is filtered at a time */
	struct disclose		*audit;		/* channel to the audit process */
	int			 json_depth;
	size_t			 buffered;	/* body bytes held by this worker */
	struct conn_list	 conns;
	size_t			 nconns;
	int			 draining;
	EVP_MAC_CTX		*body_mac;	/* body_hmac, keyed for body_mac_gen */
	uint64_t		 body_mac_gen;
	unsigned char		 empty_mac[32];	/* body_hmac of no body, for empty_mac_gen */
	uint64_t		 empty_mac_gen;
	time_t			 log_sec;	/* request log: second of log_ts */
	char			 log_ts[32];
	char			 id_prefix[16];	/* request ids: random prefix + counter */
	uint64_t		 id_counter;
	int			 id_ready;
	struct gen		*gen;		/* cached generation (gen_cached) */
	struct event		*flush_ev;	/* end of a loop iteration: send gathered audit
						 * records, write gathered log lines */
	struct buf		 logbuf;	/* request log lines of this iteration */
	struct buf		 labels;	/* scratch: metric label text */
	int			 flush_armed;
	uint64_t		 gen_epoch;
};

/* The generation in force, borrowed from the worker's cache (worker thread
 * only). NULL before the first install. */
struct gen *worker_gen(struct worker *w);

/*
 * Arm the end-of-iteration flush: audit records queued with disclose_*
 * and request log lines appended to w->logbuf leave in one send and one
 * write per loop iteration, before the worker waits for events again.
 */
void	worker_defer_flush(void *w);
/* Write the gathered request log lines now (also when LOG_FLUSH_BYTES
 * gathered in one iteration). */
void	worker_flush_log(struct worker *w);
#define LOG_FLUSH_BYTES	32768

/* Connections open across all workers (for max_connections and metrics). */
extern int worker_conns_total;

/* Create a worker around an already bound, listening socket (taken) and
 * its audit channel (borrowed). */
struct worker *worker_new(int id, int listen_fd, int audit_fd, char *err,
	    size_t errlen);
/* Start the thread. 0 or -1. */
int	worker_start(struct worker *w);
/* Ask the worker to stop accepting, finish in-flight requests and exit its
 * loop once its connections are gone (thread-safe). */
void	worker_drain(struct worker *w);
/* Stop at once (grace period over; thread-safe). */
void	worker_stop(struct worker *w);
void	worker_join(struct worker *w);
void	worker_free(struct worker *w);

/* Internal to worker.c/conn.c: the loop has one connection less. */
void	worker_conn_gone(struct worker *w);


#endif
