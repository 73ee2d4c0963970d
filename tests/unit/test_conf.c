/* test_conf.c -- configuration loader: good configs, and bad ones with their exact messages */
#include <sys/stat.h>

#include <errno.h>
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
#include <openssl/ssl.h>

#include "conf.h"

/*
 * Every test runs in a fresh temporary directory holding dummy certificate
 * files (they only need to exist: conf.c does not load them) and secret
 * files, so file names in configs and messages are short and fixed.
 */
static char	 tmpdir[PATH_MAX];
static char	 srcdir[PATH_MAX];

#define ALL_ACTIONS	((1u << POLICY_NACTIONS) - 1)
#define ALLOW_ONLY	((1u << POLICY_ALLOW) | (1u << POLICY_DROP))

static void
write_file(const char *name, const char *text, mode_t mode)
{
	int	 fd;

	unlink(name);
	fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static int
setup(void **state)
{
	(void)state;
	if (getcwd(srcdir, sizeof(srcdir)) == NULL)
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_conf.XXXXXX");
	if (mkdtemp(tmpdir) == NULL || chdir(tmpdir) == -1)
		return -1;
	write_file("c.crt", "dummy\n", 0644);
	write_file("c.key", "dummy\n", 0600);
	write_file("ca.crt", "dummy\n", 0644);
	write_file("crm.token", "Bearer s3cret-crm\n", 0600);
	write_file("acme.token", "Bearer acme-only\r\n", 0600);
	write_file("loose.token", "Bearer loose\n", 0644);
	write_file("two.token", "Bearer a\nX-Evil: 1\n", 0600);
	write_file("empty.token", "\n", 0600);
	return 0;
}

static int
teardown(void **state)
{
	char	 cmd[PATH_MAX + 16];

	(void)state;
	if (chdir(srcdir) == -1)
		return -1;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* The DESIGN.md example, with this directory's file names. */
static const char design_conf[] =
    "user = \"subgate\";\n"
    "listen = { address = \"127.0.0.1\"; port = 8443; workers = 2; };\n"
    "tls = {\n"
    "  certificate = \"c.crt\"; private_key = \"c.key\"; client_ca = \"ca.crt\";\n"
    "  crl = \"ca.crt\"; crl_refresh_s = 300; min_version = \"TLSv1.3\";\n"
    "};\n"
    "admin = { address = \"::1\"; port = 9901; tenant_labels = true; };\n"
    "limits = {\n"
    "  max_header_bytes = 16384; max_headers = 100;\n"
    "  max_body_bytes = 1048576; max_response_bytes = 8388608; max_json_depth = 32;\n"
    "  max_buffered_bytes = 268435456;\n"
    "  handshake_timeout_ms = 10000; client_timeout_ms = 30000;\n"
    "  upstream_timeout_ms = 15000; upstream_idle_ms = 30000; audit_timeout_ms = 5000;\n"
    "  max_connections = 10000; max_connection_age_ms = 600000; shutdown_grace_ms = 7;\n"
    "};\n"
    "keys = {\n"
    "  token_keys = \"k/token.keys\"; data_keys = \"k/data.keys\";\n"
    "  audit_reader = [ \"k/r1.pub\", \"k/r2.pub\" ];\n"
    "  audit_index = \"k/audit-index.key\"; audit_signer = \"k/audit-signer.key\";\n"
    "};\n"
    "audit = {\n"
    "  directory = \"var/audit\"; instance = \"\";\n"
    "  segment_bytes = 6710886400L; segment_seconds = 86400;\n"
    "  retention_days = 400; min_free_bytes = 1073741824;\n"
    "  checkpoint_records = 1000; checkpoint_seconds = 10;\n"
    "};\n"
    "tenants = (\n"
    "  { id = \"acme\";\n"
    "    clients = [ \"spiffe://personadesk.test/tenant/acme/service\" ];\n"
    "    phone_country_code = \"1\";\n"
    "    integrations = ( \"calendar\",\n"
    "                     { name = \"crm\"; upstream = \"https://acme.crm.example:443\";\n"
    "                       server_name = \"acme.crm.example\";\n"
    "                       headers = { set = ( { name = \"Authorization\"; file = \"acme.token\"; } ); }; } );\n"
    "  },\n"
    "  { id = \"globex\"; clients = ( \"globex-a\", \"globex-b\" );\n"
    "    integrations = [ \"crm\" ]; }\n"
    ");\n"
    "integrations = (\n"
    "  { name = \"crm\";\n"
    "    prefix = \"/crm\";\n"
    "    upstream = \"https://127.0.0.1:9444\";\n"
    "    server_name = \"crm.processor.test\";\n"
    "    ca = \"ca.crt\"; client_certificate = \"c.crt\"; client_private_key = \"c.key\";\n"
    "    pin_sha256 = [ \"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\" ];\n"
    "    token_domain = \"tokens.example.com\";\n"
    "    headers = {\n"
    "      allow = [ \"Accept\", \"X-Request-Id\" ];\n"
    "      set = ( { name = \"Authorization\"; file = \"crm.token\"; } );\n"
    "    };\n"
    "    endpoints = (\n"
    "      { method = \"POST\"; path = \"/v1/contacts\";\n"
    "        request = {\n"
    "          allow           = [ \"contact.first_name\", \"contact.company\", \"call.started_at\" ];\n"
    "          tokenize        = [ \"contact.email\" ];\n"
    "          format_preserve = [ \"contact.phone\" ];\n"
    "          hash            = [ \"call.caller_id\" ];\n"
    "          mask            = [ \"contact.card_number\" ];\n"
    "          subjects        = [ \"contact.email\", \"contact.phone\" ];\n"
    "        };\n"
    "        response = { detokenize = [ \"contact.email\" ]; format_preserve = [ \"contact.phone\" ]; };\n"
    "      },\n"
    "      { method = \"GET\"; path = \"/v1/contacts/{id}\"; params = { id = \"allow\"; };\n"
    "        query = { allow = [ \"fields\" ]; hash = ( \"q\" ); };\n"
    "        response = { detokenize = [ \"contact.email\" ]; format_preserve = [ \"contact.phone\" ]; }; }\n"
    "    );\n"
    "  },\n"
    "  { name = \"calendar\";\n"
    "    prefix = \"/calendar\";\n"
    "    upstream = \"https://[::1]\";\n"
    "    server_name = \"calendar.processor.test\";\n"
    "    ca = \"ca.crt\"; client_certificate = \"c.crt\"; client_private_key = \"c.key\";\n"
    "    endpoints = (\n"
    "      { method = \"POST\"; path = \"/v3/events\";\n"
    "        request = { allow = [ \"start\", \"end\", \"summary\", \"attendees[].response\" ];\n"
    "                    tokenize = [ \"attendees[].email\" ]; subjects = [ \"attendees[].email\" ]; };\n"
    "        response = { detokenize = [ \"attendees[].email\" ]; }; }\n"
    "    );\n"
    "  }\n"
    ");\n";

static struct conf *
load(const char *name, unsigned implemented, char *err, size_t errlen)
{
	err[0] = '\0';
	return conf_load(name, implemented, err, errlen);
}

static void
test_design_example(void **state)
{
	const struct conf_integration	*crm, *cal;
	const struct conf_tenant	*acme, *globex;
	const struct conf_use		*u, *ucal, *ucrm;
	const struct conf_endpoint	*ep;
	struct conf			*c;
	char				 err[1024], host[256];
	enum policy_action		 a;

	(void)state;
	write_file("design.conf", design_conf, 0644);
	c = load("design.conf", ALL_ACTIONS, err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	assert_string_equal(c->path, "design.conf");
	assert_string_equal(c->user, "subgate");
	assert_string_equal(c->listen_address, "127.0.0.1");
	assert_int_equal(c->listen_port, 8443);
	assert_int_equal(c->workers, 2);
	assert_string_equal(c->tls_crl, "ca.crt");
	assert_int_equal(c->tls_min_version, TLS1_3_VERSION);
	assert_int_equal(c->admin_enabled, 1);
	assert_string_equal(c->admin_address, "::1");
	assert_int_equal(c->admin_tenant_labels, 1);
	assert_int_equal(c->limits.shutdown_grace_ms, 7);
	assert_int_equal(c->limits.max_buffered_bytes, 268435456);
	assert_int_equal(c->has_keys, 1);
	assert_int_equal(c->keys_naudit_readers, 2);
	assert_string_equal(c->keys_audit_readers[1], "k/r2.pub");
	assert_int_equal(c->has_audit, 1);
	assert_true(c->audit_segment_bytes == 6710886400ULL);
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_string_equal(c->audit_instance, host);

	assert_int_equal(c->nintegrations, 2);
	crm = conf_integration_by_name(c, "crm");
	cal = conf_integration_by_name(c, "calendar");
	assert_non_null(crm);
	assert_non_null(cal);
	assert_null(conf_integration_by_name(c, "crmx"));
	assert_string_equal(crm->account.host, "127.0.0.1");
	assert_int_equal(crm->account.port, 9444);
	assert_string_equal(cal->account.host, "::1");
	assert_int_equal(cal->account.port, 443);
	assert_string_equal(cal->token_domain, "tokens.invalid");
	assert_string_equal(crm->token_domain, "tokens.example.com");
	/* pin: base64 of SHA-256("") */
	assert_int_equal(crm->account.npins, 1);
	assert_int_equal(crm->account.pin_bin[0][0], 0xe3);
	assert_int_equal(crm->account.pin_bin[0][31], 0x55);
	/* the secret: one trailing newline stripped */
	assert_int_equal(crm->account.nset, 1);
	assert_string_equal(crm->account.set[0].name, "Authorization");
	assert_int_equal(crm->account.set[0].value_len, 17);
	assert_memory_equal(crm->account.set[0].value, "Bearer s3cret-crm", 17);
	/* headers compare case-insensitively */
	assert_int_equal(policy_names_lookup(crm->headers_allow, "accept", 6),
	    POLICY_ALLOW);
	assert_int_equal(policy_names_lookup(crm->headers_allow, "Cookie", 6),
	    POLICY_DROP);
	assert_non_null(cal->headers_allow);
	assert_int_equal(policy_names_count(cal->headers_allow), 0);

	assert_int_equal(crm->nendpoints, 2);
	ep = &crm->endpoints[0];
	assert_string_equal(ep->method, "POST");
	assert_int_equal(ep->has_request, 1);
	assert_int_equal(policy_rules_count(ep->request), 7);
	assert_int_equal(policy_rules_count(ep->subjects), 2);
	assert_int_equal(policy_rules_count(ep->response), 2);
	assert_string_equal(policy_rules_path(ep->response, 0, &a),
	    "contact.email");
	assert_int_equal(a, POLICY_TOKENIZE);
	assert_null(ep->query);
	ep = &crm->endpoints[1];
	assert_int_equal(ep->has_request, 0);
	assert_null(ep->request);
	assert_int_equal(ep->pattern.nparams, 1);
	assert_string_equal(ep->params[0].name, "id");
	assert_int_equal(ep->params[0].action, POLICY_ALLOW);
	assert_int_equal(policy_names_lookup(ep->query, "fields", 6),
	    POLICY_ALLOW);
	assert_int_equal(policy_names_lookup(ep->query, "q", 1), POLICY_HASH);
	/* query names are case-sensitive */
	assert_int_equal(policy_names_lookup(ep->query, "Fields", 6),
	    POLICY_DROP);

	acme = conf_tenant_by_client(c,
	    "spiffe://personadesk.test/tenant/acme/service");
	globex = conf_tenant_by_client(c, "globex-b");
	assert_non_null(acme);
	assert_non_null(globex);
	assert_string_equal(acme->id, "acme");
	assert_string_equal(globex->id, "globex");
	assert_string_equal(globex->phone_country_code, "");
	assert_string_equal(acme->phone_country_code, "1");
	assert_null(conf_tenant_by_client(c, "spiffe://personadesk.test/x"));
	assert_null(conf_tenant_by_client(c, ""));

	/* acme's crm is overridden: own upstream, server name and secret */
	ucrm = conf_tenant_use(acme, crm);
	assert_non_null(ucrm);
	assert_ptr_equal(ucrm->integration, crm);
	assert_string_equal(ucrm->account.host, "acme.crm.example");
	assert_string_equal(ucrm->account.server_name, "acme.crm.example");
	assert_string_equal(ucrm->account.ca, "ca.crt");
	assert_int_equal(ucrm->account.npins, 1);
	assert_ptr_not_equal(ucrm->account.pins, crm->account.pins);
	assert_int_equal(ucrm->account.nset, 1);
	assert_string_equal(ucrm->account.set[0].value, "Bearer acme-only");
	assert_string_not_equal(ucrm->account.key, crm->account.key);
	/* acme's calendar and globex's crm use the integration's account */
	ucal = conf_tenant_use(acme, cal);
	assert_non_null(ucal);
	assert_string_equal(ucal->account.key, cal->account.key);
	assert_ptr_not_equal(ucal->account.key, cal->account.key);
	u = conf_tenant_use(globex, crm);
	assert_non_null(u);
	assert_string_equal(u->account.key, crm->account.key);
	assert_string_equal(u->account.set[0].value, "Bearer s3cret-crm");
	assert_null(conf_tenant_use(globex, cal));
	conf_free(c);
	conf_free(NULL);

	/* the same file, in a build that implements allow only */
	assert_null(load("design.conf", ALLOW_ONLY, err, sizeof(err)));
	assert_string_equal(err, "design.conf:55: integrations[crm]."
	    "endpoints[POST /v1/contacts].request.tokenize: action "
	    "\"tokenize\" is not implemented in this build; remove the rule "
	    "or upgrade subgate");
}

static void
test_minimal_defaults(void **state)
{
	struct conf	*c;
	char		 err[1024];

	(void)state;
	write_file("min.conf",
	    "listen = { };\n"
	    "tls = { certificate = \"c.crt\"; private_key = \"c.key\"; "
	    "client_ca = \"ca.crt\"; };\n", 0644);
	c = load("min.conf", ALLOW_ONLY, err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	assert_null(c->user);
	assert_string_equal(c->listen_address, "127.0.0.1");
	assert_int_equal(c->listen_port, 8443);
	assert_int_equal(c->workers, 2);
	assert_null(c->tls_crl);
	assert_int_equal(c->tls_crl_refresh_s, 300);
	assert_int_equal(c->tls_min_version, TLS1_2_VERSION);
	assert_int_equal(c->admin_enabled, 1);
	assert_string_equal(c->admin_address, "127.0.0.1");
	assert_int_equal(c->admin_port, 9901);
	assert_int_equal(c->admin_tenant_labels, 0);
	assert_int_equal(c->limits.max_header_bytes, 16384);
	assert_int_equal(c->limits.max_headers, 100);
	assert_int_equal(c->limits.max_body_bytes, 1048576);
	assert_int_equal(c->limits.max_response_bytes, 8388608);
	assert_int_equal(c->limits.max_json_depth, 32);
	assert_int_equal(c->limits.handshake_timeout_ms, 10000);
	assert_int_equal(c->limits.client_timeout_ms, 30000);
	assert_int_equal(c->limits.upstream_timeout_ms, 15000);
	assert_int_equal(c->limits.upstream_idle_ms, 30000);
	assert_int_equal(c->limits.audit_timeout_ms, 5000);
	assert_int_equal(c->limits.max_connections, 10000);
	assert_int_equal(c->limits.max_connection_age_ms, 600000);
	assert_int_equal(c->limits.shutdown_grace_ms, 10000);
	assert_int_equal(c->has_keys, 0);
	assert_int_equal(c->has_audit, 0);
	assert_int_equal(c->ntenants, 0);
	assert_int_equal(c->nintegrations, 0);
	conf_free(c);

	/* admin can be switched off; keys/audit defaults; one reader string */
	write_file("off.conf",
	    "listen = { address = \"::\"; port = 1; workers = 64; };\n"
	    "tls = { certificate = \"c.crt\"; private_key = \"c.key\"; "
	    "client_ca = \"ca.crt\"; };\n"
	    "admin = { enabled = false; };\n"
	    "keys = { audit_reader = \"r.pub\"; };\n"
	    "audit = { instance = \"gw-1\"; };\n", 0644);
	c = load("off.conf", ALLOW_ONLY, err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	assert_int_equal(c->admin_enabled, 0);
	assert_int_equal(c->has_keys, 1);
	assert_string_equal(c->keys_token_keys, "conf/keys/token.keys");
	assert_string_equal(c->keys_data_keys, "conf/keys/data.keys");
	assert_int_equal(c->keys_naudit_readers, 1);
	assert_string_equal(c->keys_audit_readers[0], "r.pub");
	assert_string_equal(c->keys_audit_signer, "conf/keys/audit-signer.key");
	assert_int_equal(c->has_audit, 1);
	assert_string_equal(c->audit_directory, "var/audit");
	assert_string_equal(c->audit_instance, "gw-1");
	assert_true(c->audit_segment_bytes == 67108864);
	assert_int_equal(c->audit_retention_days, 400);
	conf_free(c);
}

/* An integration in its own file, pulled in with @include. */
static void
test_include(void **state)
{
	struct conf	*c;
	char		 err[1024];

	(void)state;
	assert_true(mkdir("inc", 0755) == 0 || errno == EEXIST);
	write_file("inc/crm.inc",
	    "{ name = \"crm\"; prefix = \"/crm\";\n"
	    "  upstream = \"https://crm.example\"; server_name = \"crm.example\";\n"
	    "  ca = \"ca.crt\"; client_certificate = \"c.crt\"; client_private_key = \"c.key\";\n"
	    "  endpoints = ( { method = \"GET\"; path = \"/v1/x\"; } ); }\n",
	    0644);
	write_file("inc/main.conf",
	    "listen = { };\n"
	    "tls = { certificate = \"c.crt\"; private_key = \"c.key\"; "
	    "client_ca = \"ca.crt\"; };\n"
	    "integrations = (\n"
	    "@include \"crm.inc\"\n"
	    ");\n"
	    "tenants = ( { id = \"t\"; clients = [ \"x\" ]; integrations = [ \"crm\" ]; } );\n",
	    0644);
	c = load("inc/main.conf", ALLOW_ONLY, err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	assert_int_equal(c->nintegrations, 1);
	assert_string_equal(c->integrations[0].account.host, "crm.example");
	assert_int_equal(c->integrations[0].account.port, 443);
	assert_int_equal(c->integrations[0].nendpoints, 1);
	assert_int_equal(c->tenants[0].nuses, 1);
	conf_free(c);

	/* an error inside the included file names that file and its line */
	write_file("inc/crm.inc",
	    "{ name = \"crm\"; prefix = \"/crm\";\n"
	    "  upstream = \"https://crm.example\"; server_name = \"crm.example\";\n"
	    "  ca = \"ca.crt\"; client_certificate = \"c.crt\"; client_private_key = \"c.key\";\n"
	    "  endpoints = ( { method = \"GET\"; path = \"/v1/{id}\"; } ); }\n",
	    0644);
	assert_null(load("inc/main.conf", ALLOW_ONLY, err, sizeof(err)));
	assert_string_equal(err, "inc/crm.inc:4: integrations[crm].endpoints"
	    "[GET /v1/{id}].params: named segment {id} has no action; add "
	    "params = { id = \"allow\"; } (or another action)");
}

/* conf/subgate.conf from the repository parses in an allow-only build. */
static void
test_repo_example(void **state)
{
	static const char *const files[] = { "certs/dev/gateway.crt",
	    "certs/dev/gateway.key", "certs/dev/service-ca.crt",
	    "certs/dev/service-ca.crl", "certs/dev/processor-ca.crt",
	    "certs/dev/gateway-client.crt", "certs/dev/gateway-client.key" };
	struct conf	*c;
	FILE		*in, *out;
	char		 err[1024], src[PATH_MAX + 64], chunk[4096];
	size_t		 i, n;

	(void)state;
	snprintf(src, sizeof(src), "%s/../../conf/subgate.conf", srcdir);
	if ((in = fopen(src, "r")) == NULL)
		skip();
	assert_true(mkdir("ex", 0755) == 0 || errno == EEXIST);
	assert_int_equal(chdir("ex"), 0);
	assert_true(mkdir("certs", 0755) == 0 || errno == EEXIST);
	assert_true(mkdir("certs/dev", 0755) == 0 || errno == EEXIST);
	assert_true(mkdir("conf", 0755) == 0 || errno == EEXIST);
	assert_true(mkdir("conf/secrets", 0700) == 0 || errno == EEXIST);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		write_file(files[i], "dummy\n", 0600);
	write_file("conf/secrets/crm.token", "Bearer x\n", 0600);
	assert_non_null(out = fopen("conf/subgate.conf", "w"));
	while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0)
		assert_int_equal(fwrite(chunk, 1, n, out), n);
	fclose(in);
	fclose(out);
	/* The example names key files made by `subgatectl keys init`; the
	 * loader's file checks are off here, the rest is checked in full. */
	c = load("conf/subgate.conf", ALL_ACTIONS | CONF_NO_FILES, err,
	    sizeof(err));
	assert_int_equal(chdir(".."), 0);
	if (c == NULL)
		fail_msg("%s", err);
	assert_true(c->has_keys);
	assert_true(c->has_audit);
	assert_int_equal(c->ntenants, 2);
	assert_int_equal(c->nintegrations, 2);
	assert_non_null(conf_tenant_by_client(c,
	    "spiffe://personadesk.test/tenant/acme/service"));
	assert_non_null(conf_tenant_by_client(c,
	    "spiffe://personadesk.test/tenant/globex/service"));
	assert_string_equal(conf_integration_by_name(c, "crm")->account.server_name,
	    "crm.processor.test");
	assert_int_equal(conf_integration_by_name(c, "calendar")->account.port,
	    9445);
	conf_free(c);
}

/* Lines 1-2 of every bad config below; the case's text starts on line 3. */
#define PRO \
    "listen = { address = \"127.0.0.1\"; port = 8443; };\n" \
    "tls = { certificate = \"c.crt\"; private_key = \"c.key\"; client_ca = \"ca.crt\"; };\n"
#define ACCT \
    "upstream = \"https://127.0.0.1:9444\"; server_name = \"crm.test\"; " \
    "ca = \"ca.crt\"; client_certificate = \"c.crt\"; client_private_key = \"c.key\";"
/* an integration "crm" on one line, endpoints appended by the case */
#define CRM(rest) "integrations = ( { name = \"crm\"; prefix = \"/crm\"; " \
    ACCT rest " } );\n"
#define EP(ep) CRM("endpoints = ( " ep " );")

struct bad {
	const char	*text;		/* whole file */
	unsigned	 implemented;
	const char	*expect;	/* the exact message */
};

static const struct bad bads[] = {
	/* syntax, unknown keys, missing, types */
	{ PRO "listen2 = { ;\n", ALL_ACTIONS, "t.conf:3: syntax error" },
	{ PRO "foo = 1;\n", ALL_ACTIONS,
	  "t.conf:3: foo: unknown key \"foo\"; remove it or fix its spelling" },
	{ PRO CRM("colour = \"red\";"), ALL_ACTIONS,
	  "t.conf:3: integrations[crm].colour: unknown key \"colour\"; remove "
	  "it or fix its spelling" },
	{ PRO EP("{ method = \"GET\"; path = \"/x\"; request = { allow = [ \"a\" ]; tokenise = [ \"b\" ]; }; }"),
	  ALL_ACTIONS,
	  "t.conf:3: integrations[crm].endpoints[GET /x].request.tokenise: "
	  "unknown key \"tokenise\"; remove it or fix its spelling" },
	{ "listen = { port = 8443; };\n", ALL_ACTIONS,
	  "t.conf:1: tls: required setting is missing; add it" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm\";\n"
	  "  upstream = \"https://127.0.0.1:9444\"; ca = \"ca.crt\"; "
	  "client_certificate = \"c.crt\"; client_private_key = \"c.key\"; } );\n",
	  ALL_ACTIONS,
	  "t.conf:3: integrations[crm].server_name: required setting is "
	  "missing; add it" },
	{ "listen = { port = 70000; };\n"
	  "tls = { certificate = \"c.crt\"; private_key = \"c.key\"; client_ca = \"ca.crt\"; };\n",
	  ALL_ACTIONS,
	  "t.conf:1: listen.port: must be between 1 and 65535" },
	{ "listen = { port = \"8443\"; };\n", ALL_ACTIONS,
	  "t.conf:1: listen.port: must be an integer" },
	{ "listen = { workers = 65; };\n", ALL_ACTIONS,
	  "t.conf:1: listen.workers: must be between 1 and 64" },
	{ "listen = { address = \"localhost\"; };\n", ALL_ACTIONS,
	  "t.conf:1: listen.address: \"localhost\" is not an IPv4 or IPv6 "
	  "address; write an address such as \"127.0.0.1\" or \"::\"" },
	{ "listen = { };\n"
	  "tls = { certificate = \"c.crt\"; private_key = \"c.key\"; client_ca = \"ca.crt\";\n"
	  "  min_version = \"TLSv1.1\"; };\n", ALL_ACTIONS,
	  "t.conf:3: tls.min_version: \"TLSv1.1\" is not supported: use "
	  "\"TLSv1.2\" or \"TLSv1.3\"" },
	{ PRO "limits = { max_body_bytes = 0; };\n", ALL_ACTIONS,
	  "t.conf:3: limits.max_body_bytes: must be greater than 0" },
	{ PRO "limits = { max_body_bytes = 4294967297; };\n", ALL_ACTIONS,
	  "t.conf:3: limits.max_body_bytes: is too large for a 32-bit "
	  "integer; append L to the number (as in 6710886400L)" },
	{ PRO "limits = { max_headers = 100; max_body_bytes = 0x100000001; };\n",
	  ALL_ACTIONS,
	  "t.conf:3: limits.max_body_bytes: is too large for a 32-bit "
	  "integer; append L to the number (as in 6710886400L)" },
	{ PRO "limits = { max_json_depth = 1001; };\n", ALL_ACTIONS,
	  "t.conf:3: limits.max_json_depth: must be between 1 and 1000" },
	{ PRO "admin = { enabled = 1; };\n", ALL_ACTIONS,
	  "t.conf:3: admin.enabled: must be true or false" },
	{ "listen = { port = 9901; };\n"
	  "tls = { certificate = \"c.crt\"; private_key = \"c.key\"; client_ca = \"ca.crt\"; };\n",
	  ALL_ACTIONS,
	  "t.conf:1: admin.port: 9901 is also listen.port on an overlapping "
	  "address; choose another port" },
	{ "listen = { address = \"::\"; port = 9000; };\n"
	  "tls = { certificate = \"c.crt\"; private_key = \"c.key\"; client_ca = \"ca.crt\"; };\n"
	  "admin = { port = 9000; };\n",
	  ALL_ACTIONS,
	  "t.conf:3: admin.port: 9000 is also listen.port on an overlapping "
	  "address; choose another port" },
	{ "listen = { };\n"
	  "tls = { certificate = \"missing.crt\"; private_key = \"c.key\"; client_ca = \"ca.crt\"; };\n",
	  ALL_ACTIONS,
	  "t.conf:2: tls.certificate: cannot read \"missing.crt\": No such "
	  "file or directory; check the path (relative to the working "
	  "directory) and its permissions" },
	/* integrations */
	{ PRO CRM("") "integrations2 = 1;\n", ALL_ACTIONS,
	  "t.conf:4: integrations2: unknown key \"integrations2\"; remove it "
	  "or fix its spelling" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm\"; " ACCT " },\n"
	  "  { name = \"crm\"; prefix = \"/crm2\"; " ACCT " } );\n", ALL_ACTIONS,
	  "t.conf:4: integrations[crm].name: duplicate integration \"crm\" "
	  "(first defined at line 3); rename or remove one" },
	{ PRO "integrations = ( { name = \"CRM\"; prefix = \"/crm\"; " ACCT " } );\n",
	  ALL_ACTIONS,
	  "t.conf:3: integrations[#1].name: \"CRM\" must be 1 to 64 of a-z "
	  "0-9 _ -" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm\"; " ACCT " },\n"
	  "  { name = \"crm2\"; prefix = \"/crm\"; " ACCT " } );\n", ALL_ACTIONS,
	  "t.conf:4: integrations[crm2].prefix: \"/crm\" is already the prefix "
	  "of integration \"crm\"; prefixes must be unique" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm\"; " ACCT " },\n"
	  "  { name = \"crm2\"; prefix = \"/crm/v2\"; " ACCT " } );\n",
	  ALL_ACTIONS,
	  "t.conf:4: integrations[crm2].prefix: \"/crm/v2\" overlaps the "
	  "prefix \"/crm\" of integration \"crm\" (one is a leading part of "
	  "the other); routing would be ambiguous, choose disjoint prefixes" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm/{x}\"; " ACCT " } );\n",
	  ALL_ACTIONS,
	  "t.conf:3: integrations[crm].prefix: parameters are not allowed here" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm\";\n"
	  "  upstream = \"http://crm.test\"; } );\n", ALL_ACTIONS,
	  "t.conf:4: integrations[crm].upstream: \"http://crm.test\" must "
	  "start with \"https://\" (only TLS upstreams are supported)" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm\";\n"
	  "  upstream = \"https://crm.test:0\"; } );\n", ALL_ACTIONS,
	  "t.conf:4: integrations[crm].upstream: \"https://crm.test:0\" has a "
	  "bad port: use 1..65535" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm\";\n"
	  "  upstream = \"https://crm.test/api\"; } );\n", ALL_ACTIONS,
	  "t.conf:4: integrations[crm].upstream: \"https://crm.test/api\" must "
	  "be https://host[:port] with nothing after the port" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm\";\n"
	  "  upstream = \"https://[::g]:443\"; } );\n", ALL_ACTIONS,
	  "t.conf:4: integrations[crm].upstream: \"https://[::g]:443\" has a "
	  "bad IPv6 address" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm\"; "
	  "upstream = \"https://crm.test\";\n server_name = \"10.0.0.1\"; } );\n",
	  ALL_ACTIONS,
	  "t.conf:4: integrations[crm].server_name: \"10.0.0.1\" is not a DNS "
	  "name; give the name the processor's certificate is issued for" },
	{ PRO CRM("\n  pin_sha256 = [ \"AAAA\" ];"), ALL_ACTIONS,
	  "t.conf:4: integrations[crm].pin_sha256: \"AAAA\" is not the base64 "
	  "of 32 bytes (the SHA-256 of the processor's public key)" },
	{ PRO "integrations = ( { name = \"crm\"; prefix = \"/crm\"; "
	  "upstream = \"https://crm.test\"; server_name = \"crm.test\";\n"
	  "  ca = \"nope.crt\"; } );\n", ALL_ACTIONS,
	  "t.conf:4: integrations[crm].ca: cannot read \"nope.crt\": No such "
	  "file or directory; check the path (relative to the working "
	  "directory) and its permissions" },
	/* headers */
	{ PRO CRM("\n  headers = { allow = [ \"Accept\", \"Host\" ]; };"),
	  ALL_ACTIONS,
	  "t.conf:4: integrations[crm].headers.allow: header \"Host\" is set "
	  "by subgate itself and cannot be allowed through; remove it" },
	{ PRO CRM("\n  headers = { allow = [ \"x-forwarded-for\" ]; };"),
	  ALL_ACTIONS,
	  "t.conf:4: integrations[crm].headers.allow: header "
	  "\"x-forwarded-for\" is set by subgate itself and cannot be allowed "
	  "through; remove it" },
	{ PRO CRM("\n  headers = { allow = [ \"Bad Name\" ]; };"), ALL_ACTIONS,
	  "t.conf:4: integrations[crm].headers.allow: \"Bad Name\" is not a "
	  "valid header name" },
	{ PRO CRM("\n  headers = { set = ( { name = \"Authorization\";\n"
	  "    file = \"loose.token\"; } ); };"), ALL_ACTIONS,
	  "t.conf:5: integrations[crm].headers.set[Authorization].file: secret "
	  "file is readable by group or others: chmod 600 loose.token" },
	{ PRO CRM("\n  headers = { set = ( { name = \"Authorization\"; file = \"two.token\"; } ); };"),
	  ALL_ACTIONS,
	  "t.conf:4: integrations[crm].headers.set[Authorization].file: secret "
	  "file \"two.token\" holds CR, LF or NUL besides one trailing "
	  "newline; a header value must be a single line" },
	{ PRO CRM("\n  headers = { set = ( { name = \"Authorization\"; file = \"empty.token\"; } ); };"),
	  ALL_ACTIONS,
	  "t.conf:4: integrations[crm].headers.set[Authorization].file: secret "
	  "file \"empty.token\" is empty; write the header value into it" },
	{ PRO CRM("\n  headers = { allow = [ \"authorization\" ];\n"
	  "    set = ( { name = \"Authorization\"; file = \"crm.token\"; } ); };"),
	  ALL_ACTIONS,
	  "t.conf:5: integrations[crm].headers.set[Authorization].name: header "
	  "\"Authorization\" is both allowed from the client and set from a "
	  "file; remove it from headers.allow" },
	{ PRO CRM("\n  headers = { set = ( { name = \"Content-Length\"; file = \"crm.token\"; } ); };"),
	  ALL_ACTIONS,
	  "t.conf:4: integrations[crm].headers.set[Content-Length].name: "
	  "header \"Content-Length\" is set by subgate itself; remove this "
	  "entry" },
	/* endpoints */
	{ PRO EP("\n  { method = \"post\"; path = \"/x\"; }"), ALL_ACTIONS,
	  "t.conf:4: integrations[crm].endpoints[#1].method: \"post\" is not "
	  "one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (upper case)" },
	{ PRO EP("\n  { method = \"GET\"; path = \"/x/../y\"; }"), ALL_ACTIONS,
	  "t.conf:4: integrations[crm].endpoints[GET /x/../y].path: pattern "
	  "has a dot segment" },
	{ PRO EP("\n  { method = \"GET\"; path = \"/v1/{id}\"; },\n"
	  "  { method = \"GET\"; path = \"/v1/{key}\"; params = { key = \"allow\"; }; }"),
	  ALL_ACTIONS,
	  "t.conf:4: integrations[crm].endpoints[GET /v1/{id}].params: named "
	  "segment {id} has no action; add params = { id = \"allow\"; } (or "
	  "another action)" },
	{ PRO EP("\n  { method = \"GET\"; path = \"/v1/{id}\"; params = { id = \"allow\"; },\n"
	  "  { method = \"GET\"; path = \"/v1/{key}\"; params = { key = \"allow\"; }; }"),
	  ALL_ACTIONS, "t.conf:5: syntax error" },
	{ PRO EP("\n  { method = \"GET\"; path = \"/v1/{id}\"; params = { id = \"allow\"; }; },\n"
	  "  { method = \"GET\"; path = \"/v1/{key}\"; params = { key = \"allow\"; }; }"),
	  ALL_ACTIONS,
	  "t.conf:5: integrations[crm].endpoints[GET /v1/{key}]: duplicate "
	  "endpoint: the same method and path as endpoints[GET /v1/{id}] at "
	  "line 4; remove one" },
	{ PRO EP("\n  { method = \"GET\"; path = \"/v1/{id}\";\n"
	  "    params = { id = \"allow\"; name = \"allow\"; }; }"), ALL_ACTIONS,
	  "t.conf:5: integrations[crm].endpoints[GET /v1/{id}].params.name: "
	  "\"name\" is not a named segment of the path \"/v1/{id}\"; remove it "
	  "or add {name} to the path" },
	{ PRO EP("\n  { method = \"GET\"; path = \"/v1/{id}\"; params = { id = \"drop\"; }; }"),
	  ALL_ACTIONS,
	  "t.conf:4: integrations[crm].endpoints[GET /v1/{id}].params.id: "
	  "\"drop\" is not an action: use allow, tokenize, format_preserve, "
	  "hash or mask" },
	{ PRO EP("\n  { method = \"GET\"; path = \"/v1/{id}\"; params = { id = \"hash\"; }; }"),
	  ALLOW_ONLY,
	  "t.conf:4: integrations[crm].endpoints[GET /v1/{id}].params.id: "
	  "action \"hash\" is not implemented in this build; remove the rule "
	  "or upgrade subgate" },
	{ PRO EP("\n  { method = \"GET\"; path = \"/v1\";\n"
	  "    query = { allow = [ \"fields\" ];\n"
	  "              hash = [ \"fields\" ]; }; }"), ALL_ACTIONS,
	  "t.conf:6: integrations[crm].endpoints[GET /v1].query.hash: query "
	  "parameter \"fields\" is already listed under allow; keep one" },
	{ PRO EP("\n  { method = \"GET\"; path = \"/v1\";\n"
	  "    query = { allow = [ \"fields\" ]; mask = [ \"card\" ]; }; }"),
	  ALLOW_ONLY,
	  "t.conf:5: integrations[crm].endpoints[GET /v1].query.mask: action "
	  "\"mask\" is not implemented in this build; remove the rule or "
	  "upgrade subgate" },
	{ PRO EP("\n  { method = \"POST\"; path = \"/v1/contacts\";\n"
	  "    request = { tokenize = [ \"contact..email\" ]; }; }"),
	  ALL_ACTIONS,
	  "t.conf:5: integrations[crm].endpoints[POST /v1/contacts].request."
	  "tokenize: field path \"contact..email\" has an empty segment" },
	{ PRO EP("\n  { method = \"POST\"; path = \"/v1/notes\";\n"
	  "    request = { allow = [ \"notes.**\" ];\n"
	  "                tokenize = [ \"notes.ssn\" ]; }; }"), ALL_ACTIONS,
	  "t.conf:6: integrations[crm].endpoints[POST /v1/notes].request."
	  "tokenize: field path \"notes.ssn\" (tokenize) conflicts with allow "
	  "rule \"notes.**\": both can match the same field" },
	{ PRO EP("\n  { method = \"POST\"; path = \"/v1/notes\";\n"
	  "    request = { allow = [ \"a\", \"b\", \"a\" ]; }; }"), ALL_ACTIONS,
	  "t.conf:5: integrations[crm].endpoints[POST /v1/notes].request."
	  "allow: field path \"a\" is listed twice" },
	{ PRO EP("\n  { method = \"POST\"; path = \"/v1/notes\";\n"
	  "    request = { allow = [ \"a\" ]; subjects = [ \"email\" ]; }; }"),
	  ALL_ACTIONS,
	  "t.conf:5: integrations[crm].endpoints[POST /v1/notes].request."
	  "subjects: subject \"email\" is not listed under any action of this "
	  "request block; list it under allow, tokenize, format_preserve, "
	  "hash or mask" },
	{ PRO EP("\n  { method = \"POST\"; path = \"/v1/notes\";\n"
	  "    response = { detokenize = [ \"email\" ]; }; }"), ALLOW_ONLY,
	  "t.conf:5: integrations[crm].endpoints[POST /v1/notes].response."
	  "detokenize: action \"tokenize\" is not implemented in this build; "
	  "remove the rule or upgrade subgate" },
	{ PRO EP("\n  { method = \"POST\"; path = \"/v1/notes\";\n"
	  "    request = { allow = \"a\"; }; }"), ALL_ACTIONS,
	  "t.conf:5: integrations[crm].endpoints[POST /v1/notes].request."
	  "allow: must be a list of strings [ \"a\", \"b\" ]" },
	/* tenants */
	{ PRO CRM("") "tenants = ( { id = \"acme\"; clients = [ \"a\" ];\n"
	  "  integrations = ( \"crm\", \"crmx\" ); } );\n", ALL_ACTIONS,
	  "t.conf:5: tenants[acme].integrations: unknown integration "
	  "\"crmx\"; define it under integrations or fix the name" },
	{ PRO CRM("") "tenants = ( { id = \"acme\"; clients = [ \"a\", \"b\" ]; },\n"
	  "  { id = \"globex\"; clients = [ \"c\", \"b\" ]; } );\n",
	  ALL_ACTIONS,
	  "t.conf:5: tenants[globex].clients: client \"b\" is already a client "
	  "of tenant \"acme\"; an identity belongs to one tenant" },
	{ PRO "tenants = ( { id = \"acme\"; clients = [ \"a\" ]; },\n"
	  "  { id = \"acme\"; clients = [ \"b\" ]; } );\n", ALL_ACTIONS,
	  "t.conf:4: tenants[acme].id: duplicate tenant \"acme\" (first "
	  "defined at line 3); rename or remove one" },
	{ PRO "tenants = ( { id = \"acme\"; clients = [ ]; } );\n", ALL_ACTIONS,
	  "t.conf:3: tenants[acme].clients: is empty; list the client "
	  "certificate identities of this tenant" },
	{ PRO "tenants = ( { id = \"acme\"; clients = [ \"a\" ]; "
	  "phone_country_code = \"+1\"; } );\n", ALL_ACTIONS,
	  "t.conf:3: tenants[acme].phone_country_code: must be up to 4 digits "
	  "without '+' or \"00\", such as \"1\" or \"49\"" },
	{ PRO CRM("") "tenants = ( { id = \"acme\"; clients = [ \"a\" ];\n"
	  "  integrations = ( { name = \"crm\";\n"
	  "    upstream = \"https://acme.crm.test:8443\";\n"
	  "    server_name = \"acme crm\"; } ); } );\n", ALL_ACTIONS,
	  "t.conf:7: tenants[acme].integrations[crm].server_name: \"acme crm\" "
	  "is not a DNS name; give the name the processor's certificate is "
	  "issued for" },
	{ PRO CRM("") "tenants = ( { id = \"acme\"; clients = [ \"a\" ];\n"
	  "  integrations = ( { name = \"crm\"; prefix = \"/acme\"; } ); } );\n",
	  ALL_ACTIONS,
	  "t.conf:5: tenants[acme].integrations[crm].prefix: unknown key "
	  "\"prefix\"; remove it or fix its spelling" },
	{ PRO CRM("") "tenants = ( { id = \"acme\"; clients = [ \"a\" ];\n"
	  "  integrations = ( { name = \"crm\"; headers = { set = (\n"
	  "    { name = \"Authorization\"; file = \"loose.token\"; } ); }; } ); } );\n",
	  ALL_ACTIONS,
	  "t.conf:6: tenants[acme].integrations[crm].headers.set[Authorization]"
	  ".file: secret file is readable by group or others: chmod 600 "
	  "loose.token" },
	{ PRO CRM("\n  headers = { allow = [ \"X-Api-Key\" ]; };")
	  "tenants = ( { id = \"acme\"; clients = [ \"a\" ];\n"
	  "  integrations = ( { name = \"crm\"; headers = { set = (\n"
	  "    { name = \"x-api-key\"; file = \"crm.token\"; } ); }; } ); } );\n",
	  ALL_ACTIONS,
	  "t.conf:7: tenants[acme].integrations[crm].headers.set[x-api-key]."
	  "name: header \"x-api-key\" is both allowed from the client and set "
	  "from a file; remove it from headers.allow" },
	{ PRO CRM("") "tenants = ( { id = \"acme\"; clients = [ \"a\" ];\n"
	  "  integrations = ( \"crm\", { name = \"crm\"; } ); } );\n",
	  ALL_ACTIONS,
	  "t.conf:5: tenants[acme].integrations: integration \"crm\" is "
	  "listed twice; keep one" },
};

static void
test_bad_configs(void **state)
{
	struct conf	*c;
	char		 err[1024];
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		write_file("t.conf", bads[i].text, 0644);
		c = load("t.conf", bads[i].implemented, err, sizeof(err));
		if (c != NULL)
			fail_msg("bad config %zu loaded:\n%s", i, bads[i].text);
		if (strcmp(err, bads[i].expect) != 0)
			fail_msg("bad config %zu:\n%s\nwant: %s\ngot:  %s", i,
			    bads[i].text, bads[i].expect, err);
	}
	assert_true(i >= 25);
}

/* The secret value never appears in a message, whatever goes wrong. */
static void
test_secret_not_in_messages(void **state)
{
	char	 err[1024];

	(void)state;
	write_file("t.conf", PRO CRM("\n  headers = { set = ( { name = \"Authorization\"; file = \"two.token\"; } ); };"), 0644);
	assert_null(load("t.conf", ALL_ACTIONS, err, sizeof(err)));
	assert_null(strstr(err, "Bearer"));
	assert_null(strstr(err, "X-Evil"));
	write_file("t.conf", PRO CRM("\n  headers = { set = ( { name = \"Authorization\"; file = \"crm.token\"; } ); };")
	    "bogus = 1;\n", 0644);
	assert_null(load("t.conf", ALL_ACTIONS, err, sizeof(err)));
	assert_null(strstr(err, "s3cret"));
}

static void
test_missing_file(void **state)
{
	char	 err[1024];

	(void)state;
	assert_null(load("does-not-exist.conf", ALL_ACTIONS, err,
	    sizeof(err)));
	assert_string_equal(err, "does-not-exist.conf: cannot read the "
	    "configuration file: No such file or directory");
	/* a short error buffer is cut, never overrun */
	assert_null(conf_load("does-not-exist.conf", ALL_ACTIONS, err, 8));
	assert_string_equal(err, "does-no");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_design_example),
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_repo_example),
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_secret_not_in_messages),
		cmocka_unit_test(test_missing_file),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
