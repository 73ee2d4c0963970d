/* main.c -- command line, start-up, signals, reload, shutdown */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "admin.h"
#include "audit.h"
#include "conf.h"
#include "gen.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "tls.h"
#include "worker.h"

#define SUBGATE_VERSION	"0.1.0"

struct daemon {
	const char		*conf_path;
	struct event_base	*base;
	struct worker		**workers;
	int			 nworkers;
	struct metrics		*metrics;	/* the main thread's own */
	struct admin		*admin;
	struct audit_proc	*audit;
	struct audit_stats	 audit_seen;	/* counted into metrics */
	int			*listen_fds;	/* until the workers own them */
	struct event		*ev_hup, *ev_term, *ev_int, *ev_crl, *ev_drain;
	struct event		*ev_audit;	/* EOF on channel 0: the audit process died */
	struct event		*ev_watchdog;	/* keep-alives to the service manager */
	int			 exit_status;
	uint64_t		 generation;
	int			 draining;
	struct timespec		 drain_start;
	char			*listen_address;
	int			 listen_port;
};

static void	daemon_drain(struct daemon *, const char *);

static void
usage(void)
{
	fprintf(stderr, "usage: subgate [-d] -c FILE      run in the foreground\n"
	    "       subgate -t -c FILE         check a configuration\n"
	    "       subgate -V                 print the version\n");
	exit(2);
}

/* A bound, listening, non-blocking socket; -1 with err. */
static int
listen_socket(const char *address, int port, int reuseport, char *err,
    size_t errlen)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		 len;
	int			 fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, address, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, address, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		len = sizeof(*sin6);
	} else {
		snprintf(err, errlen, "%s: not an IP address", address);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (reuseport &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
		snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&ss, len) == -1 ||
	    listen(fd, 1024) == -1) {
		snprintf(err, errlen, "%s port %d: %s", address, port,
		    strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int
drop_privileges(const char *user, char *err, size_t errlen)
{
	struct passwd	*pw;

	if (user == NULL || geteuid() != 0)
		return 0;
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(err, errlen, "user \"%s\" does not exist", user);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) == -1 ||
	    setgid(pw->pw_gid) == -1 || setuid(pw->pw_uid) == -1) {
		snprintf(err, errlen, "cannot drop to user \"%s\": %s", user,
		    strerror(errno));
		return -1;
	}
	if (setuid(0) != -1) {
		snprintf(err, errlen, "could regain root after dropping to %s",
		    user);
		return -1;
	}
	/* setuid() resets dumpability; keep core dumps off. */
	prctl(PR_SET_DUMPABLE, 0);
	return 0;
}

static void
no_core_dumps(void)
{
	struct rlimit	rl = { 0, 0 };

	setrlimit(RLIMIT_CORE, &rl);
	prctl(PR_SET_DUMPABLE, 0);
}

static int
daemon_ready(void *arg, char *why, size_t len)
{
	struct daemon	*d = arg;
	struct gen	*g;
	time_t		 next;

	if (d->draining) {
		snprintf(why, len, "draining");
		return 0;
	}
	if ((g = gen_current()) == NULL) {
		snprintf(why, len, "no configuration");
		return 0;
	}
	next = tls_crl_next_update();
	if (g->conf->tls_crl != NULL && next != 0 && next < time(NULL)) {
		snprintf(why, len, "CRL is past its next update time; "
		    "publish a fresh CRL");
		gen_unref(g);
		return 0;
	}
	gen_unref(g);
	if (!audit_ready(d->audit)) {
		snprintf(why, len, "audit log unavailable (disk below "
		    "min_free_bytes, a write error, or the audit process is "
		    "gone); nothing is forwarded");
		return 0;
	}
	return 1;
}

/*
 * Startup failed after the audit process started: stop it (it writes its
 * stop record and closes the segment) before exiting, and free what was
 * set up (g: the caller's reference to the generation, or NULL). 1.
 */
static int
daemon_abort(struct daemon *d, struct gen *g)
{
	int	 i, started = 0;

	audit_proc_stop(d->audit);
	d->audit = NULL;
	for (i = 0; d->workers != NULL && i < d->nworkers; i++)
		started |= d->workers[i] != NULL;
	if (started)
		return 1;	/* their threads run: exit takes them down */
	if (g != NULL)
		gen_unref(g);
	for (i = 0; d->listen_fds != NULL && i < d->nworkers; i++)
		if (d->listen_fds[i] > 0)
			close(d->listen_fds[i]);
	free(d->listen_fds);
	free(d->workers);
	metrics_free(d->metrics);
	if (d->base != NULL)
		event_base_free(d->base);
	free(d->listen_address);
	gen_install(NULL);
	return 1;
}

