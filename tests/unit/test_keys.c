/* test_keys.c -- key files: init, sync, rotate, activate, shred, rotate-master, load */
#include <sys/stat.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "conf.h"
#include "keys.h"
#include "token.h"

struct fx {
	char	dir[64];
	char	tk[128], dk[128];
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/subgate-test-keys-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->tk, sizeof(f->tk), "%s/token.keys", f->dir);
	snprintf(f->dk, sizeof(f->dk), "%s/data.keys", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx	*f = *state;
	char		 cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static char *
slurp(const char *path)
{
	FILE	*fp = fopen(path, "r");
	char	*s;
	long	 n;

	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	s = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(s, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	return s;
}

static mode_t
mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 0777;
}

static const struct keys_name pairs3[] = {
	{ "acme", "crm" }, { "acme", "calendar" }, { "globex", "crm" },
};

static void
init_and_sync(struct fx *f)
{
	char err[512];

	assert_int_equal(keys_init_dir(f->dir, NULL, err, sizeof(err)), 0);
	assert_int_equal(keys_sync_files(f->tk, f->dk, pairs3, 3, NULL, err,
	    sizeof(err)), 0);
}

/* Tokenise s under the loaded pair and return the unquoted token. */
static char *
mint(const struct keys_pair *p, const char *s)
{
	struct token_ctx c = { .pair = p, .token_domain = "t.example" };
	struct buf	 out = { 0 };
	char		*tok;

	assert_int_equal(token_apply_text(&c, POLICY_TOKENIZE, s, strlen(s),
	    &out), 0);
	tok = strdup(out.data);
	buf_free(&out);
	return tok;
}

/* Detokenise: the restored JSON value, or NULL when it did not decode. */
static char *
unmint(const struct keys_pair *p, const char *tok)
{
	struct token_ctx c = { .pair = p, .token_domain = "t.example" };
	struct buf	 raw = { 0 }, out = { 0 };
	struct json_token t;
	char		*res = NULL;

	json_write_string(&raw, tok, strlen(tok));
	memset(&t, 0, sizeof(t));
	t.type = JSON_STRING;
	t.raw = raw.data;
	t.raw_len = raw.len;
	t.str = tok;
	t.str_len = strlen(tok);
	assert_int_equal(token_xform_response(&c, POLICY_TOKENIZE, &t, &out), 0);
	if (c.tokens_restored == 1)
		res = strdup(out.data);
	buf_free(&raw);
	buf_free(&out);
	return res;
}

static char *
fp_of(const struct keys_pair *p, const char *s, enum policy_action a)
{
	struct token_ctx c = { .pair = p, .token_domain = "t.example" };
	struct buf	 out = { 0 };
	char		*r;

	assert_int_equal(token_apply_text(&c, a, s, strlen(s), &out), 0);
	r = strdup(out.data);
	buf_free(&out);
	return r;
}

static void
test_init(void **state)
{
	struct fx	*f = *state;
	struct buf	 report = { 0 };
	char		 err[512], path[256], *s;
	EVP_PKEY	*k;
	FILE		*fp;
	size_t		 i;
	static const struct { const char *name; mode_t mode; } files[] = {
		{ "token.keys", 0600 }, { "audit-index.key", 0600 },
		{ "audit-signer.key", 0600 }, { "audit-signer.pub", 0644 },
		{ "audit-reader.pub", 0644 }, { "offline/audit-reader.key", 0600 },
	};

	assert_int_equal(keys_init_dir(f->dir, &report, err, sizeof(err)), 0);
	for (i = 0; i < 6; i++) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, files[i].name);
		assert_int_equal(mode_of(path), files[i].mode);
		assert_non_null(strstr(report.data, files[i].name));
	}
	/* index key: 64 lower-case hex + newline */
	snprintf(path, sizeof(path), "%s/audit-index.key", f->dir);
	s = slurp(path);
	assert_int_equal(strlen(s), 65);
	assert_int_equal(strspn(s, "0123456789abcdef"), 64);
	assert_int_equal(s[64], '\n');
	free(s);
	/* token.keys: one active master */
	s = slurp(f->tk);
	assert_non_null(strstr(s, "subgate-token-keys 1\nmaster 1 active "));
	free(s);
	/* The PEM files are what the audit code reads. */
	snprintf(path, sizeof(path), "%s/audit-signer.key", f->dir);
	assert_non_null(fp = fopen(path, "r"));
	assert_non_null(k = PEM_read_PrivateKey(fp, NULL, NULL, NULL));
	assert_int_equal(EVP_PKEY_get_id(k), EVP_PKEY_ED25519);
	EVP_PKEY_free(k);
	fclose(fp);
	s = slurp(path);
	assert_non_null(strstr(s, "-----BEGIN PRIVATE KEY-----"));
	free(s);
	snprintf(path, sizeof(path), "%s/audit-signer.pub", f->dir);
	assert_non_null(fp = fopen(path, "r"));
	assert_non_null(k = PEM_read_PUBKEY(fp, NULL, NULL, NULL));
	assert_int_equal(EVP_PKEY_get_id(k), EVP_PKEY_ED25519);
	EVP_PKEY_free(k);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/audit-reader.pub", f->dir);
	assert_non_null(fp = fopen(path, "r"));
	assert_non_null(k = PEM_read_PUBKEY(fp, NULL, NULL, NULL));
	assert_int_equal(EVP_PKEY_get_id(k), EVP_PKEY_X25519);
	EVP_PKEY_free(k);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/offline/audit-reader.key", f->dir);
	assert_non_null(fp = fopen(path, "r"));
	assert_non_null(k = PEM_read_PrivateKey(fp, NULL, NULL, NULL));
	assert_int_equal(EVP_PKEY_get_id(k), EVP_PKEY_X25519);
	EVP_PKEY_free(k);
	fclose(fp);

	/* Nothing is overwritten: a second init fails and changes nothing. */
	s = slurp(f->tk);
	assert_int_equal(keys_init_dir(f->dir, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "already exists"));
	{
		char *again = slurp(f->tk);

		assert_string_equal(s, again);
		free(again);
	}
	free(s);
	/* Even when only one file is in the way. */
	snprintf(path, sizeof(path), "%s/second", f->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/second/audit-reader.pub", f->dir);
	assert_non_null(fp = fopen(path, "w"));
	fclose(fp);
	snprintf(path, sizeof(path), "%s/second", f->dir);
	assert_int_equal(keys_init_dir(path, NULL, err, sizeof(err)), -1);
	snprintf(path, sizeof(path), "%s/second/token.keys", f->dir);
	assert_int_equal(access(path, F_OK), -1);
	buf_free(&report);
}

