/* disclose.h -- a worker's side of the audit log: records and durable acknowledgements */
#ifndef SUBGATE_DISCLOSE_H
#define SUBGATE_DISCLOSE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "buf.h"
#include "metrics.h"
#include "policy.h"

struct disclose;
struct disclose_wait;

/* durable: 1 when the record is written and synced under seq; 0 when the
 * audit process refused it or is gone. */
typedef void (*disclose_cb)(void *arg, int durable, uint64_t seq);

/*
 * The worker's channel to the audit process (fd borrowed: the audit handle
 * owns it). Records are gathered and sent together by disclose_flush, once
 * per event-loop iteration: kick(arg) is called when the first record of
 * an iteration is queued, and must arrange for disclose_flush to run.
 * NULL on ENOMEM.
 */
struct disclose *disclose_new(struct event_base *base, int fd,
	    struct metrics *m, void (*kick)(void *), void *arg);
/* Hand everything queued to the channel in one write. */
void	disclose_flush(struct disclose *d);
void	disclose_free(struct disclose *d);

/*
 * Send a record (a JSON object) and call cb with its acknowledgement.
 * Returns a handle for disclose_cancel, or NULL when the record could not
 * be queued (cb is not called then).
 */
struct disclose_wait *disclose_submit(struct disclose *d, const char *json,
	    size_t len, disclose_cb cb, void *arg);
/* The caller stopped waiting (timeout, client gone): cb will not run. */
void	disclose_cancel(struct disclose_wait *w);
/* Send a record nobody waits for (outcomes, denials). */
void	disclose_note(struct disclose *d, const char *json, size_t len);

/* Record building: JSON members appended to an open object in out. Keys are
 * literals from this source (copied as they are, never escaped); values
 * are escaped. */
void	disclose_str(struct buf *out, const char *key, const char *v);
void	disclose_num(struct buf *out, const char *key, uint64_t v);
/* "key":{"allow":[paths...],"drop":[...]} from a policy report. */
void	disclose_report(struct buf *out, const char *key,
	    const struct policy_report *rep);

#endif
