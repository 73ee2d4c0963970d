/* admin.c -- /healthz /readyz /metrics on the admin listener
 *
 * The admin listener is plain HTTP on an operator-chosen (loopback by
 * default) address, read-only and request-data-free, so libevent's evhttp
 * serves it; the data path uses subgate's strict parser instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "admin.h"

struct admin {
	struct evhttp		*http;
	struct admin_hooks	 hooks;
};

static void
admin_reply(struct evhttp_request *req, int code, const char *ctype,
    const char *body, size_t len)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add(b, body, len);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", ctype);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-store");
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Service Unavailable",
	    b);
	evbuffer_free(b);
}

static void
admin_cb(struct evhttp_request *req, void *arg)
{
	struct admin	*a = arg;
	const char	*uri = evhttp_request_get_uri(req);
	char		 why[256], line[300];
	struct buf	 out = { 0 };
	int		 n;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
	    evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		evhttp_send_error(req, 405, NULL);
		return;
	}
	if (strcmp(uri, "/healthz") == 0) {
		admin_reply(req, 200, "text/plain", "ok\n", 3);
	} else if (strcmp(uri, "/readyz") == 0) {
		why[0] = '\0';
		if (a->hooks.ready(a->hooks.arg, why, sizeof(why)))
			admin_reply(req, 200, "text/plain", "ready\n", 6);
		else {
			n = snprintf(line, sizeof(line), "not ready: %s\n", why);
			admin_reply(req, 503, "text/plain", line,
			    n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
		}
	} else if (strcmp(uri, "/metrics") == 0) {
		a->hooks.metrics(a->hooks.arg, &out);
		admin_reply(req, 200, "text/plain; version=0.0.4",
		    out.data ? out.data : "", out.len);
		buf_free(&out);
	} else
		evhttp_send_error(req, 404, NULL);
}

struct admin *
admin_start(struct event_base *base, int fd, const struct admin_hooks *hooks,
    char *err, size_t errlen)
{
	struct admin	*a;

	if ((a = calloc(1, sizeof(*a))) == NULL ||
	    (a->http = evhttp_new(base)) == NULL) {
		snprintf(err, errlen, "admin: out of memory");
		free(a);
		return NULL;
	}
	a->hooks = *hooks;
	evhttp_set_max_headers_size(a->http, 8192);
	evhttp_set_max_body_size(a->http, 0);
	evhttp_set_timeout(a->http, 10);
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(a->http, admin_cb, a);
	if (evhttp_accept_socket(a->http, fd) != 0) {
		snprintf(err, errlen, "admin: cannot accept on socket");
		admin_free(a);
		return NULL;
	}
	return a;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->http != NULL)
		evhttp_free(a->http);
	free(a);
}
