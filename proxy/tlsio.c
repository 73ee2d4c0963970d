/* tlsio.c -- TLS over a non-blocking socket on a libevent loop, writing at once */
#include <sys/socket.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "tlsio.h"

#define TLSIO_MAGIC	0x746c7369u
#define TLSIO_CHUNK	16384		/* one TLS record's worth */

enum tlsio_state { TS_CONNECTING, TS_HANDSHAKE, TS_OPEN, TS_DEAD };

struct tlsio {
	unsigned		 magic;
	int			 fd;
	SSL			*ssl;
	enum tlsio_state	 state;
	int			 server;
	int			 tcp_up;
	struct event		*rev;		/* EV_READ, registered for life */
	struct event		*wev;		/* EV_WRITE, only while blocked; made on
						 * first need (most client connections
						 * never block on a write) */
	struct event		*later;		/* callbacks owed to tlsio_write */
	int			 wev_on;
	int			 read_wants_write;
	int			 write_wants_read;
	struct evbuffer		*in, *out;
	size_t			 high;
	int			 read_paused;
	struct tlsio_cbs	 cbs;
	void			*arg;
	int			 owe_drained;
	int			 owe_error;
	int			 depth;		/* callbacks running */
	int			 freed;		/* tlsio_free called inside one */
	unsigned long		 sslerr;
	int			 err;
};

static void	tlsio_destroy(struct tlsio *);
static void	tlsio_write_cb(evutil_socket_t, short, void *);
static void	tlsio_flush(struct tlsio *);

/* Run a callback; returns -1 when t was freed by it (do not touch t). */
static int
tlsio_enter(struct tlsio *t)
{
	t->depth++;
	return 0;
}

static int
tlsio_leave(struct tlsio *t)
{
	if (--t->depth == 0 && t->freed) {
		tlsio_destroy(t);
		return -1;
	}
	return t->freed ? -1 : 0;
}

static int
tlsio_emit(struct tlsio *t, enum tlsio_event e)
{
	tlsio_enter(t);
	if (t->cbs.event != NULL)
		t->cbs.event(t, e, t->arg);
	return tlsio_leave(t);
}

/* Wait for writability or stop waiting. -1 when the event cannot be made. */
static int
tlsio_wev(struct tlsio *t, int on)
{
	if (on && !t->wev_on) {
		if (t->wev == NULL && (t->wev = event_new(event_get_base(t->rev),
		    t->fd, EV_WRITE | EV_PERSIST, tlsio_write_cb, t)) == NULL)
			return -1;
		event_add(t->wev, NULL);
	} else if (!on && t->wev_on)
		event_del(t->wev);
	t->wev_on = on;
	return 0;
}

/*
 * Empty this thread's OpenSSL error queue before an SSL call, so that
 * SSL_get_error sees only that call's errors. ERR_clear_error walks and
 * frees all sixteen slots even when the queue is empty (about 2,000
 * instructions, twice per request); peeking first costs a few dozen.
 */
static inline void
tlsio_clear_errors(void)
{
	if (ERR_peek_error() != 0)
		ERR_clear_error();
}

/* Record why the connection failed and stop all I/O. */
static void
tlsio_fail(struct tlsio *t, int saved_errno)
{
	unsigned long	e;

	if (t->sslerr == 0)
		while ((e = ERR_get_error()) != 0)
			if (t->sslerr == 0)
				t->sslerr = e;
	ERR_clear_error();
	if (t->err == 0)
		t->err = saved_errno;
	t->state = TS_DEAD;
	event_del(t->rev);
	tlsio_wev(t, 0);
}

/* An SSL call failed with r: 0 to retry on readiness, -1 dead, 1 EOF. */
static int
tlsio_ssl_status(struct tlsio *t, int r, int reading)
{
	int	e = SSL_get_error(t->ssl, r), saved = errno;

	switch (e) {
	case SSL_ERROR_WANT_READ:
		if (!reading)
			t->write_wants_read = 1;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		if (reading)
			t->read_wants_write = 1;
		if (tlsio_wev(t, 1) == -1) {
			tlsio_fail(t, ENOMEM);
			return -1;
		}
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		tlsio_fail(t, 0);
		return 1;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0 && (r == 0 || saved == 0 ||
		    saved == ECONNRESET || saved == EPIPE)) {
			/* TCP closed without close_notify. */
			tlsio_fail(t, saved);
			return 1;
		}
		tlsio_fail(t, saved);
		return -1;
	default:
		tlsio_fail(t, saved);
		return -1;
	}
}