static void
test_sync_load_and_wrapping(void **state)
{
	struct fx	*f = *state;
	struct buf	 report = { 0 };
	struct keyring	*r;
	const struct keys_pair *p;
	char		 err[512], *s, *line, tenant[64], ig[64], state_[16],
			 keyid[64], wrapped[128], mhex[80];
	unsigned char	 master[32], wbin[40], raw[40], siv[64];
	unsigned	 ver, mver;
	int		 l1, l2, n = 0;
	EVP_CIPHER_CTX	*x;

	assert_int_equal(keys_init_dir(f->dir, NULL, err, sizeof(err)), 0);
	assert_int_equal(keys_sync_files(f->tk, f->dk, pairs3, 3, &report, err,
	    sizeof(err)), 0);
	assert_non_null(strstr(report.data, "tenant=acme integration=calendar"));
	assert_int_equal(mode_of(f->dk), 0600);
	/* A second sync creates nothing and leaves the file as it was. */
	s = slurp(f->dk);
	buf_reset(&report);
	assert_int_equal(keys_sync_files(f->tk, f->dk, pairs3, 3, &report, err,
	    sizeof(err)), 0);
	assert_string_equal(report.data, "nothing to create\n");
	line = slurp(f->dk);
	assert_string_equal(s, line);
	free(line);

	r = keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err, sizeof(err));
	assert_non_null(r);
	p = keys_pair_find(r, "acme", "crm");
	assert_non_null(p);
	assert_false(keys_pair_shredded(p));
	assert_int_equal(p->active, 1);
	assert_null(keys_pair_find(r, "acme", "nope"));

	/* Unwrap by hand: the wrapped key is not the raw key, and the loaded
	 * SIV key is HKDF of the raw key. */
	{
		char *t = slurp(f->tk);

		assert_int_equal(sscanf(strstr(t, "master 1 active "),
		    "master 1 active %64s", mhex), 1);
		free(t);
	}
	for (line = strtok(s, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (sscanf(line, "key %63s %63s %u %15s %63s %u %127s", tenant, ig,
		    &ver, state_, keyid, &mver, wrapped) != 7)
			continue;
		n++;
		assert_int_equal(strlen(wrapped), 80);
		assert_int_equal(mver, 1);
		assert_int_equal(strlen(keyid), 32);
		{
			long ml, wl;
			unsigned char *m = OPENSSL_hexstr2buf(mhex, &ml);
			unsigned char *w = OPENSSL_hexstr2buf(wrapped, &wl);

			memcpy(master, m, 32);
			memcpy(wbin, w, 40);
			OPENSSL_free(m);
			OPENSSL_free(w);
		}
		x = EVP_CIPHER_CTX_new();
		assert_int_equal(EVP_DecryptInit_ex2(x, EVP_aes_256_wrap(), master,
		    NULL, NULL), 1);
		assert_int_equal(EVP_DecryptUpdate(x, raw, &l1, wbin, 40), 1);
		assert_int_equal(EVP_DecryptFinal_ex(x, raw + l1, &l2), 1);
		assert_int_equal(l1 + l2, 32);
		EVP_CIPHER_CTX_free(x);
		assert_memory_not_equal(raw, wbin, 32);
		assert_memory_not_equal(raw, wbin + 8, 32);
		p = keys_pair_find(r, tenant, ig);
		assert_non_null(p);
		assert_int_equal(keys_derive(raw, "tok1-siv", keyid, ver, siv, 64), 0);
		assert_memory_equal(siv, p->versions[0].siv, 64);
		assert_int_equal(keys_derive(raw, "ff1", keyid, ver, siv, 32), 0);
		assert_memory_equal(siv, p->ff1, 32);
	}
	assert_int_equal(n, 3);
	free(s);
	keys_free(r);

	/* A pair without a key: the error names it and the fix. */
	{
		static const struct keys_name more[] = {
			{ "acme", "crm" }, { "initech", "crm" } };

		assert_null(keys_load_files(f->tk, f->dk, more, 2, "conf/x.conf",
		    err, sizeof(err)));
		assert_string_equal(err, "tenants[initech].integrations[crm]: no "
		    "data key: run `subgatectl keys sync -c conf/x.conf`");
	}
	buf_free(&report);
}

