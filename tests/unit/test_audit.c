/* test_audit.c -- the audit process: channels, group commit, acks, rotation, low disk, recovery, record bytes */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit.h"
#include "auditfmt.h"
#include "buf.h"
#include "conf.h"

struct fx {
	char		 root[64];
	char		 dir[96];
	char		 signer_path[128];
	char		 reader_path[128];
	char		*readers[1];
	unsigned char	 pub[32];
	EVP_PKEY	*reader;
	struct conf	 c;
};

static struct fx *
fx_new(void)
{
	struct fx	*f = calloc(1, sizeof(*f));
	EVP_PKEY	*k;
	FILE		*fp;
	int		 fd;

	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/test_audit.XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->dir, sizeof(f->dir), "%s/audit", f->root);
	snprintf(f->signer_path, sizeof(f->signer_path), "%s/signer.pem",
	    f->root);
	snprintf(f->reader_path, sizeof(f->reader_path), "%s/reader.pub",
	    f->root);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_int_equal(auditfmt_pub_raw(k, f->pub), 0);
	fd = open(f->signer_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	fp = fdopen(fd, "w");
	assert_int_equal(PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL,
	    NULL), 1);
	fclose(fp);
	EVP_PKEY_free(k);
	f->reader = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	fp = fopen(f->reader_path, "w");
	assert_int_equal(PEM_write_PUBKEY(fp, f->reader), 1);
	fclose(fp);
	f->readers[0] = f->reader_path;
	f->c.has_audit = 1;
	f->c.audit_directory = f->dir;
	f->c.audit_instance = "gw-test";
	f->c.audit_segment_bytes = 64 << 20;
	f->c.audit_segment_seconds = 86400;
	f->c.audit_min_free_bytes = 0;
	f->c.audit_checkpoint_records = 100;
	f->c.audit_checkpoint_seconds = 10;
	f->c.keys_audit_readers = f->readers;
	f->c.keys_naudit_readers = 1;
	f->c.keys_audit_signer = f->signer_path;
	f->c.limits.audit_timeout_ms = 5000;
	return f;
}

static void
fx_free(struct fx *f)
{
	char	 cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
	assert_int_equal(system(cmd), 0);
	EVP_PKEY_free(f->reader);
	free(f);
}

static int
verify(struct fx *f, char *msg, size_t msglen)
{
	return audit_log_verify(f->dir, f->pub, NULL, msg, msglen, NULL);
}

/* Records read back: count by a member value and check their shape. */
struct seen {
	int		 total, tagged, bad, lifecycle[8];
	const char	*tag;
	uint64_t	 last_seq;
	int		 in_order;
};

static int
seen_cb(void *arg, uint64_t seq, uint64_t t, const char *json, size_t len)
{
	struct seen	*s = arg;
	char		 pre[64], want[64];
	const char	*inst = "\",\"instance\":\"gw-test\",";

	(void)t;
	/* seq, time, instance come first, then the submitted members. */
	snprintf(pre, sizeof(pre), "{\"seq\":%llu,\"time\":\"",
	    (unsigned long long)seq);
	if (len < 60 || strncmp(json, pre, strlen(pre)) != 0 ||
	    json[len - 1] != '}' ||
	    strncmp(json + strlen(pre) + 24, inst, strlen(inst)) != 0 ||
	    memchr(json, '\0', len) != NULL)
		s->bad++;
	if (s->total > 0 && seq != s->last_seq + 1)
		s->in_order = 0;
	s->last_seq = seq;
	s->total++;
	if (s->tag != NULL) {
		snprintf(want, sizeof(want), "\"tag\":\"%s\"", s->tag);
		if (strstr(json, want) != NULL)
			s->tagged++;
	}
	if (strstr(json, "\"event\":\"start\"") != NULL)
		s->lifecycle[0]++;
	if (strstr(json, "\"event\":\"stop\"") != NULL)
		s->lifecycle[1]++;
	if (strstr(json, "\"event\":\"recovery\"") != NULL)
		s->lifecycle[2]++;
	if (strstr(json, "\"event\":\"rotation\"") != NULL)
		s->lifecycle[3]++;
	return 0;
}

static void
read_all(struct fx *f, struct seen *s, const char *tag)
{
	char	 err[256];

	memset(s, 0, sizeof(*s));
	s->tag = tag;
	s->in_order = 1;
	assert_int_equal(audit_log_read(f->dir, f->reader, 0, 0, seen_cb, s,
	    err, sizeof(err)), 0);
	assert_int_equal(s->bad, 0);
	assert_true(s->in_order);
}

/* A submitter: pipelines n records on one channel, then reads n acks. */
struct submitter {
	int		 fd, n, durable, unavailable, garbage;
	uint64_t	 seqs[512];
	const char	*tag;
};