/* A config or lifecycle record from the main thread (channel 0). */
static int
daemon_record(struct daemon *d, const char *type, const char *event,
    const struct gen *g)
{
	struct buf	j = { 0 };
	uint64_t	seq;
	size_t		i, nep = 0;
	int		rc;

	buf_printf(&j, "{\"type\":\"%s\"", type);
	if (event != NULL)
		buf_printf(&j, ",\"event\":\"%s\"", event);
	if (g != NULL) {
		for (i = 0; i < g->conf->nintegrations; i++)
			nep += g->conf->integrations[i].nendpoints;
		buf_printf(&j, ",\"generation\":%llu,\"policy\":\"%s\","
		    "\"tenants\":%zu,\"integrations\":%zu,\"endpoints\":%zu,"
		    "\"accounts\":%zu", (unsigned long long)g->id,
		    g->policy_hash, g->conf->ntenants, g->conf->nintegrations,
		    nep, g->naccounts);
	}
	buf_append_char(&j, '}');
	rc = audit_submit_sync(d->audit, 0, j.data, j.len,
	    g ? g->conf->limits.audit_timeout_ms : 5000, &seq);
	buf_free(&j);
	if (rc == -1)
		log_warnx("audit: could not record %s%s%s", type,
		    event ? " " : "", event ? event : "");
	return rc;
}

/* Add what the audit process counted since the last look. */
static void
audit_counter(struct daemon *d, const char *name, uint64_t now,
    uint64_t *seen)
{
	metrics_add(d->metrics, name, "", now > *seen ? now - *seen : 0);
	if (now > *seen)
		*seen = now;
}

static void
daemon_metrics(void *arg, struct buf *out)
{
	struct daemon	*d = arg;
	struct metrics	**tables;
	struct gen	*g;
	struct audit_stats st;
	time_t		 now = time(NULL), t;
	size_t		 buffered = 0, i;
	char		 label[300];

	metrics_set(d->metrics, "subgate_connections_active", "",
	    __atomic_load_n(&worker_conns_total, __ATOMIC_RELAXED));
	for (i = 0; i < (size_t)d->nworkers; i++)
		buffered += __atomic_load_n(&d->workers[i]->buffered,
		    __ATOMIC_RELAXED);
	metrics_set(d->metrics, "subgate_buffered_bytes", "", (double)buffered);
	metrics_set(d->metrics, "subgate_config_generation", "",
	    (double)d->generation);
	audit_proc_stats(d->audit, &st);
	audit_counter(d, "subgate_audit_records_total", st.records,
	    &d->audit_seen.records);
	audit_counter(d, "subgate_audit_syncs_total", st.syncs,
	    &d->audit_seen.syncs);
	audit_counter(d, "subgate_audit_checkpoints_total", st.checkpoints,
	    &d->audit_seen.checkpoints);
	if ((g = gen_current()) != NULL) {
		t = tls_cert_file_not_after(g->conf->tls_certificate);
		metrics_set(d->metrics, "subgate_certificate_expiry_seconds",
		    "certificate=\"server\"", t ? (double)(t - now) : 0);
		for (i = 0; i < g->naccounts; i++) {
			const struct conf_account *a = g->accounts[i].account;
			t = tls_cert_file_not_after(a->client_certificate);
			snprintf(label, sizeof(label),
			    "certificate=\"client\",server_name=\"%s\"",
			    a->server_name);
			metrics_set(d->metrics,
			    "subgate_certificate_expiry_seconds", label,
			    t ? (double)(t - now) : 0);
		}
		if (g->conf->tls_crl != NULL) {
			t = tls_crl_next_update();
			metrics_set(d->metrics,
			    "subgate_crl_next_update_seconds", "",
			    t ? (double)(t - now) : 0);
		}
		gen_unref(g);
	}
	if ((tables = calloc((size_t)d->nworkers + 1, sizeof(*tables))) == NULL)
		return;
	tables[0] = d->metrics;
	for (i = 0; i < (size_t)d->nworkers; i++)
		tables[i + 1] = d->workers[i]->metrics;
	metrics_render(tables, (size_t)d->nworkers + 1, out);
	free(tables);
}

