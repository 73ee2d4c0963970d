/* audit_bench.c -- durable records per second and audit-process CPU per record at 1, 64, 256 in flight */
#include <sys/socket.h>
#include <sys/stat.h>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit.h"
#include "auditfmt.h"
#include "buf.h"
#include "conf.h"

/*
 * usage: audit_bench [DIR] [SECONDS] [CHECKPOINT_RECORDS]
 * DIR (default: a new /tmp directory, removed afterwards) receives
 * signer.pem, reader.pub, reader.key and the log in DIR/audit, kept when
 * DIR is given so `subgatectl audit verify|show` can be run on it.
 *
 * "cpu us/rec" is the audit process's CPU time (user + system, from
 * /proc/PID/schedstat) during a level divided by the records it answered:
 * what each record costs the core it shares with the proxy. "user us/rec"
 * is the user-space part (/proc/PID/stat, clock-tick resolution).
 */

#define CHANNELS	4

struct worker {
	int		 fd, inflight;
	double		 seconds;
	uint64_t	 durable, unavailable;
	double		 lat_sum_ms, lat_max_ms;
};

static double
now_s(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of pid in ns: total (schedstat) and user (stat, in ticks). */
static void
proc_cpu(pid_t pid, double *total_ns, double *user_ns)
{
	char			 path[64], line[1024], *p;
	unsigned long long	 run = 0, ut = 0, st = 0;
	FILE			*f;

	*total_ns = *user_ns = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) != NULL) {
		/* Fields after the parenthesised name: 14 utime, 15 stime. */
		if (fgets(line, sizeof(line), f) != NULL &&
		    (p = strrchr(line, ')')) != NULL &&
		    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
		    "%*u %llu %llu", &ut, &st) == 2) {
			*user_ns = (double)ut * 1e9 / (double)sysconf(_SC_CLK_TCK);
			*total_ns = (double)(ut + st) * 1e9 /
			    (double)sysconf(_SC_CLK_TCK);
		}
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	if ((f = fopen(path, "r")) != NULL) {
		if (fscanf(f, "%llu", &run) == 1)
			*total_ns = (double)run;
		fclose(f);
	}
}

static void *
run(void *arg)
{
	struct worker	*w = arg;
	struct buf	 out = { 0 }, in = { 0 };
	struct pollfd	 pfd;
	double		 start = now_s(), *sent;
	uint64_t	 cookie = 0, c, seq;
	size_t		 off = 0, consumed;
	ssize_t		 r;
	char		 j[512];
	int		 outstanding = 0, st;

	sent = calloc((size_t)w->inflight * 2 + 1024, sizeof(double));
	pfd.fd = w->fd;
	for (;;) {
		int	 stop = now_s() - start >= w->seconds;

		while (!stop && outstanding < w->inflight) {
			snprintf(j, sizeof(j), "{\"type\":\"disclosure\","
			    "\"tenant\":\"acme\",\"integration\":\"crm\","
			    "\"method\":\"POST\",\"endpoint\":\"/v1/contacts\","
			    "\"fields\":{\"allow\":[\"contact.first_name\"],"
			    "\"tokenize\":[\"contact.email\"],\"drop\":[\"*\"]},"
			    "\"body_length\":412,\"subjects_hmac\":[\"%064d\"],"
			    "\"request_id\":\"r%llu\"}", 7,
			    (unsigned long long)cookie);
			audit_msg_encode(&out, cookie, j, strlen(j));
			sent[cookie % ((uint64_t)w->inflight * 2 + 1024)] =
			    now_s();
			cookie++;
			outstanding++;
		}
		if (stop && outstanding == 0)
			break;
		pfd.events = POLLIN | (off < out.len ? POLLOUT : 0);
		if (poll(&pfd, 1, 5000) <= 0)
			break;
		if ((pfd.revents & POLLOUT) && off < out.len) {
			r = send(w->fd, out.data + off, out.len - off,
			    MSG_NOSIGNAL);
			if (r > 0)
				off += (size_t)r;
			if (off == out.len) {
				buf_truncate(&out, 0);
				off = 0;
			}
		}
		if (!(pfd.revents & (POLLIN | POLLHUP)))
			continue;
		buf_reserve(&in, 65536);
		if ((r = recv(w->fd, in.data + in.len, 65536, 0)) <= 0)
			break;
		in.len += (size_t)r;
		while (audit_ack_decode(in.data, in.len, &consumed, &c, &seq,
		    &st) == 1) {
			double	 lat = (now_s() - sent[c % ((uint64_t)
			    w->inflight * 2 + 1024)]) * 1000;

			w->lat_sum_ms += lat;
			if (lat > w->lat_max_ms)
				w->lat_max_ms = lat;
			if (st == AUDIT_ACK_DURABLE)
				w->durable++;
			else
				w->unavailable++;
			outstanding--;
			memmove(in.data, in.data + consumed, in.len - consumed);
			buf_truncate(&in, in.len - consumed);
		}
	}
	free(sent);
	buf_free(&out);
	buf_free(&in);
	return NULL;
}