static void *
submit_thread(void *arg)
{
	struct submitter	*s = arg;
	struct buf		 out = { 0 }, in = { 0 };
	struct pollfd		 pfd;
	size_t			 off = 0, consumed;
	uint64_t		 cookie, seq, expect = 0;
	ssize_t			 r;
	char			 j[128];
	int			 i, st, d, acks = 0;

	for (i = 0; i < s->n; i++) {
		snprintf(j, sizeof(j), "{\"type\":\"disclosure\",\"tag\":\"%s\","
		    "\"i\":%d}", s->tag, i);
		assert_int_equal(audit_msg_encode(&out, 1000 + (uint64_t)i, j,
		    strlen(j)), 0);
	}
	pfd.fd = s->fd;
	while (acks < s->n) {
		pfd.events = POLLIN | (off < out.len ? POLLOUT : 0);
		if (poll(&pfd, 1, 10000) <= 0)
			break;
		if (off < out.len && (pfd.revents & POLLOUT)) {
			r = send(s->fd, out.data + off, out.len - off,
			    MSG_NOSIGNAL);
			if (r > 0)
				off += (size_t)r;
		}
		if (!(pfd.revents & (POLLIN | POLLHUP)))
			continue;
		buf_reserve(&in, 4096);
		r = recv(s->fd, in.data + in.len, 4096, 0);
		if (r <= 0)
			break;
		in.len += (size_t)r;
		while ((d = audit_ack_decode(in.data, in.len, &consumed,
		    &cookie, &seq, &st)) == 1) {
			/* Acks come back in submission order. */
			if (cookie != 1000 + expect)
				s->garbage++;
			expect++;
			if (st == AUDIT_ACK_DURABLE)
				s->seqs[s->durable++] = seq;
			else
				s->unavailable++;
			acks++;
			memmove(in.data, in.data + consumed, in.len - consumed);
			buf_truncate(&in, in.len - consumed);
		}
		if (d == -1) {
			s->garbage++;
			break;
		}
	}
	buf_free(&out);
	buf_free(&in);
	return NULL;
}

static void
test_protocol_codec(void **state)
{
	struct buf	 b = { 0 };
	const char	*json;
	size_t		 consumed, jl, i;
	uint64_t	 cookie, seq;
	int		 st;

	(void)state;
	assert_int_equal(audit_msg_encode(&b, 42, "{\"a\":1}", 7), 0);
	for (i = 0; i < b.len; i++)
		assert_int_equal(audit_msg_decode(b.data, i, &consumed, &cookie,
		    &json, &jl), 0);
	assert_int_equal(audit_msg_decode(b.data, b.len, &consumed, &cookie,
	    &json, &jl), 1);
	assert_int_equal(consumed, b.len);
	assert_int_equal(cookie, 42);
	assert_int_equal(jl, 7);
	assert_memory_equal(json, "{\"a\":1}", 7);
	b.data[0] = 0x7f;	/* length far over the limit */
	assert_int_equal(audit_msg_decode(b.data, b.len, &consumed, &cookie,
	    &json, &jl), -1);
	buf_truncate(&b, 0);
	assert_int_equal(audit_ack_encode(&b, 7, 99, AUDIT_ACK_UNAVAILABLE), 0);
	assert_int_equal(b.len, AUDIT_ACK_LEN);
	for (i = 0; i < b.len; i++)
		assert_int_equal(audit_ack_decode(b.data, i, &consumed, &cookie,
		    &seq, &st), 0);
	assert_int_equal(audit_ack_decode(b.data, b.len, &consumed, &cookie,
	    &seq, &st), 1);
	assert_int_equal(cookie, 7);
	assert_int_equal(seq, 99);
	assert_int_equal(st, 1);
	b.data[0] = 'X';
	assert_int_equal(audit_ack_decode(b.data, b.len, &consumed, &cookie,
	    &seq, &st), -1);
	b.data[0] = 'A';
	b.data[1] = 5;
	assert_int_equal(audit_ack_decode(b.data, 2, &consumed, &cookie, &seq,
	    &st), -1);
	buf_free(&b);
}

static void
test_process_concurrent_submitters(void **state)
{
	struct fx		*f = fx_new();
	struct audit_proc	*p, *p2;
	struct submitter	 s[4];
	pthread_t		 th[4];
	struct seen		 seen;
	struct stat		 st;
	char			 err[256], tag[4][16];
	const char		*cfg = "{\"type\":\"config\",\"policy_hash\":"
				    "\"abc\"}";
	uint64_t		 seq = 0, all[2048];
	size_t			 n = 0, i, k;
	int			 t;

	(void)state;
	p = audit_proc_start(&f->c, 5, err, sizeof(err));
	if (p == NULL)
		fail_msg("audit_proc_start: %s", err);
	assert_true(audit_proc_pid(p) > 0);
	assert_true(audit_ready(p));
	/* The configured key has moved into the directory. */
	assert_int_equal(stat(f->signer_path, &st), -1);
	/* A second instance cannot share the directory. */
	p2 = audit_proc_start(&f->c, 1, err, sizeof(err));
	assert_null(p2);
	assert_non_null(strstr(err, "in use"));

	assert_int_equal(audit_submit_sync(p, 0, cfg, strlen(cfg), 5000, &seq),
	    0);
	assert_int_equal(seq, 2);	/* 1 is the start record */
	for (t = 0; t < 4; t++) {
		memset(&s[t], 0, sizeof(s[t]));
		snprintf(tag[t], sizeof(tag[t]), "w%d", t);
		s[t].fd = audit_proc_fd(p, t + 1);
		s[t].n = 300;
		s[t].tag = tag[t];
		assert_int_equal(pthread_create(&th[t], NULL, submit_thread,
		    &s[t]), 0);
	}
	for (t = 0; t < 4; t++) {
		pthread_join(th[t], NULL);
		assert_int_equal(s[t].durable, 300);
		assert_int_equal(s[t].garbage, 0);
		for (i = 0; i < (size_t)s[t].durable; i++) {
			/* Per channel, seqs increase. */
			if (i > 0)
				assert_true(s[t].seqs[i] > s[t].seqs[i - 1]);
			all[n++] = s[t].seqs[i];
		}
	}
	/* Globally unique. */
	for (i = 0; i < n; i++)
		for (k = i + 1; k < n; k++)
			assert_true(all[i] != all[k]);
	assert_int_equal(audit_proc_stop(p), 0);
	assert_int_equal(verify(f, err, sizeof(err)), 0);
	read_all(f, &seen, "w2");
	assert_int_equal(seen.tagged, 300);
	assert_int_equal(seen.total, 1 + 1 + 1200 + 1);	/* start, config, stop */
	assert_int_equal(seen.lifecycle[0], 1);
	assert_int_equal(seen.lifecycle[1], 1);
	fx_free(f);
}

