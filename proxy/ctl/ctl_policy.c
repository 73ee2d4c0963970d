/* ctl_policy.c -- subgatectl policy: explain (what a processor would receive) and diff (what a change discloses) */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "ctl.h"
#include "keys.h"
#include "rewrite.h"
#include "route.h"
#include "token.h"

/* Reviewer tools run where no certificate or secret file is. */
#define CTL_POLICY_LOAD	(((1u << POLICY_NACTIONS) - 1) | CONF_NO_FILES)

#define EXPLAIN_MAX_HEADERS	64

static int
usage(void)
{
	fprintf(stderr,
	    "usage: subgatectl policy explain -c FILE --integration I --method M "
	    "--path P\n"
	    "                  [--tenant T] [--header 'Name: value']... "
	    "[BODYFILE|-]\n"
	    "       subgatectl policy diff OLD.conf NEW.conf\n");
	return 2;
}

/* ---- explain ---- */

struct xrow {
	const char	*where;		/* param, query, header, body */
	char		*path;
	char		*decision;
};

struct explain {
	const struct conf_integration	*ig;
	const struct conf_endpoint	*ep;
	struct token_ctx		*tok;
	struct xrow			*rows;
	size_t				 nrows, cap;
	int				 oom;
};

static void
row_add(struct explain *x, const char *where, const char *path,
    size_t pathlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
row_add(struct explain *x, const char *where, const char *path,
    size_t pathlen, const char *fmt, ...)
{
	struct xrow	*r;
	va_list		 ap;
	char		*d = NULL, *p = NULL;
	size_t		 i;

	if (x->nrows == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 32;

		if ((r = realloc(x->rows, cap * sizeof(*r))) == NULL) {
			x->oom = 1;
			return;
		}
		x->rows = r;
		x->cap = cap;
	}
	/* paths come from the input: keep control bytes off the terminal */
	if ((p = malloc(pathlen * 4 + 1)) == NULL) {
		x->oom = 1;
		return;
	}
	for (i = 0, d = p; i < pathlen; i++) {
		unsigned char c = (unsigned char)path[i];

		if (c < 0x20 || c == 0x7f)
			d += sprintf(d, "\\x%02x", c);
		else
			*d++ = (char)c;
	}
	*d = '\0';
	va_start(ap, fmt);
	if (vasprintf(&d, fmt, ap) == -1) {
		va_end(ap);
		free(p);
		x->oom = 1;
		return;
	}
	va_end(ap);
	r = &x->rows[x->nrows++];
	r->where = where;
	r->path = p;
	r->decision = d;
}

/* One body decision from policy_explain_json. */
static int
explain_body_cb(void *arg, const struct policy_decision *d)
{
	struct explain	*x = arg;
	struct buf	 t = { 0 };
	enum policy_action a;
	size_t		 i;
	int		 rc;

	if (d->container == POLICY_NONSCALAR) {
		/* the rule's own action, for the message */
		a = POLICY_DROP;
		for (i = 0; i < policy_rules_count(x->ep->request); i++)
			if (policy_rules_path(x->ep->request, i, &a) == d->rule)
				break;
		row_add(x, "body", d->path, d->pathlen, "drop (request.%s "
		    "%s names a scalar; an object or array is here)",
		    policy_action_name(a), d->rule);
		return 0;
	}
	if (d->container == POLICY_EMPTY) {
		if (d->rule == NULL)
			row_add(x, "body", d->path, d->pathlen, "empty -> drop");
		else
			row_add(x, "body", d->path, d->pathlen, "%s (request.%s "
			    "%s): kept empty", policy_action_name(d->action),
			    policy_action_name(d->action), d->rule);
		return 0;
	}
	if (d->rule == NULL) {
		row_add(x, "body", d->path, d->pathlen, "not listed -> drop");
		return 0;
	}
	if (d->action != POLICY_ALLOW && d->action != POLICY_DROP) {
		/* the same transform the gateway runs: does it refuse? */
		rc = token_xform_request(x->tok, d->action, d->value, &t);
		buf_free(&t);
		if (rc == -1)
			return -1;
		if (rc == 1) {
			row_add(x, "body", d->path, d->pathlen, "%s (request.%s "
			    "%s): value refused -> drop",
			    policy_action_name(d->action),
			    policy_action_name(d->action), d->rule);
			return 0;
		}
	}
	row_add(x, "body", d->path, d->pathlen, "%s (request.%s %s)",
	    policy_action_name(d->action), policy_action_name(d->action),
	    d->rule);
	return 0;
}

/* A form field name as a rule would name it (quoted when needed). */
static void
form_name(struct buf *b, const char *k, size_t len)
{
	size_t	 i;
	int	 quote = len == 0;

	buf_truncate(b, 0);
	for (i = 0; i < len; i++)
		if (strchr(".[]*\"", k[i]) != NULL)
			quote = 1;
	if (!quote) {
		buf_append(b, k, len);
		return;
	}
	buf_append_char(b, '"');
	for (i = 0; i < len; i++) {
		if (k[i] == '"' || k[i] == '\\')
			buf_append_char(b, '\\');
		buf_append_char(b, k[i]);
	}
	buf_append_char(b, '"');
}

/* Name=value pairs: the query (form = 0) or a form body (form = 1). */
static int
explain_pairs(struct explain *x, const char *q, size_t qlen, int form,
    char *err, size_t errlen)
{
	struct route_query_iter	 qi;
	struct buf		 name = { 0 }, t = { 0 };
	const char		*rule, *where = form ? "body" : "query";
	enum policy_action	 a;
	int			 rc, xrc;

	route_query_init(&qi, q, qlen);
	while ((rc = route_query_next(&qi, err, errlen)) == 1) {
		if (form) {
			a = policy_explain_root(x->ep->request, qi.name.data,
			    qi.name.len, &rule);
			form_name(&name, qi.name.data, qi.name.len);
		} else {
			a = x->ep->query ? policy_names_lookup(x->ep->query,
			    qi.name.data, qi.name.len) : POLICY_DROP;
			rule = a == POLICY_DROP ? NULL : qi.name.data;
			buf_truncate(&name, 0);
			buf_append(&name, qi.name.data, qi.name.len);
		}
		if (rule == NULL) {
			row_add(x, where, name.data, name.len,
			    "not listed -> drop");
			continue;
		}
		xrc = 0;
		if (a != POLICY_ALLOW && qi.has_value) {
			buf_truncate(&t, 0);
			xrc = token_apply_text(x->tok, a, qi.value.data,
			    qi.value.len, &t);
		}
		if (xrc == -1) {
			snprintf(err, errlen, "a %s could not be transformed",
			    form ? "field" : "parameter");
			rc = -1;
			break;
		}
		row_add(x, where, name.data, name.len, "%s (%s.%s %s)%s",
		    policy_action_name(a), form ? "request" : "query",
		    policy_action_name(a), rule,
		    xrc == 1 ? ": value refused -> drop" : "");
	}
	route_query_free(&qi);
	buf_free(&name);
	buf_free(&t);
	return rc == -1 ? -1 : 0;
}

static int
read_all(const char *path, size_t max, struct buf *out, char *err,
    size_t errlen)
{
	FILE	*f;
	char	 tmp[8192];
	size_t	 n;

	if (strcmp(path, "-") == 0)
		f = stdin;
	else if ((f = fopen(path, "rb")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
		if (out->len + n > max) {
			snprintf(err, errlen, "%s: body is larger than "
			    "limits.max_body_bytes (%zu)", path, max);
			goto fail;
		}
		if (buf_append(out, tmp, n) == -1) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (f != stdin)
		fclose(f);
	return 0;
fail:
	if (f != stdin)
		fclose(f);
	return -1;
}

/* Is s[0..len) a request id the gateway forwards as given? */
static int
request_id_ok(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0 || len > 64)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' &&
		    s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		    strchr("._:-", s[i]) != NULL))
			return 0;
	return 1;
}