static void
test_permissions_refused(void **state)
{
	struct fx	*f = *state;
	char		 err[512], want[512];
	struct keyring	*r;

	init_and_sync(f);
	assert_int_equal(chmod(f->dk, 0644), 0);
	r = keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err, sizeof(err));
	assert_null(r);
	snprintf(want, sizeof(want), "%s is readable by group or others: "
	    "chmod 600 %s", f->dk, f->dk);
	assert_string_equal(err, want);
	/* The file tools refuse it too. */
	assert_int_equal(keys_sync_files(f->tk, f->dk, pairs3, 3, NULL, err,
	    sizeof(err)), -1);
	assert_string_equal(err, want);
	assert_int_equal(chmod(f->dk, 0600), 0);
	assert_int_equal(chmod(f->tk, 0640), 0);
	assert_null(keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err,
	    sizeof(err)));
	assert_non_null(strstr(err, "readable by group or others"));
	assert_int_equal(chmod(f->tk, 0600), 0);
	r = keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err, sizeof(err));
	assert_non_null(r);
	keys_free(r);
}

static void
test_rotate_activate(void **state)
{
	struct fx	*f = *state;
	struct keyring	*r;
	const struct keys_pair *p;
	char		 err[512], *tok1, *tok2, *back, *ff_before, *h_before,
			 *ff_after, *h_after, *other;
	uint32_t	 v = 0;

	init_and_sync(f);
	r = keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err, sizeof(err));
	assert_non_null(r);
	p = keys_pair_find(r, "acme", "crm");
	tok1 = mint(p, "alice@example.com");
	assert_true(strncmp(tok1, "tok1.1.", 7) == 0);
	ff_before = fp_of(p, "+1 555 123 4567", POLICY_FORMAT_PRESERVE);
	h_before = fp_of(p, "alice", POLICY_HASH);
	other = mint(keys_pair_find(r, "acme", "calendar"), "alice@example.com");
	keys_free(r);

	assert_int_equal(keys_rotate_files(f->tk, f->dk, "acme", "crm", &v, NULL,
	    err, sizeof(err)), 0);
	assert_int_equal(v, 2);
	/* Rotated, not activated: still mints version 1, decodes both. */
	r = keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err, sizeof(err));
	assert_non_null(r);
	p = keys_pair_find(r, "acme", "crm");
	assert_int_equal(p->nversions, 2);
	assert_int_equal(p->active, 1);
	tok2 = mint(p, "alice@example.com");
	assert_string_equal(tok1, tok2);
	free(tok2);
	keys_free(r);

	assert_int_equal(keys_activate_files(f->tk, f->dk, "acme", "crm", 3, NULL,
	    err, sizeof(err)), -1);
	assert_int_equal(keys_activate_files(f->tk, f->dk, "acme", "crm", 2, NULL,
	    err, sizeof(err)), 0);
	r = keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err, sizeof(err));
	assert_non_null(r);
	p = keys_pair_find(r, "acme", "crm");
	assert_int_equal(p->active, 2);
	tok2 = mint(p, "alice@example.com");
	assert_true(strncmp(tok2, "tok1.2.", 7) == 0);
	back = unmint(p, tok1);		/* minted by the old version */
	assert_non_null(back);
	assert_string_equal(back, "\"alice@example.com\"");
	free(back);
	back = unmint(p, tok2);
	assert_non_null(back);
	free(back);
	assert_null(unmint(p, other));	/* the calendar pair's token */
	/* FF1 and hash keys come from version 1 and did not rotate. */
	ff_after = fp_of(p, "+1 555 123 4567", POLICY_FORMAT_PRESERVE);
	h_after = fp_of(p, "alice", POLICY_HASH);
	assert_string_equal(ff_before, ff_after);
	assert_string_equal(h_before, h_after);
	keys_free(r);
	free(tok1);
	free(tok2);
	free(other);
	free(ff_before);
	free(ff_after);
	free(h_before);
	free(h_after);
}