static void
test_sigterm_and_child_death(void **state)
{
	struct fx		*f = fx_new();
	struct audit_proc	*p;
	struct seen		 seen;
	struct pollfd		 pfd;
	char			 err[256], b[8];
	uint64_t		 seq;
	int			 fd;

	(void)state;
	p = audit_proc_start(&f->c, 2, err, sizeof(err));
	assert_non_null(p);
	assert_int_equal(audit_submit_sync(p, 0, "{\"type\":\"x\"}", 12, 5000,
	    &seq), 0);
	/* SIGINT (a terminal's ^C) is the daemon's business, not its. */
	kill(audit_proc_pid(p), SIGINT);
	usleep(100000);
	assert_true(audit_ready(p));
	/* Killed hard: the channels read EOF, readiness drops. */
	fd = audit_proc_fd(p, 1);
	kill(audit_proc_pid(p), SIGKILL);
	pfd.fd = fd;
	pfd.events = POLLIN;
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	assert_int_equal(recv(fd, b, sizeof(b), 0), 0);
	usleep(50000);
	assert_false(audit_ready(p));
	assert_int_equal(audit_submit_sync(p, 0, "{\"type\":\"x\"}", 12, 500,
	    &seq), -1);
	audit_proc_stop(p);
	/* The restart recovers the unclosed segment. */
	p = audit_proc_start(&f->c, 1, err, sizeof(err));
	if (p == NULL)
		fail_msg("restart: %s", err);
	assert_int_equal(audit_submit_sync(p, 0, "{\"type\":\"y\"}", 12, 5000,
	    &seq), 0);
	assert_int_equal(seq, 5);	/* start, x, recovery, start, y */
	kill(audit_proc_pid(p), SIGTERM);
	assert_int_equal(audit_proc_stop(p), 0);
	assert_int_equal(verify(f, err, sizeof(err)), 0);
	read_all(f, &seen, NULL);
	assert_int_equal(seen.lifecycle[2], 1);	/* recovery */
	assert_int_equal(seen.lifecycle[1], 1);	/* stop, after SIGTERM */
	fx_free(f);
}

static void
test_low_disk_unavailable(void **state)
{
	struct fx		*f = fx_new();
	struct audit_proc	*p;
	struct submitter	 s;
	char			 err[256];
	uint64_t		 seq;

	(void)state;
	f->c.audit_min_free_bytes = UINT64_MAX / 2;
	p = audit_proc_start(&f->c, 2, err, sizeof(err));
	assert_non_null(p);
	usleep(50000);
	assert_false(audit_ready(p));
	assert_int_equal(audit_submit_sync(p, 0, "{\"type\":\"x\"}", 12, 5000,
	    &seq), -1);
	memset(&s, 0, sizeof(s));
	s.fd = audit_proc_fd(p, 1);
	s.n = 20;
	s.tag = "low";
	submit_thread(&s);
	assert_int_equal(s.unavailable, 20);
	assert_int_equal(s.durable, 0);
	assert_int_equal(audit_proc_stop(p), 0);
	assert_int_equal(verify(f, err, sizeof(err)), 0);
	fx_free(f);
}

static int
count_segments(const char *dir)
{
	DIR		*d = opendir(dir);
	struct dirent	*de;
	uint64_t	 id;
	int		 n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += auditfmt_segment_parse_name(de->d_name, &id);
	closedir(d);
	return n;
}

static void
test_rotation_by_size_and_time(void **state)
{
	struct fx		*f = fx_new();
	struct audit_writer	*w;
	struct seen		 seen;
	struct timespec		 ts;
	char			 err[256], j[256];
	uint64_t		 seq, now;
	int			 i;

	(void)state;
	f->c.audit_segment_bytes = 4096;
	f->c.audit_segment_seconds = 60;
	f->c.audit_checkpoint_records = 7;
	w = audit_writer_open(&f->c, err, sizeof(err));
	assert_non_null(w);
	for (i = 0; i < 100; i++) {
		snprintf(j, sizeof(j), "{\"type\":\"disclosure\",\"tag\":\"s\","
		    "\"pad\":\"%0100d\"}", i);
		assert_int_equal(audit_writer_append(w, j, strlen(j), &seq), 0);
		assert_int_equal(audit_writer_commit(w), 0);
		audit_writer_tick(w);
	}
	/* ~200 bytes a record: 4 KiB segments hold about 20. */
	assert_true(count_segments(f->dir) >= 4);
	assert_true(audit_writer_segment(w) >= 4);
	/* By time: nothing written, the clock passes segment_seconds. */
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000;
	seq = audit_writer_segment(w);
	audit_writer_set_time(w, now + 61000);
	audit_writer_tick(w);
	assert_int_equal(audit_writer_segment(w), seq + 1);
	audit_writer_set_time(w, now + 62000);
	audit_writer_tick(w);
	assert_int_equal(audit_writer_segment(w), seq + 1);
	audit_writer_close(w, 1);
	assert_int_equal(verify(f, err, sizeof(err)), 0);
	read_all(f, &seen, "s");
	assert_int_equal(seen.tagged, 100);
	assert_true(seen.lifecycle[3] >= 4);
	fx_free(f);
}