/* A new generation from the config file; 0, or -1 (the old one stays). */
static int
daemon_reload_gen(struct daemon *d)
{
	struct gen	*g;
	char		 err[1024];

	if ((g = gen_build(d->conf_path, d->generation + 1, err,
	    sizeof(err))) == NULL) {
		log_warnx("reload failed, the running configuration stays: %s",
		    err);
		metrics_add(d->metrics, "subgate_config_reload_failures_total",
		    "", 1);
		return -1;
	}
	if (tls_crl_reload(g->conf->tls_crl, g->conf->tls_client_ca, err,
	    sizeof(err)) == -1) {
		log_warnx("reload failed, the running configuration stays: %s",
		    err);
		metrics_add(d->metrics, "subgate_config_reload_failures_total",
		    "", 1);
		gen_unref(g);
		return -1;
	}
	if (strcmp(g->conf->listen_address, d->listen_address) != 0 ||
	    g->conf->listen_port != d->listen_port ||
	    g->conf->workers != d->nworkers)
		log_warnx("listen address, port and workers change only on "
		    "restart");
	d->generation++;
	gen_install(g);
	daemon_record(d, "lifecycle", "reload", NULL);
	daemon_record(d, "config", NULL, g);
	metrics_add(d->metrics, "subgate_config_reloads_total", "", 1);
	log_info("reload done generation=%llu policy_hash=%s",
	    (unsigned long long)d->generation, g->policy_hash);
	return 0;
}

/* SIGHUP; the service manager sees the reload begin and end. */
static void
daemon_reload(struct daemon *d)
{
	struct timespec	 now;
	int		 rc;

	if (d->draining) {
		log_info("reload requested while draining: ignored");
		return;
	}
	log_info("reload requested");
	clock_gettime(CLOCK_MONOTONIC, &now);
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
	    (unsigned long long)now.tv_sec * 1000000ULL +
	    (unsigned long long)now.tv_nsec / 1000);
	rc = daemon_reload_gen(d);
	notify_send("READY=1\nSTATUS=%s, generation %llu",
	    rc == 0 ? "reloaded" : "reload failed (see the log), running",
	    (unsigned long long)d->generation);
}

static void
daemon_watchdog_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	notify_send("WATCHDOG=1");
}

static void
daemon_crl_tick(evutil_socket_t fd, short what, void *arg)
{
	struct daemon	*d = arg;
	struct gen	*g;
	char		 err[512];

	(void)fd;
	(void)what;
	if ((g = gen_current()) == NULL)
		return;
	if (g->conf->tls_crl != NULL && tls_crl_reload(g->conf->tls_crl,
	    g->conf->tls_client_ca, err, sizeof(err)) == -1) {
		log_warnx("CRL refresh failed, the previous CRL stays: %s", err);
		metrics_add(d->metrics, "subgate_crl_refresh_failures_total",
		    "", 1);
	}
	gen_unref(g);
}

static void
daemon_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct daemon	*d = arg;
	struct timespec	 now;
	struct gen	*g;
	double		 waited;
	int		 grace = 10000, i;

	(void)fd;
	(void)what;
	if ((g = gen_current()) != NULL) {
		grace = g->conf->limits.shutdown_grace_ms;
		gen_unref(g);
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	waited = (double)(now.tv_sec - d->drain_start.tv_sec) * 1000 +
	    (double)(now.tv_nsec - d->drain_start.tv_nsec) / 1e6;
	if (__atomic_load_n(&worker_conns_total, __ATOMIC_RELAXED) == 0) {
		log_info("drained, exiting");
		event_base_loopexit(d->base, NULL);
	} else if (waited >= grace) {
		log_warnx("shutdown grace period over; closing %d connections",
		    __atomic_load_n(&worker_conns_total, __ATOMIC_RELAXED));
		for (i = 0; i < d->nworkers; i++)
			worker_stop(d->workers[i]);
		event_base_loopexit(d->base, NULL);
	}
}