static void
test_shred(void **state)
{
	struct fx	*f = *state;
	struct keyring	*r;
	struct buf	 report = { 0 };
	char		 err[512], *s;

	init_and_sync(f);
	assert_int_equal(keys_shred_files(f->tk, f->dk, "acme", "crm", pairs3, 3,
	    &report, err, sizeof(err)), 0);
	assert_string_equal(report.data, "shredded tenant=acme integration=crm\n");
	s = slurp(f->dk);
	assert_non_null(strstr(s, "\nshredded acme crm\n"));
	assert_null(strstr(s, "key acme crm "));
	free(s);
	r = keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err, sizeof(err));
	assert_non_null(r);
	assert_true(keys_pair_shredded(keys_pair_find(r, "acme", "crm")));
	assert_false(keys_pair_shredded(keys_pair_find(r, "acme", "calendar")));
	{
		struct token_ctx c = { .pair = keys_pair_find(r, "acme", "crm") };
		struct buf out = { 0 };

		assert_int_equal(token_apply_text(&c, POLICY_TOKENIZE, "x", 1,
		    &out), -1);
		buf_free(&out);
	}
	keys_free(r);
	/* sync never recreates it */
	buf_reset(&report);
	assert_int_equal(keys_sync_files(f->tk, f->dk, pairs3, 3, &report, err,
	    sizeof(err)), 0);
	assert_string_equal(report.data, "nothing to create\n");
	/* rotating a shredded pair is refused */
	{
		uint32_t v;

		assert_int_equal(keys_rotate_files(f->tk, f->dk, "acme", "crm", &v,
		    NULL, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "shredded"));
	}
	/* the whole tenant, including a pair that never had a key */
	{
		static const struct keys_name more[] = { { "acme", "crm" },
		    { "acme", "calendar" }, { "acme", "tickets" },
		    { "globex", "crm" } };

		buf_reset(&report);
		assert_int_equal(keys_shred_files(f->tk, f->dk, "acme", NULL, more,
		    4, &report, err, sizeof(err)), 0);
		assert_non_null(strstr(report.data, "integration=calendar"));
		assert_non_null(strstr(report.data, "integration=tickets"));
		assert_null(strstr(report.data, "integration=crm"));
		buf_reset(&report);
		assert_int_equal(keys_sync_files(f->tk, f->dk, more, 4, &report,
		    err, sizeof(err)), 0);
		assert_string_equal(report.data, "nothing to create\n");
		r = keys_load_files(f->tk, f->dk, more, 4, "x.conf", err,
		    sizeof(err));
		assert_non_null(r);
		assert_true(keys_pair_shredded(keys_pair_find(r, "acme", "tickets")));
		assert_false(keys_pair_shredded(keys_pair_find(r, "globex", "crm")));
		keys_free(r);
	}
	buf_free(&report);
}

