/* fuzz_json.c -- libFuzzer target: strict JSON reader, skipping, validator and string writer */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "policy.h"

#define DEPTH	16
#define CHECK(x)	do { if (!(x)) abort(); } while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct json_reader	*rd, *rd2;
static struct policy_rules	*all;
static struct buf		 out, out2, lit;

/* A string value written back with json_write_string reads as the same. */
static void
check_roundtrip(const struct json_token *t)
{
	struct json_token	 u;
	char			 err[128];

	buf_reset(&lit);
	CHECK(buf_append_str(&lit, "{\"k\":") == 0);
	CHECK(json_write_string(&lit, t->str, t->str_len) == 0);
	CHECK(buf_append_str(&lit, "}") == 0);
	json_reader_reset(rd2, lit.data, lit.len);
	CHECK(json_next(rd2, &u, err, sizeof(err)) == 0);
	CHECK(json_next(rd2, &u, err, sizeof(err)) == 0);
	CHECK(json_next(rd2, &u, err, sizeof(err)) == 0);
	CHECK(u.type == JSON_STRING && u.str_len == t->str_len);
	CHECK(memcmp(u.str, t->str, t->str_len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char		*in = (const char *)data;
	struct json_token	 t;
	char			 err[256];
	int			 depth = 0, rc, valid;
	size_t			 ntok = 0;

	if (rd == NULL) {
		CHECK((rd = json_reader_new(DEPTH)) != NULL);
		CHECK((rd2 = json_reader_new(DEPTH)) != NULL);
		CHECK((all = policy_rules_new()) != NULL);
		CHECK(policy_rules_add(all, "**", POLICY_ALLOW, err,
		    sizeof(err)) == 0);
	}
	valid = json_validate(in, size, DEPTH, err, sizeof(err)) == 0;

	/* the reader walk agrees with the validator, tokens are sane */
	json_reader_reset(rd, in, size);
	for (;;) {
		rc = json_next(rd, &t, err, sizeof(err));
		if (rc == -1) {
			CHECK(!valid);
			CHECK(json_next(rd, &t, err, sizeof(err)) == -1);
			break;
		}
		ntok++;
		if (t.type == JSON_EOF) {
			CHECK(valid && depth == 0);
			CHECK(json_reader_offset(rd) == size);
			break;
		}
		CHECK(t.raw >= in && t.raw + t.raw_len <= in + size);
		CHECK(t.raw_len > 0);
		switch (t.type) {
		case JSON_OBJECT_BEGIN:
		case JSON_ARRAY_BEGIN:
			depth++;
			CHECK(t.depth == depth && depth <= DEPTH);
			break;
		case JSON_OBJECT_END:
		case JSON_ARRAY_END:
			CHECK(t.depth == depth);
			depth--;
			break;
		case JSON_KEY:
		case JSON_STRING:
			CHECK(t.depth == depth);
			CHECK(t.raw[0] == '"' && t.raw[t.raw_len - 1] == '"');
			CHECK(json_utf8_valid(t.str, t.str_len));
			if (t.type == JSON_KEY)
				CHECK(memchr(t.str, '\0', t.str_len) == NULL);
			check_roundtrip(&t);
			break;
		default:
			CHECK(t.depth == depth);
			break;
		}
	}

	/* skipping some values unread: a valid document still reads to its
	 * end; on any input the reader stays within it */
	json_reader_reset(rd, in, size);
	for (ntok = 0;; ntok++) {
		if (json_next(rd, &t, err, sizeof(err)) == -1) {
			CHECK(!valid);
			break;
		}
		CHECK(json_reader_offset(rd) <= size);
		if (t.type == JSON_EOF) {
			CHECK(json_reader_offset(rd) == size);
			break;
		}
		if (t.type == JSON_KEY && (ntok + size) % 2 == 0)
			rc = json_skip_value(rd, err, sizeof(err));
		else if ((t.type == JSON_OBJECT_BEGIN ||
		    t.type == JSON_ARRAY_BEGIN) && (ntok + size) % 3 == 0)
			rc = json_skip_container(rd, err, sizeof(err));
		else
			continue;
		CHECK(json_reader_offset(rd) <= size);
		if (rc == -1) {
			CHECK(!valid);
			break;
		}
	}

	if (!valid)
		return 0;
	CHECK(json_utf8_valid(in, size));

	/* ** allow: valid, compact output that is a fixed point */
	buf_reset(&out);
	CHECK(policy_apply_json(all, rd, in, size, NULL, &out, NULL, err,
	    sizeof(err)) == 0);
	CHECK(out.len <= size);
	CHECK(json_validate(out.data, out.len, DEPTH, err, sizeof(err)) == 0);
	buf_reset(&out2);
	CHECK(policy_apply_json(all, rd, out.data, out.len, NULL, &out2, NULL,
	    err, sizeof(err)) == 0);
	CHECK(out2.len == out.len && memcmp(out.data, out2.data, out.len) == 0);
	return 0;
}
