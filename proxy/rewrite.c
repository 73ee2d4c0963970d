/* rewrite.c -- build the request a processor receives from the policy decision (pure)
 *
 * Nothing of the service's request is copied through: the request line is
 * rebuilt from the endpoint pattern, each parameter, query parameter,
 * header and body field is decided by a rule, and everything no rule names
 * is left out (invariants 1 and 2). conn.c sends the result; subgatectl
 * policy explain prints it.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rewrite.h"

void
rewrite_report_free(struct rewrite_report *rep)
{
	policy_report_free(&rep->fields);
	policy_report_free(&rep->params);
	policy_report_free(&rep->query);
	policy_report_free(&rep->headers);
}

int
rewrite_content_type(const char *v, size_t len)
{
	static const char *const types[] = { "application/json",
	    "application/x-www-form-urlencoded" };
	const char	*p, *end = v + len;
	size_t		 i, n, rest;
	int		 kind;

	for (kind = 0; kind < 2; kind++) {
		n = strlen(types[kind]);
		if (len >= n && strncasecmp(v, types[kind], n) == 0)
			break;
	}
	if (kind == 2)
		return -1;
	p = v + n;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p == end)
		return kind;
	if (*p++ != ';')
		return -1;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	rest = (size_t)(end - p);
	for (i = 0; i < 2; i++) {
		const char *cs = i == 0 ? "charset=utf-8" : "charset=\"utf-8\"";

		if (rest == strlen(cs) && strncasecmp(p, cs, rest) == 0)
			return kind;
	}
	return -1;
}

/*
 * Append the canonical percent-encoding of a value after its action.
 * 0, or 1 when the action refuses the value (format_preserve of fewer than
 * 6 digits, say), -1 on error.
 */
static int
rewrite_text(struct token_ctx *tok, enum policy_action a, const char *v,
    size_t len, struct buf *out)
{
	struct buf	t = { 0 };
	int		rc;

	if (a == POLICY_ALLOW)
		return route_encode(out, v, len);
	if (a == POLICY_DROP)
		return 1;
	if ((rc = token_apply_text(tok, a, v, len, &t)) == 0)
		rc = route_encode(out, t.data, t.len);
	buf_free(&t);
	return rc;
}


/* The path rebuilt from the pattern, each parameter after its action. */
static int
rewrite_path(const struct rewrite_in *in, struct buf *out,
    struct policy_report *rep, char *err, size_t errlen)
{
	const struct conf_endpoint	*ep = in->ep;
	const char			*vals[ROUTE_MAX_PARAMS];
	size_t				 lens[ROUTE_MAX_PARAMS], i, p;
	enum policy_action		 a;

	if (!route_pattern_match(&ep->pattern, in->target,
	    in->ig->prefix_pat.nseg, vals, lens)) {
		snprintf(err, errlen, "path does not match the endpoint");
		return -1;
	}
	if (ep->pattern.nseg == 0)
		buf_append_char(out, '/');
	for (i = 0, p = 0; i < ep->pattern.nseg; i++) {
		buf_append_char(out, '/');
		if (!ep->pattern.is_param[i]) {
			route_encode(out, ep->pattern.seg[i],
			    strlen(ep->pattern.seg[i]));
			continue;
		}
		a = ep->params[p].action;
		if (rewrite_text(in->tok, a, vals[p], lens[p], out) != 0) {
			/* A path cannot lose a segment: refuse the call. */
			snprintf(err, errlen, "path parameter \"%s\" cannot be "
			    "transformed by its action", ep->params[p].name);
			return -1;
		}
		policy_report_add(rep, a, ep->params[p].name,
		    strlen(ep->params[p].name));
		rep->count[a]++;
		p++;
	}
	return 0;
}

/*
 * Each name=value pair of a query string (form = 0, rules ep->query) or
 * of a form body (form = 1, root-level body rules) decided on its own;
 * unlisted pairs dropped, the rest re-encoded canonically. The first pair
 * written is preceded by first ('?' for a query, nothing for a body), the
 * others by '&'. 0, or -1 with err.
 */