static void
test_write_error_recovers_in_new_segment(void **state)
{
	struct fx		*f = fx_new();
	struct audit_writer	*w;
	struct rlimit		 old, lim;
	struct seen		 seen;
	struct stat		 st;
	char			 err[256], j[600], path[256], name[64];
	uint64_t		 seq, seg;
	int			 i, failed = 0;

	(void)state;
	signal(SIGXFSZ, SIG_IGN);
	w = audit_writer_open(&f->c, err, sizeof(err));
	assert_non_null(w);
	seg = audit_writer_segment(w);
	auditfmt_segment_name(name, sizeof(name), seg);
	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	assert_int_equal(stat(path, &st), 0);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = (rlim_t)st.st_size + 1500;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	memset(j, 0, sizeof(j));
	for (i = 0; i < 10 && !failed; i++) {
		snprintf(j, sizeof(j), "{\"type\":\"disclosure\",\"tag\":\"e\","
		    "\"pad\":\"%0400d\"}", i);
		assert_int_equal(audit_writer_append(w, j, strlen(j), &seq), 0);
		failed = audit_writer_commit(w) == -1;
	}
	setrlimit(RLIMIT_FSIZE, &old);
	assert_true(failed);
	/* Refused until recovery; the failed write is never retried. */
	assert_false(audit_writer_available(w));
	assert_int_equal(audit_writer_append(w, j, strlen(j), &seq), -1);
	sleep(1);
	audit_writer_tick(w);
	assert_true(audit_writer_available(w));
	assert_int_equal(audit_writer_segment(w), seg + 1);
	assert_int_equal(audit_writer_append(w, j, strlen(j), &seq), 0);
	assert_int_equal(audit_writer_commit(w), 0);
	audit_writer_close(w, 1);
	if (verify(f, err, sizeof(err)) != 0)
		fail_msg("verify: %s", err);
	read_all(f, &seen, "e");
	assert_int_equal(seen.lifecycle[2], 1);
	assert_int_equal(seen.tagged, i);	/* i - 1 before, 1 after */
	fx_free(f);
}

/* The public half of the private key in the audit directory's file
 * name: 0, or -1 if there is none. */
static int
key_pub(struct fx *f, const char *name, unsigned char pub[32])
{
	char		 path[300];
	FILE		*fp;
	EVP_PKEY	*k;
	int		 rc;

	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	rc = k != NULL ? auditfmt_pub_raw(k, pub) : -1;
	EVP_PKEY_free(k);
	return rc;
}

/* Wait up to 5 s until the key file name holds a key other than not. */
static void
wait_key(struct fx *f, const char *name, const unsigned char *not,
    unsigned char pub[32])
{
	int	 i;

	for (i = 0; i < 500; i++) {
		if (key_pub(f, name, pub) == 0 &&
		    (not == NULL || memcmp(pub, not, 32) != 0))
			return;
		usleep(10000);
	}
	fail_msg("%s: no new key after 5 s", name);
}

static void
append_n(struct audit_writer *w, int n, const char *tag)
{
	char	 j[128];
	int	 i;

	for (i = 0; i < n; i++) {
		snprintf(j, sizeof(j), "{\"type\":\"disclosure\","
		    "\"tag\":\"%s\",\"i\":%d}", tag, i);
		assert_int_equal(audit_writer_append(w, j, strlen(j), NULL), 0);
	}
	assert_int_equal(audit_writer_commit(w), 0);
}

/* A writer checkpointing every 5 records, its current key in cur and the
 * one its next checkpoint certifies (waiting in signer.next) in next. */
static struct audit_writer *
open_key_writer(struct fx *f, unsigned char cur[32], unsigned char next[32])
{
	struct audit_writer	*w;
	char			 err[256];

	f->c.audit_checkpoint_records = 5;
	w = audit_writer_open(&f->c, err, sizeof(err));
	if (w == NULL)
		fail_msg("open: %s", err);
	assert_int_equal(key_pub(f, "signer.key", cur), 0);
	wait_key(f, "signer.next", cur, next);
	return w;
}

/*
 * The key a checkpoint certifies is made ahead, off the record path, and
 * is durable as signer.next before that checkpoint: each periodic
 * checkpoint certifies exactly the key that was waiting there, which then
 * becomes signer.key, and the next one is prepared. A clean stop leaves
 * no key waiting; a crash leaves an uncertified one, which the next start
 * discards.
 */
