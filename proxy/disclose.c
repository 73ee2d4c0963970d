/* disclose.c -- a worker's side of the audit log: records and durable acknowledgements
 *
 * Acknowledgements come back in submission order on a channel, so the
 * waiting requests are a FIFO; a request that stopped waiting leaves its
 * slot with no callback and the late answer is dropped.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "audit.h"
#include "disclose.h"
#include "json.h"
#include "log.h"

struct disclose_wait {
	TAILQ_ENTRY(disclose_wait)	 entry;
	uint64_t			 cookie;
	disclose_cb			 cb;	/* NULL: nobody waits */
	void				*arg;
};
TAILQ_HEAD(disclose_fifo, disclose_wait);

struct disclose {
	struct bufferevent	*bev;
	struct metrics		*metrics;
	struct disclose_fifo	 fifo;
	uint64_t		 next_cookie;
	int			 dead;
	struct buf		 msg;		/* queued records, sent by disclose_flush */
	void			(*kick)(void *);
	void			*kick_arg;
};

static void	disclose_fail_all(struct disclose *);

static void
disclose_read_cb(struct bufferevent *bev, void *arg)
{
	struct disclose		*d = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct disclose_wait	*w;
	const char		*p;
	size_t			 consumed;
	uint64_t		 cookie, seq;
	int			 status, rc;

	while (evbuffer_get_length(in) >= AUDIT_ACK_LEN) {
		p = (const char *)evbuffer_pullup(in, AUDIT_ACK_LEN);
		rc = audit_ack_decode(p, AUDIT_ACK_LEN, &consumed, &cookie,
		    &seq, &status);
		if (rc != 1 || (w = TAILQ_FIRST(&d->fifo)) == NULL ||
		    w->cookie != cookie) {
			log_warnx("audit channel out of step; failing it");
			d->dead = 1;
			disclose_fail_all(d);
			return;
		}
		evbuffer_drain(in, consumed);
		TAILQ_REMOVE(&d->fifo, w, entry);
		if (w->cb != NULL)
			w->cb(w->arg, status == AUDIT_ACK_DURABLE, seq);
		free(w);
	}
}

static void
disclose_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct disclose	*d = arg;

	(void)bev;
	(void)what;
	if (!d->dead)
		log_warnx("audit process channel closed: disclosures now fail "
		    "with 503; restart subgate");
	d->dead = 1;
	bufferevent_disable(d->bev, EV_READ | EV_WRITE);
	disclose_fail_all(d);
}

static void
disclose_fail_all(struct disclose *d)
{
	struct disclose_wait	*w;

	while ((w = TAILQ_FIRST(&d->fifo)) != NULL) {
		TAILQ_REMOVE(&d->fifo, w, entry);
		if (w->cb != NULL)
			w->cb(w->arg, 0, 0);
		free(w);
	}
	metrics_add(d->metrics, "subgate_audit_channel_failures_total", "", 1);
}

struct disclose *
disclose_new(struct event_base *base, int fd, struct metrics *m,
    void (*kick)(void *), void *arg)
{
	struct disclose	*d;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	TAILQ_INIT(&d->fifo);
	d->metrics = m;
	d->kick = kick;
	d->kick_arg = arg;
	d->next_cookie = 1;
	if ((d->bev = bufferevent_socket_new(base, fd, 0)) == NULL) {
		free(d);
		return NULL;
	}
	bufferevent_setcb(d->bev, disclose_read_cb, NULL, disclose_event_cb, d);
	bufferevent_enable(d->bev, EV_READ | EV_WRITE);
	return d;
}

void
disclose_free(struct disclose *d)
{
	struct disclose_wait	*w;

	if (d == NULL)
		return;
	while ((w = TAILQ_FIRST(&d->fifo)) != NULL) {
		TAILQ_REMOVE(&d->fifo, w, entry);
		free(w);
	}
	bufferevent_free(d->bev);
	buf_free(&d->msg);
	free(d);
}

