/* ctl_audit.c -- subgatectl audit verify|show: check and read the disclosure log */
#include <errno.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit.h"
#include "auditfmt.h"
#include "buf.h"
#include "conf.h"
#include "ctl.h"

static void
usage(void)
{
	fprintf(stderr,
	    "usage: subgatectl audit verify DIR --public-key audit-signer.pub "
	    "[--anchor LINE]\n"
	    "       subgatectl audit show DIR --key audit-reader.key "
	    "[--tenant T] [--integration I]\n"
	    "                  [--type TYPE] [--since RFC3339] "
	    "[--until RFC3339]\n"
	    "                  [--index-key audit-index.key --subject VALUE|- "
	    "[-c CONF | --country-code CC]]\n"
	    "                  [--format jsonl|csv|table]\n");
}

static EVP_PKEY *
read_key(const char *path, int private)
{
	EVP_PKEY	*k;
	FILE		*f;

	if ((f = fopen(path, "re")) == NULL) {
		fprintf(stderr, "subgatectl: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	k = private ? PEM_read_PrivateKey(f, NULL, NULL, NULL) :
	    PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (k == NULL)
		fprintf(stderr, "subgatectl: %s: not a PEM %s key\n", path,
		    private ? "private" : "public");
	return k;
}

static int
verify_main(int argc, char **argv)
{
	struct auditfmt_verify_stats	 st;
	const char			*dir = NULL, *pubfile = NULL;
	const char			*anchor = NULL;
	EVP_PKEY			*k;
	unsigned char			 pub[32];
	char				 msg[1024];
	int				 i, v;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--public-key") == 0 && i + 1 < argc)
			pubfile = argv[++i];
		else if (strcmp(argv[i], "--anchor") == 0 && i + 1 < argc)
			anchor = argv[++i];
		else if (argv[i][0] != '-' && dir == NULL)
			dir = argv[i];
		else {
			usage();
			return 2;
		}
	}
	if (dir == NULL || pubfile == NULL) {
		usage();
		return 2;
	}
	if ((k = read_key(pubfile, 0)) == NULL)
		return 2;
	if (EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519 ||
	    auditfmt_pub_raw(k, pub) == -1) {
		fprintf(stderr, "subgatectl: %s: not an Ed25519 public key\n",
		    pubfile);
		EVP_PKEY_free(k);
		return 2;
	}
	EVP_PKEY_free(k);
	memset(&st, 0, sizeof(st));
	v = audit_log_verify(dir, pub, anchor, msg, sizeof(msg), &st);
	switch (v) {
	case AUDITFMT_INTACT:
		printf("intact: %" PRIu64 " segments, %" PRIu64 " records, %"
		    PRIu64 " checkpoints, last seq %" PRIu64 "%s\n",
		    st.segments, st.records, st.checkpoints, st.last_seq,
		    anchor ? ", anchor found" : "");
		return 0;
	case AUDITFMT_TORN:
		printf("torn: %s\n", msg);
		return 2;
	case AUDITFMT_TAMPERED:
		printf("TAMPERED: %s\n", msg);
		return 1;
	default:
		fprintf(stderr, "subgatectl: audit verify: %s\n", msg);
		return 1;
	}
}

/* ---- a small reader for the records' top-level members ---- */

static const char *
skip_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *
skip_string(const char *p, const char *e)
{
	for (p++; p < e; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

static const char *
skip_value(const char *p, const char *e)
{
	int	 depth = 0;

	if (p >= e)
		return NULL;
	if (*p == '"')
		return skip_string(p, e);
	if (*p != '{' && *p != '[') {
		while (p < e && *p != ',' && *p != '}' && *p != ']' &&
		    *p != ' ' && *p != '\n' && *p != '\t' && *p != '\r')
			p++;
		return p;
	}
	for (; p < e; p++) {
		if (*p == '"') {
			if ((p = skip_string(p, e)) == NULL)
				return NULL;
			p--;
		} else if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
	}
	return NULL;
}

struct member {
	const char	*k, *v;		/* key without quotes, value raw */
	size_t		 klen, vlen;
};

/* Iterate members: *pos starts at the object; returns 1, 0 at the end, -1. */
static int
next_member(const char **pos, const char *e, struct member *m)
{
	const char	*p = skip_ws(*pos, e), *q;

	if (p < e && (*p == '{' || *p == ','))
		p = skip_ws(p + 1, e);
	if (p < e && *p == '}')
		return 0;
	if (p >= e || *p != '"' || (q = skip_string(p, e)) == NULL)
		return -1;
	m->k = p + 1;
	m->klen = (size_t)(q - p - 2);
	p = skip_ws(q, e);
	if (p >= e || *p != ':')
		return -1;
	p = skip_ws(p + 1, e);
	if ((q = skip_value(p, e)) == NULL)
		return -1;
	m->v = p;
	m->vlen = (size_t)(q - p);
	*pos = q;
	return 1;
}

static int
key_is(const struct member *m, const char *k)
{
	return strlen(k) == m->klen && memcmp(m->k, k, m->klen) == 0;
}

/* A string value unescaped (ASCII escapes; others copied raw). */
static void
str_value(const struct member *m, struct buf *out)
{
	const char	*p, *e;
	unsigned	 u;

	buf_truncate(out, 0);
	if (m->vlen < 2 || m->v[0] != '"') {
		buf_append(out, m->v, m->vlen);
		return;
	}
	for (p = m->v + 1, e = m->v + m->vlen - 1; p < e; p++) {
		if (*p != '\\' || p + 1 >= e) {
			buf_append_char(out, *p);
			continue;
		}
		p++;
		switch (*p) {
		case 'n': buf_append_char(out, '\n'); break;
		case 't': buf_append_char(out, '\t'); break;
		case 'r': buf_append_char(out, '\r'); break;
		case 'b': buf_append_char(out, '\b'); break;
		case 'f': buf_append_char(out, '\f'); break;
		case 'u':
			if (e - p > 4 && sscanf(p + 1, "%4x", &u) == 1 &&
			    u < 0x80) {
				buf_append_char(out, (char)u);
				p += 4;
			} else
				buf_append(out, p - 1, 2);
			break;
		default: buf_append_char(out, *p); break;
		}
	}
}

/* Number of strings in an array value; does it hold needle (hex)? */
static size_t
array_count(const struct member *m, const char *needle, int *found)
{
	const char	*p = m->v, *e = m->v + m->vlen, *q;
	size_t		 n = 0;

	if (m->vlen == 0 || *p != '[')
		return 0;
	p++;
	for (;;) {
		p = skip_ws(p, e);
		if (p >= e || *p == ']')
			break;
		if (*p == ',') {
			p++;
			continue;
		}
		if ((q = skip_value(p, e)) == NULL)
			break;
		n++;
		if (needle != NULL && q - p == 66 && *p == '"' &&
		    strncasecmp(p + 1, needle, 64) == 0)
			*found = 1;
		p = q;
	}
	return n;
}

enum fmt { FMT_JSONL, FMT_CSV, FMT_TABLE };

struct show {
	const char	*tenant, *integration, *type;
	const char	*subject_hash;	/* hex, or NULL */
	enum fmt	 fmt;
	struct buf	 line, tmp;
	uint64_t	 shown;
	int		 bad;
};

static const char *const columns[] = {
	"seq", "time", "instance", "type", "event", "tenant", "integration",
	"processor", "method", "endpoint", "request_id", "status", "delivery",
	"subjects",
};
#define NCOLS	(sizeof(columns) / sizeof(columns[0]))

static void
csv_field(struct buf *out, const char *s, size_t n)
{
	size_t	 i;

	if (strcspn(s, ",\"\r\n") >= n) {
		buf_append(out, s, n);
		return;
	}
	buf_append_char(out, '"');
	for (i = 0; i < n; i++) {
		if (s[i] == '"')
			buf_append_char(out, '"');
		buf_append_char(out, s[i]);
	}
	buf_append_char(out, '"');
}

static int
show_cb(void *arg, uint64_t seq, uint64_t t, const char *json, size_t len)
{
	struct show	*s = arg;
	struct member	 m;
	const char	*pos = json, *e = json + len;
	struct buf	 cols[NCOLS];
	size_t		 i, nsubj = 0;
	int		 r, found = 0, match_t = s->tenant == NULL;
	int		 match_i = s->integration == NULL;
	int		 match_y = s->type == NULL, has_subj = 0;

	(void)seq;
	(void)t;
	memset(cols, 0, sizeof(cols));
	buf_truncate(&s->line, 0);
	if (s->fmt == FMT_JSONL)
		buf_append_char(&s->line, '{');
	while ((r = next_member(&pos, e, &m)) == 1) {
		if (key_is(&m, "subjects_hmac")) {
			nsubj = array_count(&m, s->subject_hash, &found);
			has_subj = 1;
			if (s->fmt == FMT_JSONL)
				buf_printf(&s->line, "%s\"subjects\":%zu",
				    s->line.len > 1 ? "," : "", nsubj);
			continue;
		}
		str_value(&m, &s->tmp);
		if (key_is(&m, "tenant") && s->tenant != NULL)
			match_t = strcmp(s->tmp.data, s->tenant) == 0;
		if (key_is(&m, "integration") && s->integration != NULL)
			match_i = strcmp(s->tmp.data, s->integration) == 0;
		if (key_is(&m, "type") && s->type != NULL)
			match_y = strcmp(s->tmp.data, s->type) == 0;
		if (s->fmt == FMT_JSONL) {
			if (s->line.len > 1)
				buf_append_char(&s->line, ',');
			buf_append(&s->line, m.k - 1, m.klen + 2);
			buf_append_char(&s->line, ':');
			buf_append(&s->line, m.v, m.vlen);
			continue;
		}
		for (i = 0; i < NCOLS; i++)
			if (key_is(&m, columns[i]) && m.vlen > 0 &&
			    m.v[0] != '{' && m.v[0] != '[' &&
			    !(m.vlen == 4 && memcmp(m.v, "null", 4) == 0))
				buf_append(&cols[i], s->tmp.data, s->tmp.len);
	}
	if (r == -1) {
		fprintf(stderr, "subgatectl: record %" PRIu64 " is not a JSON "
		    "object; skipped\n", seq);
		s->bad = 1;
		goto out;
	}
	if (!match_t || !match_i || !match_y ||
	    (s->subject_hash != NULL && !found))
		goto out;
	s->shown++;
	if (s->fmt == FMT_JSONL) {
		buf_append_str(&s->line, "}\n");
		fwrite(s->line.data, 1, s->line.len, stdout);
		goto out;
	}
	if (has_subj)
		buf_printf(&cols[NCOLS - 1], "%zu", nsubj);
	if (s->fmt == FMT_CSV) {
		for (i = 0; i < NCOLS; i++) {
			if (i > 0)
				buf_append_char(&s->line, ',');
			csv_field(&s->line, cols[i].data ? cols[i].data : "",
			    cols[i].len);
		}
	} else
		buf_printf(&s->line, "%-8s %-24s %-11s %-10s %-12s %-12s "
		    "%-24s %-7s %-28s %s", cols[0].data ? cols[0].data : "",
		    cols[1].data ? cols[1].data : "",
		    cols[3].data ? cols[3].data : "",
		    cols[4].data ? cols[4].data : "",
		    cols[5].data ? cols[5].data : "",
		    cols[6].data ? cols[6].data : "",
		    cols[7].data ? cols[7].data : "",
		    cols[8].data ? cols[8].data : "",
		    cols[9].data ? cols[9].data : "",
		    cols[NCOLS - 1].data ? cols[NCOLS - 1].data : "");
	buf_append_char(&s->line, '\n');
	fwrite(s->line.data, 1, s->line.len, stdout);
 out:
	for (i = 0; i < NCOLS; i++)
		buf_free(&cols[i]);
	return 0;
}

static int
read_index_key(const char *path, unsigned char key[32])
{
	char	 line[80];
	FILE	*f;
	size_t	 i, n;
	int	 hi, lo, rc = -1;

	if ((f = fopen(path, "re")) == NULL) {
		fprintf(stderr, "subgatectl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	n = fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[n] = '\0';
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n == 64) {
		for (i = 0; i < 32; i++) {
			hi = OPENSSL_hexchar2int((unsigned char)line[2 * i]);
			lo = OPENSSL_hexchar2int((unsigned char)line[2 * i + 1]);
			if (hi < 0 || lo < 0)
				break;
			key[i] = (unsigned char)(hi << 4 | lo);
		}
		rc = i == 32 ? 0 : -1;
	}
	OPENSSL_cleanse(line, sizeof(line));
	if (rc == -1)
		fprintf(stderr, "subgatectl: %s: expected 64 hex digits\n",
		    path);
	return rc;
}

/* The subject value: the argument, or stdin for "-" (one trailing newline
 * stripped). */
static int
read_subject(const char *arg, struct buf *out)
{
	char	 b[4096];
	size_t	 n;

	if (strcmp(arg, "-") != 0)
		return buf_append_str(out, arg);
	while ((n = fread(b, 1, sizeof(b), stdin)) > 0)
		if (buf_append(out, b, n) == -1)
			return -1;
	OPENSSL_cleanse(b, sizeof(b));
	if (out->len > 0 && out->data[out->len - 1] == '\n')
		buf_truncate(out, out->len - 1);
	if (out->len > 0 && out->data[out->len - 1] == '\r')
		buf_truncate(out, out->len - 1);
	return 0;
}

static int
show_main(int argc, char **argv)
{
	struct show		 s;
	struct conf		*c = NULL;
	const struct conf_tenant *t;
	const char		*dir = NULL, *keyfile = NULL, *since = NULL;
	const char		*until = NULL, *indexfile = NULL;
	const char		*subject = NULL, *conffile = NULL, *fmt = NULL;
	const char		*cc = NULL;
	struct buf		 subj = { 0 };
	EVP_PKEY		*k = NULL;
	unsigned char		 ikey[32];
	uint64_t		 since_ms = 0, until_ms = 0;
	char			 hash[65], err[512];
	size_t			 i;
	int			 a, rc = 2, r;

	memset(&s, 0, sizeof(s));
	for (a = 1; a < argc; a++) {
		const char	**slot = NULL;

		if (argv[a][0] != '-' && dir == NULL) {
			dir = argv[a];
			continue;
		}
		if (strcmp(argv[a], "--key") == 0)
			slot = &keyfile;
		else if (strcmp(argv[a], "--tenant") == 0)
			slot = &s.tenant;
		else if (strcmp(argv[a], "--integration") == 0)
			slot = &s.integration;
		else if (strcmp(argv[a], "--type") == 0)
			slot = &s.type;
		else if (strcmp(argv[a], "--since") == 0)
			slot = &since;
		else if (strcmp(argv[a], "--until") == 0)
			slot = &until;
		else if (strcmp(argv[a], "--index-key") == 0)
			slot = &indexfile;
		else if (strcmp(argv[a], "--subject") == 0)
			slot = &subject;
		else if (strcmp(argv[a], "--format") == 0)
			slot = &fmt;
		else if (strcmp(argv[a], "-c") == 0)
			slot = &conffile;
		else if (strcmp(argv[a], "--country-code") == 0)
			slot = &cc;
		if (slot == NULL || a + 1 >= argc) {
			usage();
			return 2;
		}
		*slot = argv[++a];
	}
	if (dir == NULL || keyfile == NULL || (subject != NULL) !=
	    (indexfile != NULL)) {
		usage();
		return 2;
	}
	if (fmt == NULL || strcmp(fmt, "jsonl") == 0)
		s.fmt = FMT_JSONL;
	else if (strcmp(fmt, "csv") == 0)
		s.fmt = FMT_CSV;
	else if (strcmp(fmt, "table") == 0)
		s.fmt = FMT_TABLE;
	else {
		fprintf(stderr, "subgatectl: --format: jsonl, csv or table\n");
		return 2;
	}
	if ((since != NULL && auditfmt_time_parse(since, &since_ms) == -1) ||
	    (until != NULL && auditfmt_time_parse(until, &until_ms) == -1)) {
		fprintf(stderr, "subgatectl: --since/--until: RFC 3339 time "
		    "expected (2024-05-01T12:00:00Z)\n");
		return 2;
	}
	if (subject != NULL) {
		if (read_index_key(indexfile, ikey) == -1)
			goto out;
		if (conffile != NULL && cc == NULL) {
			if ((c = conf_load(conffile, ~0u, err,
			    sizeof(err))) == NULL) {
				fprintf(stderr, "subgatectl: %s\n", err);
				goto out;
			}
			if (s.tenant == NULL) {
				fprintf(stderr, "subgatectl: -c needs --tenant "
				    "to find the phone country code\n");
				goto out;
			}
			for (i = 0; i < c->ntenants; i++) {
				t = &c->tenants[i];
				if (strcmp(t->id, s.tenant) == 0)
					cc = t->phone_country_code;
			}
		}
		if (read_subject(subject, &subj) == -1 ||
		    !audit_subject_hash(ikey, subj.data ? subj.data : "",
		    subj.len, cc, hash)) {
			fprintf(stderr, "subgatectl: --subject: not an email "
			    "address or a phone number (6 or more digits)\n");
			goto out;
		}
		if (subj.len > 0 && memchr(subj.data, '@', subj.len) == NULL &&
		    subj.data[0] != '+' && strncmp(subj.data, "00", 2) != 0 &&
		    cc == NULL)
			fprintf(stderr, "subgatectl: warning: national phone "
			    "number without a country code (use --tenant T "
			    "with -c CONF, or --country-code CC)\n");
		s.subject_hash = hash;
	}
	if ((k = read_key(keyfile, 1)) == NULL)
		goto out;
	if (EVP_PKEY_get_base_id(k) != EVP_PKEY_X25519) {
		fprintf(stderr, "subgatectl: %s: not an X25519 private key\n",
		    keyfile);
		goto out;
	}
	if (s.fmt == FMT_CSV) {
		for (i = 0; i < NCOLS; i++)
			printf("%s%s", i ? "," : "", columns[i]);
		printf("\n");
	} else if (s.fmt == FMT_TABLE)
		printf("%-8s %-24s %-11s %-10s %-12s %-12s %-24s %-7s %-28s "
		    "%s\n", "SEQ", "TIME", "TYPE", "EVENT", "TENANT",
		    "INTEGRATION", "PROCESSOR", "METHOD", "ENDPOINT",
		    "SUBJECTS");
	r = audit_log_read(dir, k, since_ms, until_ms, show_cb, &s, err,
	    sizeof(err));
	fflush(stdout);
	if (r != 0)
		fprintf(stderr, "subgatectl: audit show: %s\n", err);
	rc = r != 0 || s.bad ? 1 : 0;
 out:
	OPENSSL_cleanse(ikey, sizeof(ikey));
	if (subj.data != NULL)
		OPENSSL_cleanse(subj.data, subj.len);
	buf_free(&subj);
	buf_free(&s.line);
	buf_free(&s.tmp);
	EVP_PKEY_free(k);
	conf_free(c);
	return rc;
}

int
ctl_audit_main(int argc, char **argv)
{
	if (strcmp(argv[0], "verify") == 0)
		return verify_main(argc, argv);
	if (strcmp(argv[0], "show") == 0)
		return show_main(argc, argv);
	fprintf(stderr, "subgatectl: audit: unknown command \"%s\"\n",
	    argv[0]);
	usage();
	return 2;
}