/* Headers the gateway always writes itself (never listable). */
static int
framing_header(const char *n, size_t len)
{
	static const char *const names[] = { "Host", "Content-Type",
	    "Content-Length", "Accept-Encoding", "Transfer-Encoding",
	    "Connection", NULL };
	size_t	 i;

	for (i = 0; names[i] != NULL; i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], n, len) == 0)
			return 1;
	return 0;
}

/* A header field name: an RFC 9110 token. */
static int
header_name_ok(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' &&
		    s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		    strchr("!#$%&'*+-.^_`|~", s[i]) != NULL))
			return 0;
	return 1;
}

static void
print_rows(const struct explain *x)
{
	size_t	 i, ww = 5, pw = 4;

	for (i = 0; i < x->nrows; i++) {
		if (strlen(x->rows[i].where) > ww)
			ww = strlen(x->rows[i].where);
		if (strlen(x->rows[i].path) > pw)
			pw = strlen(x->rows[i].path);
	}
	printf("%-*s  %-*s  %s\n", (int)ww, "where", (int)pw, "path",
	    "decision");
	for (i = 0; i < x->nrows; i++)
		printf("%-*s  %-*s  %s\n", (int)ww, x->rows[i].where, (int)pw,
		    x->rows[i].path, x->rows[i].decision);
	if (x->nrows == 0)
		printf("(the request carries no parameters, query, headers or "
		    "body fields)\n");
}