static void
write_priv(const char *path, EVP_PKEY *k)
{
	int	 fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	FILE	*f = fdopen(fd, "w");

	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
}

static void
write_pub(const char *path, EVP_PKEY *k)
{
	FILE	*f = fopen(path, "w");

	PEM_write_PUBKEY(f, k);
	fclose(f);
}

int
main(int argc, char **argv)
{
	static const int	 levels[] = { 1, 64, 256 };
	struct worker		 w[CHANNELS];
	pthread_t		 th[CHANNELS];
	struct audit_proc	*p;
	struct conf		 c;
	EVP_PKEY		*k;
	char			 root[256], dir[300], sp[300], rp[300], kp[300];
	char			 err[512], cmd[400], *readers[1];
	double			 secs = argc > 2 ? atof(argv[2]) : 3.0, t0, el;
	double			 cpu0, cpu1, user0, user1;
	uint64_t		 total, unav;
	size_t			 li;
	int			 i, nthr, keep = argc > 1 && argv[1][0] != '\0';
	int			 ckrec = argc > 3 ? atoi(argv[3]) : 1000;

	signal(SIGPIPE, SIG_IGN);
	if (keep) {
		snprintf(root, sizeof(root), "%s", argv[1]);
		mkdir(root, 0700);
	} else {
		snprintf(root, sizeof(root), "/tmp/audit_bench.XXXXXX");
		if (mkdtemp(root) == NULL)
			return 1;
	}
	snprintf(dir, sizeof(dir), "%s/audit", root);
	snprintf(sp, sizeof(sp), "%s/signer.pem", root);
	snprintf(rp, sizeof(rp), "%s/reader.pub", root);
	snprintf(kp, sizeof(kp), "%s/reader.key", root);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	write_priv(sp, k);
	snprintf(cmd, sizeof(cmd), "%s/signer.pub", root);
	write_pub(cmd, k);
	EVP_PKEY_free(k);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	write_pub(rp, k);
	write_priv(kp, k);
	EVP_PKEY_free(k);
	readers[0] = rp;
	memset(&c, 0, sizeof(c));
	c.has_audit = 1;
	c.audit_directory = dir;
	c.audit_instance = "bench";
	c.audit_segment_bytes = 64 << 20;
	c.audit_segment_seconds = 86400;
	c.audit_checkpoint_records = ckrec > 0 ? ckrec : 1000;
	c.audit_checkpoint_seconds = 10;
	c.keys_audit_readers = readers;
	c.keys_naudit_readers = 1;
	c.keys_audit_signer = sp;
	if ((p = audit_proc_start(&c, CHANNELS, err, sizeof(err))) == NULL) {
		fprintf(stderr, "audit_bench: %s\n", err);
		return 1;
	}
	printf("%-10s %12s %12s %14s %12s %12s %12s\n", "in-flight",
	    "records/s", "unavailable", "mean lat ms", "max lat ms",
	    "cpu us/rec", "user us/rec");
	for (li = 0; li < sizeof(levels) / sizeof(levels[0]); li++) {
		nthr = levels[li] < CHANNELS ? levels[li] : CHANNELS;
		memset(w, 0, sizeof(w));
		proc_cpu(audit_proc_pid(p), &cpu0, &user0);
		t0 = now_s();
		for (i = 0; i < nthr; i++) {
			w[i].fd = audit_proc_fd(p, i);
			w[i].inflight = levels[li] / nthr;
			w[i].seconds = secs;
			pthread_create(&th[i], NULL, run, &w[i]);
		}
		total = unav = 0;
		for (i = 0; i < nthr; i++) {
			pthread_join(th[i], NULL);
			total += w[i].durable;
			unav += w[i].unavailable;
		}
		el = now_s() - t0;
		proc_cpu(audit_proc_pid(p), &cpu1, &user1);
		{
			double	 sum = 0, mx = 0;

			for (i = 0; i < nthr; i++) {
				sum += w[i].lat_sum_ms;
				if (w[i].lat_max_ms > mx)
					mx = w[i].lat_max_ms;
			}
			printf("%-10d %12.0f %12llu %14.2f %12.2f %12.2f %12.2f\n",
			    levels[li], (double)total / el,
			    (unsigned long long)unav,
			    total + unav ? sum / (double)(total + unav) : 0, mx,
			    total + unav ? (cpu1 - cpu0) / 1e3 /
			    (double)(total + unav) : 0,
			    total + unav ? (user1 - user0) / 1e3 /
			    (double)(total + unav) : 0);
		}
	}
	audit_proc_stop(p);
	if (!keep) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
		if (system(cmd) != 0)
			return 1;
	}
	return 0;
}
