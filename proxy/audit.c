/* audit.c -- write-ahead disclosure log: audit process, group commit, rotation, retention, readers */
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "audit.h"
#include "auditfmt.h"
#include "buf.h"
#include "conf.h"
#include "fileio.h"
#include "log.h"

#define SIGNER_KEY	"signer.key"
#define SIGNER_NEXT	"signer.next"
#define KEYCHAIN	"keychain"

/*
 * The live segment is kept zero-filled ahead of the write offset: an
 * fdatasync that only overwrites blocks already written inside the file
 * size flushes data alone, where an append must also commit the journal
 * (size and extents; a second device flush). When fewer than PREALLOC_MARGIN
 * bytes of zeros lie ahead, the next batch first extends them by
 * PREALLOC_CHUNK (that batch's sync makes both durable); closing cuts the
 * file back to its last frame.
 */
#define PREALLOC_CHUNK	(2u << 20)
#define PREALLOC_MARGIN	(1u << 20)
#define PREALLOC_SLACK	65536	/* past seg_max_bytes: a batch's overshoot */

/* One record, framed (its JSON prefix, an escaped instance name, the
 * frame and sealing overhead), fits in one batch. */
_Static_assert(AUDIT_MAX_RECORD + 4096 <= AUDITFMT_MAX_BATCH,
    "a record frame must fit in one batch");

/* A place in the open segment's chain: after its first len bytes. */
struct w_point {
	unsigned char	 head[32];
	uint64_t	 next_seq, frames, records, len;
};

struct audit_writer {
	char		*dir;
	int		 dirfd, lockfd, segfd;
	char		 instance[AUDITFMT_INSTANCE_MAX + 1];
	uint64_t	 seg_max_bytes, min_free;
	uint64_t	 seg_max_ms, ck_ms, retention_ms;
	uint64_t	 ck_records;

	EVP_PKEY	*signer;
	unsigned char	 signer_pub[32];
	EVP_PKEY	*readers[AUDITFMT_MAX_READERS];
	size_t		 nreaders;

	/* the open segment, as queued */
	uint64_t	 seg_id, seg_created_ms;
	struct auditfmt_segkey *segkey;	/* its data key, NULL when none */
	unsigned char	 head[32];
	uint64_t	 next_seq, seg_frames, seg_records, seg_len;
	/* ... and as made durable */
	struct w_point	 d;
	struct buf	 pending;	/* queued frames, written at wr.len */
	/*
	 * Between the durable point and the queue: frames written to the
	 * file but not yet synced end at wr (wr.len - d.len is at most
	 * AUDITFMT_MAX_BATCH, so a crash still tears only the last batch).
	 * The sync thread's fdatasync, begun after they were written, makes
	 * the file durable up to sy. epoch counts rollbacks: records queued
	 * before one are lost.
	 */
	struct w_point	 wr, sy;
	int		 s_inflight;
	uint64_t	 fresh;		/* records appended since a flush */
	struct audit_stats stats;
	uint64_t	 epoch, epoch_floor;	/* d.next_seq at the rollback */
	pthread_t	 st_thread;
	int		 st_started, st_req, st_done, st_rc, st_errno, st_stop;
	int		 st_efd;	/* readable when a sync is done */
	pthread_mutex_t	 st_mu;
	pthread_cond_t	 st_cv;
	uint64_t	 zeroed_end;	/* file size: zeros from wr.len to it */
	uint64_t	 free_bytes;	/* at the last space check */
	int		 finishing;	/* next sync cuts the zeros, no more */
	int		 no_prealloc;	/* it failed in this segment */

	/* per-record scratch, reused: the JSON in front of the members */
	struct buf	 rec;
	struct buf	 instance_json;	/* ","instance":"..." */
	uint64_t	 time_sec;	/* second time_prefix shows */
	char		 time_prefix[32];	/* "YYYY-MM-DDTHH:MM:SS" */
	size_t		 time_prefix_len;

	int		 failed, lowdisk;
	uint64_t	 last_ck_ms, unsigned_records;
	uint64_t	 last_space_ms, last_retention_ms, last_recovery_ms;
	uint64_t	 fake_now;
	uint64_t	 batch_ms;	/* time of the records being read, or 0 */
	int		 stopping;	/* closing for good: no next key */

	/*
	 * The next signing key is made off the record path: after each
	 * checkpoint a thread hands signer.next over to signer.key, then
	 * generates the key the next checkpoint will certify and makes it
	 * durable as signer.next. A checkpoint then only signs and syncs
	 * with its batch. kp_mu guards the kp_ members below it.
	 */
	pthread_t	 kp_thread;
	int		 kp_started;
	pthread_mutex_t	 kp_mu;
	pthread_cond_t	 kp_cv;
	int		 kp_busy;	/* a job is queued or running */
	int		 kp_handover;	/* job: rename signer.next first */
	int		 kp_prepare;	/* job: then make a next key */
	int		 kp_stop;
	int		 kp_handover_failed;
	EVP_PKEY	*kp_ready;	/* durable as signer.next, or NULL */
	int		 handover_due;	/* signer.next is certified: move it */
};

/* ---- small helpers ---- */

static uint64_t
real_now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
now_ms(const struct audit_writer *w)
{
	return w->fake_now ? w->fake_now : real_now_ms();
}

static uint64_t
mono_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A file mapped read-only (or read into memory when empty). */
struct mapped {
	unsigned char	*p;
	size_t		 len;
};

static int
map_file(int dirfd, const char *name, struct mapped *m)
{
	struct stat	 st;
	int		 fd;

	m->p = NULL;
	m->len = 0;
	if ((fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == -1) {
		close(fd);
		return -1;
	}
	if (st.st_size > 0) {
		m->p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
		    fd, 0);
		if (m->p == MAP_FAILED) {
			m->p = NULL;
			close(fd);
			return -1;
		}
		m->len = (size_t)st.st_size;
	}
	close(fd);
	return 0;
}

static void
unmap_file(struct mapped *m)
{
	if (m->p != NULL)
		munmap(m->p, m->len);
	m->p = NULL;
	m->len = 0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t	 x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorted segment ids in dirfd. 0 with *ids (malloc'ed) and *n, or -1. */
static int
list_segments(int dirfd, uint64_t **ids, size_t *n)
{
	DIR		*d;
	struct dirent	*de;
	uint64_t	*v = NULL, *nv, id;
	size_t		 cnt = 0, cap = 0;
	int		 fd;

	*ids = NULL;
	*n = 0;
	if ((fd = dup(dirfd)) == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!auditfmt_segment_parse_name(de->d_name, &id))
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 64;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				free(v);
				closedir(d);
				return -1;
			}
			v = nv;
		}
		v[cnt++] = id;
	}
	closedir(d);
	if (cnt > 0)
		qsort(v, cnt, sizeof(*v), cmp_u64);
	*ids = v;
	*n = cnt;
	return 0;
}

/* Append s as a JSON string literal. */
static int
json_str(struct buf *b, const char *s)
{
	int	 rc = buf_append_char(b, '"');

	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			rc |= buf_printf(b, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			rc |= buf_printf(b, "\\u%04x", (unsigned char)*s);
		else
			rc |= buf_append_char(b, *s);
	}
	return rc | buf_append_char(b, '"');
}

/* ---- key files ---- */