static int
policy_explain(int argc, char **argv)
{
	const char		*cpath = NULL, *iname = NULL, *method = NULL;
	const char		*rpath = NULL, *tname = NULL, *bodyfile = NULL;
	const char		*hdrs[EXPLAIN_MAX_HEADERS];
	struct http_header	 h[EXPLAIN_MAX_HEADERS];
	size_t			 nh = 0, i, body_len = 0;
	struct conf		*c = NULL;
	const struct conf_integration *ig = NULL;
	const struct conf_tenant *tn = NULL;
	const struct conf_use	*use = NULL;
	const struct conf_endpoint *ep = NULL;
	struct conf_account	 acct;
	struct conf_header_set	*set = NULL;
	struct keys_pair	*pair = NULL;
	struct token_ctx	 tok;
	struct json_reader	*jr = NULL;
	struct route_target	 target;
	struct buf		 tgt = { 0 }, body = { 0 }, out = { 0 };
	struct rewrite_in	 in;
	struct rewrite_report	 rep;
	struct explain		 x;
	const char		*vals[ROUTE_MAX_PARAMS];
	size_t			 lens[ROUTE_MAX_PARAMS];
	const char		*rid = "<generated request id>";
	char			 err[1024], e2[512];
	int			 rc = 2, form = 0, have_body = 0, k;

	memset(&target, 0, sizeof(target));
	memset(&rep, 0, sizeof(rep));
	memset(&x, 0, sizeof(x));
	for (k = 1; k < argc; k++) {
		const char **slot = NULL;

		if (strcmp(argv[k], "-c") == 0 ||
		    strcmp(argv[k], "--config") == 0)
			slot = &cpath;
		else if (strcmp(argv[k], "--integration") == 0)
			slot = &iname;
		else if (strcmp(argv[k], "--method") == 0)
			slot = &method;
		else if (strcmp(argv[k], "--path") == 0)
			slot = &rpath;
		else if (strcmp(argv[k], "--tenant") == 0)
			slot = &tname;
		else if (strcmp(argv[k], "--header") == 0) {
			if (k + 1 >= argc || nh == EXPLAIN_MAX_HEADERS) {
				fprintf(stderr, "subgatectl policy explain: "
				    "--header needs 'Name: value' (at most "
				    "%d)\n", EXPLAIN_MAX_HEADERS);
				return usage();
			}
			hdrs[nh++] = argv[++k];
			continue;
		} else if (argv[k][0] != '-' || strcmp(argv[k], "-") == 0) {
			if (bodyfile != NULL) {
				fprintf(stderr, "subgatectl policy explain: "
				    "more than one BODYFILE\n");
				return usage();
			}
			bodyfile = argv[k];
			continue;
		}
		if (slot == NULL || k + 1 >= argc || *slot != NULL) {
			fprintf(stderr, "subgatectl policy explain: unexpected "
			    "or repeated argument \"%s\"\n", argv[k]);
			return usage();
		}
		*slot = argv[++k];
	}
	if (cpath == NULL || iname == NULL || method == NULL || rpath == NULL) {
		fprintf(stderr, "subgatectl policy explain: -c, --integration, "
		    "--method and --path are required\n");
		return usage();
	}

	if ((c = conf_load(cpath, CTL_POLICY_LOAD, err, sizeof(err))) == NULL) {
		fprintf(stderr, "subgatectl policy explain: %s\n", err);
		goto done;
	}
	if ((ig = conf_integration_by_name(c, iname)) == NULL) {
		fprintf(stderr, "subgatectl policy explain: %s: no integration "
		    "named \"%s\"\n", cpath, iname);
		goto done;
	}
	if (tname != NULL) {
		for (i = 0; i < c->ntenants; i++)
			if (strcmp(c->tenants[i].id, tname) == 0)
				tn = &c->tenants[i];
		if (tn == NULL) {
			fprintf(stderr, "subgatectl policy explain: %s: no "
			    "tenant named \"%s\"\n", cpath, tname);
			goto done;
		}
		if ((use = conf_tenant_use(tn, ig)) == NULL) {
			fprintf(stderr, "subgatectl policy explain: %s: tenant "
			    "\"%s\" does not use integration \"%s\"\n", cpath,
			    tname, iname);
			goto done;
		}
	} else {
		for (i = 0; i < c->ntenants && use == NULL; i++)
			if ((use = conf_tenant_use(&c->tenants[i], ig)) != NULL)
				tn = &c->tenants[i];
		if (use == NULL) {
			fprintf(stderr, "subgatectl policy explain: %s: no "
			    "tenant uses integration \"%s\"\n", cpath, iname);
			goto done;
		}
	}

	/* The request target as the service would send it. */
	if (rpath[0] != '/') {
		fprintf(stderr, "subgatectl policy explain: --path must start "
		    "with '/' (the path after the prefix %s)\n", ig->prefix);
		goto done;
	}
	if (strcmp(ig->prefix, "/") != 0)
		buf_append_str(&tgt, ig->prefix);
	if (strcmp(ig->prefix, "/") == 0 || (rpath[1] != '\0' && rpath[1] != '?'))
		buf_append_str(&tgt, rpath);
	else
		buf_append_str(&tgt, rpath + 1);
	if (route_parse_target(tgt.data, tgt.len, &target, e2,
	    sizeof(e2)) == -1) {
		fprintf(stderr, "subgatectl policy explain: --path refused as "
		    "the gateway would refuse it: %s\n", e2);
		goto done;
	}
	/* As conn.c: the most specific pattern wins. */
	for (i = 0; i < ig->nendpoints; i++) {
		const struct conf_endpoint *p = &ig->endpoints[i];

		if (strcmp(p->method, method) == 0 &&
		    route_pattern_match(&p->pattern, &target,
		    ig->prefix_pat.nseg, vals, lens) &&
		    (ep == NULL || p->pattern.nparams < ep->pattern.nparams))
			ep = p;
	}
	if (ep == NULL) {
		fprintf(stderr, "subgatectl policy explain: %s: %s %s is not a "
		    "listed endpoint of integration \"%s\" (the gateway answers "
		    "403 endpoint_not_allowed)\n", cpath, method, rpath, iname);
		goto done;
	}

	for (i = 0; i < nh; i++) {
		const char *colon = strchr(hdrs[i], ':'), *v;

		if (colon == NULL || !header_name_ok(hdrs[i],
		    (size_t)(colon - hdrs[i]))) {
			fprintf(stderr, "subgatectl policy explain: --header "
			    "\"%s\" is not 'Name: value'\n", hdrs[i]);
			goto done;
		}
		for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
			;
		h[i].name = hdrs[i];
		h[i].name_len = (size_t)(colon - hdrs[i]);
		h[i].value = v;
		h[i].value_len = strlen(v);
		while (h[i].value_len > 0 && (v[h[i].value_len - 1] == ' ' ||
		    v[h[i].value_len - 1] == '\t'))
			h[i].value_len--;
		for (k = 0; k < (int)h[i].value_len; k++)
			if ((unsigned char)v[k] < 0x20 && v[k] != '\t') {
				fprintf(stderr, "subgatectl policy explain: "
				    "--header %.*s: control character in the "
				    "value\n", (int)h[i].name_len, h[i].name);
				goto done;
			}
		if (h[i].name_len == 16 && strncasecmp(h[i].name,
		    "Content-Encoding", 16) == 0) {
			fprintf(stderr, "subgatectl policy explain: compressed "
			    "request bodies are refused by the gateway (415)\n");
			goto done;
		}
		if (h[i].name_len == 12 && strncasecmp(h[i].name,
		    "X-Request-Id", 12) == 0 && request_id_ok(h[i].value,
		    h[i].value_len))
			rid = h[i].value;
	}

	if (bodyfile != NULL && read_all(bodyfile, c->limits.max_body_bytes,
	    &body, err, sizeof(err)) == -1) {
		fprintf(stderr, "subgatectl policy explain: %s\n", err);
		goto done;
	}
	have_body = body.len > 0;
	if (have_body) {
		const struct http_header *ct = NULL;

		if (!ep->has_request) {
			fprintf(stderr, "subgatectl policy explain: %s %s takes "
			    "no request body (the gateway answers 400)\n",
			    ep->method, ep->path);
			goto done;
		}
		for (i = 0; i < nh; i++)
			if (h[i].name_len == 12 && strncasecmp(h[i].name,
			    "Content-Type", 12) == 0)
				ct = &h[i];
		if (ct != NULL && (form = rewrite_content_type(ct->value,
		    ct->value_len)) == -1) {
			fprintf(stderr, "subgatectl policy explain: Content-Type "
			    "must be application/json or "
			    "application/x-www-form-urlencoded (the gateway "
			    "answers 415)\n");
			goto done;
		}
	}

	/* Throw-away keys: fixed and public, so the output is reproducible. */
	if ((pair = keys_pair_demo(tn->id, ig->name)) == NULL ||
	    (jr = json_reader_new(c->limits.max_json_depth)) == NULL) {
		fprintf(stderr, "subgatectl policy explain: out of memory\n");
		goto done;
	}
	memset(&tok, 0, sizeof(tok));
	tok.pair = pair;
	tok.tenant = tn->id;
	tok.integration = ig->name;
	tok.token_domain = ig->token_domain;

	/* Secret header values are never read: show where they come from. */
	acct = use->account;
	if (acct.nset > 0) {
		if ((set = calloc(acct.nset, sizeof(*set))) == NULL) {
			fprintf(stderr, "subgatectl policy explain: out of "
			    "memory\n");
			goto done;
		}
		for (i = 0; i < acct.nset; i++) {
			set[i].name = acct.set[i].name;
			set[i].file = acct.set[i].file;
			if (asprintf(&set[i].value, "<secret from %s>",
			    acct.set[i].file) == -1) {
				set[i].value = NULL;
				fprintf(stderr, "subgatectl policy explain: out "
				    "of memory\n");
				goto done;
			}
			set[i].value_len = strlen(set[i].value);
		}
		acct.set = set;
	}

	memset(&in, 0, sizeof(in));
	in.ig = ig;
	in.ep = ep;
	in.acct = &acct;
	in.target = &target;
	in.headers = h;
	in.nheaders = nh;
	in.body = body.data;
	in.body_len = body.len;
	in.request_id = rid;
	in.tok = &tok;
	in.json = jr;
	in.form = form == 1;
	if (rewrite_request(&in, &out, &body_len, &rep, err,
	    sizeof(err)) == -1) {
		fprintf(stderr, "subgatectl policy explain: the gateway would "
		    "refuse this request (400): %s\n", err);
		goto done;
	}

	/* The table: params, query, headers, body, in request order. */
	x.ig = ig;
	x.ep = ep;
	x.tok = &tok;
	for (i = 0; i < ep->pattern.nparams; i++)
		row_add(&x, "param", ep->params[i].name,
		    strlen(ep->params[i].name), "%s (params.%s)",
		    policy_action_name(ep->params[i].action),
		    ep->params[i].name);
	if (target.query != NULL && explain_pairs(&x, target.query,
	    target.query_len, 0, e2, sizeof(e2)) == -1) {
		fprintf(stderr, "subgatectl policy explain: query: %s\n", e2);
		goto done;
	}
	for (i = 0; i < nh; i++) {
		if (policy_names_lookup(ig->headers_allow, h[i].name,
		    h[i].name_len) == POLICY_ALLOW) {
			enum policy_action a;
			const char *listed = NULL;
			size_t j;

			for (j = 0; j < policy_names_count(ig->headers_allow);
			    j++) {
				const char *n = policy_names_at(ig->headers_allow,
				    j, &a);
				if (strlen(n) == h[i].name_len &&
				    strncasecmp(n, h[i].name, h[i].name_len) == 0)
					listed = n;
			}
			row_add(&x, "header", h[i].name, h[i].name_len,
			    "allow (headers.allow %s)%s", listed,
			    h[i].name_len == 12 && strncasecmp(h[i].name,
			    "X-Request-Id", 12) == 0 ? ": the gateway's request "
			    "id is sent" : "");
		} else if (framing_header(h[i].name, h[i].name_len))
			row_add(&x, "header", h[i].name, h[i].name_len,
			    "not listed -> drop (subgate writes its own)");
		else
			row_add(&x, "header", h[i].name, h[i].name_len,
			    "not listed -> drop");
	}
	if (have_body && form) {
		if (explain_pairs(&x, body.data, body.len, 1, e2,
		    sizeof(e2)) == -1) {
			fprintf(stderr, "subgatectl policy explain: request "
			    "body: %s\n", e2);
			goto done;
		}
	} else if (have_body && policy_explain_json(ep->request, jr, body.data,
	    body.len, explain_body_cb, &x, e2, sizeof(e2)) == -1) {
		fprintf(stderr, "subgatectl policy explain: request body: %s\n",
		    e2);
		goto done;
	}
	if (x.oom) {
		fprintf(stderr, "subgatectl policy explain: out of memory\n");
		goto done;
	}

	printf("subgatectl policy explain: integration %s, tenant %s, "
	    "endpoint %s %s\n", ig->name, tn->id, ep->method, ep->path);
	printf("keys: fixed, PUBLIC throw-away keys, not this deployment's: "
	    "tokens, format-preserved values and hashes below are "
	    "reproducible and protect nothing\n");
	printf("recipient: %s (server name %s)\n", acct.upstream,
	    acct.server_name);
	printf("\n== request as the processor receives it (exact bytes, "
	    "CRLF line ends; %zu body bytes) ==\n", body_len);
	fwrite(out.data, 1, out.len, stdout);
	if (body_len > 0)
		fputc('\n', stdout);
	printf("== end of request ==\n\n");
	print_rows(&x);
	rc = 0;
done:
	for (i = 0; i < x.nrows; i++) {
		free(x.rows[i].path);
		free(x.rows[i].decision);
	}
	free(x.rows);
	if (set != NULL) {
		for (i = 0; i < use->account.nset; i++)
			free(set[i].value);
		free(set);
	}
	rewrite_report_free(&rep);
	route_target_free(&target);
	buf_free(&tgt);
	buf_free(&body);
	buf_free(&out);
	json_reader_free(jr);
	keys_pair_free(pair);
	conf_free(c);
	return rc;
}