static void
test_next_key_prepared(void **state)
{
	struct fx		*f = fx_new();
	struct audit_writer	*w;
	unsigned char		 cur[32], next[32], got[32], stray[32];
	char			 err[256];
	int			 round;

	(void)state;
	w = open_key_writer(f, cur, next);
	for (round = 0; round < 3; round++) {
		append_n(w, 5, "k");
		audit_writer_tick(w);
		wait_key(f, "signer.key", cur, got);
		assert_memory_equal(got, next, 32);
		memcpy(cur, got, 32);
		wait_key(f, "signer.next", cur, next);
	}
	audit_writer_close(w, 1);
	assert_int_equal(key_pub(f, "signer.next", got), -1);
	if (verify(f, err, sizeof(err)) != 0)
		fail_msg("verify: %s", err);

	/* A crash with a prepared key waiting. */
	w = audit_writer_open(&f->c, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(key_pub(f, "signer.key", cur), 0);
	wait_key(f, "signer.next", cur, stray);
	append_n(w, 2, "k");
	audit_writer_close(w, 0);
	assert_int_equal(key_pub(f, "signer.next", got), 0);
	w = audit_writer_open(&f->c, err, sizeof(err));
	if (w == NULL)
		fail_msg("reopen: %s", err);
	assert_int_equal(key_pub(f, "signer.key", got), 0);
	assert_memory_not_equal(got, stray, 32);
	append_n(w, 5, "k");
	audit_writer_tick(w);
	audit_writer_close(w, 1);
	if (verify(f, err, sizeof(err)) != 0)
		fail_msg("verify after the crash: %s", err);
	fx_free(f);
}

/*
 * When signer.next, certified by a durable checkpoint, cannot be moved
 * over signer.key, it is never overwritten by a newer key (that would
 * lose the key the log certified): the next checkpoint fails, records are
 * refused, and once the move works the writer recovers with it.
 */
static void
test_key_handover_failure(void **state)
{
	struct fx		*f = fx_new();
	struct audit_writer	*w;
	unsigned char		 cur[32], next[32], got[32];
	char			 err[256], key[300], saved[300], inside[320];
	int			 fd;

	(void)state;
	w = open_key_writer(f, cur, next);
	snprintf(key, sizeof(key), "%s/signer.key", f->dir);
	snprintf(saved, sizeof(saved), "%s/signer.saved", f->dir);
	snprintf(inside, sizeof(inside), "%s/x", key);
	/* A directory in the way: the rename fails (EISDIR). */
	assert_int_equal(rename(key, saved), 0);
	assert_int_equal(mkdir(key, 0700), 0);
	assert_true((fd = open(inside, O_WRONLY | O_CREAT, 0600)) != -1);
	close(fd);
	append_n(w, 5, "h");
	audit_writer_tick(w);		/* durable; the hand-over fails */
	assert_true(audit_writer_available(w));
	append_n(w, 5, "h");
	audit_writer_tick(w);		/* the next checkpoint cannot */
	assert_false(audit_writer_available(w));
	assert_int_equal(key_pub(f, "signer.next", got), 0);
	assert_memory_equal(got, next, 32);
	assert_int_equal(unlink(inside), 0);
	assert_int_equal(rmdir(key), 0);
	assert_int_equal(unlink(saved), 0);
	sleep(1);
	audit_writer_tick(w);		/* recovery: moved, then a new key */
	assert_true(audit_writer_available(w));
	assert_int_equal(key_pub(f, "signer.key", got), 0);
	append_n(w, 1, "h");
	audit_writer_close(w, 1);
	if (verify(f, err, sizeof(err)) != 0)
		fail_msg("verify: %s", err);
	w = audit_writer_open(&f->c, err, sizeof(err));
	if (w == NULL)
		fail_msg("reopen: %s", err);
	audit_writer_close(w, 1);
	fx_free(f);
}

/*
 * A hand-over wipes the key it replaces: the old signer.key's file, held
 * open here across the rename as its freed blocks would be on the disk,
 * reads as zeros afterwards; signer.key itself is a whole key throughout.
 */
static void
test_key_handover_wipes_old_key(void **state)
{
	struct fx		*f = fx_new();
	struct audit_writer	*w;
	unsigned char		 cur[32], next[32], got[32], buf[4096];
	char			 err[256], key[300];
	ssize_t			 n, i;
	int			 fd;

	(void)state;
	w = open_key_writer(f, cur, next);
	snprintf(key, sizeof(key), "%s/signer.key", f->dir);
	assert_true((fd = open(key, O_RDONLY)) != -1);
	n = pread(fd, buf, sizeof(buf), 0);
	assert_true(n > 100 && memmem(buf, (size_t)n, "PRIVATE KEY", 11));
	append_n(w, 5, "w");
	audit_writer_tick(w);
	wait_key(f, "signer.key", cur, got);
	assert_memory_equal(got, next, 32);
	/* The key thread renames, then wipes: wait for the zeros. */
	for (i = 0; i < 500; i++) {
		assert_int_equal(pread(fd, buf, sizeof(buf), 0), n);
		if (memchr(buf, '-', (size_t)n) == NULL)
			break;
		usleep(10000);
	}
	for (i = 0; i < n; i++)
		if (buf[i] != 0)
			fail_msg("byte %zd of the replaced signer.key is %#x",
			    i, buf[i]);
	close(fd);
	audit_writer_close(w, 1);
	if (verify(f, err, sizeof(err)) != 0)
		fail_msg("verify: %s", err);
	fx_free(f);
}

/* What the record JSON must be, written the straightforward way. */
static void
expect_record(struct buf *out, uint64_t seq, uint64_t ms, const char *inst,
    const char *json, size_t len)
{
	char	 t[32];
	size_t	 a = 0, b = len, i;
	int	 empty = 1;

	while (a < len && strchr(" \t\n\r", json[a]) != NULL)
		a++;
	while (b > a && strchr(" \t\n\r", json[b - 1]) != NULL)
		b--;
	for (i = a + 1; i < b - 1; i++)
		if (strchr(" \t\n\r", json[i]) == NULL)
			empty = 0;
	auditfmt_time_format(ms, t);
	buf_reset(out);
	assert_int_equal(buf_printf(out, "{\"seq\":%llu,\"time\":\"%s\","
	    "\"instance\":\"", (unsigned long long)seq, t), 0);
	for (; *inst != '\0'; inst++) {
		if (*inst == '"' || *inst == '\\')
			assert_int_equal(buf_printf(out, "\\%c", *inst), 0);
		else if ((unsigned char)*inst < 0x20)
			assert_int_equal(buf_printf(out, "\\u%04x",
			    (unsigned char)*inst), 0);
		else
			assert_int_equal(buf_append_char(out, *inst), 0);
	}
	assert_int_equal(buf_append_char(out, '"'), 0);
	if (empty)
		assert_int_equal(buf_append_char(out, '}'), 0);
	else
		assert_int_equal(buf_printf(out, ",%.*s", (int)(b - a - 1),
		    json + a + 1), 0);
}

struct exact {
	struct buf	 want[64];
	uint64_t	 seq[64], ms[64];
	int		 n, matched, wrong;
};

static int
exact_cb(void *arg, uint64_t seq, uint64_t t, const char *json, size_t len)
{
	struct exact	*x = arg;
	int		 i;

	for (i = 0; i < x->n; i++) {
		if (x->seq[i] != seq)
			continue;
		if (t == x->ms[i] && len == x->want[i].len &&
		    memcmp(json, x->want[i].data, len) == 0)
			x->matched++;
		else {
			print_message("seq %llu: got %.*s\nwant %s\n",
			    (unsigned long long)seq, (int)len, json,
			    x->want[i].data);
			x->wrong++;
		}
	}
	return 0;
}

/*
 * Every record's plaintext is exactly {"seq":N,"time":"<auditfmt_time_format
 * of its time>","instance":<JSON string>, members}: across second, year
 * and digit-count boundaries, with the clock going back, with an instance
 * that needs escaping, and with blank space around and inside the object.
 */
/*
 * The writer's syscalls, seen from here (libsubgate.a is linked into this
 * program, so these definitions are the ones it calls, from the writer's
 * sync thread too): the most bytes pwritten to one file and not covered
 * by a sync that began after they were written. A test can also hold
 * every fdatasync at a gate, or make it fail.
 */
static pthread_mutex_t	 io_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 io_cv = PTHREAD_COND_INITIALIZER;
static int		 io_track, io_fd = -1, io_syncs;
static int		 io_gate, io_gated, io_fail;
static size_t		 io_written, io_synced, io_max_unsynced;

ssize_t
pwrite(int fd, const void *p, size_t n, off_t off)
{
	long	 r = syscall(SYS_pwrite64, fd, p, n, off);

	pthread_mutex_lock(&io_mu);
	if (io_track && r > 0) {
		if (fd != io_fd)
			io_written = io_synced = 0;
		io_fd = fd;
		io_written += (size_t)r;
		if (io_written - io_synced > io_max_unsynced)
			io_max_unsynced = io_written - io_synced;
	}
	pthread_mutex_unlock(&io_mu);
	return (ssize_t)r;
}

static int
io_sync(int fd, long nr)
{
	size_t	 upto;
	int	 rc, fail;

	pthread_mutex_lock(&io_mu);
	upto = io_written;
	if (nr == SYS_fdatasync && io_gate) {
		io_gated++;
		pthread_cond_broadcast(&io_cv);
		while (io_gate)
			pthread_cond_wait(&io_cv, &io_mu);
	}
	fail = nr == SYS_fdatasync && io_fail;
	pthread_mutex_unlock(&io_mu);
	if (fail) {
		errno = EIO;
		return -1;
	}
	rc = (int)syscall(nr, fd);
	pthread_mutex_lock(&io_mu);
	if (io_track && fd == io_fd && rc == 0) {
		if (upto > io_synced)
			io_synced = upto;
		io_syncs++;
	}
	pthread_mutex_unlock(&io_mu);
	return rc;
}

int
fdatasync(int fd)
{
	return io_sync(fd, SYS_fdatasync);
}

int
fsync(int fd)
{
	return io_sync(fd, SYS_fsync);
}

/* Start (reset) or stop tracking; the writer's threads may be syncing. */
static void
io_set_track(int on)
{
	pthread_mutex_lock(&io_mu);
	io_track = on;
	if (on) {
		io_max_unsynced = 0;
		io_syncs = 0;
	}
	pthread_mutex_unlock(&io_mu);
}

static void
io_set_fail(int on)
{
	pthread_mutex_lock(&io_mu);
	io_fail = on;
	pthread_mutex_unlock(&io_mu);
}

static void
io_set_gate(int on)
{
	pthread_mutex_lock(&io_mu);
	io_gate = on;
	io_gated = 0;
	pthread_cond_broadcast(&io_cv);
	pthread_mutex_unlock(&io_mu);
}

/* Wait until a sync is held at the gate. */
static void
io_wait_gated(void)
{
	pthread_mutex_lock(&io_mu);
	while (io_gated == 0)
		pthread_cond_wait(&io_cv, &io_mu);
	pthread_mutex_unlock(&io_mu);
}

/* Wait (up to 5 s) until the writer's sync thread is done with a sync. */
static void
wait_sync_done(struct audit_writer *w)
{
	struct pollfd	 pfd = { .fd = audit_writer_fd(w), .events = POLLIN };

	assert_true(pfd.fd != -1);
	assert_int_equal(poll(&pfd, 1, 5000), 1);
}

/* Append two records (one alone is synced in place) as *first, *second. */
static void
append_two(struct audit_writer *w, uint64_t *first, uint64_t *second)
{
	const char	*j = "{\"type\":\"disclosure\",\"tag\":\"p\"}";

	assert_int_equal(audit_writer_append(w, j, strlen(j), first), 0);
	assert_int_equal(audit_writer_append(w, j, strlen(j), second), 0);
}

/*
 * The audit process's commit is pipelined: a record is durable only once
 * a sync that began after it was written has returned. While one sync
 * runs, the next records are written; they wait for the next sync. When
 * a sync fails, every record not yet durable is lost, and the writer
 * recovers into a new segment.
 */
static void
test_pipelined_sync(void **state)
{
	struct fx		*f = fx_new();
	struct audit_writer	*w;
	char			 err[256];
	const char		*j = "{\"type\":\"disclosure\",\"tag\":\"p\"}";
	struct pollfd		 pfd;
	uint64_t		 e, a, a2, b, b2, c, c2, d, d2;
	int			 i;

	(void)state;
	w = audit_writer_open(&f->c, err, sizeof(err));
	assert_non_null(w);
	e = audit_writer_epoch(w);
	io_set_gate(1);
	append_two(w, &a, &a2);
	assert_int_equal(audit_writer_flush(w), 0);
	io_wait_gated();		/* A's sync has begun and is held */
	assert_int_equal(audit_writer_durable(w, e, a2), 0);
	append_two(w, &b, &b2);
	assert_int_equal(audit_writer_flush(w), 0);	/* B written */
	assert_int_equal(audit_writer_durable(w, e, b), 0);
	io_set_gate(0);
	wait_sync_done(w);
	assert_int_equal(audit_writer_flush(w), 0);	/* B's sync begins */
	assert_int_equal(audit_writer_durable(w, e, a), 1);
	assert_int_equal(audit_writer_durable(w, e, a2), 1);
	assert_int_equal(audit_writer_durable(w, e, b), 0);
	wait_sync_done(w);
	assert_int_equal(audit_writer_flush(w), 0);
	assert_int_equal(audit_writer_durable(w, e, b2), 1);
	/* Nothing written, nothing to sync: no thread wake-up. */
	assert_int_equal(audit_writer_flush(w), 0);
	pfd.fd = audit_writer_fd(w);
	pfd.events = POLLIN;
	assert_int_equal(poll(&pfd, 1, 50), 0);
	/* A lone record is synced in place. */
	assert_int_equal(audit_writer_append(w, j, strlen(j), &c), 0);
	assert_int_equal(audit_writer_flush(w), 0);
	assert_int_equal(audit_writer_durable(w, e, c), 1);

	/* A failed sync loses what it covered, and what came after. */
	io_set_gate(1);
	append_two(w, &c, &c2);
	assert_int_equal(audit_writer_flush(w), 0);
	io_wait_gated();
	io_set_fail(1);
	append_two(w, &d, &d2);
	assert_int_equal(audit_writer_flush(w), 0);
	io_set_gate(0);
	wait_sync_done(w);
	assert_int_equal(audit_writer_flush(w), -1);
	io_set_fail(0);
	assert_false(audit_writer_available(w));
	assert_int_equal(audit_writer_durable(w, e, b2), 1);
	assert_int_equal(audit_writer_durable(w, e, c), -1);
	assert_int_equal(audit_writer_durable(w, e, d2), -1);
	sleep(1);
	audit_writer_tick(w);
	assert_true(audit_writer_available(w));
	e = audit_writer_epoch(w);
	for (i = 0; i < 3; i++) {
		append_two(w, &a, &a2);
		assert_int_equal(audit_writer_flush(w), 0);
		wait_sync_done(w);
		assert_int_equal(audit_writer_flush(w), 0);
		assert_int_equal(audit_writer_durable(w, e, a2), 1);
	}
	audit_writer_close(w, 1);
	if (verify(f, err, sizeof(err)) != 0)
		fail_msg("verify: %s", err);
	fx_free(f);
}

#define BIG_RECORD	(65536 + 64)

/* A disclosure record of 64 KiB of pad in j[BIG_RECORD]; its length. */
static size_t
big_record(char *j, char pad)
{
	size_t	 len;

	len = (size_t)snprintf(j, BIG_RECORD, "{\"type\":\"disclosure\","
	    "\"pad\":\"");
	memset(j + len, pad, 65536);
	len += 65536;
	memcpy(j + len, "\"}", 3);
	return len + 2;
}

static void *
open_gate_later(void *arg)
{
	(void)arg;
	usleep(300000);
	io_set_gate(0);
	return NULL;
}

/*
 * While a sync is slow, records keep being written only up to
 * AUDITFMT_MAX_BATCH unsynced bytes (the window a crash may tear); then
 * the writer waits for the sync and syncs the rest itself.
 */
static void
test_pipelined_window(void **state)
{
	struct fx		*f = fx_new();
	struct audit_writer	*w;
	static char		 j[BIG_RECORD];
	char			 err[256];
	pthread_t		 th;
	uint64_t		 e, seq[40];
	size_t			 len;
	int			 i;

	(void)state;
	f->c.audit_checkpoint_records = 1000000;
	w = audit_writer_open(&f->c, err, sizeof(err));
	assert_non_null(w);
	e = audit_writer_epoch(w);
	len = big_record(j, 'w');
	io_set_track(1);
	io_set_gate(1);
	assert_int_equal(pthread_create(&th, NULL, open_gate_later, NULL), 0);
	for (i = 0; i < 40; i += 2) {
		assert_int_equal(audit_writer_append(w, j, len, &seq[i]), 0);
		assert_int_equal(audit_writer_append(w, j, len, &seq[i + 1]),
		    0);
		assert_int_equal(audit_writer_flush(w), 0);
	}
	pthread_join(th, NULL);
	assert_int_equal(audit_writer_commit(w), 0);
	io_set_track(0);
	assert_true(io_max_unsynced <= AUDITFMT_MAX_BATCH);
	assert_true(io_max_unsynced > AUDITFMT_MAX_BATCH - 2 * 65536);
	for (i = 0; i < 40; i++)
		assert_int_equal(audit_writer_durable(w, e, seq[i]), 1);
	audit_writer_close(w, 1);
	assert_int_equal(verify(f, err, sizeof(err)), 0);
	fx_free(f);
}

/*
 * A queue larger than AUDITFMT_MAX_BATCH is written and synced as several
 * batches, each at most AUDITFMT_MAX_BATCH bytes: a crash can then only
 * tear the last one (auditfmt.h "Batches"). The close batch too.
 */
static void
test_batches_capped(void **state)
{
	struct fx		*f = fx_new();
	struct audit_writer	*w;
	static char		 j[BIG_RECORD];
	char			 err[256];
	size_t			 len;
	int			 i;

	(void)state;
	f->c.audit_checkpoint_records = 1000000;
	w = audit_writer_open(&f->c, err, sizeof(err));
	assert_non_null(w);
	len = big_record(j, 'b');
	/* 5 MiB queued, one commit. */
	for (i = 0; i < 80; i++)
		assert_int_equal(audit_writer_append(w, j, len, NULL), 0);
	io_set_track(1);
	assert_int_equal(audit_writer_commit(w), 0);
	assert_true(io_max_unsynced <= AUDITFMT_MAX_BATCH);
	assert_true(io_max_unsynced > AUDITFMT_MAX_BATCH / 2);
	assert_true(io_syncs >= 3);
	/* ... and the queue of the clean close (stop record, checkpoint). */
	for (i = 0; i < 40; i++)
		assert_int_equal(audit_writer_append(w, j, len, NULL), 0);
	io_set_track(1);
	audit_writer_close(w, 1);
	io_set_track(0);
	assert_true(io_max_unsynced <= AUDITFMT_MAX_BATCH);
	assert_int_equal(verify(f, err, sizeof(err)), 0);
	fx_free(f);
}

static void
test_record_bytes(void **state)
{
	static const uint64_t	 times[] = { 1714566896789ull, 1714566896000ull,
	    1714566896999ull, 1714566897001ull, 1714566896500ull,
	    253402300799999ull, 253402300800000ull, 1000ull, 1001ull,
	    1714566897001ull, 4102444800010ull };
	static const char	*bodies[] = { "{}", "  {  \n }\t",
	    "{\"a\":1}", " {\n\"a\" : [1, 2]}  ", "{ \"x\":\"y\" }",
	    "{\"type\":\"disclosure\",\"tag\":\"q\"}" };
	static const char	*bad[] = { "[]", "{", "  ", "{a", "x{}" };
	struct fx		*f = fx_new();
	struct audit_writer	*w;
	struct exact		 x;
	const char		*inst = "gw \"a\"\\b\x01" "c/\x1f" "d";
	char			 err[256];
	size_t			 ti, bi, i;
	uint64_t		 seq;

	(void)state;
	memset(&x, 0, sizeof(x));
	f->c.audit_instance = (char *)(uintptr_t)inst;
	w = audit_writer_open(&f->c, err, sizeof(err));
	if (w == NULL)
		fail_msg("open: %s", err);
	for (ti = 0; ti < sizeof(times) / sizeof(times[0]); ti++) {
		audit_writer_set_time(w, times[ti]);
		bi = ti % (sizeof(bodies) / sizeof(bodies[0]));
		for (i = 0; i < 2; i++, bi = (bi + 1) % (sizeof(bodies) /
		    sizeof(bodies[0]))) {
			assert_int_equal(audit_writer_append(w, bodies[bi],
			    strlen(bodies[bi]), &seq), 0);
			assert_true(x.n < 64);
			expect_record(&x.want[x.n], seq, times[ti], inst,
			    bodies[bi], strlen(bodies[bi]));
			x.seq[x.n] = seq;
			x.ms[x.n++] = times[ti];
		}
		assert_int_equal(audit_writer_commit(w), 0);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(audit_writer_append(w, bad[i], strlen(bad[i]),
		    &seq), -1);
	assert_int_equal(audit_writer_append(w, "{\"a\":\"\0\"}", 9, &seq), -1);
	audit_writer_close(w, 1);
	assert_int_equal(verify(f, err, sizeof(err)), 0);
	assert_int_equal(audit_log_read(f->dir, f->reader, 0, 0, exact_cb, &x,
	    err, sizeof(err)), 0);
	assert_int_equal(x.wrong, 0);
	assert_int_equal(x.matched, x.n);
	for (i = 0; i < (size_t)x.n; i++)
		buf_free(&x.want[i]);
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_protocol_codec),
		cmocka_unit_test(test_process_concurrent_submitters),
		cmocka_unit_test(test_sigterm_and_child_death),
		cmocka_unit_test(test_low_disk_unavailable),
		cmocka_unit_test(test_rotation_by_size_and_time),
		cmocka_unit_test(test_write_error_recovers_in_new_segment),
		cmocka_unit_test(test_record_bytes),
		cmocka_unit_test(test_batches_capped),
		cmocka_unit_test(test_pipelined_sync),
		cmocka_unit_test(test_pipelined_window),
		cmocka_unit_test(test_next_key_prepared),
		cmocka_unit_test(test_key_handover_failure),
		cmocka_unit_test(test_key_handover_wipes_old_key),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