static int
tlsio_handshake(struct tlsio *t)
{
	int	r;

	tlsio_clear_errors();
	if ((r = SSL_do_handshake(t->ssl)) == 1) {
		t->state = TS_OPEN;
		tlsio_wev(t, 0);
		return tlsio_emit(t, TLSIO_CONNECTED);
	}
	if (tlsio_ssl_status(t, r, 1) == 0) {
		/* The write event, if asked for, drives the handshake. */
		t->read_wants_write = 0;
		return 0;
	}
	return tlsio_emit(t, TLSIO_ERROR);
}

/* Read what is there. Returns -1 when t is gone. */
static int
tlsio_read(struct tlsio *t)
{
	struct evbuffer_iovec	v;
	size_t			got = 0;
	int			r, s = 0;

	t->read_wants_write = 0;
	while (t->state == TS_OPEN) {
		if (t->high != 0 && evbuffer_get_length(t->in) >= t->high) {
			if (!t->read_paused) {
				t->read_paused = 1;
				event_del(t->rev);
			}
			break;
		}
		if (evbuffer_reserve_space(t->in, TLSIO_CHUNK, &v, 1) < 1) {
			tlsio_fail(t, ENOMEM);
			s = -1;
			break;
		}
		tlsio_clear_errors();
		r = SSL_read(t->ssl, v.iov_base, (int)(v.iov_len > INT32_MAX ?
		    INT32_MAX : v.iov_len));
		if (r > 0) {
			v.iov_len = (size_t)r;
			evbuffer_commit_space(t->in, &v, 1);
			got += (size_t)r;
			/* Nothing buffered inside SSL: the next read would be
			 * an EAGAIN; epoll says when the socket has more. */
			if (!SSL_has_pending(t->ssl))
				break;
			continue;
		}
		evbuffer_commit_space(t->in, &v, 0);
		s = tlsio_ssl_status(t, r, 1);
		break;
	}
	if (got > 0 && t->cbs.read != NULL) {
		tlsio_enter(t);
		t->cbs.read(t, t->arg);
		if (tlsio_leave(t) == -1)
			return -1;
		/* The reader took what it could use: go on if it made room. */
		if (s == 0)
			tlsio_read_more(t);
	}
	if (s == 1)
		return tlsio_emit(t, TLSIO_EOF);
	if (s == -1)
		return tlsio_emit(t, TLSIO_ERROR);
	return 0;
}

/* Write out as much as the socket takes. */
static void
tlsio_flush(struct tlsio *t)
{
	size_t	n;
	int	r;

	t->write_wants_read = 0;
	while (t->state == TS_OPEN && (n = evbuffer_get_length(t->out)) > 0) {
		if (n > TLSIO_CHUNK)
			n = TLSIO_CHUNK;
		tlsio_clear_errors();
		r = SSL_write(t->ssl, evbuffer_pullup(t->out, (ssize_t)n),
		    (int)n);
		if (r > 0) {
			evbuffer_drain(t->out, (size_t)r);
			continue;
		}
		if (tlsio_ssl_status(t, r, 0) != 0) {
			t->owe_error = 1;
			event_active(t->later, EV_TIMEOUT, 0);
		}
		return;
	}
	if (t->state == TS_OPEN) {
		tlsio_wev(t, 0);
		t->owe_drained = 1;
		event_active(t->later, EV_TIMEOUT, 0);
	}
}

static void
tlsio_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tlsio	*t = arg;

	(void)fd;
	(void)what;
	assert(t->magic == TLSIO_MAGIC);
	if (t->state == TS_HANDSHAKE) {
		if (tlsio_handshake(t) == -1 || t->state != TS_OPEN)
			return;
	}
	if (t->state != TS_OPEN)
		return;
	if (t->write_wants_read)
		tlsio_flush(t);
	tlsio_read(t);
}

static void
tlsio_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tlsio	*t = arg;
	socklen_t	 len = sizeof(int);
	int		 soerr = 0;

	(void)what;
	assert(t->magic == TLSIO_MAGIC);
	if (t->state == TS_CONNECTING) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
			soerr = errno;
		if (soerr != 0) {
			tlsio_fail(t, soerr);
			tlsio_emit(t, TLSIO_ERROR);
			return;
		}
		t->tcp_up = 1;
		t->state = TS_HANDSHAKE;
		tlsio_wev(t, 0);
		event_add(t->rev, NULL);
		tlsio_handshake(t);
		return;
	}
	if (t->state == TS_HANDSHAKE) {
		tlsio_handshake(t);
		return;
	}
	if (t->state != TS_OPEN)
		return;
	if (t->read_wants_write && tlsio_read(t) == -1)
		return;
	tlsio_flush(t);
}