/* ---- diff ---- */

/*
 * What a change means for the processor. Actions are ordered by
 * visibility (enum policy_action: drop < hash < tokenize < format_preserve
 * < mask < allow). A recipient change (upstream, server name, CA, pins,
 * set headers) and anything new that can send data (an integration, an
 * endpoint, a tenant, a client, a tenant's use of an integration) is more
 * visible. Response detokenisation returns plaintext to the service, not
 * to the processor: a "changed", not a disclosure. Subjects only index
 * the audit log: "changed".
 */
enum dkind {
	D_MORE,
	D_LESS,
	D_RECIPIENT,
	D_CHANGED,
	D_RESPONSE,
};

struct dstate {
	size_t	 more, less, changed;
};

static void __attribute__((format(printf, 3, 4)))
dline(struct dstate *d, enum dkind k, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	switch (k) {
	case D_MORE:
		printf(" (more visible)\n");
		d->more++;
		break;
	case D_LESS:
		printf(" (less visible)\n");
		d->less++;
		break;
	case D_RECIPIENT:
		printf(" (recipient changed: more visible)\n");
		d->more++;
		break;
	case D_CHANGED:
		printf(" (changed)\n");
		d->changed++;
		break;
	case D_RESPONSE:
		printf(" (changed: plaintext returned to the service, not sent "
		    "to the processor)\n");
		d->changed++;
		break;
	}
}

