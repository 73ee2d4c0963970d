/* test_rewrite.c -- the upstream request built from the policy decision: JSON and form bodies, params, query, headers */
#include <sys/stat.h>

#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "keys.h"
#include "rewrite.h"
#include "route.h"
#include "token.h"

#define ALL_ACTIONS	((1u << POLICY_NACTIONS) - 1)

/*
 * One config for every test, loaded in a temporary directory that holds
 * the dummy certificate files and the secret header file. Values named
 * CANARY... must never reach the output.
 */
static const char test_conf[] =
    "listen = { address = \"127.0.0.1\"; port = 8443; };\n"
    "tls = { certificate = \"c.crt\"; private_key = \"c.key\"; "
    "client_ca = \"ca.crt\"; };\n"
    "tenants = ( { id = \"acme\"; clients = [ \"spiffe://t/acme\" ]; "
    "integrations = [ \"crm\" ]; } );\n"
    "integrations = ( { name = \"crm\"; prefix = \"/crm\";\n"
    "  upstream = \"https://127.0.0.1:9444\"; server_name = \"crm.processor.test\";\n"
    "  ca = \"ca.crt\"; client_certificate = \"c.crt\"; client_private_key = \"c.key\";\n"
    "  token_domain = \"tokens.example.com\";\n"
    "  headers = { allow = [ \"Accept\", \"X-Request-Id\" ];\n"
    "    set = ( { name = \"Authorization\"; file = \"crm.token\"; } ); };\n"
    "  endpoints = (\n"
    /* 0 */
    "    { method = \"POST\"; path = \"/v1/contacts\";\n"
    "      request = { allow = [ \"contact.first_name\", \"tags[]\", \"meta.**\" ];\n"
    "        tokenize = [ \"contact.email\" ]; format_preserve = [ \"contact.phone\" ];\n"
    "        hash = [ \"call.caller_id\" ]; mask = [ \"contact.card\" ]; }; },\n"
    /* 1 */
    "    { method = \"GET\"; path = \"/v1/items/{a}/{t}/{f}/{h}/{m}\";\n"
    "      params = { a = \"allow\"; t = \"tokenize\"; f = \"format_preserve\";\n"
    "        h = \"hash\"; m = \"mask\"; };\n"
    "      query = { allow = [ \"qa\" ]; tokenize = [ \"qt\" ];\n"
    "        format_preserve = [ \"qf\" ]; hash = [ \"qh\" ]; mask = [ \"qm\" ]; }; },\n"
    /* 2 */
    "    { method = \"POST\"; path = \"/v1/form\";\n"
    "      request = { allow = [ \"first_name\", \"contact.email\", \"meta.**\" ];\n"
    "        tokenize = [ \"\\\"contact.email\\\"\", \"email\" ];\n"
    "        format_preserve = [ \"phone\" ]; hash = [ \"caller\" ];\n"
    "        mask = [ \"card\" ]; }; },\n"
    /* 3 */
    "    { method = \"POST\"; path = \"/v1/star\"; request = { allow = [ \"*\" ]; }; },\n"
    /* 4 */
    "    { method = \"POST\"; path = \"/v1/all\"; request = { hash = [ \"**\" ]; }; },\n"
    /* 5 */
    "    { method = \"GET\"; path = \"/v1/plain\"; },\n"
    /* 6 */
    "    { method = \"POST\"; path = \"/v1/empty\"; request = { }; }\n"
    "  ); } );\n";

enum { EP_CONTACTS, EP_ITEMS, EP_FORM, EP_STAR, EP_ALL, EP_PLAIN, EP_EMPTY };

static char		 tmpdir[PATH_MAX];
static char		 srcdir[PATH_MAX];
static struct conf	*cf;
static struct keys_pair	*pair;
static struct json_reader *jr;

