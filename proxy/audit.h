/* audit.h -- the audit process, its writer, the worker protocol, and log readers */
#ifndef SUBGATE_AUDIT_H
#define SUBGATE_AUDIT_H

/*
 * The audit process is forked by audit_proc_start() before the daemon loads
 * any other secret. It holds the audit directory (flock on DIR/LOCK), the
 * signing key and the reader public keys, and nothing else. Each thread of
 * the daemon gets one channel (a socketpair end); records go in, durable
 * acknowledgements come back.
 *
 * Channels: audit_proc_start(c, n) makes channels 0..n-1. Convention for the
 * daemon: n = listen.workers + 1, channel 0 is the main thread's (config
 * and lifecycle records with audit_submit_sync), channel 1 + i is worker
 * i's. A channel must only be used by one thread.
 *
 * Protocol (stream, big-endian):
 *   record  worker -> audit: u32 len | u64 cookie | len bytes of JSON object
 *           (the record's members, e.g. {"type":"disclosure",...};
 *           len <= AUDIT_MAX_RECORD)
 *   ack     audit -> worker: 'A' | u8 status | u16 0 | u64 cookie | u64 seq
 *           (AUDIT_ACK_LEN bytes), in submission order per channel.
 *           status 0: the record is written and fdatasync'ed under seq;
 *           status 1: unavailable (disk below min_free_bytes, a write or
 *           fsync error not yet recovered, or a malformed record) -- the
 *           worker answers 503 and forwards nothing.
 * The cookie is the worker's and comes back unchanged. The audit process
 * adds "seq", "time" and "instance" in front of the submitted members.
 * Timeouts (limits.audit_timeout_ms) are the worker's to enforce.
 *
 * Death: if the audit process exits or dies, every channel reads EOF (and
 * writes fail with EPIPE: the daemon must ignore SIGPIPE or use
 * MSG_NOSIGNAL). The daemon must then answer 503 for every disclosure
 * (audit_ready() returns 0) and should shut down: nothing restarts it.
 */

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "auditfmt.h"
#include "buf.h"

struct conf;
struct audit_proc;
struct audit_writer;

/* What the writer has done since it opened. */
struct audit_stats {
	uint64_t	 records;	/* records made durable (all types) */
	uint64_t	 syncs;		/* fdatasyncs that made some durable */
	uint64_t	 checkpoints;	/* checkpoints signed and durable */
};

#define AUDIT_MSG_HDR		12
#define AUDIT_ACK_LEN		20
#define AUDIT_MAX_RECORD	(1u << 20)

enum audit_ack_status {
	AUDIT_ACK_DURABLE = 0,
	AUDIT_ACK_UNAVAILABLE = 1,
};

/* Append one record message to out. 0, or -1 (too long, ENOMEM). */
int	audit_msg_encode(struct buf *out, uint64_t cookie,
	    const char *json_members, size_t len);
/* Decode one record message from in[0..len): 1 with *consumed, *cookie,
 * *json (pointing into in) and *json_len; 0 if more bytes are needed; -1
 * on garbage (a length over AUDIT_MAX_RECORD or zero). */
int	audit_msg_decode(const char *in, size_t len, size_t *consumed,
	    uint64_t *cookie, const char **json, size_t *json_len);
/* Append one ack to out. 0 or -1. */
int	audit_ack_encode(struct buf *out, uint64_t cookie, uint64_t seq,
	    int status);
/* Decode one ack: 1 with *consumed (AUDIT_ACK_LEN), *cookie, *seq and
 * *status (0 durable, 1 unavailable); 0 if more bytes are needed; -1 on
 * garbage. */
int	audit_ack_decode(const char *in, size_t len, size_t *consumed,
	    uint64_t *cookie, uint64_t *seq, int *status);

/*
 * Fork the audit process for config c (c->has_audit, audit_* and
 * keys_audit_readers/keys_audit_signer are used; c is not kept). The child
 * opens and locks the directory, loads the keys, recovers, writes a
 * lifecycle start record and serves until every channel is closed or it
 * gets SIGTERM, then writes a lifecycle stop record and a final (close)
 * checkpoint. It ignores SIGINT and SIGHUP (the daemon drives shutdown)
 * and cannot dump core. Returns the handle once the child is serving, or
 * NULL with the child's reason in err (directory locked, bad key...).
 */
struct audit_proc *audit_proc_start(const struct conf *c, int nchannels,
	    char *err, size_t errlen);
/* Channel i's file descriptor (non-blocking, close-on-exec; owned by p:
 * audit_proc_stop closes it), or -1. */
int	audit_proc_fd(struct audit_proc *p, int i);
pid_t	audit_proc_pid(struct audit_proc *p);
/* 1 when the process is alive and acknowledging records as durable; 0
 * while the disk is below min_free_bytes, after a write error until it
 * has recovered, or when it has exited (call from the main thread). */