/* A name with its action: a rule, a query parameter, a param, a header. */
struct nact {
	const char		*name;
	enum policy_action	 a;
};

struct nacts {
	struct nact	*v;
	size_t		 n;
};

static int
nacts_push(struct nacts *l, const char *name, enum policy_action a)
{
	struct nact	*v;

	if ((v = realloc(l->v, (l->n + 1) * sizeof(*v))) == NULL)
		return -1;
	l->v = v;
	l->v[l->n].name = name;
	l->v[l->n].a = a;
	l->n++;
	return 0;
}

static int
nacts_rules(struct nacts *l, const struct policy_rules *r)
{
	enum policy_action	 a;
	const char		*p;
	size_t			 i;

	for (i = 0; i < policy_rules_count(r); i++) {
		p = policy_rules_path(r, i, &a);
		if (nacts_push(l, p, a) == -1)
			return -1;
	}
	return 0;
}

static int
nacts_names(struct nacts *l, const struct policy_names *t)
{
	enum policy_action	 a;
	const char		*p;
	size_t			 i;

	for (i = 0; i < policy_names_count(t); i++) {
		p = policy_names_at(t, i, &a);
		if (nacts_push(l, p, a) == -1)
			return -1;
	}
	return 0;
}

static const struct nact *
nacts_find(const struct nacts *l, const char *name, int ci)
{
	size_t	 i;

	for (i = 0; i < l->n; i++)
		if (ci ? strcasecmp(l->v[i].name, name) == 0 :
		    strcmp(l->v[i].name, name) == 0)
			return &l->v[i];
	return NULL;
}

static const char *
dact(const struct nact *n)
{
	return n == NULL ? "not listed" : policy_action_name(n->a);
}

/*
 * Each name whose action differs between o and n, as
 * "WHERE: NAME: OLD -> NEW (more|less visible)". Order of the lists does
 * not matter; new names in n's order, removed ones in o's.
 */
static void
diff_nacts(struct dstate *d, const char *where, const struct nacts *o,
    const struct nacts *n, int ci)
{
	const struct nact	*x;
	size_t			 i;

	for (i = 0; i < n->n; i++) {
		x = nacts_find(o, n->v[i].name, ci);
		if (x != NULL && x->a == n->v[i].a)
			continue;
		dline(d, x == NULL || n->v[i].a > x->a ? D_MORE : D_LESS,
		    "%s: %s: %s -> %s", where, n->v[i].name, dact(x),
		    dact(&n->v[i]));
	}
	for (i = 0; i < o->n; i++)
		if (nacts_find(n, o->v[i].name, ci) == NULL)
			dline(d, D_LESS, "%s: %s: %s -> not listed", where,
			    o->v[i].name, dact(&o->v[i]));
}