static void
daemon_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon	*d = arg;

	(void)what;
	if (sig == SIGHUP) {
		daemon_reload(d);
		return;
	}
	daemon_drain(d, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void
daemon_drain(struct daemon *d, const char *why)
{
	struct timeval	 tv = { 0, 50000 };
	int		 i;

	if (d->draining)
		return;
	log_info("%s: draining", why);
	notify_send("STOPPING=1\nSTATUS=draining (%s)", why);
	d->draining = 1;
	clock_gettime(CLOCK_MONOTONIC, &d->drain_start);
	for (i = 0; i < d->nworkers; i++)
		worker_drain(d->workers[i]);
	d->ev_drain = event_new(d->base, -1, EV_PERSIST, daemon_drain_tick, d);
	evtimer_add(d->ev_drain, &tv);
}

/*
 * Channel 0 is read by audit_submit_sync while a record is pending; when
 * this fires between records it holds late acknowledgements (dropped) or
 * EOF: the audit process is gone, nothing can be forwarded any more and
 * nothing restarts it, so subgate drains and exits non-zero.
 */
static void
daemon_audit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon	*d = arg;
	char		 junk[512];
	ssize_t		 n;

	(void)what;
	while ((n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT)) > 0)
		;
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		log_errx("the audit process is gone: no call can be recorded, "
		    "so none is forwarded; shutting down");
		event_del(d->ev_audit);
		d->exit_status = 1;
		daemon_drain(d, "audit process gone");
	}
}

