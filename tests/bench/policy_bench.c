/* policy_bench.c -- documents/s and MB/s of policy_apply_json with the request transforms */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "json.h"
#include "keys.h"
#include "policy.h"
#include "token.h"

/*
 * usage: policy_bench DOC.json [SECONDS]
 * Applies the bench's full policy (the one subgate's /full integration
 * uses in scripts/bench.sh: allow, drop, tokenize, format_preserve, hash,
 * mask) and a pass-through policy (allow "**") to DOC and to a 64 KB
 * document (DOC with call.transcript grown to make it 64 KiB), each for
 * SECONDS (default 2), single thread, keys from keys_pair_demo. Prints one
 * line per case: "policy: doc=2k policy=full docs_s=... mb_s=...
 * mb_s_best=... slices=... out=..." (median and fastest 50 ms slice).
 */

static const char *const full_rules[][2] = {
	{ "contact.first_name", "allow" }, { "contact.last_name", "allow" },
	{ "contact.company", "allow" }, { "call.started_at", "allow" },
	{ "call.duration_s", "allow" }, { "call.intent", "allow" },
	{ "appointment.service", "allow" }, { "tags[]", "allow" },
	{ "contact.email", "tokenize" }, { "contact.phone", "format_preserve" },
	{ "call.caller_id", "hash" }, { "contact.card_number", "mask" },
};

static double
now_s(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE	*f = fopen(path, "rb");
	char	*p;
	long	 n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
		perror(path);
		exit(2);
	}
	rewind(f);
	p = malloc((size_t)n + 1);
	if (p == NULL || fread(p, 1, (size_t)n, f) != (size_t)n)
		exit(2);
	fclose(f);
	*len = (size_t)n;
	return p;
}

/* DOC with the value of "transcript" repeated until the document is 64 KiB. */
static char *
grow(const char *doc, size_t len, size_t *outlen)
{
	const char	*k = strstr(doc, "\"transcript\": \""), *v, *e;
	struct buf	 b = { 0 };
	size_t		 vlen;

	if (k == NULL)
		return NULL;
	v = k + strlen("\"transcript\": \"");
	e = strchr(v, '"');
	vlen = (size_t)(e - v);
	buf_append(&b, doc, (size_t)(e - doc));
	while (b.len + vlen + 1 + (len - (size_t)(e - doc)) <= 65536) {
		buf_append_char(&b, ' ');
		buf_append(&b, v, vlen);
	}
	while (b.len + (len - (size_t)(e - doc)) < 65536)
		buf_append_char(&b, '.');
	buf_append(&b, e, len - (size_t)(e - doc));
	*outlen = b.len;
	return b.data;
}

static int
cmp_double(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/*
 * Runs the case for secs in slices of about 50 ms and reports the median
 * slice's rate, and the fastest slice's. On a shared machine other work
 * only ever slows a slice down, so the median is the typical rate and the
 * best the closest to the code's own speed.
 */
static void
run(const char *name, const char *pname, struct policy_rules *rules,
    struct json_reader *r, const char *doc, size_t len,
    struct token_ctx *tok, double secs)
{
	struct policy_transform	 xf = { token_xform_request, tok };
	struct policy_report	 rep;
	struct buf		 out = { 0 };
	char			 err[160];
	double			 t0, ts, el, rates[4096];
	long			 n, i;
	size_t			 ns = 0;

	memset(&rep, 0, sizeof(rep));
	t0 = now_s();
	do {
		ts = now_s();
		n = 0;
		do {
			for (i = 0; i < 16; i++) {
				buf_truncate(&out, 0);
				policy_report_reset(&rep);
				if (policy_apply_json(rules, r, doc, len, &xf,
				    &out, &rep, err, sizeof(err)) == -1) {
					fprintf(stderr, "policy_bench: %s\n",
					    err);
					exit(1);
				}
			}
			n += 16;
		} while ((el = now_s() - ts) < 0.05);
		rates[ns++] = (double)n / el;
	} while (now_s() - t0 < secs && ns < sizeof(rates) / sizeof(rates[0]));
	qsort(rates, ns, sizeof(rates[0]), cmp_double);
	printf("policy: doc=%s policy=%s bytes=%zu docs_s=%.0f mb_s=%.1f "
	    "mb_s_best=%.1f slices=%zu out=%zu\n", name, pname, len,
	    rates[ns / 2], rates[ns / 2] * (double)len / 1e6,
	    rates[ns - 1] * (double)len / 1e6, ns, out.len);
	policy_report_free(&rep);
	buf_free(&out);
}

int
main(int argc, char **argv)
{
	struct policy_rules	*full, *pass;
	struct json_reader	*r;
	struct keys_pair	*pair;
	struct token_ctx	 tok;
	enum policy_action	 a;
	char			*doc, *big, err[256];
	size_t			 len, blen, i;
	double			 secs = argc > 2 ? atof(argv[2]) : 2.0;

	if (argc < 2) {
		fprintf(stderr, "usage: policy_bench DOC.json [SECONDS]\n");
		return 2;
	}
	doc = slurp(argv[1], &len);
	if ((big = grow(doc, len, &blen)) == NULL) {
		fprintf(stderr, "policy_bench: %s has no \"transcript\"\n",
		    argv[1]);
		return 2;
	}
	full = policy_rules_new();
	pass = policy_rules_new();
	for (i = 0; i < sizeof(full_rules) / sizeof(full_rules[0]); i++)
		if (policy_action_parse(full_rules[i][1], &a) == -1 ||
		    policy_rules_add(full, full_rules[i][0], a, err,
		    sizeof(err)) == -1) {
			fprintf(stderr, "policy_bench: %s: %s\n",
			    full_rules[i][0], err);
			return 1;
		}
	if (policy_rules_add(pass, "**", POLICY_ALLOW, err, sizeof(err)) == -1)
		return 1;
	r = json_reader_new(32);
	pair = keys_pair_demo("acme", "crm");
	if (r == NULL || pair == NULL)
		return 1;
	memset(&tok, 0, sizeof(tok));
	tok.pair = pair;
	tok.tenant = "acme";
	tok.integration = "crm";
	tok.token_domain = "tokens.example.com";
	run("2k", "full", full, r, doc, len, &tok, secs);
	run("2k", "pass", pass, r, doc, len, &tok, secs);
	run("64k", "full", full, r, big, blen, &tok, secs);
	run("64k", "pass", pass, r, big, blen, &tok, secs);
	keys_pair_free(pair);
	json_reader_free(r);
	policy_rules_free(full);
	policy_rules_free(pass);
	free(doc);
	free(big);
	return 0;
}