static struct disclose_wait *
disclose_send(struct disclose *d, const char *json, size_t len,
    disclose_cb cb, void *arg)
{
	struct disclose_wait	*w;

	if (d == NULL || d->dead || (w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->cookie = d->next_cookie++;
	w->cb = cb;
	w->arg = arg;
	if (d->msg.len == 0)
		d->kick(d->kick_arg);
	if (audit_msg_encode(&d->msg, w->cookie, json, len) == -1) {
		free(w);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&d->fifo, w, entry);
	return w;
}

void
disclose_flush(struct disclose *d)
{
	size_t	off = 0;
	ssize_t	n;

	if (d == NULL || d->msg.len == 0)
		return;
	/* Straight to the socket when nothing is queued before us: no wait
	 * for writability, no epoll_ctl. */
	if (!d->dead && evbuffer_get_length(bufferevent_get_output(d->bev)) == 0) {
		while (off < d->msg.len) {
			n = send(bufferevent_getfd(d->bev), d->msg.data + off,
			    d->msg.len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0)
				off += (size_t)n;
			else if (n == -1 && errno == EINTR)
				continue;
			else
				break;	/* EAGAIN: the bufferevent takes the rest */
		}
	}
	if (!d->dead && off < d->msg.len && bufferevent_write(d->bev,
	    d->msg.data + off, d->msg.len - off) == -1) {
		log_warnx("audit channel: cannot queue records");
		d->dead = 1;
		disclose_fail_all(d);
	}
	buf_reset(&d->msg);
}

struct disclose_wait *
disclose_submit(struct disclose *d, const char *json, size_t len,
    disclose_cb cb, void *arg)
{
	return disclose_send(d, json, len, cb, arg);
}

void
disclose_cancel(struct disclose_wait *w)
{
	if (w != NULL)
		w->cb = NULL;
}

void
disclose_note(struct disclose *d, const char *json, size_t len)
{
	if (disclose_send(d, json, len, NULL, NULL) == NULL)
		metrics_add(d ? d->metrics : NULL,
		    "subgate_audit_records_lost_total", "", 1);
}

/* ,"key": -- keys are names in this source, plain ASCII with nothing to
 * escape, so they are copied, not run through the JSON string writer. */
static void
disclose_key(struct buf *out, const char *key)
{
	size_t	n = strlen(key);

	if (buf_reserve(out, n + 4) == -1)
		return;
	if (out->len > 1)
		out->data[out->len++] = ',';
	out->data[out->len++] = '"';
	memcpy(out->data + out->len, key, n);
	out->len += n;
	out->data[out->len++] = '"';
	out->data[out->len++] = ':';
	out->data[out->len] = '\0';
}

void
disclose_str(struct buf *out, const char *key, const char *v)
{
	disclose_key(out, key);
	if (v == NULL)
		buf_append_str(out, "null");
	else
		json_write_string(out, v, strlen(v));
}

void
disclose_num(struct buf *out, const char *key, uint64_t v)
{
	disclose_key(out, key);
	buf_append_u64(out, v);
}

void
disclose_report(struct buf *out, const char *key,
    const struct policy_report *rep)
{
	const char	*p, *end;
	int		 a, first = 1, n;

	disclose_key(out, key);
	buf_append_char(out, '{');
	for (a = 0; a < POLICY_NACTIONS; a++) {
		if (rep->npaths[a] == 0)
			continue;
		if (!first)
			buf_append_char(out, ',');
		first = 0;
		buf_append_char(out, '"');
		buf_append_str(out, policy_action_name(a));
		buf_append_str(out, "\":[");
		p = rep->paths[a].data;
		end = p + rep->paths[a].len;
		for (n = 0; p < end; n++) {
			size_t l = strlen(p);
			if (n)
				buf_append_char(out, ',');
			json_write_string(out, p, l);
			p += l + 1;
		}
		buf_append_char(out, ']');
	}
	buf_append_char(out, '}');
}
