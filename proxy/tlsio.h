/* tlsio.h -- TLS over a non-blocking socket on a libevent loop, writing at once */
#ifndef SUBGATE_TLSIO_H
#define SUBGATE_TLSIO_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

/*
 * A TLS connection driven by the event loop, in the shape of a bufferevent
 * (an input evbuffer, a write call, callbacks) but tuned for a proxy:
 * writes go to the socket at once and ask for writability only when the
 * kernel pushes back, read interest stays registered for the connection's
 * life, and records are read ahead. libevent's bufferevent_openssl waits a
 * loop iteration and two epoll_ctl calls for every write, which was a
 * third of the cost of a proxied request.
 *
 * Callbacks never run from inside tlsio_write or tlsio_new: they come from
 * the event loop, so a callback may free the tlsio.
 */
struct tlsio;

enum tlsio_event {
	TLSIO_CONNECTED = 1,	/* handshake done */
	TLSIO_EOF,		/* the peer closed (close_notify or TCP FIN) */
	TLSIO_ERROR,		/* socket or TLS error: see tlsio_ssl_error/_errno */
};

struct tlsio_cbs {
	void	(*read)(struct tlsio *t, void *arg);	/* new bytes in the input */
	void	(*drained)(struct tlsio *t, void *arg);	/* output fully written */
	void	(*event)(struct tlsio *t, enum tlsio_event e, void *arg);
};

/*
 * Take fd (non-blocking) and ssl (owned from now on; freed with the
 * tlsio). server: 1 to accept, 0 to connect; for a client, fd may still be
 * connecting (TCP): the handshake starts once it is writable.
 * Returns NULL on ENOMEM (fd and ssl are then the caller's again).
 */
struct tlsio *tlsio_new(struct event_base *base, int fd, SSL *ssl, int server,
	    const struct tlsio_cbs *cbs, void *arg);
void	tlsio_setcb(struct tlsio *t, const struct tlsio_cbs *cbs, void *arg);
/* Close: a best-effort close_notify when established, then SSL and fd. */
void	tlsio_free(struct tlsio *t);

struct evbuffer *tlsio_input(struct tlsio *t);
/* Queue bytes and write what the socket takes now. 0, or -1 when the
 * connection already failed. */
int	tlsio_write(struct tlsio *t, const void *p, size_t len);
size_t	tlsio_output_len(const struct tlsio *t);
/* Stop reading once the input holds high bytes (0: unbounded). Reading
 * resumes when tlsio_read_more is called with less than that buffered. */
void	tlsio_set_read_limit(struct tlsio *t, size_t high);
void	tlsio_read_more(struct tlsio *t);

SSL	*tlsio_ssl(const struct tlsio *t);
/* Did the TCP connection come up (for a client: connect succeeded)? */
int	tlsio_tcp_connected(const struct tlsio *t);
/* The first OpenSSL error code and the socket errno behind a TLSIO_ERROR. */
unsigned long tlsio_ssl_error(const struct tlsio *t);
int	tlsio_errno(const struct tlsio *t);

#endif