int	audit_ready(struct audit_proc *p);
/* The audit process's counters (all zero before it serves, or for NULL). */
void	audit_proc_stats(struct audit_proc *p, struct audit_stats *st);
/*
 * Submit json[0..len) on channel (blocking up to timeout_ms) and wait for
 * its ack. Returns 0 with *seq when durable, -1 when unavailable, timed
 * out or the process is gone. Acks for other cookies on the channel (late
 * answers to earlier timed-out submissions) are skipped.
 */
int	audit_submit_sync(struct audit_proc *p, int channel, const char *json,
	    size_t len, int timeout_ms, uint64_t *seq);
/* Close every channel, wait up to 10 s for the child (then SIGTERM, then
 * SIGKILL) and free p. Returns the child's exit status, or -1. Accepts
 * NULL. */
int	audit_proc_stop(struct audit_proc *p);

/*
 * The writer the audit process runs; usable in-process by tests and the
 * bench (one writer per directory: the lock refuses a second).
 * audit_writer_open: lock, load keys, move the configured signing key into
 * the directory at first start (the original is overwritten and unlinked),
 * resume after the last segment (recovery checkpoint when it was not
 * closed), write a lifecycle start record. NULL with err on failure.
 */
struct audit_writer *audit_writer_open(const struct conf *c, char *err,
	    size_t errlen);
/* 1 when records are accepted (not failed, disk not below min_free). */
int	audit_writer_available(struct audit_writer *w);
/* Queue one record (a JSON object) and assign its seq. Returns 0, or -1
 * when unavailable or json is not an object. Nothing is durable before
 * audit_writer_commit. */
int	audit_writer_append(struct audit_writer *w, const char *json,
	    size_t len, uint64_t *seq);
/* Write everything queued and fdatasync once. 0: durable. -1: failed; the
 * queued records are lost and the writer is unavailable until
 * audit_writer_tick has recovered into a new segment. */
int	audit_writer_commit(struct audit_writer *w);
/*
 * The audit process's commit: write what was appended and have a sync
 * thread make it durable while the caller reads and appends the next
 * records. A record is durable only once a sync begun after it was
 * written has returned. Call again when audit_writer_fd is readable (a
 * sync is done: the next one begins on what was written meanwhile).
 * Written but unsynced bytes stay within AUDITFMT_MAX_BATCH; beyond that
 * it syncs in place, like audit_writer_commit (as it does without the
 * thread). 0, or -1 (failed: everything not yet durable is dropped).
 */
int	audit_writer_flush(struct audit_writer *w);
/* Readable when the sync thread is done with a sync, or -1 (no thread). */
int	audit_writer_fd(struct audit_writer *w);
/*
 * Whether the record appended as seq while audit_writer_epoch was epoch
 * is durable: 1 yes, 0 not yet, -1 never (it was dropped by a failure).
 */
uint64_t audit_writer_epoch(struct audit_writer *w);
int	audit_writer_durable(struct audit_writer *w, uint64_t epoch,
	    uint64_t seq);
/* Time-driven work: recovery, free-space check, checkpoints (every
 * checkpoint_records records or checkpoint_seconds after unsigned
 * records), rotation, retention. Returns the milliseconds until it wants
 * to be called again. */
int	audit_writer_tick(struct audit_writer *w);
void	audit_writer_stats(struct audit_writer *w, struct audit_stats *st);
/* Use now_ms as the clock (0: the real clock). For tests and benches. */
void	audit_writer_set_time(struct audit_writer *w, uint64_t now_ms);
/* Segment id being written. */
uint64_t audit_writer_segment(struct audit_writer *w);
/* clean: write the lifecycle stop record and a close checkpoint first;
 * otherwise just drop everything, as a crash would. Frees w; accepts
 * NULL. */
void	audit_writer_close(struct audit_writer *w, int clean);

/*
 * Verify the log in dir against the first signing key pub (raw Ed25519),
 * optionally an anchor line. Returns the verdict (0 intact, 1 tampered, 2
 * torn tail not yet recovered) with what and where in msg, or -1 with msg
 * when the directory cannot be read.
 */
int	audit_log_verify(const char *dir, const unsigned char pub[32],
	    const char *anchor, char *msg, size_t msglen,
	    struct auditfmt_verify_stats *stats);

/* Called for each record read: json[0..len) is the decrypted record. A
 * non-zero return stops the walk. */
typedef int audit_record_cb(void *arg, uint64_t seq, uint64_t time_ms,
	    const char *json, size_t len);

/*
 * Decrypt the records in dir with the reader private key (X25519), in seq
 * order, skipping segments wholly outside [since_ms, until_ms] (0: no
 * bound). A partial last frame ends the walk quietly (a log being
 * written). Returns 0; 1 when something could not be read (the reason is
 * in err, the walk went on); -1 with err when nothing could be read.
 */
int	audit_log_read(const char *dir, EVP_PKEY *reader, uint64_t since_ms,
	    uint64_t until_ms, audit_record_cb *cb, void *arg, char *err,
	    size_t errlen);

#endif