static int
rewrite_pairs(const struct rewrite_in *in, const char *q, size_t qlen,
    int form, const char *first, struct buf *out, struct policy_report *rep,
    char *err, size_t errlen)
{
	const struct conf_endpoint	*ep = in->ep;
	struct route_query_iter		 qi;
	struct buf			 repath = { 0 };
	enum policy_action		 a, listed;
	size_t				 mark;
	int				 rc, xrc, n = 0;

	route_query_init(&qi, q, qlen);
	while ((rc = route_query_next(&qi, err, errlen)) == 1) {
		if (form)
			listed = policy_rules_root(ep->request, qi.name.data,
			    qi.name.len, &repath);
		else
			listed = ep->query ? policy_names_lookup(ep->query,
			    qi.name.data, qi.name.len) : POLICY_DROP;
		a = listed;
		mark = out->len;
		if (a != POLICY_DROP) {
			if (n > 0)
				buf_append_char(out, '&');
			else
				buf_append_str(out, first);
			route_encode(out, qi.name.data, qi.name.len);
			if (qi.has_value) {
				buf_append_char(out, '=');
				xrc = rewrite_text(in->tok, a, qi.value.data,
				    qi.value.len, out);
				if (xrc == -1) {
					snprintf(err, errlen, "a %s could not be "
					    "transformed by %s", form ? "field" :
					    "parameter", policy_action_name(a));
					rc = -1;
					break;
				}
				if (xrc == 1) {
					/* refused by its action: dropped */
					buf_truncate(out, mark);
					rep->dropped_invalid++;
					a = POLICY_DROP;
				}
			}
		}
		rep->count[a]++;
		if (a != POLICY_DROP)
			n++;
		/* A name no rule lists may itself be data: "*". */
		if (form)
			policy_report_add(rep, a, repath.data, repath.len);
		else if (listed == POLICY_DROP)
			policy_report_add(rep, a, "*", 1);
		else
			policy_report_add(rep, a, qi.name.data, qi.name.len);
	}
	route_query_free(&qi);
	buf_free(&repath);
	return rc == -1 ? -1 : 0;
}

int
rewrite_request(const struct rewrite_in *in, struct buf *out,
    size_t *body_len, struct rewrite_report *rep, char *err, size_t errlen)
{
	const struct conf_endpoint	*ep = in->ep;
	const struct conf_account	*acct = in->acct;
	struct policy_transform		 xf = { token_xform_request, in->tok };
	struct buf			 body = { 0 };
	char				 e[160];
	size_t				 i;

	/* Body first: a refusal must not leave anything half-built. */
	if (in->body_len > 0 && ep->request == NULL) {
		snprintf(err, errlen, "this endpoint takes no request body");
		goto fail;
	}
	if (in->body_len > 0 && in->form) {
		if (rewrite_pairs(in, in->body, in->body_len, 1, "", &body,
		    &rep->fields, e, sizeof(e)) == -1) {
			snprintf(err, errlen, "request body: %s", e);
			goto fail;
		}
	} else if (in->body_len > 0 && policy_apply_json(ep->request,
	    in->json, in->body, in->body_len, &xf, &body, &rep->fields, e,
	    sizeof(e)) == -1) {
		snprintf(err, errlen, "request body: %s", e);
		goto fail;
	}
	buf_append_str(out, ep->method);
	buf_append_char(out, ' ');
	if (rewrite_path(in, out, &rep->params, err, errlen) == -1)
		goto fail;
	if (in->target->query != NULL && rewrite_pairs(in, in->target->query,
	    in->target->query_len, 0, "?", out, &rep->query, e,
	    sizeof(e)) == -1) {
		snprintf(err, errlen, "query: %s", e);
		goto fail;
	}
	buf_append_str(out, " HTTP/1.1\r\n");
	http_header_append(out, "Host", 4, acct->server_name,
	    strlen(acct->server_name));
	/* Listed headers from the service; X-Request-Id is subgate's own. */
	for (i = 0; i < in->nheaders; i++) {
		const struct http_header *h = &in->headers[i];
		if (policy_names_lookup(in->ig->headers_allow, h->name,
		    h->name_len) != POLICY_ALLOW) {
			rep->headers.count[POLICY_DROP]++;
			policy_report_add(&rep->headers, POLICY_DROP, "*", 1);
			continue;
		}
		rep->headers.count[POLICY_ALLOW]++;
		policy_report_add(&rep->headers, POLICY_ALLOW, h->name,
		    h->name_len);
		if (h->name_len == 12 &&
		    strncasecmp(h->name, "X-Request-Id", 12) == 0)
			http_header_append(out, h->name, h->name_len,
			    in->request_id, strlen(in->request_id));
		else
			http_header_append(out, h->name, h->name_len, h->value,
			    h->value_len);
	}
	for (i = 0; i < acct->nset; i++)
		http_header_append(out, acct->set[i].name,
		    strlen(acct->set[i].name), acct->set[i].value,
		    acct->set[i].value_len);
	buf_append_str(out, "Accept-Encoding: identity\r\n");
	if (ep->has_request && (in->body_len > 0 ||
	    (strcmp(ep->method, "GET") != 0 && strcmp(ep->method, "HEAD") != 0))) {
		buf_append_str(out, in->form ?
		    "Content-Type: application/x-www-form-urlencoded\r\n" :
		    "Content-Type: application/json\r\n");
		buf_append_str(out, "Content-Length: ");
		buf_append_u64(out, body.len);
		buf_append_str(out, "\r\n");
	}
	buf_append_str(out, "\r\n");
	if (buf_append(out, body.data, body.len) == -1) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	*body_len = body.len;
	buf_free(&body);
	return 0;
fail:
	buf_free(&body);
	return -1;
}