/* Set membership: "WHERE: NAME added|removed". */
static void
diff_set(struct dstate *d, const char *where, char *const *o, size_t no,
    char *const *n, size_t nn, int ci, enum dkind added, enum dkind removed)
{
	size_t	 i, j;

	for (i = 0; i < nn; i++) {
		for (j = 0; j < no; j++)
			if (ci ? strcasecmp(o[j], n[i]) == 0 :
			    strcmp(o[j], n[i]) == 0)
				break;
		if (j == no)
			dline(d, added, "%s: %s added", where, n[i]);
	}
	for (j = 0; j < no; j++) {
		for (i = 0; i < nn; i++)
			if (ci ? strcasecmp(o[j], n[i]) == 0 :
			    strcmp(o[j], n[i]) == 0)
				break;
		if (i == nn)
			dline(d, removed, "%s: %s removed", where, o[j]);
	}
}

static int
streq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static const char *
dstr(const char *s)
{
	return s == NULL || *s == '\0' ? "(none)" : s;
}

/* Rule paths of r whose action is a (response rules), as a name array. */
static char **
rule_names(const struct policy_rules *r, enum policy_action a, size_t *n)
{
	enum policy_action	 b;
	const char		*p;
	char			**v;
	size_t			 i;

	*n = 0;
	if ((v = calloc(policy_rules_count(r) + 1, sizeof(*v))) == NULL)
		return NULL;
	for (i = 0; i < policy_rules_count(r); i++) {
		p = policy_rules_path(r, i, &b);
		if (b == a)
			v[(*n)++] = (char *)(uintptr_t)p;
	}
	return v;
}

static int
diff_rule_sets(struct dstate *d, const char *where,
    const struct policy_rules *o, const struct policy_rules *n,
    enum policy_action a, enum dkind added, enum dkind removed)
{
	char	**ov, **nv;
	size_t	 no, nn;

	ov = rule_names(o, a, &no);
	nv = rule_names(n, a, &nn);
	if (ov == NULL || nv == NULL) {
		free(ov);
		free(nv);
		return -1;
	}
	diff_set(d, where, ov, no, nv, nn, 0, added, removed);
	free(ov);
	free(nv);
	return 0;
}

/* Compare one endpoint; o NULL: it is new (everything it passes is new). */
static int
diff_endpoint(struct dstate *d, const char *ig, const struct conf_endpoint *o,
    const struct conf_endpoint *n)
{
	struct nacts	 on = { 0 }, nn = { 0 };
	char		 where[1024];
	size_t		 i;
	int		 rc = -1;

	snprintf(where, sizeof(where), "integrations[%s].endpoints[%s %s]", ig,
	    n->method, n->path);
	if (o == NULL)
		dline(d, D_MORE, "%s: added", where);

	snprintf(where, sizeof(where), "integrations[%s].endpoints[%s %s]"
	    ".params", ig, n->method, n->path);
	for (i = 0; o != NULL && i < o->pattern.nparams; i++)
		if (nacts_push(&on, o->params[i].name, o->params[i].action) == -1)
			goto done;
	for (i = 0; i < n->pattern.nparams; i++)
		if (nacts_push(&nn, n->params[i].name, n->params[i].action) == -1)
			goto done;
	diff_nacts(d, where, &on, &nn, 0);
	on.n = nn.n = 0;

	snprintf(where, sizeof(where), "integrations[%s].endpoints[%s %s]"
	    ".query", ig, n->method, n->path);
	if ((o != NULL && nacts_names(&on, o->query) == -1) ||
	    nacts_names(&nn, n->query) == -1)
		goto done;
	diff_nacts(d, where, &on, &nn, 0);
	on.n = nn.n = 0;

	snprintf(where, sizeof(where), "integrations[%s].endpoints[%s %s]"
	    ".request", ig, n->method, n->path);
	if (o != NULL && o->has_request != n->has_request)
		dline(d, D_CHANGED, "%s: %s", where, n->has_request ?
		    "a request body is now accepted (only the fields listed "
		    "pass)" : "a request body is no longer accepted");
	if ((o != NULL && nacts_rules(&on, o->request) == -1) ||
	    nacts_rules(&nn, n->request) == -1)
		goto done;
	diff_nacts(d, where, &on, &nn, 0);

	snprintf(where, sizeof(where), "integrations[%s].endpoints[%s %s]"
	    ".request.subjects", ig, n->method, n->path);
	/* conf.c stores subjects as hash rules */
	if (diff_rule_sets(d, where, o ? o->subjects : NULL, n->subjects,
	    POLICY_HASH, D_CHANGED, D_CHANGED) == -1)
		goto done;
	snprintf(where, sizeof(where), "integrations[%s].endpoints[%s %s]"
	    ".response.detokenize", ig, n->method, n->path);
	if (diff_rule_sets(d, where, o ? o->response : NULL, n->response,
	    POLICY_TOKENIZE, D_RESPONSE, D_RESPONSE) == -1)
		goto done;
	snprintf(where, sizeof(where), "integrations[%s].endpoints[%s %s]"
	    ".response.format_preserve", ig, n->method, n->path);
	if (diff_rule_sets(d, where, o ? o->response : NULL, n->response,
	    POLICY_FORMAT_PRESERVE, D_RESPONSE, D_RESPONSE) == -1)
		goto done;
	rc = 0;
done:
	free(on.v);
	free(nn.v);
	return rc;
}