/* What tlsio_write owes: drained and error callbacks, from the loop. */
static void
tlsio_later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tlsio	*t = arg;

	(void)fd;
	(void)what;
	assert(t->magic == TLSIO_MAGIC);
	if (t->owe_error) {
		t->owe_error = 0;
		t->owe_drained = 0;
		tlsio_emit(t, TLSIO_ERROR);
		return;
	}
	if (t->owe_drained && evbuffer_get_length(t->out) == 0) {
		t->owe_drained = 0;
		if (t->cbs.drained != NULL) {
			tlsio_enter(t);
			t->cbs.drained(t, t->arg);
			tlsio_leave(t);
		}
	}
}

struct tlsio *
tlsio_new(struct event_base *base, int fd, SSL *ssl, int server,
    const struct tlsio_cbs *cbs, void *arg)
{
	struct tlsio	*t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->magic = TLSIO_MAGIC;
	t->fd = fd;
	t->server = server;
	t->cbs = *cbs;
	t->arg = arg;
	if ((t->in = evbuffer_new()) == NULL ||
	    (t->out = evbuffer_new()) == NULL ||
	    (t->rev = event_new(base, fd, EV_READ | EV_PERSIST, tlsio_read_cb,
	    t)) == NULL ||
	    (t->later = event_new(base, -1, 0, tlsio_later_cb, t)) == NULL ||
	    SSL_set_fd(ssl, fd) != 1) {
		if (t->in != NULL)
			evbuffer_free(t->in);
		if (t->out != NULL)
			evbuffer_free(t->out);
		if (t->rev != NULL)
			event_free(t->rev);
		if (t->later != NULL)
			event_free(t->later);
		free(t);
		return NULL;
	}
	t->ssl = ssl;
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_read_ahead(ssl, 1);
	if (server) {
		SSL_set_accept_state(ssl);
		t->tcp_up = 1;
		t->state = TS_HANDSHAKE;
		event_add(t->rev, NULL);
	} else {
		SSL_set_connect_state(ssl);
		t->state = TS_CONNECTING;
		if (tlsio_wev(t, 1) == -1) {
			/* as above: ssl and fd stay the caller's */
			event_free(t->rev);
			event_free(t->later);
			evbuffer_free(t->in);
			evbuffer_free(t->out);
			free(t);
			return NULL;
		}
	}
	return t;
}

void
tlsio_setcb(struct tlsio *t, const struct tlsio_cbs *cbs, void *arg)
{
	t->cbs = *cbs;
	t->arg = arg;
}

static void
tlsio_destroy(struct tlsio *t)
{
	if (t->state == TS_OPEN) {
		/* close_notify, best effort, never waiting */
		SSL_set_quiet_shutdown(t->ssl, 0);
		SSL_shutdown(t->ssl);
		ERR_clear_error();
	}
	event_free(t->rev);
	if (t->wev != NULL)
		event_free(t->wev);
	event_free(t->later);
	evbuffer_free(t->in);
	evbuffer_free(t->out);
	SSL_free(t->ssl);
	close(t->fd);
	t->magic = 0;
	free(t);
}

void
tlsio_free(struct tlsio *t)
{
	if (t == NULL)
		return;
	assert(t->magic == TLSIO_MAGIC);
	if (t->depth > 0) {
		/* Inside one of its callbacks: finish when it returns. */
		t->freed = 1;
		event_del(t->rev);
		tlsio_wev(t, 0);
		event_del(t->later);
		return;
	}
	tlsio_destroy(t);
}

struct evbuffer *
tlsio_input(struct tlsio *t)
{
	return t->in;
}

int
tlsio_write(struct tlsio *t, const void *p, size_t len)
{
	if (t->state == TS_DEAD || t->freed)
		return -1;
	if (evbuffer_add(t->out, p, len) == -1)
		return -1;
	if (t->state == TS_OPEN && !t->wev_on && !t->write_wants_read)
		tlsio_flush(t);
	return 0;
}

size_t
tlsio_output_len(const struct tlsio *t)
{
	return evbuffer_get_length(t->out);
}

void
tlsio_set_read_limit(struct tlsio *t, size_t high)
{
	t->high = high;
}

void
tlsio_read_more(struct tlsio *t)
{
	if (t->read_paused && t->state == TS_OPEN &&
	    (t->high == 0 || evbuffer_get_length(t->in) < t->high)) {
		t->read_paused = 0;
		event_add(t->rev, NULL);
		/* Records may already sit decrypted-ready inside SSL. */
		if (SSL_pending(t->ssl) > 0 || SSL_has_pending(t->ssl))
			event_active(t->rev, EV_READ, 0);
	}
}

SSL *
tlsio_ssl(const struct tlsio *t)
{
	return t->ssl;
}

int
tlsio_tcp_connected(const struct tlsio *t)
{
	return t->tcp_up;
}

unsigned long
tlsio_ssl_error(const struct tlsio *t)
{
	return t->sslerr;
}

int
tlsio_errno(const struct tlsio *t)
{
	return t->err;
}
