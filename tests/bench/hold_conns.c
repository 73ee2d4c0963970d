/* hold_conns.c -- open N mTLS connections, one GET on each, then hold them idle until SIGTERM */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/*
 * usage: hold_conns HOST PORT N CERT KEY PATH [WINDOW] [TIMEOUT_S]
 * At most WINDOW (default 64) connections are being set up at a time.
 * Each: TCP connect, TLS handshake with CERT/KEY, "GET PATH" (keep-alive),
 * the whole response read and its status checked. Prints one line
 * "hold: open=N ok=K errors=E" once every connection is up or failed (or
 * TIMEOUT_S, default 120, passed: the rest count as errors), then holds
 * the open ones until SIGTERM/SIGINT and prints "hold: dropped=D" (idle
 * connections the server closed meanwhile) on stderr.
 */

enum state { S_CONNECT, S_HANDSHAKE, S_WRITE, S_READ, S_IDLE, S_DONE };

struct conn {
	int		 fd;
	enum state	 st;
	SSL		*ssl;
	char		*buf;
	size_t		 len;
};

static volatile sig_atomic_t	 stop;
static int			 nerrmsg;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
fail(struct conn *c, int *errors, const char *why)
{
	if (nerrmsg++ < 5)
		fprintf(stderr, "hold: connection failed: %s\n", why);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->st = S_DONE;
	(*errors)++;
}

/* 1: response complete and 200; 0: need more; -1: bad. */
static int
response_done(struct conn *c)
{
	char	*end, *cl;
	size_t	 hl;

	c->buf[c->len] = '\0';
	if ((end = strstr(c->buf, "\r\n\r\n")) == NULL)
		return c->len >= 16000 ? -1 : 0;
	if (strncmp(c->buf, "HTTP/1.1 200 ", 13) != 0)
		return -1;
	hl = (size_t)(end - c->buf) + 4;
	if ((cl = strcasestr(c->buf, "\r\ncontent-length:")) == NULL || cl > end)
		return -1;
	return c->len >= hl + strtoul(cl + 17, NULL, 10) ? 1 : 0;
}

/* An idle connection became readable: absorb what the server sent (TLS 1.3
 * session tickets); 1 when it was closed. */
static int
idle_closed(struct conn *c)
{
	char	 b[4096];
	int	 r;

	while ((r = SSL_read(c->ssl, b, sizeof(b))) > 0)
		;
	r = SSL_get_error(c->ssl, r);
	return r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE;
}

static int
want(int ep, struct conn *c, int err)
{
	struct epoll_event	 ev;

	ev.events = err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
	ev.data.ptr = c;
	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in	 sin;
	struct epoll_event	 ev, evs[256];
	struct rlimit		 rl;
	struct conn		*conns;
	SSL_CTX			*ctx;
	char			 req[512];
	int			 n, window, started = 0, inflight = 0, ok = 0;
	int			 errors = 0, dropped = 0, ep, i, k, r, one = 1;
	time_t			 deadline;

	if (argc < 7) {
		fprintf(stderr, "usage: hold_conns HOST PORT N CERT KEY PATH "
		    "[WINDOW] [TIMEOUT_S]\n");
		return 2;
	}
	n = atoi(argv[3]);
	window = argc > 7 ? atoi(argv[7]) : 64;
	deadline = time(NULL) + (argc > 8 ? atoi(argv[8]) : 120);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &sin.sin_addr) != 1)
		return 2;
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n",
	    argv[6]);
	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, argv[4]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, argv[5], SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "hold: cannot load %s / %s\n", argv[4], argv[5]);
		return 2;
	}
	if ((conns = calloc((size_t)n, sizeof(*conns))) == NULL ||
	    (ep = epoll_create1(0)) == -1)
		return 2;
	while (!stop && ok + errors < n) {
		while (started < n && inflight < window) {
			struct conn	*c = &conns[started++];

			c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			c->st = S_CONNECT;
			if (c->fd == -1) {
				fail(c, &errors, strerror(errno));
				continue;
			}
			setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one,
			    sizeof(one));
			if (connect(c->fd, (struct sockaddr *)&sin,
			    sizeof(sin)) == -1 && errno != EINPROGRESS) {
				fail(c, &errors, strerror(errno));
				continue;
			}
			ev.events = EPOLLOUT;
			ev.data.ptr = c;
			epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
			inflight++;
		}
		if (time(NULL) > deadline) {
			for (i = 0; i < started; i++)
				if (conns[i].st < S_IDLE)
					fail(&conns[i], &errors, "timeout");
			errors += n - started;
			break;
		}
		if ((k = epoll_wait(ep, evs, 256, 1000)) < 0 && errno != EINTR)
			break;
		for (i = 0; i < k; i++) {
			struct conn	*c = evs[i].data.ptr;
			socklen_t	 sl = sizeof(r);

			if (c->st == S_IDLE) {
				if (idle_closed(c)) {
					dropped++;
					epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				}
				continue;
			}
			if (c->st == S_CONNECT) {
				if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &r,
				    &sl) == -1 || r != 0) {
					fail(c, &errors, strerror(r));
					inflight--;
					continue;
				}
				c->ssl = SSL_new(ctx);
				SSL_set_fd(c->ssl, c->fd);
				SSL_set_connect_state(c->ssl);
				c->st = S_HANDSHAKE;
			}
			if (c->st == S_HANDSHAKE) {
				if ((r = SSL_do_handshake(c->ssl)) != 1)
					goto again;
				c->st = S_WRITE;
			}
			if (c->st == S_WRITE) {
				if ((r = SSL_write(c->ssl, req,
				    (int)strlen(req))) <= 0)
					goto again;
				c->st = S_READ;
				c->buf = malloc(16384);
				c->len = 0;
			}
			while (c->st == S_READ) {
				if ((r = SSL_read(c->ssl, c->buf + c->len,
				    (int)(16383 - c->len))) <= 0)
					goto again;
				c->len += (size_t)r;
				if ((r = response_done(c)) == -1) {
					fail(c, &errors, "bad response");
					inflight--;
				} else if (r == 1) {
					free(c->buf);
					c->buf = NULL;
					c->st = S_IDLE;
					ok++;
					inflight--;
					ev.events = EPOLLIN | EPOLLRDHUP;
					ev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
			}
			continue;
again:
			r = SSL_get_error(c->ssl, r);
			if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
				want(ep, c, r);
			else {
				fail(c, &errors, c->st == S_HANDSHAKE ?
				    "TLS handshake" : "TLS read/write");
				inflight--;
			}
		}
	}
	printf("hold: open=%d ok=%d errors=%d\n", n, ok, errors);
	fflush(stdout);
	while (!stop) {
		if ((k = epoll_wait(ep, evs, 256, 1000)) < 0)
			continue;
		for (i = 0; i < k; i++) {
			struct conn	*c = evs[i].data.ptr;

			if (c->st == S_IDLE && idle_closed(c)) {
				dropped++;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			}
		}
	}
	fprintf(stderr, "hold: dropped=%d\n", dropped);
	return 0;
}