/* The same pins, in any order? */
static int
pins_equal(const struct conf_account *a, const struct conf_account *b)
{
	size_t	 i, j;

	if (a->npins != b->npins)
		return 0;
	for (i = 0; i < a->npins; i++) {
		for (j = 0; j < b->npins; j++)
			if (strcmp(a->pins[i], b->pins[j]) == 0)
				break;
		if (j == b->npins)
			return 0;
	}
	return 1;
}

/* The same set headers (names case-insensitive) from the same files? */
static int
sets_equal(const struct conf_account *a, const struct conf_account *b)
{
	size_t	 i, j;

	if (a->nset != b->nset)
		return 0;
	for (i = 0; i < a->nset; i++) {
		for (j = 0; j < b->nset; j++)
			if (strcasecmp(a->set[i].name, b->set[j].name) == 0 &&
			    streq(a->set[i].file, b->set[j].file))
				break;
		if (j == b->nset)
			return 0;
	}
	return 1;
}

/*
 * The recipient fields of two accounts. where names the owner
 * ("integrations[crm]" or "tenants[acme].integrations[crm]"). With base
 * accounts (tenant level), a field is reported only when the tenant
 * overrides it on either side: otherwise the integration's line says it.
 */
static void
diff_account(struct dstate *d, const char *where, const struct conf_account *o,
    const struct conf_account *n, const struct conf_account *obase,
    const struct conf_account *nbase)
{
	char	**on, **nn;
	size_t	 i, j;

#define OVERRIDDEN(f)	(obase == NULL || !streq(o->f, obase->f) || \
			    !streq(n->f, nbase->f))
#define FIELD(f, kind)							\
	if (!streq(o->f, n->f) && OVERRIDDEN(f))			\
		dline(d, kind, "%s." #f ": %s -> %s", where, dstr(o->f),	\
		    dstr(n->f));
	FIELD(upstream, D_RECIPIENT)
	FIELD(server_name, D_RECIPIENT)
	FIELD(ca, D_RECIPIENT)
	FIELD(client_certificate, D_CHANGED)
	FIELD(client_private_key, D_CHANGED)
#undef FIELD
#undef OVERRIDDEN

	if (!pins_equal(o, n) && (obase == NULL || !pins_equal(o, obase) ||
	    !pins_equal(n, nbase))) {
		char wp[1100];

		snprintf(wp, sizeof(wp), "%s.pin_sha256", where);
		diff_set(d, wp, o->pins, o->npins, n->pins, n->npins, 0,
		    D_RECIPIENT, D_RECIPIENT);
	}

	/* set headers: names (case-insensitive) and their files */
	if (sets_equal(o, n) || (obase != NULL && sets_equal(o, obase) &&
	    sets_equal(n, nbase)))
		return;
	on = calloc(o->nset + 1, sizeof(*on));
	nn = calloc(n->nset + 1, sizeof(*nn));
	if (on != NULL && nn != NULL) {
		char ws[1100];

		for (i = 0; i < o->nset; i++)
			on[i] = o->set[i].name;
		for (i = 0; i < n->nset; i++)
			nn[i] = n->set[i].name;
		snprintf(ws, sizeof(ws), "%s.headers.set", where);
		diff_set(d, ws, on, o->nset, nn, n->nset, 1, D_RECIPIENT,
		    D_RECIPIENT);
		for (i = 0; i < n->nset; i++)
			for (j = 0; j < o->nset; j++)
				if (strcasecmp(n->set[i].name,
				    o->set[j].name) == 0 &&
				    !streq(n->set[i].file, o->set[j].file))
					dline(d, D_RECIPIENT, "%s[%s].file: %s "
					    "-> %s", ws,
					    n->set[i].name, o->set[j].file,
					    n->set[i].file);
	}
	free(on);
	free(nn);
}

static int
diff_integration(struct dstate *d, const struct conf_integration *o,
    const struct conf_integration *n)
{
	struct nacts	 on = { 0 }, nn = { 0 };
	char		 where[512];
	size_t		 i, j;
	int		 rc = -1;

	snprintf(where, sizeof(where), "integrations[%s]", n->name);
	if (o == NULL)
		dline(d, D_MORE, "%s: added, recipient %s (server name %s)",
		    where, n->account.upstream, n->account.server_name);
	else {
		if (!streq(o->prefix, n->prefix))
			dline(d, D_CHANGED, "%s.prefix: %s -> %s", where,
			    o->prefix, n->prefix);
		if (!streq(o->token_domain, n->token_domain))
			dline(d, D_CHANGED, "%s.token_domain: %s -> %s", where,
			    dstr(o->token_domain), dstr(n->token_domain));
		diff_account(d, where, &o->account, &n->account, NULL, NULL);
	}

	snprintf(where, sizeof(where), "integrations[%s].headers.allow",
	    n->name);
	if ((o != NULL && nacts_names(&on, o->headers_allow) == -1) ||
	    nacts_names(&nn, n->headers_allow) == -1)
		goto done;
	diff_nacts(d, where, &on, &nn, 1);

	for (i = 0; i < n->nendpoints; i++) {
		const struct conf_endpoint *oe = NULL, *ne = &n->endpoints[i];

		for (j = 0; o != NULL && j < o->nendpoints; j++)
			if (strcmp(o->endpoints[j].method, ne->method) == 0 &&
			    strcmp(o->endpoints[j].path, ne->path) == 0)
				oe = &o->endpoints[j];
		if (diff_endpoint(d, n->name, oe, ne) == -1)
			goto done;
	}
	for (j = 0; o != NULL && j < o->nendpoints; j++) {
		const struct conf_endpoint *oe = &o->endpoints[j];

		for (i = 0; i < n->nendpoints; i++)
			if (strcmp(n->endpoints[i].method, oe->method) == 0 &&
			    strcmp(n->endpoints[i].path, oe->path) == 0)
				break;
		if (i == n->nendpoints)
			dline(d, D_LESS, "integrations[%s].endpoints[%s %s]: "
			    "removed", n->name, oe->method, oe->path);
	}
	rc = 0;
done:
	free(on.v);
	free(nn.v);
	return rc;
}