static void
write_file(const char *name, const char *text, mode_t mode)
{
	int	 fd;

	fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static int
setup(void **state)
{
	char	 err[512];

	(void)state;
	if (getcwd(srcdir, sizeof(srcdir)) == NULL)
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_rewrite.XXXXXX");
	if (mkdtemp(tmpdir) == NULL || chdir(tmpdir) == -1)
		return -1;
	write_file("c.crt", "dummy\n", 0644);
	write_file("c.key", "dummy\n", 0600);
	write_file("ca.crt", "dummy\n", 0644);
	write_file("crm.token", "Bearer s3cret-crm\n", 0600);
	write_file("t.conf", test_conf, 0644);
	if ((cf = conf_load("t.conf", ALL_ACTIONS, err, sizeof(err))) == NULL) {
		fprintf(stderr, "conf_load: %s\n", err);
		return -1;
	}
	if ((pair = keys_pair_demo("acme", "crm")) == NULL)
		return -1;
	if ((jr = json_reader_new(32)) == NULL)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char	 cmd[PATH_MAX + 16];

	(void)state;
	conf_free(cf);
	keys_pair_free(pair);
	json_reader_free(jr);
	if (chdir(srcdir) == -1)
		return -1;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct token_ctx
tok_ctx(void)
{
	struct token_ctx	 t;

	memset(&t, 0, sizeof(t));
	t.pair = pair;
	t.tenant = "acme";
	t.integration = "crm";
	t.token_domain = "tokens.example.com";
	return t;
}

/* What rewrite must write for a text value under a: the action's output, percent-encoded. */
static void
expect_text(struct buf *b, enum policy_action a, const char *v)
{
	struct token_ctx	 t = tok_ctx();
	struct buf		 x = { 0 };

	if (a == POLICY_ALLOW) {
		assert_int_equal(route_encode(b, v, strlen(v)), 0);
		return;
	}
	assert_int_equal(token_apply_text(&t, a, v, strlen(v), &x), 0);
	assert_int_equal(route_encode(b, x.data, x.len), 0);
	buf_free(&x);
}

struct req {
	int			 ep;
	const char		*target;
	const char		*headers[8];	/* "Name: value" */
	const char		*body;
	int			 form;
};

struct res {
	int			 rc;
	struct buf		 out;
	size_t			 body_len;
	struct rewrite_report	 rep;
	char			 err[256];
	char			*head;		/* out up to and including CRLFCRLF */
	const char		*body;		/* the tail */
};

static void
res_free(struct res *r)
{
	buf_free(&r->out);
	rewrite_report_free(&r->rep);
	free(r->head);
}

static void
run(const struct req *q, struct res *r)
{
	struct rewrite_in	 in;
	struct route_target	 t;
	struct http_header	 h[8];
	struct token_ctx	 tok = tok_ctx();
	const struct conf_use	*use;
	char			 err[256];
	const char		*colon, *end;
	size_t			 n;

	memset(r, 0, sizeof(*r));
	memset(&in, 0, sizeof(in));
	memset(&t, 0, sizeof(t));
	assert_int_equal(route_parse_target(q->target, strlen(q->target), &t,
	    err, sizeof(err)), 0);
	for (n = 0; n < 8 && q->headers[n] != NULL; n++) {
		colon = strchr(q->headers[n], ':');
		assert_non_null(colon);
		h[n].name = q->headers[n];
		h[n].name_len = (size_t)(colon - q->headers[n]);
		h[n].value = colon + 2;
		h[n].value_len = strlen(colon + 2);
	}
	use = conf_tenant_use(&cf->tenants[0], &cf->integrations[0]);
	assert_non_null(use);
	in.ig = &cf->integrations[0];
	in.ep = &cf->integrations[0].endpoints[q->ep];
	in.acct = &use->account;
	in.target = &t;
	in.headers = h;
	in.nheaders = n;
	in.body = q->body;
	in.body_len = q->body ? strlen(q->body) : 0;
	in.request_id = "rid-0001";
	in.tok = &tok;
	in.json = jr;
	in.form = q->form;
	r->rc = rewrite_request(&in, &r->out, &r->body_len, &r->rep, r->err,
	    sizeof(r->err));
	route_target_free(&t);
	if (r->rc != 0)
		return;
	end = strstr(r->out.data, "\r\n\r\n");
	assert_non_null(end);
	end += 4;
	r->head = strndup(r->out.data, (size_t)(end - r->out.data));
	r->body = end;
	/* the body is the tail of out, and exactly body_len long */
	assert_int_equal(r->out.len - (size_t)(end - r->out.data), r->body_len);
}

/* The Content-Length header's value, or -1 when there is none. */
static long
content_length(const struct res *r)
{
	const char	*p = strstr(r->head, "\r\nContent-Length: ");

	if (p == NULL)
		return -1;
	assert_null(strstr(p + 2, "\r\nContent-Length: "));
	return strtol(p + 18, NULL, 10);
}

static void
assert_no_canary(const struct res *r)
{
	assert_null(memmem(r->out.data, r->out.len, "CANARY", 6));
	assert_null(memmem(r->out.data, r->out.len, "canary", 6));
}

/* Is path listed under action a in the report? */
static int
rep_has(const struct policy_report *rep, enum policy_action a,
    const char *path)
{
	const char	*p = rep->paths[a].data, *end = p + rep->paths[a].len;

	while (p != NULL && p < end) {
		if (strcmp(p, path) == 0)
			return 1;
		p += strlen(p) + 1;
	}
	return 0;
}

/* ---- tests ---- */

static void
test_json_body(void **state)
{
	struct req	 q = { EP_CONTACTS, "/crm/v1/contacts",
	    { "Content-Type: application/json", NULL },
	    "{\"contact\":{\"first_name\":\"Ada\",\"email\":\"ada@example.com\","
	    "\"phone\":\"+1 (555) 010-0199\",\"card\":\"4111111111111111\","
	    "\"ssn\":\"CANARY-ssn\",\"notes\":{\"x\":\"CANARY-notes\"}},"
	    "\"call\":{\"caller_id\":\"5550100199\",\"transcript\":\"CANARY-t\"},"
	    "\"tags\":[\"a\",{\"k\":\"CANARY-obj\"},2],"
	    "\"meta\":{\"deep\":[1,{\"z\":null}]},"
	    "\"CANARY-key\":1}", 0 };
	struct res	 r;
	struct buf	 want = { 0 };
	struct buf	 tmp = { 0 };
	struct token_ctx t = tok_ctx();
	struct policy_transform xf = { token_xform_request, &t };
	struct policy_report prep;

	(void)state;
	run(&q, &r);
	assert_int_equal(r.rc, 0);
	assert_no_canary(&r);
	/* the body is what the policy engine decides, nothing else */
	memset(&prep, 0, sizeof(prep));
	assert_int_equal(policy_apply_json(cf->integrations[0].endpoints[0].request,
	    jr, q.body, strlen(q.body), &xf, &tmp, &prep, NULL, 0), 0);
	assert_string_equal(r.body, tmp.data);
	policy_report_free(&prep);
	assert_non_null(strstr(r.body, "\"first_name\":\"Ada\""));
	assert_non_null(strstr(r.body, "\"email\":\"tok1.1."));
	assert_non_null(strstr(r.body, "\"card\":\"************1111\""));
	assert_non_null(strstr(r.body, "\"caller_id\":\"h1."));
	assert_non_null(strstr(r.body, "\"tags\":[\"a\",2]"));
	assert_non_null(strstr(r.body, "\"meta\":{\"deep\":[1,{\"z\":null}]}"));
	assert_null(strstr(r.body, "ada@example.com"));
	assert_null(strstr(r.body, "5550100199"));
	assert_null(strstr(r.body, "0100199"));
	buf_printf(&want, "POST /v1/contacts HTTP/1.1\r\n"
	    "Host: crm.processor.test\r\n"
	    "Authorization: Bearer s3cret-crm\r\n"
	    "Accept-Encoding: identity\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n\r\n", strlen(r.body));
	assert_string_equal(r.head, want.data);
	assert_int_equal(content_length(&r), (long)r.body_len);
	/* the report names rule paths and "*" for keys no rule names */
	assert_true(rep_has(&r.rep.fields, POLICY_TOKENIZE, "contact.email"));
	assert_true(rep_has(&r.rep.fields, POLICY_DROP, "*"));
	assert_int_equal(r.rep.fields.count[POLICY_FORMAT_PRESERVE], 1);
	buf_free(&want);
	buf_free(&tmp);
	res_free(&r);
}

static void
test_params_each_action(void **state)
{
	struct req	 q = { EP_ITEMS,
	    "/crm/v1/items/plain%20text/ada%40example.com/%2B1%20555%20010%200199/"
	    "5550100199/4111111111111111", { NULL }, NULL, 0 };
	struct res	 r;
	struct buf	 want = { 0 };

	(void)state;
	run(&q, &r);
	assert_int_equal(r.rc, 0);
	buf_append_str(&want, "GET /v1/items/");
	expect_text(&want, POLICY_ALLOW, "plain text");
	buf_append_char(&want, '/');
	expect_text(&want, POLICY_TOKENIZE, "ada@example.com");
	buf_append_char(&want, '/');
	expect_text(&want, POLICY_FORMAT_PRESERVE, "+1 555 010 0199");
	buf_append_char(&want, '/');
	expect_text(&want, POLICY_HASH, "5550100199");
	buf_append_char(&want, '/');
	expect_text(&want, POLICY_MASK, "4111111111111111");
	buf_append_str(&want, " HTTP/1.1\r\nHost: crm.processor.test\r\n"
	    "Authorization: Bearer s3cret-crm\r\n"
	    "Accept-Encoding: identity\r\n\r\n");
	assert_string_equal(r.out.data, want.data);
	assert_non_null(strstr(r.out.data, "/plain%20text/tok1.1."));
	assert_non_null(strstr(r.out.data, "/%2A%2A%2A%2A%2A%2A%2A%2A%2A%2A%2A%2A1111 "));
	assert_null(strstr(r.out.data, "ada%40"));
	assert_null(strstr(r.out.data, "5550100199"));
	/* no body on a GET: no Content-Type, no Content-Length */
	assert_int_equal(content_length(&r), -1);
	assert_null(strstr(r.head, "Content-Type"));
	assert_int_equal(r.body_len, 0);
	assert_true(rep_has(&r.rep.params, POLICY_ALLOW, "a"));
	assert_true(rep_has(&r.rep.params, POLICY_TOKENIZE, "t"));
	assert_true(rep_has(&r.rep.params, POLICY_FORMAT_PRESERVE, "f"));
	assert_true(rep_has(&r.rep.params, POLICY_HASH, "h"));
	assert_true(rep_has(&r.rep.params, POLICY_MASK, "m"));
	buf_free(&want);
	res_free(&r);
}

static void
test_param_refused(void **state)
{
	/* format_preserve of fewer than 6 digits: the path cannot lose a
	 * segment, so the call is refused, never forwarded without it */
	struct req	 q = { EP_ITEMS, "/crm/v1/items/a/b/12345/d/e",
	    { NULL }, NULL, 0 };
	struct res	 r;

	(void)state;
	run(&q, &r);
	assert_int_equal(r.rc, -1);
	assert_string_equal(r.err,
	    "path parameter \"f\" cannot be transformed by its action");
	assert_null(strstr(r.err, "12345"));
	res_free(&r);
}

static void
test_query_each_action(void **state)
{
	struct req	 q = { EP_ITEMS,
	    "/crm/v1/items/a/b/1234567/d/e?qa=x+y&secret=CANARY1&qt=ada%40example.com"
	    "&qf=%2B1%20555%20010%200199&qh=5550100199&qm=4111111111111111"
	    "&qa=second&CANARY2=v&qf=123&qa&qt=again", { NULL }, NULL, 0 };
	struct res	 r;
	struct buf	 want = { 0 };
	const char	*line_end;

	(void)state;
	run(&q, &r);
	assert_int_equal(r.rc, 0);
	assert_no_canary(&r);
	buf_append_str(&want, "?qa=");
	expect_text(&want, POLICY_ALLOW, "x y");
	buf_append_str(&want, "&qt=");
	expect_text(&want, POLICY_TOKENIZE, "ada@example.com");
	buf_append_str(&want, "&qf=");
	expect_text(&want, POLICY_FORMAT_PRESERVE, "+1 555 010 0199");
	buf_append_str(&want, "&qh=");
	expect_text(&want, POLICY_HASH, "5550100199");
	buf_append_str(&want, "&qm=");
	expect_text(&want, POLICY_MASK, "4111111111111111");
	/* repeated names each decided; qf=123 is refused (< 6 digits) and
	 * dropped; a name without a value stays without one */
	buf_append_str(&want, "&qa=second&qa&qt=");
	expect_text(&want, POLICY_TOKENIZE, "again");
	buf_append_str(&want, " HTTP/1.1\r\n");
	line_end = strstr(r.out.data, " HTTP/1.1\r\n");
	assert_non_null(line_end);
	assert_non_null(strstr(r.out.data, want.data));
	assert_ptr_equal(strstr(r.out.data, want.data) + want.len,
	    line_end + strlen(" HTTP/1.1\r\n"));
	assert_int_equal(r.rep.query.count[POLICY_ALLOW], 3);
	assert_int_equal(r.rep.query.count[POLICY_TOKENIZE], 2);
	assert_int_equal(r.rep.query.count[POLICY_FORMAT_PRESERVE], 1);
	assert_int_equal(r.rep.query.count[POLICY_DROP], 3);
	assert_int_equal(r.rep.query.dropped_invalid, 1);
	/* unlisted names may be data: reported as "*" only */
	assert_true(rep_has(&r.rep.query, POLICY_DROP, "*"));
	assert_false(rep_has(&r.rep.query, POLICY_DROP, "secret"));
	assert_true(rep_has(&r.rep.query, POLICY_DROP, "qf"));
	buf_free(&want);
	res_free(&r);
}

static void
test_query_malformed(void **state)
{
	struct req	 q = { EP_ITEMS, "/crm/v1/items/a/b/1234567/d/e?qa=%zz",
	    { NULL }, NULL, 0 };
	struct res	 r;

	(void)state;
	run(&q, &r);
	assert_int_equal(r.rc, -1);
	assert_non_null(strstr(r.err, "query: "));
	res_free(&r);
}

static void
test_form_body(void **state)
{
	struct req	 q = { EP_FORM, "/crm/v1/form",
	    { "Content-Type: application/x-www-form-urlencoded", NULL },
	    "first_name=Ada+Lovelace&contact.email=ada%40example.com"
	    "&email=bob%40example.com&phone=%2B1+555+010+0199&caller=5550100199"
	    "&card=4111111111111111&notes=CANARY-notes&first_name=Second"
	    "&contact=CANARY-contact&phone=12&flag&meta=m%2Fv&CANARY-name=x"
	    "&contact.phone=CANARY-phone", 1 };
	struct res	 r;
	struct buf	 want = { 0 };
	struct buf	 head = { 0 };

	(void)state;
	run(&q, &r);
	assert_int_equal(r.rc, 0);
	assert_no_canary(&r);
	buf_append_str(&want, "first_name=Ada%20Lovelace&contact.email=");
	/* the field "contact.email" matches the quoted rule (tokenize), not
	 * the two-segment rule contact.email (allow) */
	expect_text(&want, POLICY_TOKENIZE, "ada@example.com");
	buf_append_str(&want, "&email=");
	expect_text(&want, POLICY_TOKENIZE, "bob@example.com");
	buf_append_str(&want, "&phone=");
	expect_text(&want, POLICY_FORMAT_PRESERVE, "+1 555 010 0199");
	buf_append_str(&want, "&caller=");
	expect_text(&want, POLICY_HASH, "5550100199");
	buf_append_str(&want, "&card=");
	expect_text(&want, POLICY_MASK, "4111111111111111");
	/* repeated names each decided; phone=12 refused and dropped; meta
	 * matches meta.** as {"meta": ...} would */
	buf_append_str(&want, "&first_name=Second&meta=m%2Fv");
	assert_string_equal(r.body, want.data);
	buf_printf(&head, "POST /v1/form HTTP/1.1\r\n"
	    "Host: crm.processor.test\r\n"
	    "Authorization: Bearer s3cret-crm\r\n"
	    "Accept-Encoding: identity\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\n"
	    "Content-Length: %zu\r\n\r\n", want.len);
	assert_string_equal(r.head, head.data);
	assert_int_equal(content_length(&r), (long)want.len);
	assert_null(strstr(r.out.data, "ada%40"));
	assert_null(strstr(r.out.data, "5550100199"));
	assert_null(strstr(r.out.data, "flag"));
	/* report: literal names in rule syntax, unnamed ones as "*" */
	assert_true(rep_has(&r.rep.fields, POLICY_TOKENIZE, "\"contact.email\""));
	assert_true(rep_has(&r.rep.fields, POLICY_TOKENIZE, "email"));
	assert_true(rep_has(&r.rep.fields, POLICY_ALLOW, "meta.**"));
	assert_true(rep_has(&r.rep.fields, POLICY_DROP, "*"));
	assert_true(rep_has(&r.rep.fields, POLICY_DROP, "phone"));
	assert_false(rep_has(&r.rep.fields, POLICY_DROP, "notes"));
	assert_false(rep_has(&r.rep.fields, POLICY_DROP, "CANARY-name"));
	assert_int_equal(r.rep.fields.count[POLICY_ALLOW], 3);
	assert_int_equal(r.rep.fields.count[POLICY_TOKENIZE], 2);
	assert_int_equal(r.rep.fields.count[POLICY_DROP], 6);
	assert_int_equal(r.rep.fields.dropped_invalid, 1);
	buf_free(&want);
	buf_free(&head);
	res_free(&r);
}

static void
test_form_star_and_dstar(void **state)
{
	struct req	 q1 = { EP_STAR, "/crm/v1/star", { NULL },
	    "a=1&b.c=2&%E2%82%AC=%7E+x&a=3", 1 };
	struct req	 q2 = { EP_ALL, "/crm/v1/all", { NULL }, "x=hello&y.z=", 1 };
	struct res	 r;
	struct buf	 want = { 0 };

	(void)state;
	run(&q1, &r);
	assert_int_equal(r.rc, 0);
	/* canonical re-encoding: '~' as is, space and non-ASCII escaped */
	assert_string_equal(r.body, "a=1&b.c=2&%E2%82%AC=~%20x&a=3");
	assert_int_equal(content_length(&r), 29);
	assert_true(rep_has(&r.rep.fields, POLICY_ALLOW, "*"));
	res_free(&r);

	run(&q2, &r);
	assert_int_equal(r.rc, 0);
	buf_append_str(&want, "x=");
	expect_text(&want, POLICY_HASH, "hello");
	buf_append_str(&want, "&y.z=");
	expect_text(&want, POLICY_HASH, "");
	assert_string_equal(r.body, want.data);
	assert_true(rep_has(&r.rep.fields, POLICY_HASH, "**"));
	buf_free(&want);
	res_free(&r);
}

static void
test_form_refused(void **state)
{
	struct req	 bad_escape = { EP_FORM, "/crm/v1/form", { NULL },
	    "first_name=%4", 1 };
	struct req	 bad_utf8 = { EP_FORM, "/crm/v1/form", { NULL },
	    "first_name=%FF", 1 };
	struct req	 json_as_form = { EP_FORM, "/crm/v1/form", { NULL },
	    "first_name=Ada", 0 };
	struct req	 no_request = { EP_PLAIN, "/crm/v1/plain", { NULL },
	    "a=1", 1 };
	struct res	 r;

	(void)state;
	run(&bad_escape, &r);
	assert_int_equal(r.rc, -1);
	assert_non_null(strstr(r.err, "request body: "));
	res_free(&r);
	run(&bad_utf8, &r);
	assert_int_equal(r.rc, -1);
	res_free(&r);
	/* the same bytes read as JSON are refused: the flag decides */
	run(&json_as_form, &r);
	assert_int_equal(r.rc, -1);
	res_free(&r);
	run(&no_request, &r);
	assert_int_equal(r.rc, -1);
	assert_string_equal(r.err, "this endpoint takes no request body");
	res_free(&r);
}

static void
test_headers(void **state)
{
	struct req	 q = { EP_PLAIN, "/crm/v1/plain", {
	    "Host: CANARY.service.internal", "Accept: application/json",
	    "Cookie: session=CANARY-cookie", "X-Request-Id: client-chosen",
	    "accept: text/plain", "Content-Length: 999",
	    "Authorization: Bearer CANARY-service", NULL }, NULL, 0 };
	struct res	 r;

	(void)state;
	run(&q, &r);
	assert_int_equal(r.rc, 0);
	assert_no_canary(&r);
	/* Host is server_name; X-Request-Id is subgate's id; set headers
	 * come from the secret file, never from the service */
	assert_string_equal(r.out.data, "GET /v1/plain HTTP/1.1\r\n"
	    "Host: crm.processor.test\r\n"
	    "Accept: application/json\r\n"
	    "X-Request-Id: rid-0001\r\n"
	    "accept: text/plain\r\n"
	    "Authorization: Bearer s3cret-crm\r\n"
	    "Accept-Encoding: identity\r\n\r\n");
	assert_int_equal(r.rep.headers.count[POLICY_ALLOW], 3);
	assert_int_equal(r.rep.headers.count[POLICY_DROP], 4);
	assert_true(rep_has(&r.rep.headers, POLICY_DROP, "*"));
	assert_false(rep_has(&r.rep.headers, POLICY_DROP, "Cookie"));
	res_free(&r);
}

static void
test_empty_bodies(void **state)
{
	struct req	 json_empty = { EP_EMPTY, "/crm/v1/empty", { NULL }, NULL, 0 };
	struct req	 form_empty = { EP_EMPTY, "/crm/v1/empty", { NULL }, NULL, 1 };
	struct req	 all_dropped = { EP_EMPTY, "/crm/v1/empty", { NULL },
	    "a=CANARY&b=CANARY", 1 };
	struct req	 json_dropped = { EP_EMPTY, "/crm/v1/empty", { NULL },
	    "{\"a\":\"CANARY\"}", 0 };
	struct res	 r;

	(void)state;
	/* a POST always says how long its (possibly empty) body is */
	run(&json_empty, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(content_length(&r), 0);
	assert_non_null(strstr(r.head, "Content-Type: application/json\r\n"));
	res_free(&r);
	run(&form_empty, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(content_length(&r), 0);
	assert_non_null(strstr(r.head,
	    "Content-Type: application/x-www-form-urlencoded\r\n"));
	res_free(&r);
	run(&all_dropped, &r);
	assert_int_equal(r.rc, 0);
	assert_no_canary(&r);
	assert_int_equal(r.body_len, 0);
	assert_int_equal(content_length(&r), 0);
	res_free(&r);
	run(&json_dropped, &r);
	assert_int_equal(r.rc, 0);
	assert_no_canary(&r);
	assert_string_equal(r.body, "{}");
	assert_int_equal(content_length(&r), 2);
	res_free(&r);
}

/* Every unlisted part of a request, at once: no canary leaves. */
static void
test_unlisted_everything(void **state)
{
	struct req	 q = { EP_ITEMS,
	    "/crm/v1/items/a/b/1234567/d/e?CANARY1=CANARY2&x=CANARY3",
	    { "X-Debug: CANARY4", "Cookie: CANARY5", "Content-Type: CANARY6",
	      "Accept-Encoding: gzip, CANARY7", "X-Forwarded-For: CANARY8",
	      NULL }, NULL, 0 };
	struct res	 r;

	(void)state;
	run(&q, &r);
	assert_int_equal(r.rc, 0);
	assert_no_canary(&r);
	assert_null(strstr(r.out.data, "?"));
	assert_null(strstr(r.out.data, "gzip"));
	assert_null(strstr(r.out.data, "X-Forwarded"));
	res_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_body),
		cmocka_unit_test(test_params_each_action),
		cmocka_unit_test(test_param_refused),
		cmocka_unit_test(test_query_each_action),
		cmocka_unit_test(test_query_malformed),
		cmocka_unit_test(test_form_body),
		cmocka_unit_test(test_form_star_and_dstar),
		cmocka_unit_test(test_form_refused),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_empty_bodies),
		cmocka_unit_test(test_unlisted_everything),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
