/* fuzz_policy.c -- libFuzzer target: a fixed rule set applied to arbitrary JSON, collect walk vs response walk */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "policy.h"

#define DEPTH	16
#define CHECK(x)	do { if (!(x)) abort(); } while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
	const char		*path;
	enum policy_action	 action;
} rule_set[] = {
	{ "contact.first_name", POLICY_ALLOW },
	{ "contact.email", POLICY_TOKENIZE },
	{ "contact.phone", POLICY_FORMAT_PRESERVE },
	{ "contact.\"e.mail\"", POLICY_HASH },
	{ "contact.card", POLICY_MASK },
	{ "attendees[].email", POLICY_TOKENIZE },
	{ "attendees[].response", POLICY_ALLOW },
	{ "m[][]", POLICY_ALLOW },
	{ "custom.*", POLICY_ALLOW },
	{ "custom.*.v", POLICY_HASH },
	{ "custom.k.w", POLICY_ALLOW },
	{ "notes.**", POLICY_ALLOW },
	{ "secret.**", POLICY_TOKENIZE },
	{ "q.*", POLICY_ALLOW },
	{ "a", POLICY_ALLOW },
	{ "x.y.z[]", POLICY_MASK },
};

static struct json_reader	*rd;
static struct policy_rules	*rules;
static struct policy_report	 rep;
static struct buf		 out, log_resp, log_coll;

/* Transform: a fixed string, a refusal for short strings, the raw token
 * for non-strings. With arg, each call is logged there (action, type,
 * raw token); o is NULL under policy_collect_json. */
static int
xf(void *arg, enum policy_action a, const struct json_token *v,
    struct buf *o)
{
	struct buf	*log = arg;
	size_t		 n;

	CHECK(a != POLICY_ALLOW && a != POLICY_DROP);
	CHECK(v->type == JSON_STRING || v->type == JSON_NUMBER ||
	    v->type == JSON_TRUE || v->type == JSON_FALSE ||
	    v->type == JSON_NULL);
	if (log != NULL) {
		CHECK(buf_append_char(log, (char)('0' + a)) == 0);
		CHECK(buf_append_char(log, (char)('0' + v->type)) == 0);
		CHECK(buf_append(log, v->raw, v->raw_len) == 0);
		CHECK(buf_append_char(log, '\n') == 0);
	}
	if (o == NULL)
		return 0;
	if (v->type != JSON_STRING)
		return buf_append(o, v->raw, v->raw_len);
	if (v->str_len < 2)
		return 1;
	/* the first half, cut at a character boundary */
	n = v->str_len / 2;
	while (n > 0 && ((unsigned char)v->str[n] & 0xc0) == 0x80)
		n--;
	return json_write_string(o, v->str, n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char		*in = (const char *)data;
	struct policy_transform	 t = { xf, NULL };
	char			 err[256];
	size_t			 i, n;
	int			 valid, rc;

	if (rd == NULL) {
		CHECK((rd = json_reader_new(DEPTH)) != NULL);
		CHECK((rules = policy_rules_new()) != NULL);
		for (i = 0; i < sizeof(rule_set) / sizeof(rule_set[0]); i++)
			CHECK(policy_rules_add(rules, rule_set[i].path,
			    rule_set[i].action, err, sizeof(err)) == 0);
	}
	valid = json_validate(in, size, DEPTH, err, sizeof(err)) == 0;

	buf_reset(&out);
	policy_report_reset(&rep);
	rc = policy_apply_json(rules, rd, in, size, &t, &out, &rep, err,
	    sizeof(err));
	CHECK((rc == 0) == valid);
	if (rc == -1) {
		CHECK(out.len == 0);
	} else {
		CHECK(json_validate(out.data, out.len, DEPTH, err,
		    sizeof(err)) == 0);
		/* report paths: NUL-terminated, counted, distinct */
		for (i = 0; i < POLICY_NACTIONS; i++) {
			const char *p = rep.paths[i].data;
			const char *end = p;

			if (p != NULL)
				end = p + rep.paths[i].len;
			n = 0;
			while (p != NULL && p < end) {
				CHECK(strlen(p) > 0);
				p += strlen(p) + 1;
				n++;
			}
			CHECK(n == rep.npaths[i]);
			CHECK(n <= rep.count[i]);
		}
	}

	buf_reset(&out);
	buf_reset(&log_resp);
	t.arg = &log_resp;
	rc = policy_apply_response(rules, rd, in, size, &t, &out, err,
	    sizeof(err));
	CHECK((rc == 0) == valid);
	if (rc == 0)
		CHECK(json_validate(out.data, out.len, DEPTH, err,
		    sizeof(err)) == 0);

	/* the collect walk: on valid input exactly the response walk's
	 * calls; on anything else it only has to stay in bounds */
	buf_reset(&log_coll);
	t.arg = &log_coll;
	rc = policy_collect_json(rules, rd, in, size, &t, err, sizeof(err));
	if (valid) {
		CHECK(rc == 0);
		CHECK(log_coll.len == log_resp.len);
		CHECK(log_coll.len == 0 || memcmp(log_coll.data, log_resp.data,
		    log_coll.len) == 0);
	}
	return 0;
}