static const struct conf_tenant *
tenant_by_id(const struct conf *c, const char *id)
{
	size_t	 i;

	for (i = 0; i < c->ntenants; i++)
		if (strcmp(c->tenants[i].id, id) == 0)
			return &c->tenants[i];
	return NULL;
}

static const struct conf_use *
use_by_name(const struct conf_tenant *t, const char *ig)
{
	size_t	 i;

	for (i = 0; t != NULL && i < t->nuses; i++)
		if (strcmp(t->uses[i].integration->name, ig) == 0)
			return &t->uses[i];
	return NULL;
}

static void
diff_tenant(struct dstate *d, const struct conf_tenant *o,
    const struct conf_tenant *n)
{
	const struct conf_use	*ou, *nu;
	char			 where[512], w2[1024];
	size_t			 i;

	snprintf(where, sizeof(where), "tenants[%s]", n->id);
	if (o == NULL) {
		struct buf c = { 0 }, l = { 0 };

		for (i = 0; i < n->nclients; i++)
			buf_printf(&c, "%s%s", i ? ", " : "", n->clients[i]);
		for (i = 0; i < n->nuses; i++)
			buf_printf(&l, "%s%s", i ? ", " : "",
			    n->uses[i].integration->name);
		dline(d, D_MORE, "%s: added, clients %s, using %s", where,
		    c.len ? c.data : "(none)", l.len ? l.data : "no integration");
		buf_free(&c);
		buf_free(&l);
		return;
	} else if (!streq(o->phone_country_code, n->phone_country_code))
		dline(d, D_CHANGED, "%s.phone_country_code: %s -> %s", where,
		    dstr(o->phone_country_code), dstr(n->phone_country_code));
	snprintf(w2, sizeof(w2), "%s.clients", where);
	diff_set(d, w2, o ? o->clients : NULL, o ? o->nclients : 0,
	    n->clients, n->nclients, 0, D_MORE, D_LESS);
	for (i = 0; i < n->nuses; i++) {
		nu = &n->uses[i];
		snprintf(w2, sizeof(w2), "%s.integrations", where);
		if ((ou = use_by_name(o, nu->integration->name)) == NULL) {
			if (o != NULL)
				dline(d, D_MORE, "%s: %s added", w2,
				    nu->integration->name);
			continue;
		}
		snprintf(w2, sizeof(w2), "%s.integrations[%s]", where,
		    nu->integration->name);
		diff_account(d, w2, &ou->account, &nu->account,
		    &ou->integration->account, &nu->integration->account);
	}
	for (i = 0; o != NULL && i < o->nuses; i++)
		if (use_by_name(n, o->uses[i].integration->name) == NULL)
			dline(d, D_LESS, "%s.integrations: %s removed", where,
			    o->uses[i].integration->name);
}

static int
policy_diff(int argc, char **argv)
{
	struct conf	*o = NULL, *n = NULL;
	struct dstate	 d;
	char		 err[1024];
	size_t		 i;
	int		 rc = 2;

	if (argc != 3)
		return usage();
	if ((o = conf_load(argv[1], CTL_POLICY_LOAD, err, sizeof(err))) == NULL ||
	    (n = conf_load(argv[2], CTL_POLICY_LOAD, err, sizeof(err))) == NULL) {
		fprintf(stderr, "subgatectl policy diff: %s\n", err);
		goto done;
	}
	memset(&d, 0, sizeof(d));
	for (i = 0; i < n->nintegrations; i++)
		if (diff_integration(&d, conf_integration_by_name(o,
		    n->integrations[i].name), &n->integrations[i]) == -1) {
			fprintf(stderr, "subgatectl policy diff: out of "
			    "memory\n");
			goto done;
		}
	for (i = 0; i < o->nintegrations; i++)
		if (conf_integration_by_name(n, o->integrations[i].name) == NULL)
			dline(&d, D_LESS, "integrations[%s]: removed",
			    o->integrations[i].name);
	for (i = 0; i < n->ntenants; i++)
		diff_tenant(&d, tenant_by_id(o, n->tenants[i].id),
		    &n->tenants[i]);
	for (i = 0; i < o->ntenants; i++)
		if (tenant_by_id(n, o->tenants[i].id) == NULL)
			dline(&d, D_LESS, "tenants[%s]: removed",
			    o->tenants[i].id);
	printf("%zu more visible, %zu less visible, %zu other changes\n",
	    d.more, d.less, d.changed);
	rc = d.more > 0 ? 1 : 0;
done:
	conf_free(o);
	conf_free(n);
	return rc;
}

int
ctl_policy_main(int argc, char **argv)
{
	if (argc < 1)
		return usage();
	if (strcmp(argv[0], "explain") == 0)
		return policy_explain(argc, argv);
	if (strcmp(argv[0], "diff") == 0)
		return policy_diff(argc, argv);
	fprintf(stderr, "subgatectl policy: unknown command \"%s\"\n", argv[0]);
	return usage();
}