static EVP_PKEY *
read_priv_fd(int fd)
{
	EVP_PKEY	*k = NULL;
	FILE		*f;

	if ((f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return NULL;
	}
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

static EVP_PKEY *
read_priv_at(int dirfd, const char *name)
{
	int	 fd;

	if ((fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	return read_priv_fd(fd);
}

/* Write k to dir/name: temp file, fsync, atomic rename, directory fsync. */
static int
write_key_at(int dirfd, const char *name, EVP_PKEY *k)
{
	char	 tmp[64];
	BIO	*b = NULL;
	char	*p;
	long	 n;
	int	 fd = -1, rc = -1;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	if ((b = BIO_new(BIO_s_secmem())) == NULL ||
	    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1)
		goto fail;
	n = BIO_get_mem_data(b, &p);
	if ((fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) == -1 || fio_write_all(fd, p, (size_t)n) == -1 ||
	    fsync(fd) == -1)
		goto fail;
	close(fd);
	fd = -1;
	if (renameat(dirfd, tmp, dirfd, name) == -1 || fsync(dirfd) == -1)
		goto fail;
	rc = 0;
 fail:
	if (fd != -1)
		close(fd);
	BIO_free(b);
	return rc;
}

/* Wipe path, unlink it, fsync its directory. */
static int
destroy_file(const char *path)
{
	int	 fd;

	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
		return -1;
	(void)fio_wipe(fd, 1);
	close(fd);
	if (unlink(path) == -1)
		return -1;
	(void)fio_fsync_dir_of(path);
	return 0;
}

static EVP_PKEY *
read_pub_file(const char *path)
{
	EVP_PKEY	*k;
	FILE		*f;

	if ((f = fopen(path, "re")) == NULL)
		return NULL;
	k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

/* ---- writing frames ---- */

/* The frame at pending[off..] was queued: extend the chain over it. */
static void
w_framed(struct audit_writer *w, size_t off)
{
	auditfmt_chain_extend(w->head,
	    (const unsigned char *)w->pending.data + off,
	    w->pending.len - off);
	w->seg_frames++;
	w->seg_len += w->pending.len - off;
}

static int
w_frame(struct audit_writer *w, const struct buf *body)
{
	size_t	 off = w->pending.len;

	if (auditfmt_frame_encode(&w->pending, body->data, body->len) == -1)
		return -1;
	w_framed(w, off);
	return 0;
}

/* Forget the open segment's data key (the context wipes it). */
static void
w_forget_key(struct audit_writer *w)
{
	auditfmt_segkey_free(w->segkey);
	w->segkey = NULL;
}

/* The queued point: after every frame queued so far. */
static void
w_point_queued(const struct audit_writer *w, struct w_point *p)
{
	memcpy(p->head, w->head, 32);
	p->next_seq = w->next_seq;
	p->frames = w->seg_frames;
	p->records = w->seg_records;
	p->len = w->seg_len;
}

/* Everything up to p is durable. */
static void
w_set_durable(struct audit_writer *w, const struct w_point *p)
{
	if (p->next_seq > w->d.next_seq)
		w->stats.records += p->next_seq - w->d.next_seq;
	w->d = *p;
}

/*
 * Wait for the sync thread's fdatasync, if one is running: 0 (the file is
 * durable up to sy), or -1 with errno (it failed; the caller fails).
 */
static int
w_sync_wait(struct audit_writer *w)
{
	eventfd_t	 v;
	int		 rc, e;

	if (!w->s_inflight)
		return 0;
	pthread_mutex_lock(&w->st_mu);
	while (!w->st_done)
		pthread_cond_wait(&w->st_cv, &w->st_mu);
	w->st_done = 0;
	rc = w->st_rc;
	e = w->st_errno;
	pthread_mutex_unlock(&w->st_mu);
	(void)eventfd_read(w->st_efd, &v);	/* reset: nonblocking */
	w->s_inflight = 0;
	if (rc == -1) {
		errno = e;
		return -1;
	}
	w->stats.syncs++;
	w_set_durable(w, &w->sy);
	return 0;
}

/*
 * Drop everything queued or written since the last durable point (the
 * next frames are written over what was written). A running sync is
 * waited for first: what it made durable stays.
 */
static void
w_rollback(struct audit_writer *w)
{
	(void)w_sync_wait(w);
	memcpy(w->head, w->d.head, 32);
	w->next_seq = w->d.next_seq;
	w->seg_frames = w->d.frames;
	w->seg_records = w->d.records;
	w->seg_len = w->d.len;
	w->wr = w->d;
	buf_truncate(&w->pending, 0);
	w->epoch_floor = w->d.next_seq;
	w->epoch++;
}

static void
w_fail(struct audit_writer *w, const char *what)
{
	int	 e = errno;

	(void)w_sync_wait(w);
	errno = e;
	log_warn("audit: segment %" PRIu64 ": %s failed; records refused "
	    "until recovery into a new segment", w->seg_id, what);
	w->failed = 1;
	w->last_recovery_ms = mono_ms();
	w_rollback(w);
}

/*
 * Write pending[off..off + n) at its place in the segment (after wr.len)
 * and extend the zeros ahead if needed. 0, or -1 (the writer has failed).
 */
static int
w_write(struct audit_writer *w, size_t off, size_t n)
{
	uint64_t	 end, want, cap;

	end = w->wr.len + off + n;
	if (fio_pwrite_all(w->segfd, w->pending.data + off, n,
	    w->wr.len + off) == -1) {
		w_fail(w, "write");
		return -1;
	}
	if (end > w->zeroed_end)
		w->zeroed_end = end;
	cap = w->seg_max_bytes + PREALLOC_SLACK;
	if (!w->finishing && !w->no_prealloc &&
	    end + PREALLOC_MARGIN > w->zeroed_end && w->zeroed_end < cap &&
	    w->free_bytes / 4 > PREALLOC_CHUNK) {
		/* Best effort: a full disk fails the records, not this. */
		want = end + PREALLOC_CHUNK < cap ? end + PREALLOC_CHUNK : cap;
		if (fio_zero(w->segfd, w->zeroed_end, &want) == -1) {
			log_warn("audit: segment %" PRIu64 ": preallocating",
			    w->seg_id);
			w->no_prealloc = 1;
			if (ftruncate(w->segfd, (off_t)w->zeroed_end) == -1) {
				w_fail(w, "ftruncate");
				return -1;
			}
		} else
			w->zeroed_end = want;
	}
	return 0;
}

/* Write pending[off..off + n) and sync here. 0, or -1 (failed). */
static int
w_sync_batch(struct audit_writer *w, size_t off, size_t n)
{
	if (w_write(w, off, n) == -1)
		return -1;
	if ((w->finishing ? fsync(w->segfd) : fdatasync(w->segfd)) == -1) {
		w_fail(w, w->finishing ? "fsync" : "fdatasync");
		return -1;
	}
	w->stats.syncs++;
	return 0;
}

/*
 * Bytes of whole frames from pending[off] that make one batch: as many as
 * fit in AUDITFMT_MAX_BATCH (a record frame always fits alone).
 */
static size_t
w_batch_len(const struct audit_writer *w, size_t off)
{
	const unsigned char	*p = (const unsigned char *)w->pending.data;
	size_t			 n = 0, f;

	if (w->pending.len - off <= AUDITFMT_MAX_BATCH)
		return w->pending.len - off;
	while (off + n + AUDITFMT_FRAME_HDR <= w->pending.len) {
		f = AUDITFMT_FRAME_HDR + auditfmt_get_u32(p + off + n);
		if (n > 0 && n + f > AUDITFMT_MAX_BATCH)
			break;
		n += f;
	}
	return n;
}

/*
 * Make everything queued durable, here and now: wait for the sync thread,
 * sync what it did not cover, then write the queue one batch (at most
 * AUDITFMT_MAX_BATCH bytes, see auditfmt.h) and one fdatasync at a time,
 * so a crash can only ever tear the last batch. Zeros are extended ahead
 * of a batch when they run short (below seg_max_bytes plus a frame), so
 * its sync makes them durable too; when finishing the segment the zeros
 * are cut off first and the file ends at its last frame. The queue is
 * durable, and acknowledged, only when all of it is.
 */
static int
w_sync(struct audit_writer *w)
{
	struct w_point	 q;
	size_t		 off, n;

	if (w_sync_wait(w) == -1) {
		w_fail(w, "fdatasync");
		return -1;
	}
	if (w->failed || w->segfd == -1) {
		w_rollback(w);
		return -1;
	}
	if (w->wr.len > w->d.len) {
		if (fdatasync(w->segfd) == -1) {
			w_fail(w, "fdatasync");
			return -1;
		}
		w->stats.syncs++;
		w_set_durable(w, &w->wr);
	}
	if (w->pending.len == 0 && !w->finishing)
		return 0;
	if (w->finishing && w->zeroed_end > w->d.len) {
		if (ftruncate(w->segfd, (off_t)w->d.len) == -1) {
			w_fail(w, "ftruncate");
			return -1;
		}
		w->zeroed_end = w->d.len;
	}
	off = 0;
	do {
		n = w_batch_len(w, off);
		if (w_sync_batch(w, off, n) == -1)
			return -1;
		off += n;
	} while (off < w->pending.len);
	buf_truncate(&w->pending, 0);
	w_point_queued(w, &q);
	w_set_durable(w, &q);
	w->wr = q;
	return 0;
}

/* ---- the sync thread ---- */

static void *
st_main(void *arg)
{
	struct audit_writer	*w = arg;
	int			 rc, e, fd;

	pthread_mutex_lock(&w->st_mu);
	for (;;) {
		while (!w->st_req && !w->st_stop)
			pthread_cond_wait(&w->st_cv, &w->st_mu);
		if (!w->st_req)
			break;
		fd = w->segfd;
		pthread_mutex_unlock(&w->st_mu);
		rc = fdatasync(fd);
		e = errno;
		pthread_mutex_lock(&w->st_mu);
		w->st_req = 0;
		w->st_done = 1;
		w->st_rc = rc;
		w->st_errno = e;
		pthread_cond_broadcast(&w->st_cv);
		(void)eventfd_write(w->st_efd, 1);
	}
	pthread_mutex_unlock(&w->st_mu);
	return NULL;
}

/* Without the thread, audit_writer_flush syncs in place. */
static void
st_start(struct audit_writer *w)
{
	if ((w->st_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		return;
	if (pthread_mutex_init(&w->st_mu, NULL) != 0)
		goto fail;
	if (pthread_cond_init(&w->st_cv, NULL) != 0) {
		pthread_mutex_destroy(&w->st_mu);
		goto fail;
	}
	if (pthread_create(&w->st_thread, NULL, st_main, w) != 0) {
		pthread_cond_destroy(&w->st_cv);
		pthread_mutex_destroy(&w->st_mu);
		goto fail;
	}
	w->st_started = 1;
	return;
 fail:
	log_warnx("audit: no sync thread; every batch waits for its sync");
	close(w->st_efd);
	w->st_efd = -1;
}

/* Wait for a running sync (its outcome is the caller's to read before),
 * then end the thread. */
static void
st_stop(struct audit_writer *w)
{
	if (!w->st_started)
		return;
	pthread_mutex_lock(&w->st_mu);
	w->st_stop = 1;
	pthread_cond_broadcast(&w->st_cv);
	pthread_mutex_unlock(&w->st_mu);
	pthread_join(w->st_thread, NULL);
	pthread_cond_destroy(&w->st_cv);
	pthread_mutex_destroy(&w->st_mu);
	close(w->st_efd);
	w->st_efd = -1;
	w->st_started = 0;
	w->s_inflight = 0;
}

/* Sync the file up to wr on the thread. */
static void
st_begin(struct audit_writer *w)
{
	w->sy = w->wr;
	w->s_inflight = 1;
	pthread_mutex_lock(&w->st_mu);
	w->st_req = 1;
	pthread_cond_signal(&w->st_cv);
	pthread_mutex_unlock(&w->st_mu);
}

static int
st_finished(struct audit_writer *w)
{
	int	 done;

	pthread_mutex_lock(&w->st_mu);
	done = w->st_done;
	pthread_mutex_unlock(&w->st_mu);
	return done;
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Append ms as auditfmt_time_format writes it. The part up to the seconds
 * is formatted once a second; the milliseconds are three digits.
 */
static int
w_time(struct audit_writer *w, struct buf *b, uint64_t ms)
{
	char		 t[32], f[5];
	uint64_t	 sec = ms / 1000;
	unsigned	 m = (unsigned)(ms % 1000);
	size_t		 n;

	if (sec != w->time_sec) {
		auditfmt_time_format(sec * 1000, t);
		n = strlen(t);
		if (n < 5 || memcmp(t + n - 5, ".000Z", 5) != 0) {
			/* Not the usual shape: no shortcut. */
			auditfmt_time_format(ms, t);
			return buf_append_str(b, t);
		}
		w->time_prefix_len = n - 5;
		memcpy(w->time_prefix, t, w->time_prefix_len);
		w->time_sec = sec;
	}
	f[0] = '.';
	f[1] = (char)('0' + m / 100);
	f[2] = (char)('0' + m / 10 % 10);
	f[3] = (char)('0' + m % 10);
	f[4] = 'Z';
	if (buf_append(b, w->time_prefix, w->time_prefix_len) == -1)
		return -1;
	return buf_append(b, f, sizeof(f));
}

/*
 * Queue a record built as {"seq":..,"time":..,"instance":.., members}.
 * The writer's own members are built in w->rec; the submitted members are
 * sealed from where they lie (the ciphertext goes straight into the
 * queue): no formatting, allocation or copy per record.
 */
static int
w_record(struct audit_writer *w, const char *json, size_t len, uint64_t *seq)
{
	struct buf	*r = &w->rec;
	size_t		 a = 0, b = len, i, off;
	uint64_t	 now;
	int		 empty;

	while (a < len && is_blank(json[a]))
		a++;
	while (b > a && is_blank(json[b - 1]))
		b--;
	if (b - a < 2 || json[a] != '{' || json[b - 1] != '}' ||
	    len > AUDIT_MAX_RECORD || memchr(json, '\0', len) != NULL ||
	    w->segkey == NULL)
		return -1;
	for (i = a + 1; i < b - 1 && is_blank(json[i]); i++)
		;
	empty = i == b - 1;
	now = w->batch_ms ? w->batch_ms : now_ms(w);
	buf_reset(r);
	if (buf_append(r, "{\"seq\":", 7) == -1 ||
	    buf_append_u64(r, w->next_seq) == -1 ||
	    buf_append(r, ",\"time\":\"", 9) == -1 ||
	    w_time(w, r, now) == -1 ||
	    buf_append(r, w->instance_json.data, w->instance_json.len) == -1 ||
	    buf_append_char(r, empty ? '}' : ',') == -1)
		return -1;
	off = w->pending.len;
	/* json[a + 1..b) is the members and the closing brace. */
	if (auditfmt_segkey_seal_frame(w->segkey, &w->pending, w->seg_id,
	    w->seg_frames, w->next_seq, now, r->data, r->len, json + a + 1,
	    empty ? 0 : b - a - 1) == -1)
		return -1;
	w_framed(w, off);
	if (seq != NULL)
		*seq = w->next_seq;
	w->next_seq++;
	w->fresh++;
	w->seg_records++;
	w->unsigned_records++;
	return 0;
}

static void
print_checkpoint(const struct auditfmt_checkpoint *ck)
{
	struct buf	 line = { 0 };

	if (buf_append_str(&line, "audit checkpoint ") == 0 &&
	    auditfmt_checkpoint_line(&line, ck) == 0 &&
	    buf_append_char(&line, '\n') == 0)
		(void)fio_write_all(STDERR_FILENO, line.data, line.len);
	buf_free(&line);
}

/* ---- the next signing key ---- */

/*
 * signer.next becomes signer.key: the checkpoint certifying it is durable.
 * The key replaced signs nothing more and is wiped after the rename,
 * through a descriptor held across it, so forward security holds on disk
 * too and signer.key is a whole key at every moment. The zeros reach the
 * disk's cache here; the fsyncs that follow (the next key made durable as
 * signer.next, the next batch of records) flush it, so the wipe costs no
 * cache flush of its own. 0, or -1 with errno.
 */
static int
kp_handover(int dirfd)
{
	int	 old, rc = 0, e;

	if (faccessat(dirfd, SIGNER_NEXT, F_OK, 0) == -1)
		return errno == ENOENT ? 0 : -1;
	old = openat(dirfd, SIGNER_KEY, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (renameat(dirfd, SIGNER_NEXT, dirfd, SIGNER_KEY) == -1 ||
	    fsync(dirfd) == -1)
		rc = -1;
	else if (old != -1 && fio_wipe(old, 0) == -1)
		log_warn("audit: wiping the replaced %s", SIGNER_KEY);
	if (old != -1) {
		e = errno;
		close(old);
		errno = e;
	}
	return rc;
}

/* A fresh key, durable as signer.next, or NULL. */
static EVP_PKEY *
kp_generate(int dirfd)
{
	EVP_PKEY	*k;

	if ((k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL)
		return NULL;
	if (write_key_at(dirfd, SIGNER_NEXT, k) == -1) {
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

static void *
kp_main(void *arg)
{
	struct audit_writer	*w = arg;
	EVP_PKEY		*k;
	int			 handover, prepare, failed;

	pthread_mutex_lock(&w->kp_mu);
	for (;;) {
		while (!w->kp_busy && !w->kp_stop)
			pthread_cond_wait(&w->kp_cv, &w->kp_mu);
		if (!w->kp_busy)
			break;
		handover = w->kp_handover;
		prepare = w->kp_prepare;
		pthread_mutex_unlock(&w->kp_mu);
		failed = handover && kp_handover(w->dirfd) == -1;
		if (failed)
			log_warn("audit: replacing %s", SIGNER_KEY);
		/* Never write signer.next over a key not yet handed over. */
		k = prepare && !failed ? kp_generate(w->dirfd) : NULL;
		pthread_mutex_lock(&w->kp_mu);
		w->kp_ready = k;
		w->kp_handover_failed = failed;
		w->kp_handover = w->kp_prepare = w->kp_busy = 0;
		pthread_cond_broadcast(&w->kp_cv);
	}
	pthread_mutex_unlock(&w->kp_mu);
	return NULL;
}

static void
kp_start(struct audit_writer *w)
{
	if (pthread_mutex_init(&w->kp_mu, NULL) != 0)
		return;
	if (pthread_cond_init(&w->kp_cv, NULL) != 0) {
		pthread_mutex_destroy(&w->kp_mu);
		return;
	}
	if (pthread_create(&w->kp_thread, NULL, kp_main, w) != 0) {
		pthread_cond_destroy(&w->kp_cv);
		pthread_mutex_destroy(&w->kp_mu);
		log_warnx("audit: no key thread; checkpoints make their keys");
		return;
	}
	w->kp_started = 1;
}

/* Let the thread finish its job, then end it. */
static void
kp_stop(struct audit_writer *w)
{
	if (!w->kp_started)
		return;
	pthread_mutex_lock(&w->kp_mu);
	w->kp_stop = 1;
	pthread_cond_broadcast(&w->kp_cv);
	pthread_mutex_unlock(&w->kp_mu);
	pthread_join(w->kp_thread, NULL);
	EVP_PKEY_free(w->kp_ready);
	w->kp_ready = NULL;
	pthread_cond_destroy(&w->kp_cv);
	pthread_mutex_destroy(&w->kp_mu);
	w->kp_started = 0;
}

/* Queue a job: hand signer.next over (after a checkpoint), then prepare
 * the next key unless the writer is stopping. */
static void
kp_request(struct audit_writer *w, int handover)
{
	if (!w->kp_started) {
		if (handover && kp_handover(w->dirfd) == -1) {
			log_warn("audit: replacing %s", SIGNER_KEY);
			w->handover_due = 1;
		}
		return;
	}
	pthread_mutex_lock(&w->kp_mu);
	w->kp_handover |= handover;
	w->kp_prepare = !w->stopping;
	w->kp_busy = 1;
	pthread_cond_signal(&w->kp_cv);
	pthread_mutex_unlock(&w->kp_mu);
}

/*
 * The key the next checkpoint certifies, durable as signer.next: the
 * prepared one, else one made now. NULL (the writer has failed) if it
 * cannot be written, or if signer.next still holds a certified key that
 * cannot be handed over: writing over it would lose the current key.
 */
static EVP_PKEY *
kp_take(struct audit_writer *w)
{
	EVP_PKEY	*k = NULL;

	if (w->kp_started) {
		pthread_mutex_lock(&w->kp_mu);
		while (w->kp_busy)
			pthread_cond_wait(&w->kp_cv, &w->kp_mu);
		k = w->kp_ready;
		w->kp_ready = NULL;
		if (w->kp_handover_failed)
			w->handover_due = 1;
		w->kp_handover_failed = 0;
		pthread_mutex_unlock(&w->kp_mu);
	}
	if (k != NULL)
		return k;
	if (w->handover_due) {
		if (kp_handover(w->dirfd) == -1) {
			w_fail(w, "handing " SIGNER_NEXT " over to "
			    SIGNER_KEY);
			return NULL;
		}
		w->handover_due = 0;
	}
	if ((k = kp_generate(w->dirfd)) == NULL)
		w_fail(w, "writing " SIGNER_NEXT);
	return k;
}

/*
 * Sign a checkpoint that certifies the next key (durable as signer.next
 * before the checkpoint naming it is) and make it durable; the key thread
 * then hands the directory's key file over to the new key.
 */
static int
w_checkpoint(struct audit_writer *w, int kind, uint64_t aux1, uint64_t aux2,
    const unsigned char *aux_head)
{
	struct auditfmt_checkpoint	 ck;
	struct buf			 body = { 0 };
	EVP_PKEY			*next = NULL;
	int				 rc = -1;

	if (w->failed)
		return -1;
	memset(&ck, 0, sizeof(ck));
	if ((next = kp_take(w)) == NULL)
		goto out;
	if (auditfmt_pub_raw(next, ck.next_pub) == -1) {
		log_warnx("audit: cannot read the next signing key");
		goto out;
	}
	ck.kind = kind;
	ck.segment_id = w->seg_id;
	ck.last_seq = w->next_seq - 1;
	ck.count = w->seg_records;
	ck.time_ms = now_ms(w);
	memcpy(ck.head, w->head, 32);
	ck.aux1 = aux1;
	ck.aux2 = aux2;
	if (aux_head != NULL)
		memcpy(ck.aux_head, aux_head, 32);
	memcpy(ck.instance, w->instance, sizeof(ck.instance));
	if (auditfmt_checkpoint_sign(&body, &ck, w->signer) == -1 ||
	    w_frame(w, &body) == -1) {
		log_warnx("audit: cannot sign a checkpoint");
		w_rollback(w);
		goto out;
	}
	if (w_sync(w) == -1)
		goto out;
	kp_request(w, 1);
	EVP_PKEY_free(w->signer);
	w->signer = next;
	next = NULL;
	memcpy(w->signer_pub, ck.next_pub, 32);
	w->last_ck_ms = now_ms(w);
	w->unsigned_records = 0;
	w->stats.checkpoints++;
	print_checkpoint(&ck);
	rc = 0;
 out:
	EVP_PKEY_free(next);
	buf_free(&body);
	return rc;
}

/* Create segment id and queue its header (the chain continues from
 * prev_head). The caller queues what follows and syncs. */
static int
w_segment_create(struct audit_writer *w, uint64_t id, uint64_t prev_id,
    const unsigned char prev_head[32], uint64_t first_seq)
{
	struct auditfmt_header	 h;
	struct auditfmt_segkey	*k = NULL;
	struct buf		 body = { 0 };
	unsigned char		 dkey[32];
	char			 name[64], e[128];
	int			 fd = -1;

	memset(&h, 0, sizeof(h));
	auditfmt_segment_name(name, sizeof(name), id);
	if ((fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC |
	    O_CLOEXEC, 0600)) == -1) {
		log_warn("audit: creating segment %s", name);
		return -1;
	}
	if (RAND_priv_bytes(dkey, sizeof(dkey)) != 1)
		goto fail;
	h.segment_id = id;
	h.first_seq = first_seq;
	h.created_ms = now_ms(w);
	h.prev_segment_id = prev_id;
	memcpy(h.prev_head, prev_head, 32);
	memcpy(h.signer_pub, w->signer_pub, 32);
	memcpy(h.instance, w->instance, sizeof(h.instance));
	if (auditfmt_header_seal_key(&h, dkey, w->readers, w->nreaders, e,
	    sizeof(e)) == -1) {
		log_warnx("audit: %s", e);
		goto fail;
	}
	if ((k = auditfmt_segkey_new(dkey)) == NULL) {
		log_warnx("audit: cannot set up the segment cipher");
		goto fail;
	}
	/* From here on the key lives only in the cipher context. */
	OPENSSL_cleanse(dkey, sizeof(dkey));
	w_forget_key(w);
	w->segkey = k;
	(void)w_sync_wait(w);	/* none runs here; never close under one */
	if (w->segfd != -1)
		close(w->segfd);
	w->segfd = fd;
	w->seg_id = id;
	w->seg_created_ms = h.created_ms;
	w->seg_frames = w->seg_records = w->seg_len = 0;
	w->d.frames = w->d.records = w->d.len = 0;
	w->zeroed_end = 0;
	w->finishing = w->no_prealloc = 0;
	memcpy(w->head, prev_head, 32);
	memcpy(w->d.head, prev_head, 32);
	w->next_seq = w->d.next_seq = first_seq;
	w->wr = w->d;
	buf_truncate(&w->pending, 0);
	if (auditfmt_header_encode(&body, &h) == -1 || w_frame(w, &body)) {
		buf_free(&body);
		return -1;
	}
	buf_free(&body);
	return 0;
 fail:
	OPENSSL_cleanse(dkey, sizeof(dkey));
	w_forget_key(w);
	close(fd);
	unlinkat(w->dirfd, name, 0);
	return -1;
}

static int
w_lifecycle(struct audit_writer *w, const char *event, const char *extra)
{
	struct buf	 j = { 0 };
	int		 rc;

	rc = buf_printf(&j, "{\"type\":\"lifecycle\",\"event\":\"%s\"%s%s}",
	    event, extra ? "," : "", extra ? extra : "");
	if (rc == 0)
		rc = w_record(w, j.data, j.len, NULL);
	buf_free(&j);
	return rc;
}

/*
 * Close the open segment with a close checkpoint and forget its key. The
 * preallocated zeros are cut off before the checkpoint is written, so a
 * closed segment ends at its close checkpoint even after a crash.
 */
static int
w_segment_close(struct audit_writer *w)
{
	int	 rc;

	w->finishing = 1;
	rc = w_checkpoint(w, AUDITFMT_CK_CLOSE, 0, 0, NULL);
	w->finishing = 0;
	if (rc == -1)
		return -1;
	w_forget_key(w);
	close(w->segfd);
	w->segfd = -1;
	return 0;
}

/*
 * Give back the preallocated zeros of segment id, which was not closed
 * and whose valid frames end at valid: cut the file after its last
 * non-zero byte (or at valid, if that is further). What a torn write left
 * stays, for verify to see. Best effort.
 */
static void
w_trim_zeros(struct audit_writer *w, uint64_t id, uint64_t valid)
{
	struct mapped	 m;
	size_t		 keep;
	char		 name[64];
	int		 fd;

	auditfmt_segment_name(name, sizeof(name), id);
	if (map_file(w->dirfd, name, &m) == -1)
		return;
	for (keep = m.len; keep > valid && m.p[keep - 1] == 0; keep--)
		;
	if (keep < m.len && (fd = openat(w->dirfd, name, O_WRONLY |
	    O_CLOEXEC)) != -1) {
		if (ftruncate(fd, (off_t)keep) == -1 || fsync(fd) == -1)
			log_warn("audit: cutting the unused end of %s", name);
		close(fd);
	}
	unmap_file(&m);
}

/*
 * Start segment prev_id + 1 after a segment that was not closed: its
 * valid frames end at prev_len with chain head prev_head. The recovery
 * checkpoint is frame 1 of the new segment.
 */
static int
w_recover_into_new(struct audit_writer *w, uint64_t prev_id,
    uint64_t prev_len, const unsigned char prev_head[32], uint64_t next_seq)
{
	struct buf	 extra = { 0 };
	unsigned char	 ph[32];
	int		 rc = -1;

	memcpy(ph, prev_head, 32);
	w_trim_zeros(w, prev_id, prev_len);
	w->failed = 0;
	if (w_segment_create(w, prev_id + 1, prev_id, ph, next_seq) == -1)
		goto fail;
	if (w_checkpoint(w, AUDITFMT_CK_RECOVERY, prev_id, prev_len, ph) == -1)
		goto fail;
	if (buf_printf(&extra, "\"segment\":%" PRIu64 ",\"valid_bytes\":%"
	    PRIu64, prev_id, prev_len) == -1 ||
	    w_lifecycle(w, "recovery", extra.data) == -1 || w_sync(w) == -1 ||
	    fsync(w->dirfd) == -1)
		goto fail;
	log_warnx("audit: recovered: segment %" PRIu64 " ends at byte %"
	    PRIu64 ", continuing in segment %" PRIu64, prev_id, prev_len,
	    w->seg_id);
	rc = 0;
 fail:
	if (rc == -1)
		w->failed = 1;
	buf_free(&extra);
	return rc;
}

/* After a write or fsync error: never retry it, start a new segment. */
static void
w_runtime_recover(struct audit_writer *w)
{
	uint64_t	 prev = w->seg_id, len = w->d.len, seq = w->d.next_seq;
	unsigned char	 head[32];
	char		 name[64];

	memcpy(head, w->d.head, 32);
	w_forget_key(w);
	if (w->segfd != -1)
		close(w->segfd);
	w->segfd = -1;
	if (w_recover_into_new(w, prev, len, head, seq) == 0)
		return;
	/* Leave the failed state as it was: the same predecessor next time. */
	auditfmt_segment_name(name, sizeof(name), prev + 1);
	if (w->segfd != -1)
		close(w->segfd);
	w->segfd = -1;
	unlinkat(w->dirfd, name, 0);
	w->seg_id = prev;
	w->d.len = len;
	w->d.next_seq = seq;
	memcpy(w->d.head, head, 32);
	w->wr = w->d;
	w->failed = 1;
	w->last_recovery_ms = mono_ms();
}

static void
w_check_space(struct audit_writer *w)
{
	struct statvfs	 sv;
	int		 low;

	if (fstatvfs(w->dirfd, &sv) == -1)
		return;
	w->free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
	low = w->free_bytes < w->min_free;
	if (low && !w->lowdisk)
		log_warnx("audit: free space in %s below min_free_bytes; "
		    "records refused", w->dir);
	else if (!low && w->lowdisk)
		log_info("audit: free space in %s recovered", w->dir);
	w->lowdisk = low;
	w->last_space_ms = mono_ms();
}

/* Read a segment header without keeping the file. */
static int
read_header(int dirfd, uint64_t id, struct auditfmt_header *h)
{
	struct auditfmt_scan	 sc;
	struct mapped		 m;
	char			 name[64];
	int			 ok;

	auditfmt_segment_name(name, sizeof(name), id);
	if (map_file(dirfd, name, &m) == -1)
		return -1;
	/* Only the first frame matters: bound the scan to it. */
	auditfmt_segment_scan(m.p, m.len < 65536 ? m.len : 65536, &sc);
	ok = sc.has_header;
	if (ok)
		*h = sc.header;
	unmap_file(&m);
	return ok ? 0 : -1;
}

/* Checkpoint frames of segment id, within limit bytes, appended to out. */
static int
collect_checkpoints(int dirfd, uint64_t id, uint64_t limit, struct buf *out)
{
	struct mapped		 m;
	const unsigned char	*body;
	size_t			 blen, flen, off = 0, end;
	char			 name[64];

	auditfmt_segment_name(name, sizeof(name), id);
	if (map_file(dirfd, name, &m) == -1)
		return -1;
	end = m.len < limit ? m.len : (size_t)limit;
	while (off < end && auditfmt_frame_decode(m.p + off, end - off, &body,
	    &blen, &flen) == 1) {
		if (body[0] == AUDITFMT_CHECKPOINT &&
		    buf_append(out, m.p + off, flen) == -1) {
			unmap_file(&m);
			return -1;
		}
		off += flen;
	}
	unmap_file(&m);
	return 0;
}

/* Highest segment id in the keychain (0 if none). */
static uint64_t
keychain_last(const unsigned char *p, size_t len)
{
	struct auditfmt_checkpoint	 ck;
	const unsigned char		*body;
	size_t				 blen, flen, off = 0;
	uint64_t			 last = 0;

	while (off < len && auditfmt_frame_decode(p + off, len - off, &body,
	    &blen, &flen) == 1) {
		if (auditfmt_checkpoint_decode(body, blen, &ck, NULL, 0) == 0)
			last = ck.segment_id;
		off += flen;
	}
	return last;
}

/*
 * Delete the oldest segments whose last record is older than
 * retention_days: keep their checkpoints in the keychain (so key hand-overs
 * stay verifiable), sign a retention checkpoint naming the first kept
 * segment's chain anchor, then unlink.
 */
static void
w_retention(struct audit_writer *w)
{
	struct auditfmt_header	 h;
	struct auditfmt_checkpoint rck;
	struct mapped		 km = { 0 }, nm;
	struct buf		 kc = { 0 }, extra = { 0 };
	uint64_t		*ids = NULL, cutoff, last = 0, kclast, limit;
	size_t			 n, i, ndel = 0;
	char			 name[64];
	int			 fd = -1;

	w->last_retention_ms = mono_ms();
	if (w->retention_ms == 0 || now_ms(w) < w->retention_ms ||
	    list_segments(w->dirfd, &ids, &n) == -1)
		goto out;
	cutoff = now_ms(w) - w->retention_ms;
	for (i = 0; i + 1 < n && ids[i] < w->seg_id; i++) {
		if (ids[i + 1] != ids[i] + 1 ||
		    read_header(w->dirfd, ids[i + 1], &h) == -1 ||
		    h.created_ms >= cutoff)
			break;
		ndel = i + 1;
	}
	if (ndel == 0)
		goto out;
	last = ids[ndel - 1];
	if (read_header(w->dirfd, last + 1, &h) == -1)
		goto out;
	if (map_file(w->dirfd, KEYCHAIN, &km) == -1 && errno != ENOENT)
		goto out;
	kclast = keychain_last(km.p, km.len);
	if (km.len > 0 && buf_append(&kc, km.p, km.len) == -1)
		goto out;
	for (i = 0; i < ndel; i++) {
		if (ids[i] <= kclast)
			continue;
		limit = UINT64_MAX;
		auditfmt_segment_name(name, sizeof(name), ids[i] + 1);
		if (map_file(w->dirfd, name, &nm) == 0) {
			if (auditfmt_segment_recovery(nm.p, nm.len, &rck) &&
			    rck.aux1 == ids[i])
				limit = rck.aux2;
			unmap_file(&nm);
		}
		if (collect_checkpoints(w->dirfd, ids[i], limit, &kc) == -1)
			goto out;
	}
	if ((fd = openat(w->dirfd, KEYCHAIN ".tmp", O_WRONLY | O_CREAT |
	    O_TRUNC | O_CLOEXEC, 0600)) == -1 ||
	    fio_write_all(fd, kc.data, kc.len) == -1 || fsync(fd) == -1 ||
	    close(fd) == -1 || (fd = -1, 0) ||
	    renameat(w->dirfd, KEYCHAIN ".tmp", w->dirfd, KEYCHAIN) == -1 ||
	    fsync(w->dirfd) == -1) {
		log_warn("audit: retention: writing the keychain");
		goto out;
	}
	if (buf_printf(&extra, "\"deleted_through_segment\":%" PRIu64
	    ",\"first_kept_segment\":%" PRIu64 ",\"retention_days\":%" PRIu64,
	    last, last + 1, w->retention_ms / 86400000) == -1 ||
	    w_lifecycle(w, "retention", extra.data) == -1 ||
	    w_checkpoint(w, AUDITFMT_CK_RETENTION, last, last + 1,
	    h.prev_head) == -1)
		goto out;
	for (i = 0; i < ndel; i++) {
		auditfmt_segment_name(name, sizeof(name), ids[i]);
		if (unlinkat(w->dirfd, name, 0) == -1)
			log_warn("audit: retention: unlink %s", name);
	}
	fsync(w->dirfd);
	log_info("audit: retention deleted segments through %" PRIu64, last);
 out:
	if (fd != -1)
		close(fd);
	unmap_file(&km);
	buf_free(&kc);
	buf_free(&extra);
	free(ids);
}

static int
w_rotate(struct audit_writer *w)
{
	struct buf	 extra = { 0 };
	uint64_t	 prev = w->seg_id;
	unsigned char	 head[32];
	int		 rc = -1;

	if (w_segment_close(w) == -1)
		return -1;
	memcpy(head, w->head, 32);
	if (w_segment_create(w, prev + 1, prev, head, w->next_seq) == -1) {
		/* No open segment: recover (new segment) on the next tick. */
		w->seg_id = prev;
		w->failed = 1;
		w->last_recovery_ms = mono_ms();
		goto out;
	}
	if (buf_printf(&extra, "\"previous_segment\":%" PRIu64, prev) == -1 ||
	    w_lifecycle(w, "rotation", extra.data) == -1 || w_sync(w) == -1 ||
	    fsync(w->dirfd) == -1)
		goto out;
	rc = 0;
 out:
	buf_free(&extra);
	return rc;
}

/* ---- opening ---- */

static int
mkdir_p(const char *path)
{
	char	*p, *s;
	int	 rc = 0;

	if ((s = strdup(path)) == NULL)
		return -1;
	for (p = s + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(s, 0700) == -1 && errno != EEXIST)
			rc = -1;
		*p = '/';
	}
	if (mkdir(s, 0700) == -1 && errno != EEXIST)
		rc = -1;
	free(s);
	return rc;
}

/*
 * Settle which signing key is current: the key the log last certified
 * (certified, or NULL for an empty log). Moves the configured key into the
 * directory at first start and destroys the original.
 */
static int
w_load_signer(struct audit_writer *w, const char *configured,
    const unsigned char *certified, char *err, size_t errlen)
{
	EVP_PKEY	*k;
	unsigned char	 pub[32];
	struct stat	 st;

	if ((k = read_priv_at(w->dirfd, SIGNER_NEXT)) != NULL) {
		if (certified != NULL && auditfmt_pub_raw(k, pub) == 0 &&
		    memcmp(pub, certified, 32) == 0) {
			if (kp_handover(w->dirfd) == -1) {
				EVP_PKEY_free(k);
				seterr(err, errlen, "%s: completing the key "
				    "hand-over: %s", w->dir, strerror(errno));
				return -1;
			}
		} else {
			/* Never certified: it signed nothing. */
			(void)fio_wipe_at(w->dirfd, SIGNER_NEXT, 1);
			unlinkat(w->dirfd, SIGNER_NEXT, 0);
			fsync(w->dirfd);
		}
		EVP_PKEY_free(k);
	}
	if ((k = read_priv_at(w->dirfd, SIGNER_KEY)) == NULL) {
		if (errno != ENOENT && faccessat(w->dirfd, SIGNER_KEY, F_OK,
		    0) == 0) {
			seterr(err, errlen, "%s/%s: not a readable private key",
			    w->dir, SIGNER_KEY);
			return -1;
		}
		if (configured == NULL || (k = read_priv_fd(open(configured,
		    O_RDONLY | O_CLOEXEC))) == NULL) {
			seterr(err, errlen, "%s: no signing key in the audit "
			    "directory and keys.audit_signer (%s) cannot be "
			    "read", w->dir, configured ? configured : "unset");
			return -1;
		}
		if (stat(configured, &st) == 0 && (st.st_mode & 077) != 0) {
			EVP_PKEY_free(k);
			seterr(err, errlen, "%s: readable by group or others; "
			    "chmod 600 it", configured);
			return -1;
		}
		if (EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519) {
			EVP_PKEY_free(k);
			seterr(err, errlen, "%s: not an Ed25519 key",
			    configured);
			return -1;
		}
		if (write_key_at(w->dirfd, SIGNER_KEY, k) == -1) {
			EVP_PKEY_free(k);
			seterr(err, errlen, "%s/%s: %s", w->dir, SIGNER_KEY,
			    strerror(errno));
			return -1;
		}
		log_info("audit: signing key moved into %s", w->dir);
	}
	/* The original must not survive the move (nor come back). */
	if (configured != NULL && access(configured, F_OK) == 0) {
		if (destroy_file(configured) == -1)
			log_warn("audit: destroying %s", configured);
		else
			log_info("audit: destroyed %s (the key now lives in "
			    "the audit directory)", configured);
	}
	if (EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519 ||
	    auditfmt_pub_raw(k, w->signer_pub) == -1) {
		EVP_PKEY_free(k);
		seterr(err, errlen, "%s/%s: not an Ed25519 key", w->dir,
		    SIGNER_KEY);
		return -1;
	}
	if (certified != NULL && memcmp(w->signer_pub, certified, 32) != 0) {
		EVP_PKEY_free(k);
		seterr(err, errlen, "%s/%s does not match the key the log's "
		    "last checkpoint certified", w->dir, SIGNER_KEY);
		return -1;
	}
	w->signer = k;
	return 0;
}

struct audit_writer *
audit_writer_open(const struct conf *c, char *err, size_t errlen)
{
	struct audit_writer	*w;
	struct auditfmt_scan	 sc;
	struct mapped		 m = { 0 };
	uint64_t		*ids = NULL;
	size_t			 n = 0, i;
	char			 name[64];
	unsigned char		 zero[32] = { 0 };
	struct buf		 extra = { 0 };

	if (!c->has_audit || c->audit_directory == NULL) {
		seterr(err, errlen, "audit: no audit directory configured");
		return NULL;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	w->dirfd = w->lockfd = w->segfd = w->st_efd = -1;
	if ((w->dir = strdup(c->audit_directory)) == NULL)
		goto nomem;
	if (c->audit_instance != NULL && c->audit_instance[0] != '\0')
		snprintf(w->instance, sizeof(w->instance), "%s",
		    c->audit_instance);
	else if (gethostname(w->instance, sizeof(w->instance) - 1) == -1)
		snprintf(w->instance, sizeof(w->instance), "unknown");
	if (buf_append_str(&w->instance_json, "\",\"instance\":") == -1 ||
	    json_str(&w->instance_json, w->instance) == -1)
		goto nomem;
	w->time_sec = UINT64_MAX;
	w->seg_max_bytes = c->audit_segment_bytes ? c->audit_segment_bytes :
	    67108864;
	w->seg_max_ms = (uint64_t)(c->audit_segment_seconds > 0 ?
	    c->audit_segment_seconds : 86400) * 1000;
	w->retention_ms = c->audit_retention_days > 0 ?
	    (uint64_t)c->audit_retention_days * 86400000 : 0;
	w->min_free = c->audit_min_free_bytes;
	w->ck_records = c->audit_checkpoint_records > 0 ?
	    (uint64_t)c->audit_checkpoint_records : 1000;
	w->ck_ms = (uint64_t)(c->audit_checkpoint_seconds > 0 ?
	    c->audit_checkpoint_seconds : 10) * 1000;

	if (c->keys_naudit_readers == 0 ||
	    c->keys_naudit_readers > AUDITFMT_MAX_READERS) {
		seterr(err, errlen, "keys.audit_reader: between 1 and %d "
		    "reader public keys needed", AUDITFMT_MAX_READERS);
		goto fail;
	}
	for (i = 0; i < c->keys_naudit_readers; i++) {
		if ((w->readers[i] = read_pub_file(c->keys_audit_readers[i])) ==
		    NULL || EVP_PKEY_get_base_id(w->readers[i]) !=
		    EVP_PKEY_X25519) {
			seterr(err, errlen, "%s: not an X25519 public key (PEM)",
			    c->keys_audit_readers[i]);
			goto fail;
		}
		w->nreaders++;
	}

	if (mkdir_p(w->dir) == -1 || (w->dirfd = open(w->dir, O_RDONLY |
	    O_DIRECTORY | O_CLOEXEC)) == -1) {
		seterr(err, errlen, "%s: %s", w->dir, strerror(errno));
		goto fail;
	}
	if ((w->lockfd = openat(w->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC,
	    0600)) == -1) {
		seterr(err, errlen, "%s/LOCK: %s", w->dir, strerror(errno));
		goto fail;
	}
	if (flock(w->lockfd, LOCK_EX | LOCK_NB) == -1) {
		seterr(err, errlen, "%s is in use by another subgate (%s/LOCK "
		    "is locked)", w->dir, w->dir);
		goto fail;
	}

	/* A last segment without a complete header was never used. */
	for (;;) {
		free(ids);
		if (list_segments(w->dirfd, &ids, &n) == -1) {
			seterr(err, errlen, "%s: %s", w->dir, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		auditfmt_segment_name(name, sizeof(name), ids[n - 1]);
		if (map_file(w->dirfd, name, &m) == -1) {
			seterr(err, errlen, "%s/%s: %s", w->dir, name,
			    strerror(errno));
			goto fail;
		}
		auditfmt_segment_scan(m.p, m.len, &sc);
		unmap_file(&m);
		if (sc.has_header)
			break;
		if (sc.tail == AUDITFMT_TAIL_CORRUPT) {
			seterr(err, errlen, "%s/%s: damaged segment header; "
			    "run subgatectl audit verify", w->dir, name);
			goto fail;
		}
		if (unlinkat(w->dirfd, name, 0) == -1 || fsync(w->dirfd) == -1) {
			seterr(err, errlen, "%s/%s: %s", w->dir, name,
			    strerror(errno));
			goto fail;
		}
		log_warnx("audit: removed %s (created, never written)", name);
	}
	if (n > 0 && sc.tail == AUDITFMT_TAIL_CORRUPT) {
		seterr(err, errlen, "%s/%s: damaged frame at byte %zu (not a "
		    "torn tail); run subgatectl audit verify", w->dir, name,
		    sc.valid_len);
		goto fail;
	}
	if (w_load_signer(w, c->keys_audit_signer, n > 0 ? sc.signer_pub :
	    NULL, err, errlen) == -1)
		goto fail;
	kp_start(w);
	kp_request(w, 0);
	st_start(w);
	w->last_ck_ms = now_ms(w);

	if (n == 0) {
		if (w_segment_create(w, 1, 0, zero, 1) == -1)
			goto ioerr;
	} else if (sc.closed) {
		if (w_segment_create(w, ids[n - 1] + 1, ids[n - 1], sc.head,
		    sc.last_seq + 1) == -1)
			goto ioerr;
	} else {
		if (w_recover_into_new(w, ids[n - 1], sc.valid_len, sc.head,
		    sc.last_seq + 1) == -1)
			goto ioerr;
	}
	if (buf_printf(&extra, "\"pid\":%ld", (long)getpid()) == -1 ||
	    w_lifecycle(w, "start", extra.data) == -1 || w_sync(w) == -1 ||
	    fsync(w->dirfd) == -1)
		goto ioerr;
	w->failed = 0;
	w_check_space(w);
	free(ids);
	buf_free(&extra);
	return w;
 ioerr:
	seterr(err, errlen, "%s: cannot start the log: %s", w->dir,
	    strerror(errno));
	goto fail;
 nomem:
	seterr(err, errlen, "out of memory");
 fail:
	free(ids);
	buf_free(&extra);
	audit_writer_close(w, 0);
	return NULL;
}

int
audit_writer_available(struct audit_writer *w)
{
	return !w->failed && !w->lowdisk && w->segfd != -1;
}

int
audit_writer_append(struct audit_writer *w, const char *json, size_t len,
    uint64_t *seq)
{
	if (!audit_writer_available(w))
		return -1;
	return w_record(w, json, len, seq);
}

int
audit_writer_commit(struct audit_writer *w)
{
	if (mono_ms() - w->last_space_ms >= 1000)
		w_check_space(w);
	return w_sync(w);
}

int
audit_writer_flush(struct audit_writer *w)
{
	size_t		 n;
	uint64_t	 fresh = w->fresh;

	w->fresh = 0;
	/* A lone record (light load): no other to overlap, so sync here
	 * and spare it two thread wake-ups. */
	if (!w->st_started || (!w->s_inflight && fresh == 1))
		return audit_writer_commit(w);
	if (w->s_inflight && st_finished(w) && w_sync_wait(w) == -1) {
		w_fail(w, "fdatasync");
		return -1;
	}
	if (w->failed || w->segfd == -1) {
		if (w->pending.len > 0 || w->wr.len > w->d.len)
			w_rollback(w);
		return -1;
	}
	if ((n = w->pending.len) > 0) {
		/* Beyond the window a crash may tear: sync it all here. */
		if (w->wr.len - w->d.len + n > AUDITFMT_MAX_BATCH)
			return audit_writer_commit(w);
		if (mono_ms() - w->last_space_ms >= 1000)
			w_check_space(w);
		if (w_write(w, 0, n) == -1)
			return -1;
		buf_truncate(&w->pending, 0);
		w_point_queued(w, &w->wr);
	}
	if (!w->s_inflight && w->wr.len > w->d.len)
		st_begin(w);
	return 0;
}

int
audit_writer_fd(struct audit_writer *w)
{
	return w->st_efd;
}

void
audit_writer_stats(struct audit_writer *w, struct audit_stats *st)
{
	*st = w->stats;
}

uint64_t
audit_writer_epoch(struct audit_writer *w)
{
	return w->epoch;
}

int
audit_writer_durable(struct audit_writer *w, uint64_t epoch, uint64_t seq)
{
	if (epoch == w->epoch)
		return seq < w->d.next_seq;
	/* Durable before the last rollback, or dropped by it. Across two
	 * rollbacks: lost (only ever a durable record answered as not). */
	if (epoch + 1 == w->epoch && seq < w->epoch_floor)
		return 1;
	return -1;
}

int
audit_writer_tick(struct audit_writer *w)
{
	uint64_t	 now, mono = mono_ms(), wait = 1000, t;

	if (mono - w->last_space_ms >= 1000)
		w_check_space(w);
	if (w->failed) {
		if (mono - w->last_recovery_ms >= 1000)
			w_runtime_recover(w);
		return 1000;
	}
	now = now_ms(w);
	if (w->unsigned_records >= w->ck_records ||
	    (w->unsigned_records > 0 && now - w->last_ck_ms >= w->ck_ms))
		w_checkpoint(w, AUDITFMT_CK_PERIODIC, 0, 0, NULL);
	if (!w->failed && (w->seg_len >= w->seg_max_bytes ||
	    now - w->seg_created_ms >= w->seg_max_ms))
		w_rotate(w);
	if (!w->failed && w->retention_ms > 0 &&
	    mono - w->last_retention_ms >= 60000)
		w_retention(w);
	if (w->failed)
		return 1000;
	now = now_ms(w);
	if (w->unsigned_records > 0) {
		t = w->last_ck_ms + w->ck_ms;
		t = t > now ? t - now : 0;
		if (t < wait)
			wait = t;
	}
	t = w->seg_created_ms + w->seg_max_ms;
	t = t > now ? t - now : 0;
	if (t < wait)
		wait = t;
	return (int)wait;
}

void
audit_writer_set_time(struct audit_writer *w, uint64_t now)
{
	w->fake_now = now;
	/* Retention runs at most once a minute of real time; a test moving
	 * the clock wants it now. */
	w->last_retention_ms = 0;
}

uint64_t
audit_writer_segment(struct audit_writer *w)
{
	return w->seg_id;
}

void
audit_writer_close(struct audit_writer *w, int clean)
{
	size_t	 i;

	if (w == NULL)
		return;
	w->stopping = 1;
	if (clean && !w->failed && w->segfd != -1 && w->signer != NULL) {
		w_rollback(w);
		if (w_lifecycle(w, "stop", NULL) == 0)
			w_segment_close(w);
	}
	st_stop(w);
	kp_stop(w);
	buf_free(&w->pending);
	buf_free(&w->rec);
	buf_free(&w->instance_json);
	w_forget_key(w);
	EVP_PKEY_free(w->signer);
	for (i = 0; i < w->nreaders; i++)
		EVP_PKEY_free(w->readers[i]);
	if (w->segfd != -1)
		close(w->segfd);
	if (w->lockfd != -1)
		close(w->lockfd);
	if (w->dirfd != -1)
		close(w->dirfd);
	free(w->dir);
	free(w);
}

/* ---- protocol ---- */

int
audit_msg_encode(struct buf *out, uint64_t cookie, const char *json_members,
    size_t len)
{
	unsigned char	 h[AUDIT_MSG_HDR];

	if (len == 0 || len > AUDIT_MAX_RECORD ||
	    buf_reserve(out, sizeof(h) + len) == -1)
		return -1;
	auditfmt_put_u32(h, (uint32_t)len);
	auditfmt_put_u64(h + 4, cookie);
	buf_append(out, h, sizeof(h));
	buf_append(out, json_members, len);
	return 0;
}

int
audit_msg_decode(const char *in, size_t len, size_t *consumed,
    uint64_t *cookie, const char **json, size_t *json_len)
{
	const unsigned char	*p = (const unsigned char *)in;
	uint32_t		 n;

	if (len < AUDIT_MSG_HDR)
		return 0;
	n = auditfmt_get_u32(p);
	if (n == 0 || n > AUDIT_MAX_RECORD)
		return -1;
	if (len - AUDIT_MSG_HDR < n)
		return 0;
	*cookie = auditfmt_get_u64(p + 4);
	*json = in + AUDIT_MSG_HDR;
	*json_len = n;
	*consumed = AUDIT_MSG_HDR + (size_t)n;
	return 1;
}

int
audit_ack_encode(struct buf *out, uint64_t cookie, uint64_t seq, int status)
{
	unsigned char	 a[AUDIT_ACK_LEN];

	a[0] = 'A';
	a[1] = status == AUDIT_ACK_DURABLE ? 0 : 1;
	a[2] = a[3] = 0;
	auditfmt_put_u64(a + 4, cookie);
	auditfmt_put_u64(a + 12, seq);
	return buf_append(out, a, sizeof(a));
}

int
audit_ack_decode(const char *in, size_t len, size_t *consumed,
    uint64_t *cookie, uint64_t *seq, int *status)
{
	const unsigned char	*p = (const unsigned char *)in;

	if (len > 0 && p[0] != 'A')
		return -1;
	if (len >= 2 && p[1] > 1)
		return -1;
	if (len >= 4 && (p[2] != 0 || p[3] != 0))
		return -1;
	if (len < AUDIT_ACK_LEN)
		return 0;
	*status = p[1];
	*cookie = auditfmt_get_u64(p + 4);
	*seq = auditfmt_get_u64(p + 12);
	*consumed = AUDIT_ACK_LEN;
	return 1;
}

/* ---- the audit process ---- */

enum { SH_STARTING = 0, SH_READY, SH_UNAVAILABLE, SH_EXITED };

struct audit_shared {
	int			 state;
	struct audit_stats	 stats;		/* written by the child */
};

struct audit_proc {
	pid_t			 pid;
	int			 nch;
	int			*fds;
	struct buf		*rx;
	struct audit_shared	*sh;
	uint64_t		 cookie;
	int			 reaped, status;
};

struct chan {
	int		 fd;
	struct buf	 in, out;
};

/* Records appended and not yet acknowledged, oldest first. */
struct pend {
	int		 ch;
	uint64_t	 cookie, seq, epoch;
};

struct pends {
	struct pend	*v;
	size_t		 head, tail, cap;
};

static volatile sig_atomic_t	 got_term;

static void
on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

#define READ_CHUNK	65536
#define MAX_OUT		(16u << 20)

static void
chan_close(struct chan *ch)
{
	if (ch->fd != -1)
		close(ch->fd);
	ch->fd = -1;
	buf_free(&ch->in);
	buf_free(&ch->out);
}

static void
chan_flush(struct chan *ch)
{
	ssize_t	 r;
	size_t	 off = 0;

	while (ch->fd != -1 && off < ch->out.len) {
		r = send(ch->fd, ch->out.data + off, ch->out.len - off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				chan_close(ch);
			break;
		}
		off += (size_t)r;
	}
	if (ch->fd == -1)
		return;
	memmove(ch->out.data, ch->out.data + off, ch->out.len - off);
	buf_truncate(&ch->out, ch->out.len - off);
	if (ch->out.len > MAX_OUT) {
		log_warnx("audit: a channel does not read its acks; closing it");
		chan_close(ch);
	}
}

static void
set_state(struct audit_shared *sh, int st)
{
	__atomic_store_n(&sh->state, st, __ATOMIC_RELEASE);
}

static void
publish_stats(struct audit_writer *w, struct audit_shared *sh)
{
	struct audit_stats	 st;

	audit_writer_stats(w, &st);
	__atomic_store_n(&sh->stats.records, st.records, __ATOMIC_RELAXED);
	__atomic_store_n(&sh->stats.syncs, st.syncs, __ATOMIC_RELAXED);
	__atomic_store_n(&sh->stats.checkpoints, st.checkpoints,
	    __ATOMIC_RELAXED);
}

static int
pends_push(struct pends *q, int ch, uint64_t cookie, uint64_t seq,
    uint64_t epoch)
{
	struct pend	*nv;
	size_t		 cap;

	if (q->tail == q->cap) {
		if (q->head > 0) {
			memmove(q->v, q->v + q->head,
			    (q->tail - q->head) * sizeof(*q->v));
			q->tail -= q->head;
			q->head = 0;
		} else {
			cap = q->cap ? q->cap * 2 : 256;
			if ((nv = realloc(q->v, cap * sizeof(*nv))) == NULL)
				return -1;
			q->v = nv;
			q->cap = cap;
		}
	}
	q->v[q->tail].ch = ch;
	q->v[q->tail].cookie = cookie;
	q->v[q->tail].seq = seq;
	q->v[q->tail].epoch = epoch;
	q->tail++;
	return 0;
}

/* Acknowledge, oldest first, every record that is durable or lost. */
static void
pends_ack(struct audit_writer *w, struct pends *q, struct chan *chs)
{
	struct pend	*p;
	int		 st;

	for (; q->head < q->tail; q->head++) {
		p = &q->v[q->head];
		if ((st = audit_writer_durable(w, p->epoch, p->seq)) == 0)
			break;
		if (chs[p->ch].fd != -1)
			audit_ack_encode(&chs[p->ch].out, p->cookie,
			    st == 1 ? p->seq : 0, st == 1 ?
			    AUDIT_ACK_DURABLE : AUDIT_ACK_UNAVAILABLE);
	}
	if (q->head == q->tail)
		q->head = q->tail = 0;
}

/* Send the acks that are due. */
static void
answer(struct audit_writer *w, struct pends *q, struct chan *chs, int nch)
{
	int	 i;

	pends_ack(w, q, chs);
	for (i = 0; i < nch; i++)
		if (chs[i].fd != -1 && chs[i].out.len > 0)
			chan_flush(&chs[i]);
}

/*
 * Group commit, pipelined: read everything readable, seal and write it,
 * and while the sync thread makes one batch durable, read, seal and write
 * the next; each batch is acknowledged when its sync returns.
 */
static void
serve(struct audit_writer *w, struct chan *chs, int nch,
    struct audit_shared *sh, const sigset_t *waitmask)
{
	struct pollfd	*pfd;
	struct pends	 q = { 0 };
	size_t		 consumed, off, jlen, k;
	struct timespec	 ts;
	const char	*json;
	uint64_t	 cookie, seq;
	ssize_t		 r;
	int		 i, open, timeout, rc, avail, efd, npfd;

	if ((pfd = calloc((size_t)nch + 1, sizeof(*pfd))) == NULL)
		return;
	for (;;) {
		timeout = audit_writer_tick(w);
		(void)audit_writer_flush(w);
		answer(w, &q, chs, nch);
		set_state(sh, audit_writer_available(w) ? SH_READY :
		    SH_UNAVAILABLE);
		publish_stats(w, sh);
		open = 0;
		for (i = 0; i < nch; i++) {
			if (chs[i].fd == -1) {
				buf_free(&chs[i].in);
				buf_free(&chs[i].out);
			}
			pfd[i].fd = chs[i].fd;
			pfd[i].events = POLLIN | (chs[i].out.len ? POLLOUT : 0);
			pfd[i].revents = 0;
			open += chs[i].fd != -1;
		}
		if (open == 0 || got_term)
			break;
		npfd = nch;
		if ((efd = audit_writer_fd(w)) != -1) {
			pfd[nch].fd = efd;
			pfd[nch].events = POLLIN;
			pfd[nch].revents = 0;
			npfd++;
		}
		ts.tv_sec = timeout / 1000;
		ts.tv_nsec = (long)(timeout % 1000) * 1000000;
		if (ppoll(pfd, (nfds_t)npfd, &ts, waitmask) == -1 &&
		    errno != EINTR)
			break;
		if (got_term)
			break;
		/* A sync done: the next begins before this round is read. */
		if (npfd > nch && (pfd[nch].revents & POLLIN)) {
			(void)audit_writer_flush(w);
			answer(w, &q, chs, nch);
		}
		avail = audit_writer_available(w);
		/* One clock read for everything read this round. */
		w->batch_ms = now_ms(w);
		for (i = 0; i < nch; i++) {
			if (chs[i].fd == -1 || !(pfd[i].revents &
			    (POLLIN | POLLHUP | POLLERR)))
				continue;
			/* Bounded per round so one channel cannot starve. */
			for (k = 0; k < 16; k++) {
				if (buf_reserve(&chs[i].in, READ_CHUNK) == -1)
					break;
				r = recv(chs[i].fd, chs[i].in.data +
				    chs[i].in.len, READ_CHUNK, MSG_DONTWAIT);
				if (r == -1 && errno == EINTR)
					continue;
				if (r <= 0) {
					if (r == 0 || (errno != EAGAIN &&
					    errno != EWOULDBLOCK))
						chs[i].fd = (close(chs[i].fd),
						    -1);
					break;
				}
				chs[i].in.len += (size_t)r;
				/* Short: the socket was drained (the next
				 * recv would only say EAGAIN). */
				if (r < READ_CHUNK)
					break;
			}
			off = 0;
			while ((rc = audit_msg_decode(chs[i].in.data + off,
			    chs[i].in.len - off, &consumed, &cookie, &json,
			    &jlen)) == 1) {
				off += consumed;
				if (avail && audit_writer_append(w, json, jlen,
				    &seq) == 0) {
					if (pends_push(&q, i, cookie, seq,
					    audit_writer_epoch(w)) == 0)
						continue;
					goto out;
				}
				if (avail)
					log_warnx("audit: refused a malformed "
					    "record on channel %d", i);
				audit_ack_encode(&chs[i].out, cookie, 0,
				    AUDIT_ACK_UNAVAILABLE);
			}
			if (rc == -1) {
				log_warnx("audit: garbage on channel %d; "
				    "closing it", i);
				if (chs[i].fd != -1)
					close(chs[i].fd);
				chs[i].fd = -1;
				buf_truncate(&chs[i].in, 0);
				continue;
			}
			memmove(chs[i].in.data, chs[i].in.data + off,
			    chs[i].in.len - off);
			buf_truncate(&chs[i].in, chs[i].in.len - off);
		}
		w->batch_ms = 0;
	}
	/* Stopping: what was written is made durable and answered. */
	if (q.head < q.tail) {
		(void)audit_writer_commit(w);
		answer(w, &q, chs, nch);
	}
 out:
	w->batch_ms = 0;
	free(q.v);
	free(pfd);
}

static void
child_main(const struct conf *c, int *fds, int nch, int report,
    struct audit_shared *sh)
{
	struct audit_writer	*w;
	struct chan		*chs;
	struct rlimit		 rl = { 0, 0 };
	struct sigaction	 sa;
	sigset_t		 term, old;
	char			 err[512];
	int			 i;

	prctl(PR_SET_NAME, "subgate-audit", 0, 0, 0);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	setrlimit(RLIMIT_CORE, &rl);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	sigdelset(&old, SIGTERM);

	if ((w = audit_writer_open(c, err, sizeof(err))) == NULL) {
		(void)fio_write_all(report, err, strlen(err));
		close(report);
		set_state(sh, SH_EXITED);
		_exit(1);
	}
	if ((chs = calloc((size_t)nch, sizeof(*chs))) == NULL) {
		(void)fio_write_all(report, "out of memory", 13);
		_exit(1);
	}
	for (i = 0; i < nch; i++)
		chs[i].fd = fds[i];
	/* Ready before the parent hears so: audit_proc_start's caller may
	 * ask audit_ready at once. */
	set_state(sh, audit_writer_available(w) ? SH_READY : SH_UNAVAILABLE);
	(void)fio_write_all(report, "OK", 2);
	close(report);
	serve(w, chs, nch, sh, &old);
	for (i = 0; i < nch; i++)
		chan_close(&chs[i]);
	free(chs);
	audit_writer_close(w, 1);
	set_state(sh, SH_EXITED);
	_exit(0);
}

struct audit_proc *
audit_proc_start(const struct conf *c, int nchannels, char *err,
    size_t errlen)
{
	struct audit_proc	*p;
	int			*child = NULL, sv[2], rep[2] = { -1, -1 }, i;
	char			 msg[512];
	ssize_t			 r;
	size_t			 got = 0;

	if (nchannels < 1 || nchannels > 4096) {
		seterr(err, errlen, "audit: bad channel count %d", nchannels);
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->fds = calloc((size_t)nchannels, sizeof(int))) == NULL ||
	    (p->rx = calloc((size_t)nchannels, sizeof(struct buf))) == NULL ||
	    (child = calloc((size_t)nchannels, sizeof(int))) == NULL) {
		seterr(err, errlen, "out of memory");
		goto fail;
	}
	p->pid = -1;
	p->nch = nchannels;
	for (i = 0; i < nchannels; i++)
		p->fds[i] = child[i] = -1;
	p->sh = mmap(NULL, sizeof(*p->sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p->sh == MAP_FAILED) {
		p->sh = NULL;
		seterr(err, errlen, "audit: mmap: %s", strerror(errno));
		goto fail;
	}
	for (i = 0; i < nchannels; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
			seterr(err, errlen, "audit: socketpair: %s",
			    strerror(errno));
			goto fail;
		}
		p->fds[i] = sv[0];
		child[i] = sv[1];
		if (fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK)
		    == -1 || fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) |
		    O_NONBLOCK) == -1) {
			seterr(err, errlen, "audit: fcntl: %s", strerror(errno));
			goto fail;
		}
	}
	if (pipe2(rep, O_CLOEXEC) == -1) {
		seterr(err, errlen, "audit: pipe: %s", strerror(errno));
		goto fail;
	}
	fflush(NULL);
	if ((p->pid = fork()) == -1) {
		seterr(err, errlen, "audit: fork: %s", strerror(errno));
		goto fail;
	}
	if (p->pid == 0) {
		close(rep[0]);
		for (i = 0; i < nchannels; i++)
			close(p->fds[i]);
		child_main(c, child, nchannels, rep[1], p->sh);
		_exit(1);
	}
	close(rep[1]);
	rep[1] = -1;
	for (i = 0; i < nchannels; i++) {
		close(child[i]);
		child[i] = -1;
	}
	while (got < sizeof(msg) - 1) {
		r = read(rep[0], msg + got, sizeof(msg) - 1 - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	msg[got] = '\0';
	close(rep[0]);
	rep[0] = -1;
	if (strcmp(msg, "OK") != 0) {
		seterr(err, errlen, "%s", got ? msg : "audit process died "
		    "while starting");
		goto fail;
	}
	free(child);
	return p;
 fail:
	if (rep[0] != -1)
		close(rep[0]);
	if (rep[1] != -1)
		close(rep[1]);
	if (child != NULL)
		for (i = 0; i < nchannels; i++)
			if (child[i] != -1)
				close(child[i]);
	free(child);
	audit_proc_stop(p);
	return NULL;
}

int
audit_proc_fd(struct audit_proc *p, int i)
{
	if (p == NULL || i < 0 || i >= p->nch)
		return -1;
	return p->fds[i];
}

pid_t
audit_proc_pid(struct audit_proc *p)
{
	return p->pid;
}

static int
proc_reaped(struct audit_proc *p)
{
	int	 st;

	if (!p->reaped && p->pid > 0 && waitpid(p->pid, &st, WNOHANG) ==
	    p->pid) {
		p->reaped = 1;
		p->status = st;
	}
	return p->reaped;
}

int
audit_ready(struct audit_proc *p)
{
	if (p == NULL || p->sh == NULL || proc_reaped(p))
		return 0;
	return __atomic_load_n(&p->sh->state, __ATOMIC_ACQUIRE) == SH_READY;
}

void
audit_proc_stats(struct audit_proc *p, struct audit_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (p == NULL || p->sh == NULL)
		return;
	st->records = __atomic_load_n(&p->sh->stats.records,
	    __ATOMIC_RELAXED);
	st->syncs = __atomic_load_n(&p->sh->stats.syncs, __ATOMIC_RELAXED);
	st->checkpoints = __atomic_load_n(&p->sh->stats.checkpoints,
	    __ATOMIC_RELAXED);
}

int
audit_submit_sync(struct audit_proc *p, int channel, const char *json,
    size_t len, int timeout_ms, uint64_t *seq)
{
	struct buf	 msg = { 0 }, *rx;
	struct pollfd	 pfd;
	uint64_t	 deadline, cookie, c, s, now;
	size_t		 off = 0, consumed;
	ssize_t		 r;
	int		 fd, st, rc = -1, d;

	if ((fd = audit_proc_fd(p, channel)) == -1)
		return -1;
	rx = &p->rx[channel];
	cookie = ++p->cookie;
	if (audit_msg_encode(&msg, cookie, json, len) == -1)
		return -1;
	deadline = mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	pfd.fd = fd;
	for (;;) {
		now = mono_ms();
		if (now >= deadline)
			goto out;
		pfd.events = off < msg.len ? POLLOUT : POLLIN;
		if (poll(&pfd, 1, (int)(deadline - now)) == -1) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		if (off < msg.len) {
			if (!(pfd.revents & (POLLOUT | POLLERR | POLLHUP)))
				continue;
			r = send(fd, msg.data + off, msg.len - off,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
			if (r == -1 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0)
				goto out;
			off += (size_t)r;
			continue;
		}
		if (!(pfd.revents & (POLLIN | POLLERR | POLLHUP)))
			continue;
		if (buf_reserve(rx, 4096) == -1)
			goto out;
		r = recv(fd, rx->data + rx->len, 4096, MSG_DONTWAIT);
		if (r == -1 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0)
			goto out;
		rx->len += (size_t)r;
		while ((d = audit_ack_decode(rx->data, rx->len, &consumed, &c,
		    &s, &st)) == 1) {
			memmove(rx->data, rx->data + consumed,
			    rx->len - consumed);
			buf_truncate(rx, rx->len - consumed);
			if (c != cookie)
				continue;
			if (st == AUDIT_ACK_DURABLE) {
				if (seq != NULL)
					*seq = s;
				rc = 0;
			}
			goto out;
		}
		if (d == -1)
			goto out;
	}
 out:
	buf_free(&msg);
	return rc;
}

int
audit_proc_stop(struct audit_proc *p)
{
	uint64_t	 start;
	int		 i, rc = -1, sent = 0;

	if (p == NULL)
		return -1;
	for (i = 0; p->fds != NULL && i < p->nch; i++)
		if (p->fds[i] != -1) {
			close(p->fds[i]);
			p->fds[i] = -1;
		}
	if (p->pid > 0) {
		start = mono_ms();
		while (!proc_reaped(p)) {
			if (!sent && mono_ms() - start > 10000) {
				kill(p->pid, SIGTERM);
				sent = 1;
			} else if (sent == 1 && mono_ms() - start > 13000) {
				kill(p->pid, SIGKILL);
				sent = 2;
			}
			usleep(5000);
		}
		rc = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
	}
	for (i = 0; p->rx != NULL && i < p->nch; i++)
		buf_free(&p->rx[i]);
	free(p->rx);
	free(p->fds);
	if (p->sh != NULL)
		munmap(p->sh, sizeof(*p->sh));
	free(p);
	return rc;
}

/* ---- readers ---- */

struct logmap {
	int			 dirfd;
	uint64_t		*ids;
	size_t			 n;
	struct mapped		*maps;
	struct auditfmt_segdata	*segs;
};

static void
logmap_free(struct logmap *lm)
{
	size_t	 i;

	for (i = 0; lm->maps != NULL && i < lm->n; i++)
		unmap_file(&lm->maps[i]);
	free(lm->maps);
	free(lm->segs);
	free(lm->ids);
	if (lm->dirfd != -1)
		close(lm->dirfd);
	memset(lm, 0, sizeof(*lm));
	lm->dirfd = -1;
}

static int
logmap_open(const char *dir, struct logmap *lm, char *err, size_t errlen)
{
	char	 name[64];
	size_t	 i;

	memset(lm, 0, sizeof(*lm));
	if ((lm->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    list_segments(lm->dirfd, &lm->ids, &lm->n) == -1) {
		seterr(err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((lm->maps = calloc(lm->n + 1, sizeof(*lm->maps))) == NULL ||
	    (lm->segs = calloc(lm->n + 1, sizeof(*lm->segs))) == NULL) {
		seterr(err, errlen, "out of memory");
		goto fail;
	}
	for (i = 0; i < lm->n; i++) {
		auditfmt_segment_name(name, sizeof(name), lm->ids[i]);
		if (map_file(lm->dirfd, name, &lm->maps[i]) == -1) {
			seterr(err, errlen, "%s/%s: %s", dir, name,
			    strerror(errno));
			goto fail;
		}
		lm->segs[i].id = lm->ids[i];
		lm->segs[i].data = lm->maps[i].p;
		lm->segs[i].len = lm->maps[i].len;
	}
	return 0;
 fail:
	logmap_free(lm);
	return -1;
}

int
audit_log_verify(const char *dir, const unsigned char pub[32],
    const char *anchor, char *msg, size_t msglen,
    struct auditfmt_verify_stats *stats)
{
	struct logmap	 lm;
	struct mapped	 kc = { 0 };
	int		 v;

	if (logmap_open(dir, &lm, msg, msglen) == -1)
		return -1;
	if (map_file(lm.dirfd, KEYCHAIN, &kc) == -1 && errno != ENOENT) {
		seterr(msg, msglen, "%s/%s: %s", dir, KEYCHAIN, strerror(errno));
		logmap_free(&lm);
		return -1;
	}
	v = (int)auditfmt_verify_log(pub, lm.segs, lm.n, kc.p, kc.len, anchor,
	    msg, msglen, stats);
	unmap_file(&kc);
	logmap_free(&lm);
	return v;
}

int
audit_log_read(const char *dir, EVP_PKEY *reader, uint64_t since_ms,
    uint64_t until_ms, audit_record_cb *cb, void *arg, char *err,
    size_t errlen)
{
	struct logmap			 lm;
	struct auditfmt_scan		 sc, nsc;
	struct auditfmt_checkpoint	 rck;
	struct buf			 pt = { 0 };
	struct auditfmt_segkey		*k;
	const unsigned char		*data, *body;
	unsigned char			 dkey[32];
	size_t				 i, off, limit, blen, flen, nsegs;
	uint64_t			 fi, seq, t, end_ms;
	int				 r, rc = 0, nread = 0;
	char				 e[256];

	if (logmap_open(dir, &lm, err, errlen) == -1)
		return -1;
	for (i = 0; i < lm.n; i++) {
		data = lm.segs[i].data;
		limit = lm.segs[i].len;
		end_ms = 0;
		if (i + 1 < lm.n) {
			if (auditfmt_segment_recovery(lm.segs[i + 1].data,
			    lm.segs[i + 1].len, &rck) &&
			    rck.aux1 == lm.segs[i].id && rck.aux2 < limit)
				limit = (size_t)rck.aux2;
			auditfmt_segment_scan(lm.segs[i + 1].data,
			    lm.segs[i + 1].len < 65536 ? lm.segs[i + 1].len :
			    65536, &nsc);
			if (nsc.has_header)
				end_ms = nsc.header.created_ms;
		}
		auditfmt_segment_scan(data, limit < 65536 ? limit : 65536, &sc);
		if (!sc.has_header) {
			if (i + 1 < lm.n) {
				seterr(err, errlen, "segment %" PRIu64 ": no "
				    "readable header", lm.segs[i].id);
				rc = 1;
			}
			continue;
		}
		/* Segments wholly outside the window need no decryption. */
		if ((since_ms && end_ms && end_ms < since_ms) ||
		    (until_ms && sc.header.created_ms > until_ms))
			continue;
		if (auditfmt_header_open_key(&sc.header, reader, dkey, e,
		    sizeof(e)) == -1) {
			seterr(err, errlen, "%s", e);
			rc = 1;
			continue;
		}
		k = auditfmt_segkey_new(dkey);
		OPENSSL_cleanse(dkey, sizeof(dkey));
		if (k == NULL) {
			seterr(err, errlen, "segment %" PRIu64 ": cannot set up "
			    "the cipher", lm.segs[i].id);
			rc = 1;
			continue;
		}
		nread++;
		for (off = 0, fi = 0; off < limit; off += flen, fi++) {
			r = auditfmt_frame_decode(data + off, limit - off, &body,
			    &blen, &flen);
			/* A torn tail of the last segment ends its data. */
			if (r == 0 || (r == -1 && i + 1 == lm.n &&
			    auditfmt_tail_torn(data, limit, off)))
				break;
			if (r == -1) {
				seterr(err, errlen, "segment %" PRIu64 " offset "
				    "%zu: damaged frame; run subgatectl audit "
				    "verify", lm.segs[i].id, off);
				rc = 1;
				break;
			}
			if (body[0] != AUDITFMT_RECORD ||
			    auditfmt_record_peek(body, blen, &seq, &t) == -1)
				continue;
			if ((since_ms && t < since_ms) ||
			    (until_ms && t > until_ms))
				continue;
			if (auditfmt_segkey_open(k, &pt, lm.segs[i].id, fi,
			    body, blen) == -1) {
				seterr(err, errlen, "segment %" PRIu64 " offset "
				    "%zu: record %" PRIu64 " does not "
				    "authenticate", lm.segs[i].id, off, seq);
				rc = 1;
				continue;
			}
			if (cb(arg, seq, t, pt.data, pt.len) != 0) {
				i = lm.n;
				break;
			}
		}
		auditfmt_segkey_free(k);
	}
	buf_free(&pt);
	nsegs = lm.n;
	logmap_free(&lm);
	if (nsegs > 0 && nread == 0 && rc == 1)
		return -1;
	return rc;
}