static int
check_config(const char *path)
{
	struct gen	*g;
	char		 err[2048];

	if ((g = gen_build(path, 1, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (tls_crl_reload(g->conf->tls_crl, g->conf->tls_client_ca, err,
	    sizeof(err)) == -1) {
		fprintf(stderr, "%s: tls.crl: %s\n", path, err);
		gen_unref(g);
		return 1;
	}
	gen_unref(g);
	printf("%s: configuration OK\n", path);
	return 0;
}

int
main(int argc, char **argv)
{
	struct daemon		 d;
	struct gen		*g;
	struct conf		*pre;
	struct admin_hooks	 hooks;
	struct timeval		 tv;
	char			 err[2048];
	int			 ch, test = 0, fd, i;

	memset(&d, 0, sizeof(d));
	while ((ch = getopt(argc, argv, "c:dtVh")) != -1) {
		switch (ch) {
		case 'c':
			d.conf_path = optarg;
			break;
		case 'd':
			log_init(LOG_LVL_DEBUG);
			break;
		case 't':
			test = 1;
			break;
		case 'V':
			printf("subgate %s (%s)\n", SUBGATE_VERSION,
			    OpenSSL_version(OPENSSL_VERSION));
			return 0;
		default:
			usage();
		}
	}
	if (d.conf_path == NULL || optind != argc)
		usage();
	if (test)
		return check_config(d.conf_path);

	signal(SIGPIPE, SIG_IGN);
	no_core_dumps();
	if (evthread_use_pthreads() == -1) {
		log_errx("libevent threads unavailable");
		return 1;
	}
	/*
	 * The audit process comes first, forked before any secret but its
	 * own is read: this config pass reads no secret and no key file.
	 */
	if ((pre = conf_load(d.conf_path, ((1u << POLICY_NACTIONS) - 1) |
	    CONF_NO_FILES, err, sizeof(err))) == NULL) {
		log_errx("%s", err);
		return 1;
	}
	if (!pre->has_audit || !pre->has_keys) {
		log_errx("%s: keys and audit sections are required: every "
		    "forwarded call is recorded first", d.conf_path);
		return 1;
	}
	d.audit = audit_proc_start(pre, pre->workers + 1, err, sizeof(err));
	conf_free(pre);
	if (d.audit == NULL) {
		log_errx("audit: %s", err);
		return 1;
	}
	notify_init();
	if ((g = gen_build(d.conf_path, 1, err, sizeof(err))) == NULL) {
		log_errx("%s", err);
		return daemon_abort(&d, NULL);
	}
	if (tls_crl_reload(g->conf->tls_crl, g->conf->tls_client_ca, err,
	    sizeof(err)) == -1) {
		log_errx("%s: tls.crl: %s", d.conf_path, err);
		gen_unref(g);
		return daemon_abort(&d, NULL);
	}
	d.generation = 1;
	d.nworkers = g->conf->workers;
	d.listen_address = strdup(g->conf->listen_address);
	d.listen_port = g->conf->listen_port;
	gen_install(g);
	g = gen_current();

	if ((d.base = event_base_new()) == NULL ||
	    (d.metrics = metrics_new()) == NULL ||
	    (d.workers = calloc((size_t)d.nworkers, sizeof(*d.workers))) == NULL ||
	    (d.listen_fds = calloc((size_t)d.nworkers,
	    sizeof(*d.listen_fds))) == NULL) {
		log_errx("out of memory");
		return daemon_abort(&d, g);
	}
	for (i = 0; i < d.nworkers; i++)
		if ((d.listen_fds[i] = listen_socket(g->conf->listen_address,
		    g->conf->listen_port, 1, err, sizeof(err))) == -1) {
			log_errx("listen: %s", err);
			return daemon_abort(&d, g);
		}
	fd = -1;
	if (g->conf->admin_enabled && (fd = listen_socket(g->conf->admin_address,
	    g->conf->admin_port, 0, err, sizeof(err))) == -1) {
		log_errx("admin listen: %s", err);
		return daemon_abort(&d, g);
	}
	if (drop_privileges(g->conf->user, err, sizeof(err)) == -1) {
		log_errx("%s", err);
		return daemon_abort(&d, g);
	}
	hooks.ready = daemon_ready;
	hooks.metrics = daemon_metrics;
	hooks.arg = &d;
	if (fd != -1 && (d.admin = admin_start(d.base, fd, &hooks, err,
	    sizeof(err))) == NULL) {
		log_errx("%s", err);
		return daemon_abort(&d, g);
	}
	for (i = 0; i < d.nworkers; i++) {
		if ((d.workers[i] = worker_new(i, d.listen_fds[i],
		    audit_proc_fd(d.audit, i + 1), err, sizeof(err))) == NULL ||
		    worker_start(d.workers[i]) == -1) {
			log_errx("worker %d: %s", i, err);
			return daemon_abort(&d, g);
		}
	}
	free(d.listen_fds);
	d.listen_fds = NULL;
	d.ev_hup = evsignal_new(d.base, SIGHUP, daemon_signal, &d);
	d.ev_term = evsignal_new(d.base, SIGTERM, daemon_signal, &d);
	d.ev_int = evsignal_new(d.base, SIGINT, daemon_signal, &d);
	evsignal_add(d.ev_hup, NULL);
	evsignal_add(d.ev_term, NULL);
	evsignal_add(d.ev_int, NULL);
	d.ev_audit = event_new(d.base, audit_proc_fd(d.audit, 0),
	    EV_READ | EV_PERSIST, daemon_audit_cb, &d);
	event_add(d.ev_audit, NULL);
	d.ev_crl = event_new(d.base, -1, EV_PERSIST, daemon_crl_tick, &d);
	tv.tv_sec = g->conf->tls_crl_refresh_s;
	tv.tv_usec = 0;
	evtimer_add(d.ev_crl, &tv);
	log_info("subgate %s listening address=%s port=%d workers=%d "
	    "admin_port=%d generation=1 policy_hash=%s", SUBGATE_VERSION,
	    g->conf->listen_address, g->conf->listen_port, d.nworkers,
	    g->conf->admin_enabled ? g->conf->admin_port : 0, g->policy_hash);
	daemon_record(&d, "config", NULL, g);
	/* Started, not necessarily forwarding: /readyz says when the audit
	 * log cannot take records, and so does the status line. */
	notify_send("READY=1\nMAINPID=%ld\nSTATUS=listening on %s port %d, "
	    "generation 1%s", (long)getpid(), g->conf->listen_address,
	    g->conf->listen_port, audit_ready(d.audit) ? "" :
	    "; audit log unavailable, nothing is forwarded (see /readyz)");
	gen_unref(g);
	if (notify_watchdog_usec() != 0) {
		/* Twice per interval, from the loop that handles signals. */
		tv.tv_sec = (time_t)(notify_watchdog_usec() / 2000000);
		tv.tv_usec = (suseconds_t)(notify_watchdog_usec() / 2 % 1000000);
		d.ev_watchdog = event_new(d.base, -1, EV_PERSIST,
		    daemon_watchdog_tick, &d);
		evtimer_add(d.ev_watchdog, &tv);
		notify_send("WATCHDOG=1");
	}

	event_base_dispatch(d.base);

	for (i = 0; i < d.nworkers; i++)
		worker_join(d.workers[i]);
	for (i = 0; i < d.nworkers; i++)
		worker_free(d.workers[i]);
	admin_free(d.admin);
	event_free(d.ev_hup);
	event_free(d.ev_term);
	event_free(d.ev_int);
	event_free(d.ev_crl);
	event_free(d.ev_audit);
	if (d.ev_drain != NULL)
		event_free(d.ev_drain);
	if (d.ev_watchdog != NULL)
		event_free(d.ev_watchdog);
	gen_install(NULL);
	if ((i = audit_proc_stop(d.audit)) != 0)
		log_warnx("audit process exited with status %d", i);
	metrics_free(d.metrics);
	event_base_free(d.base);
	free(d.workers);
	free(d.listen_address);
	log_info("stopped");
	return d.exit_status;
}