static void
test_rotate_master(void **state)
{
	struct fx	*f = *state;
	struct keyring	*r;
	char		 err[512], *before, *after, *tk, *tok, *back;
	uint32_t	 v = 0;

	init_and_sync(f);
	r = keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err, sizeof(err));
	assert_non_null(r);
	tok = mint(keys_pair_find(r, "globex", "crm"), "42");
	keys_free(r);
	before = slurp(f->dk);
	assert_int_equal(keys_rotate_master_files(f->tk, f->dk, &v, NULL, err,
	    sizeof(err)), 0);
	assert_int_equal(v, 2);
	after = slurp(f->dk);
	assert_string_not_equal(before, after);
	assert_null(strstr(after, " 1 0"));
	tk = slurp(f->tk);
	assert_non_null(strstr(tk, "master 2 active "));
	assert_null(strstr(tk, "master 1 "));	/* no data key uses it now */
	assert_int_equal(mode_of(f->tk), 0600);
	assert_int_equal(mode_of(f->dk), 0600);
	r = keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err, sizeof(err));
	assert_non_null(r);
	back = unmint(keys_pair_find(r, "globex", "crm"), tok);
	assert_non_null(back);
	assert_string_equal(back, "\"42\"");
	keys_free(r);
	free(back);
	free(tok);
	free(tk);
	free(before);
	free(after);
}

static void
test_corrupt_files(void **state)
{
	struct fx	*f = *state;
	char		 err[512], *s, *p;
	FILE		*fp;

	init_and_sync(f);
	/* A flipped bit in a wrapped key does not unwrap. */
	s = slurp(f->dk);
	p = strstr(s, "key globex crm ");
	assert_non_null(p);
	p = strchr(p, '\n') - 1;
	*p = *p == '0' ? '1' : '0';
	assert_non_null(fp = fopen(f->dk, "w"));
	fputs(s, fp);
	fclose(fp);
	assert_null(keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err,
	    sizeof(err)));
	assert_non_null(strstr(err, "tenants[globex].integrations[crm]: data key "
	    "version 1 does not unwrap"));
	free(s);
	/* Two active masters. */
	assert_non_null(fp = fopen(f->tk, "a"));
	fputs("master 9 active 00000000000000000000000000000000000000000000000"
	    "00000000000000000\n", fp);
	fclose(fp);
	assert_null(keys_load_files(f->tk, f->dk, pairs3, 3, "x.conf", err,
	    sizeof(err)));
	assert_non_null(strstr(err, "exactly one active"));
}

/* ---- through the config and the command line ---- */

static void
write_conf(const struct fx *f, const char *path, const char *tenants)
{
	char	 p[256];
	FILE	*fp;
	static const char *dummies[] = { "gw.crt", "gw.key", "ca.crt",
	    "pca.crt", "cli.crt", "cli.key" };
	size_t	 i;

	for (i = 0; i < 6; i++) {
		snprintf(p, sizeof(p), "%s/%s", f->dir, dummies[i]);
		assert_non_null(fp = fopen(p, "a"));
		fclose(fp);
		chmod(p, 0600);
	}
	assert_non_null(fp = fopen(path, "w"));
	fprintf(fp,
	    "listen = { address = \"127.0.0.1\"; port = 18443; workers = 1; };\n"
	    "tls = { certificate = \"%1$s/gw.crt\"; private_key = \"%1$s/gw.key\";\n"
	    "  client_ca = \"%1$s/ca.crt\"; };\n"
	    "keys = { token_keys = \"%1$s/token.keys\"; data_keys = \"%1$s/data.keys\";\n"
	    "  audit_reader = \"%1$s/audit-reader.pub\"; audit_index = \"%1$s/audit-index.key\";\n"
	    "  audit_signer = \"%1$s/audit-signer.key\"; };\n"
	    "audit = { directory = \"%1$s/audit\"; };\n"
	    "tenants = ( %2$s );\n"
	    "integrations = (\n"
	    "  { name = \"crm\"; prefix = \"/crm\"; upstream = \"https://127.0.0.1:9444\";\n"
	    "    server_name = \"crm.test\"; ca = \"%1$s/pca.crt\";\n"
	    "    client_certificate = \"%1$s/cli.crt\"; client_private_key = \"%1$s/cli.key\";\n"
	    "    token_domain = \"tokens.example.com\";\n"
	    "    endpoints = ( { method = \"POST\"; path = \"/v1/contacts\";\n"
	    "      request = { tokenize = [ \"contact.email\" ]; }; } ); },\n"
	    "  { name = \"calendar\"; prefix = \"/calendar\"; upstream = \"https://127.0.0.1:9445\";\n"
	    "    server_name = \"cal.test\"; ca = \"%1$s/pca.crt\";\n"
	    "    client_certificate = \"%1$s/cli.crt\"; client_private_key = \"%1$s/cli.key\";\n"
	    "    endpoints = ( { method = \"POST\"; path = \"/v3/events\";\n"
	    "      request = { allow = [ \"start\" ]; }; } ); }\n"
	    ");\n", f->dir, tenants);
	fclose(fp);
}

static void
test_conf_and_cli(void **state)
{
	struct fx	*f = *state;
	char		 conf[256], err[1024], cmd[1024], want[512];
	struct conf	*c;
	struct keyring	*r;
	int		 have_cli = access("../../build/subgatectl", X_OK) == 0;

	snprintf(conf, sizeof(conf), "%s/subgate.conf", f->dir);
	write_conf(f, conf,
	    "{ id = \"acme\"; clients = [ \"spiffe://t/acme\" ];"
	    "  integrations = ( \"crm\", \"calendar\" ); },"
	    "{ id = \"globex\"; clients = [ \"spiffe://t/globex\" ];"
	    "  integrations = ( \"crm\" ); }");
	c = conf_load(conf, (1u << POLICY_NACTIONS) - 1, err, sizeof(err));
	if (c == NULL)
		fail_msg("conf_load: %s", err);
	assert_int_equal(keys_init_dir(f->dir, NULL, err, sizeof(err)), 0);
	/* No data keys yet: the daemon's load names the pair and the fix. */
	assert_null(keys_load(c, err, sizeof(err)));
	snprintf(want, sizeof(want), "tenants[acme].integrations[crm]: no data "
	    "key: run `subgatectl keys sync -c %s`", conf);
	assert_string_equal(err, want);
	if (have_cli) {
		snprintf(cmd, sizeof(cmd), "../../build/subgatectl keys sync -c %s "
		    "> %s/out.txt", conf, f->dir);
		assert_int_equal(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "grep -c 'created data key' %s/out.txt "
		    "| grep -qx 3", f->dir);
		assert_int_equal(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "../../build/subgatectl keys shred -c %s "
		    "--tenant globex >/dev/null", conf);
		assert_int_equal(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "../../build/subgatectl keys rotate -c %s "
		    "--tenant acme --integration crm >/dev/null", conf);
		assert_int_equal(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "../../build/subgatectl keys activate -c "
		    "%s --tenant acme --integration crm --version 2 >/dev/null", conf);
		assert_int_equal(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "../../build/subgatectl keys rotate-master "
		    "-c %s >/dev/null", conf);
		assert_int_equal(system(cmd), 0);
		/* usage errors exit 2 */
		snprintf(cmd, sizeof(cmd), "../../build/subgatectl keys rotate -c %s "
		    "--tenant acme 2>/dev/null", conf);
		assert_int_equal(WEXITSTATUS(system(cmd)), 2);
	} else {
		size_t n;
		struct keys_name *pairs = keys_conf_pairs(c, &n);
		uint32_t v;

		assert_int_equal(n, 3);
		assert_int_equal(keys_sync_files(c->keys_token_keys,
		    c->keys_data_keys, pairs, n, NULL, err, sizeof(err)), 0);
		assert_int_equal(keys_shred_files(c->keys_token_keys,
		    c->keys_data_keys, "globex", NULL, pairs, n, NULL, err,
		    sizeof(err)), 0);
		assert_int_equal(keys_rotate_files(c->keys_token_keys,
		    c->keys_data_keys, "acme", "crm", &v, NULL, err, sizeof(err)), 0);
		assert_int_equal(keys_activate_files(c->keys_token_keys,
		    c->keys_data_keys, "acme", "crm", 2, NULL, err, sizeof(err)), 0);
		free(pairs);
	}
	r = keys_load(c, err, sizeof(err));
	if (r == NULL)
		fail_msg("keys_load: %s", err);
	assert_true(keys_pair_shredded(keys_pair_find(r, "globex", "crm")));
	assert_int_equal(keys_pair_find(r, "acme", "crm")->active, 2);
	assert_int_equal(keys_pair_find(r, "acme", "calendar")->active, 1);
	keys_free(r);
	conf_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_load_and_wrapping, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_permissions_refused, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_rotate_activate, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_shred, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotate_master, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_files, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_conf_and_cli, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
