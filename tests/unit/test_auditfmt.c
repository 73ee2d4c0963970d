/* test_auditfmt.c -- disclosure log format: frames, sealing, chain, checkpoints, verify */
#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "audit.h"
#include "auditfmt.h"
#include "buf.h"
#include "conf.h"

/* ---- fixtures: keys, a config, a temporary log directory ---- */

struct fx {
	char		 root[64];
	char		 dir[96];
	char		 signer_path[128];
	char		 reader_path[2][128];
	char		*readers[2];
	EVP_PKEY	*signer;	/* K0 private */
	unsigned char	 pub[32];	/* K0 public */
	EVP_PKEY	*reader[2];	/* X25519 private */
	struct conf	 c;
};

static void
write_pem_priv(const char *path, EVP_PKEY *k)
{
	FILE	*f;
	int	 fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL),
	    1);
	fclose(f);
}

static void
write_pem_pub(const char *path, EVP_PKEY *k)
{
	FILE	*f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(PEM_write_PUBKEY(f, k), 1);
	fclose(f);
}

static struct fx *
fx_new(int nreaders)
{
	struct fx	*f = calloc(1, sizeof(*f));
	int		 i;

	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/test_auditfmt.XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->dir, sizeof(f->dir), "%s/audit", f->root);
	snprintf(f->signer_path, sizeof(f->signer_path), "%s/signer.pem",
	    f->root);
	f->signer = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(f->signer);
	assert_int_equal(auditfmt_pub_raw(f->signer, f->pub), 0);
	write_pem_priv(f->signer_path, f->signer);
	for (i = 0; i < nreaders; i++) {
		char	 rp[128];

		snprintf(rp, sizeof(rp), "%s/reader%d.pub", f->root, i);
		memcpy(f->reader_path[i], rp, sizeof(rp));
		f->reader[i] = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
		assert_non_null(f->reader[i]);
		write_pem_pub(f->reader_path[i], f->reader[i]);
		f->readers[i] = f->reader_path[i];
	}
	f->c.has_audit = 1;
	f->c.audit_directory = f->dir;
	f->c.audit_instance = "test-gw";
	f->c.audit_segment_bytes = 1 << 20;
	f->c.audit_segment_seconds = 86400;
	f->c.audit_retention_days = 0;
	f->c.audit_min_free_bytes = 0;
	f->c.audit_checkpoint_records = 1000000;
	f->c.audit_checkpoint_seconds = 100000;
	f->c.keys_audit_readers = f->readers;
	f->c.keys_naudit_readers = (size_t)nreaders;
	f->c.keys_audit_signer = f->signer_path;
	f->c.limits.audit_timeout_ms = 5000;
	return f;
}

static void
rm_rf(const char *path)
{
	char	 cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

static void
fx_free(struct fx *f)
{
	rm_rf(f->root);
	EVP_PKEY_free(f->signer);
	EVP_PKEY_free(f->reader[0]);
	EVP_PKEY_free(f->reader[1]);
	free(f);
}

static void
seg_path(const struct fx *f, uint64_t id, char *out, size_t outlen)
{
	char	 name[64];

	auditfmt_segment_name(name, sizeof(name), id);
	snprintf(out, outlen, "%s/%s", f->dir, name);
}

static unsigned char *
slurp(const char *path, size_t *len)
{
	FILE		*f = fopen(path, "rb");
	unsigned char	*p;
	long		 n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = malloc((size_t)n + 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return p;
}

static void
spill(const char *path, const unsigned char *p, size_t len)
{
	FILE	*f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, len, f), len);
	fclose(f);
}

/* Write p[0..len) to path, then zeros up to size. */
static void
spill_zeros(const char *path, const unsigned char *p, size_t len,
    size_t size)
{
	FILE	*f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, len, f), len);
	for (; len < size; len++)
		assert_int_equal(fputc(0, f), 0);
	fclose(f);
}

static int
all_zero(const unsigned char *p, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

static void
add_records(struct audit_writer *w, int n, const char *tenant)
{
	char		 j[128];
	uint64_t	 seq;
	int		 i;

	for (i = 0; i < n; i++) {
		snprintf(j, sizeof(j), "{\"type\":\"disclosure\",\"tenant\":"
		    "\"%s\",\"n\":%d}", tenant, i);
		assert_int_equal(audit_writer_append(w, j, strlen(j), &seq), 0);
	}
	assert_int_equal(audit_writer_commit(w), 0);
}

static struct audit_writer *
wopen(struct fx *f)
{
	struct audit_writer	*w;
	char			 err[256] = "";

	w = audit_writer_open(&f->c, err, sizeof(err));
	if (w == NULL)
		fail_msg("audit_writer_open: %s", err);
	return w;
}

static int
verify_dir(struct fx *f, const char *anchor, char *msg, size_t msglen)
{
	char	 m[512];

	if (msg == NULL) {
		msg = m;
		msglen = sizeof(m);
	}
	return audit_log_verify(f->dir, f->pub, anchor, msg, msglen, NULL);
}

/* Offsets of every frame boundary in a segment. */
static size_t
boundaries(const unsigned char *p, size_t len, size_t *out, size_t max)
{
	const unsigned char	*body;
	size_t			 blen, flen, off = 0, n = 0;

	while (off < len && auditfmt_frame_decode(p + off, len - off, &body,
	    &blen, &flen) == 1) {
		off += flen;
		if (n < max)
			out[n++] = off;
	}
	return n;
}

/* Checkpoint lines found in a segment, in order. */
static size_t
checkpoint_lines(const unsigned char *p, size_t len, char lines[][512],
    size_t *ends, size_t max)
{
	struct auditfmt_checkpoint	 ck;
	const unsigned char		*body;
	struct buf			 b = { 0 };
	size_t				 blen, flen, off = 0, n = 0;

	while (off < len && auditfmt_frame_decode(p + off, len - off, &body,
	    &blen, &flen) == 1) {
		off += flen;
		if (body[0] != AUDITFMT_CHECKPOINT || n >= max)
			continue;
		assert_int_equal(auditfmt_checkpoint_decode(body, blen, &ck,
		    NULL, 0), 0);
		buf_truncate(&b, 0);
		buf_append_str(&b, "audit checkpoint ");
		assert_int_equal(auditfmt_checkpoint_line(&b, &ck), 0);
		snprintf(lines[n], 512, "%s", b.data);
		ends[n++] = off;
	}
	buf_free(&b);
	return n;
}

struct count {
	int		 n;
	uint64_t	 last_seq;
	int		 in_order;
	char		 first[512];
	int		 types[8];
};

static int
count_cb(void *arg, uint64_t seq, uint64_t t, const char *json, size_t len)
{
	struct count	*c = arg;

	(void)t;
	(void)len;
	if (c->n == 0)
		snprintf(c->first, sizeof(c->first), "%s", json);
	if (c->n > 0 && seq != c->last_seq + 1)
		c->in_order = 0;
	c->last_seq = seq;
	c->n++;
	if (strstr(json, "\"type\":\"disclosure\"") != NULL)
		c->types[0]++;
	if (strstr(json, "\"type\":\"lifecycle\"") != NULL)
		c->types[1]++;
	if (strstr(json, "\"event\":\"recovery\"") != NULL)
		c->types[2]++;
	return 0;
}

/* ---- pure format ---- */

static void
test_crc32c_known_answer(void **state)
{
	(void)state;
	assert_int_equal(auditfmt_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(auditfmt_crc32c(0, "", 0), 0);
}

static void
test_frame_roundtrip_and_damage(void **state)
{
	struct buf		 b = { 0 };
	const unsigned char	*body;
	unsigned char		*copy;
	size_t			 blen, flen, i;
	int			 bit;

	(void)state;
	assert_int_equal(auditfmt_frame_encode(&b, "\x02hello frame", 12), 0);
	assert_int_equal(b.len, AUDITFMT_FRAME_HDR + 12);
	assert_int_equal(auditfmt_frame_decode((unsigned char *)b.data, b.len,
	    &body, &blen, &flen), 1);
	assert_int_equal(blen, 12);
	assert_int_equal(flen, b.len);
	assert_memory_equal(body, "\x02hello frame", 12);
	/* Every strict prefix is "need more" (a torn tail). */
	for (i = 0; i < b.len; i++)
		assert_int_equal(auditfmt_frame_decode((unsigned char *)b.data,
		    i, &body, &blen, &flen), 0);
	/* Every single-bit flip is damage, never "need more". */
	copy = malloc(b.len);
	for (i = 0; i < b.len; i++)
		for (bit = 0; bit < 8; bit++) {
			memcpy(copy, b.data, b.len);
			copy[i] ^= (unsigned char)(1 << bit);
			assert_int_equal(auditfmt_frame_decode(copy, b.len,
			    &body, &blen, &flen), -1);
		}
	/* A tail of zero bytes (what a crash leaves) is torn, not damage. */
	memset(copy, 0, b.len);
	assert_int_equal(auditfmt_frame_decode(copy, b.len, &body, &blen,
	    &flen), 0);
	free(copy);
	/* Empty and oversized bodies are refused. */
	assert_int_equal(auditfmt_frame_encode(&b, "", 0), -1);
	buf_free(&b);
}

static void
test_chain_order_sensitive(void **state)
{
	unsigned char	 a[32] = { 0 }, b[32] = { 0 }, c[32] = { 0 };

	(void)state;
	auditfmt_chain_extend(a, (const unsigned char *)"one", 3);
	auditfmt_chain_extend(a, (const unsigned char *)"two", 3);
	auditfmt_chain_extend(b, (const unsigned char *)"two", 3);
	auditfmt_chain_extend(b, (const unsigned char *)"one", 3);
	auditfmt_chain_extend(c, (const unsigned char *)"one", 3);
	auditfmt_chain_extend(c, (const unsigned char *)"two", 3);
	assert_memory_not_equal(a, b, 32);
	assert_memory_equal(a, c, 32);
}

static void *
chain_thread(void *arg)
{
	unsigned char	*h = arg;

	auditfmt_chain_extend(h, (const unsigned char *)"one", 3);
	auditfmt_chain_extend(h, (const unsigned char *)"two", 3);
	return NULL;
}

/* head = SHA-256(head | frame), whichever thread extends it. */
static void
test_chain_known_answer(void **state)
{
	unsigned char	 h[32] = { 0 }, t[32] = { 0 }, in[35], want[32];
	pthread_t	 th;

	(void)state;
	memset(in, 0, 32);
	memcpy(in + 32, "one", 3);
	SHA256(in, sizeof(in), want);
	memcpy(in, want, 32);
	memcpy(in + 32, "two", 3);
	SHA256(in, sizeof(in), want);
	auditfmt_chain_extend(h, (const unsigned char *)"one", 3);
	auditfmt_chain_extend(h, (const unsigned char *)"two", 3);
	assert_memory_equal(h, want, 32);
	assert_int_equal(pthread_create(&th, NULL, chain_thread, t), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_memory_equal(t, want, 32);
}

static void
test_checkpoint_sign_verify_line(void **state)
{
	struct auditfmt_checkpoint	 ck, d, p;
	EVP_PKEY			*k0, *k1;
	unsigned char			 pub0[32], pub1[32];
	struct buf			 body = { 0 }, line = { 0 };
	size_t				 i;

	(void)state;
	k0 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	k1 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_int_equal(auditfmt_pub_raw(k0, pub0), 0);
	assert_int_equal(auditfmt_pub_raw(k1, pub1), 0);
	memset(&ck, 0, sizeof(ck));
	ck.kind = AUDITFMT_CK_PERIODIC;
	ck.segment_id = 3;
	ck.last_seq = 1200;
	ck.count = 200;
	ck.time_ms = 1714566896789ull;
	memset(ck.head, 0xab, 32);
	memcpy(ck.next_pub, pub1, 32);
	snprintf(ck.instance, sizeof(ck.instance), "gw-1");
	assert_int_equal(auditfmt_checkpoint_sign(&body, &ck, k0), 0);
	assert_int_equal(auditfmt_checkpoint_decode((unsigned char *)body.data,
	    body.len, &d, NULL, 0), 0);
	assert_int_equal(auditfmt_checkpoint_verify(&d, pub0), 1);
	/* Only the old key signs the hand-over to the new one. */
	assert_int_equal(auditfmt_checkpoint_verify(&d, pub1), 0);
	/* Any changed field breaks the signature. */
	d.last_seq++;
	assert_int_equal(auditfmt_checkpoint_verify(&d, pub0), 0);
	d.last_seq--;
	d.next_pub[5] ^= 1;
	assert_int_equal(auditfmt_checkpoint_verify(&d, pub0), 0);
	d.next_pub[5] ^= 1;
	for (i = 0; i < 32; i += 7) {
		d.head[i] ^= 0x80;
		assert_int_equal(auditfmt_checkpoint_verify(&d, pub0), 0);
		d.head[i] ^= 0x80;
	}
	assert_int_equal(auditfmt_checkpoint_verify(&d, pub0), 1);
	/* The operational log line parses back to the same fields. */
	buf_append_str(&line, "2024-05-01 info audit checkpoint ");
	assert_int_equal(auditfmt_checkpoint_line(&line, &ck), 0);
	assert_non_null(strstr(line.data, "seq=1200"));
	assert_non_null(strstr(line.data, "time=2024-05-01T12:34:56.789Z"));
	assert_int_equal(auditfmt_checkpoint_parse_line(line.data, &p, NULL,
	    0), 0);
	assert_int_equal(p.kind, ck.kind);
	assert_int_equal(p.segment_id, 3);
	assert_int_equal(p.last_seq, 1200);
	assert_int_equal(p.count, 200);
	assert_int_equal(p.time_ms, ck.time_ms);
	assert_memory_equal(p.head, ck.head, 32);
	assert_memory_equal(p.next_pub, pub1, 32);
	assert_memory_equal(p.sig, ck.sig, 64);
	assert_string_equal(p.instance, "gw-1");
	assert_int_equal(auditfmt_checkpoint_parse_line("audit checkpoint v1 "
	    "kind=periodic seq=1", &p, NULL, 0), -1);
	/* A truncated body does not decode. */
	assert_int_equal(auditfmt_checkpoint_decode((unsigned char *)body.data,
	    body.len - 1, &d, NULL, 0), -1);
	buf_free(&body);
	buf_free(&line);
	EVP_PKEY_free(k0);
	EVP_PKEY_free(k1);
}

static void
seal_open_readers(size_t nreaders)
{
	struct auditfmt_header	 h, d;
	EVP_PKEY		*r[3], *pubs[2];
	unsigned char		 dkey[32], got[32], rawpub[32];
	struct buf		 hb = { 0 }, rec = { 0 }, pt = { 0 };
	const char		*json = "{\"seq\":7,\"type\":\"disclosure\"}";
	char			 err[128];
	size_t			 i;

	for (i = 0; i < 3; i++)
		r[i] = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	for (i = 0; i < nreaders; i++) {
		/* The gateway only ever holds public keys. */
		assert_int_equal(auditfmt_pub_raw(r[i], rawpub), 0);
		pubs[i] = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL,
		    rawpub, 32);
	}
	memset(&h, 0, sizeof(h));
	h.segment_id = 9;
	h.first_seq = 7;
	h.created_ms = 1000;
	h.prev_segment_id = 8;
	snprintf(h.instance, sizeof(h.instance), "gw");
	memset(dkey, 0x5a, 32);
	assert_int_equal(auditfmt_header_seal_key(&h, dkey, pubs, nreaders,
	    err, sizeof(err)), 0);
	assert_int_equal(h.nreaders, nreaders);
	assert_int_equal(auditfmt_header_encode(&hb, &h), 0);
	assert_int_equal(auditfmt_header_decode((unsigned char *)hb.data,
	    hb.len, &d, err, sizeof(err)), 0);
	assert_int_equal(d.segment_id, 9);
	assert_int_equal(d.first_seq, 7);
	assert_string_equal(d.instance, "gw");
	for (i = 0; i < nreaders; i++) {
		memset(got, 0, 32);
		assert_int_equal(auditfmt_header_open_key(&d, r[i], got, err,
		    sizeof(err)), 0);
		assert_memory_equal(got, dkey, 32);
	}
	/* A reader not listed cannot open it. */
	assert_int_equal(auditfmt_header_open_key(&d, r[2], got, err,
	    sizeof(err)), -1);
	/* A wrapped key moved to another segment id does not authenticate. */
	d.segment_id = 10;
	assert_int_equal(auditfmt_header_open_key(&d, r[0], got, err,
	    sizeof(err)), -1);

	assert_int_equal(auditfmt_record_seal(&rec, dkey, 9, 3, 7, 1234, json,
	    strlen(json)), 0);
	assert_null(memmem(rec.data, rec.len, "disclosure", 10));
	assert_int_equal(auditfmt_record_open(&pt, dkey, 9, 3,
	    (unsigned char *)rec.data, rec.len), 0);
	assert_string_equal(pt.data, json);
	/* Nonce = frame index, aad = segment and sequence. */
	assert_int_equal(auditfmt_record_open(&pt, dkey, 9, 4,
	    (unsigned char *)rec.data, rec.len), -1);
	assert_int_equal(auditfmt_record_open(&pt, dkey, 8, 3,
	    (unsigned char *)rec.data, rec.len), -1);
	rec.data[5] ^= 1;	/* the plaintext seq */
	assert_int_equal(auditfmt_record_open(&pt, dkey, 9, 3,
	    (unsigned char *)rec.data, rec.len), -1);
	buf_free(&hb);
	buf_free(&rec);
	buf_free(&pt);
	for (i = 0; i < 3; i++)
		EVP_PKEY_free(r[i]);
	for (i = 0; i < nreaders; i++)
		EVP_PKEY_free(pubs[i]);
}

/*
 * A keyed segment context seals exactly what the one-shot path and an
 * independent AES-256-GCM implementation (Python cryptography) produce,
 * record after record, and opens under the same context after a failure.
 */
static void
test_segkey_seal_frame(void **state)
{
	static const char	 kat[] = "02000000000000000700000000000004d266"
	    "0dd9209000f055f73cbad7911f233de63f609d0d2911fe104ce0f339629fa7"
	    "b3d23729fcac66b093b9bbf4485f5a5bf9616a71c52f96f488525ac5a71db4"
	    "dbda8ff68dbe0d2ae4efcc42bfbc5ca876bc58179b2cf12a3aa0c2a82c347f"
	    "54";
	const char		*head = "{\"seq\":7,\"time\":\"1970-01-01T00:00:"
	    "01.234Z\",\"instance\":\"gw\",";
	const char		*rest = "\"type\":\"disclosure\"}";
	struct auditfmt_segkey	*k;
	struct buf		 fr = { 0 }, want = { 0 }, one = { 0 };
	struct buf		 pt = { 0 }, json = { 0 };
	const unsigned char	*body;
	unsigned char		 dkey[32], kb[112], bad[112];
	size_t			 blen, flen, i, before;
	uint64_t		 fi;

	(void)state;
	memset(dkey, 0x5a, 32);
	for (i = 0; i < sizeof(kb); i++)
		kb[i] = (unsigned char)strtoul((char[3]){ kat[2 * i],
		    kat[2 * i + 1], 0 }, NULL, 16);
	assert_non_null(k = auditfmt_segkey_new(dkey));
	assert_int_equal(auditfmt_segkey_seal_frame(k, &fr, 9, 3, 7, 1234,
	    head, strlen(head), rest, strlen(rest)), 0);
	assert_int_equal(auditfmt_frame_encode(&want, kb, sizeof(kb)), 0);
	assert_int_equal(fr.len, want.len);
	assert_memory_equal(fr.data, want.data, want.len);
	assert_int_equal(auditfmt_frame_decode((unsigned char *)fr.data,
	    fr.len, &body, &blen, &flen), 1);
	assert_int_equal(flen, fr.len);

	/* Many records under one context, appended after one another, are
	 * each what the one-shot path seals and open both ways. */
	buf_reset(&fr);
	for (fi = 1; fi <= 20; fi++) {
		buf_reset(&json);
		assert_int_equal(buf_printf(&json, "%s\"n\":%llu,\"pad\":\"%.*s\"}",
		    head, (unsigned long long)fi, (int)(fi * 7), "xxxxxxxxxxxx"
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxxxxx"), 0);
		before = fr.len;
		/* Split anywhere: the plaintext is the concatenation. */
		assert_int_equal(auditfmt_segkey_seal_frame(k, &fr, 9, fi,
		    100 + fi, 5000 + fi, json.data, fi % json.len,
		    json.data + fi % json.len, json.len - fi % json.len), 0);
		buf_reset(&one);
		assert_int_equal(auditfmt_record_seal(&one, dkey, 9, fi,
		    100 + fi, 5000 + fi, json.data, json.len), 0);
		assert_int_equal(auditfmt_frame_decode((unsigned char *)fr.data +
		    before, fr.len - before, &body, &blen, &flen), 1);
		assert_int_equal(blen, one.len);
		assert_memory_equal(body, one.data, one.len);
		assert_int_equal(auditfmt_segkey_open(k, &pt, 9, fi, body, blen),
		    0);
		assert_int_equal(pt.len, json.len);
		assert_memory_equal(pt.data, json.data, json.len);
		assert_int_equal(auditfmt_record_open(&pt, dkey, 9, fi, body,
		    blen), 0);
		assert_memory_equal(pt.data, json.data, json.len);
		/* Damaged, or at another frame index: refused, and the
		 * context still works afterwards. */
		memcpy(bad, kb, sizeof(bad));
		bad[40 + fi] ^= 0x10;
		assert_int_equal(auditfmt_segkey_open(k, &pt, 9, 3, bad,
		    sizeof(bad)), -1);
		assert_int_equal(pt.len, 0);
		assert_int_equal(auditfmt_segkey_open(k, &pt, 9, fi + 1, body,
		    blen), -1);
		assert_int_equal(auditfmt_segkey_open(k, &pt, 9, 3, kb,
		    sizeof(kb)), 0);
		assert_int_equal(pt.len, strlen(head) + strlen(rest));
	}
	/* An empty second piece, and a record too long for a frame. */
	before = fr.len;
	assert_int_equal(auditfmt_segkey_seal_frame(k, &fr, 9, 21, 1, 1, "{}",
	    2, NULL, 0), 0);
	assert_int_equal(fr.len - before, AUDITFMT_FRAME_HDR + 17 + 2 +
	    AUDITFMT_TAG);
	before = fr.len;
	assert_int_equal(auditfmt_segkey_seal_frame(k, &fr, 9, 22, 1, 1, "{",
	    1, head, AUDITFMT_MAX_BODY), -1);
	assert_int_equal(fr.len, before);
	auditfmt_segkey_free(k);
	auditfmt_segkey_free(NULL);
	buf_free(&fr);
	buf_free(&want);
	buf_free(&one);
	buf_free(&pt);
	buf_free(&json);
}

static void
test_seal_open_one_reader(void **state)
{
	(void)state;
	seal_open_readers(1);
}

static void
test_seal_open_two_readers(void **state)
{
	(void)state;
	seal_open_readers(2);
}

static void
test_time_format_parse(void **state)
{
	char		 t[32];
	uint64_t	 ms;

	(void)state;
	auditfmt_time_format(1714566896789ull, t);
	assert_string_equal(t, "2024-05-01T12:34:56.789Z");
	assert_int_equal(auditfmt_time_parse(t, &ms), 0);
	assert_int_equal(ms, 1714566896789ull);
	assert_int_equal(auditfmt_time_parse("2024-05-01T14:34:56.789+02:00",
	    &ms), 0);
	assert_int_equal(ms, 1714566896789ull);
	assert_int_equal(auditfmt_time_parse("2024-05-01", &ms), 0);
	assert_int_equal(ms, 1714521600000ull);
	assert_int_equal(auditfmt_time_parse("2024-05-01T12:34", &ms), -1);
	assert_int_equal(auditfmt_time_parse("yesterday", &ms), -1);
	assert_int_equal(auditfmt_time_parse("2024-13-01T00:00:00Z", &ms), -1);
}

static void
expect_norm(const char *in, const char *cc, const char *want)
{
	struct buf	 b = { 0 };

	assert_int_equal(audit_subject_normalise(in, strlen(in), cc, &b),
	    want != NULL);
	if (want != NULL)
		assert_string_equal(b.data, want);
	buf_free(&b);
}

static void
test_subject_normalise_and_hash(void **state)
{
	unsigned char	 key[32], key2[32];
	char		 a[65], b[65];

	(void)state;
	expect_norm("  Foo.Bar@Example.COM \n", NULL, "foo.bar@example.com");
	/* NFC: e + COMBINING ACUTE is é; upper-case É lower-cases to é. */
	expect_norm("Jose\xcc\x81@Example.es", NULL, "jos\xc3\xa9@example.es");
	expect_norm("JOS\xc3\x89@EXAMPLE.ES", NULL, "jos\xc3\xa9@example.es");
	expect_norm("\xc5\xa0KODA@x.cz", NULL, "\xc5\xa1koda@x.cz");
	expect_norm("S\xcc\x8ckoda@x.cz", NULL, "\xc5\xa1koda@x.cz");
	expect_norm("\xe2\x84\xab@x.se", NULL, "\xc3\xa5@x.se");
	expect_norm("bad\xff@x", NULL, NULL);
	expect_norm("bad\xed\xa0\x80@x", NULL, NULL);	/* a surrogate */
	/* Beyond Latin: Cyrillic lower-cases; Vietnamese e + circumflex +
	 * tilde composes to U+1EC5; marks are put in canonical order (ogonek
	 * before diaeresis) whichever way they came; Hangul jamo compose. */
	expect_norm("\xd0\x98\xd0\x92\xd0\x90\xd0\x9d@X.RU", NULL,
	    "\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd@x.ru");
	expect_norm("NGUYE\xcc\x82\xcc\x83N@x.vn", NULL,
	    "nguy\xe1\xbb\x85n@x.vn");
	expect_norm("a\xcc\x88\xcc\xa8@x", NULL, "\xc4\x85\xcc\x88@x");
	expect_norm("a\xcc\xa8\xcc\x88@x", NULL, "\xc4\x85\xcc\x88@x");
	expect_norm("\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab@x.kr", NULL,
	    "\xed\x95\x9c@x.kr");
	/* KELVIN SIGN is K; capital I with dot lower-cases to i + dot. */
	expect_norm("\xe2\x84\xaa@x", NULL, "k@x");
	expect_norm("\xc4\xb0@x.tr", NULL, "i\xcc\x87@x.tr");
	/* Longer than the stack buffers. */
	{
		char	 in[700], want[700];
		size_t	 k, o = 0, w = 0;

		for (k = 0; k < 200; k++) {
			memcpy(in + o, "E\xcc\x81", 3);
			o += 3;
			memcpy(want + w, "\xc3\xa9", 2);
			w += 2;
		}
		memcpy(in + o, "@x", 3);
		memcpy(want + w, "@x", 3);
		expect_norm(in, NULL, want);
	}
	/* Phones: digits, country code in front of national numbers. */
	expect_norm("+1 (555) 123-4567", "1", "15551234567");
	expect_norm("555-123-4567", "1", "15551234567");
	expect_norm("555-123-4567", "+44", "445551234567");
	expect_norm("0015551234567", "49", "15551234567");
	expect_norm("555-123-4567", NULL, "5551234567");
	expect_norm("12345", "1", NULL);
	expect_norm("hello", "1", NULL);
	expect_norm("", "1", NULL);

	memset(key, 7, 32);
	memset(key2, 8, 32);
	assert_int_equal(audit_subject_hash(key, "Alice@Example.com", 17, NULL,
	    a), 1);
	assert_int_equal(audit_subject_hash(key, " alice@example.COM", 18,
	    NULL, b), 1);
	assert_int_equal(strlen(a), 64);
	assert_string_equal(a, b);
	assert_int_equal(audit_subject_hash(key, "alicia@example.com", 18,
	    NULL, b), 1);
	assert_string_not_equal(a, b);
	assert_int_equal(audit_subject_hash(key2, "alice@example.com", 17,
	    NULL, b), 1);
	assert_string_not_equal(a, b);
	assert_int_equal(audit_subject_hash(key, "(555) 123-4567", 14, "1", a),
	    1);
	assert_int_equal(audit_subject_hash(key, "+1 555 123 4567", 15, "44",
	    b), 1);
	assert_string_equal(a, b);
	assert_int_equal(audit_subject_hash(key, "n/a", 3, "1", a), 0);
	assert_string_equal(a, "");
}

static void
test_segment_names(void **state)
{
	char		 n[64];
	uint64_t	 id;

	(void)state;
	auditfmt_segment_name(n, sizeof(n), 42);
	assert_string_equal(n, "seg-00000000000000000042.sga");
	assert_int_equal(auditfmt_segment_parse_name(n, &id), 1);
	assert_int_equal(id, 42);
	assert_int_equal(auditfmt_segment_parse_name("seg-42.sga", &id), 0);
	assert_int_equal(auditfmt_segment_parse_name(
	    "seg-00000000000000000000.sga", &id), 0);
	assert_int_equal(auditfmt_segment_parse_name("LOCK", &id), 0);
}

/* ---- logs written by the writer, checked by verify ---- */

static void
test_log_roundtrip_verify_show(void **state)
{
	struct fx		*f = fx_new(2);
	struct audit_writer	*w;
	struct count		 c;
	struct stat		 st;
	char			 err[256], key[256];
	int			 r;

	(void)state;
	f->c.audit_checkpoint_records = 3;
	w = wopen(f);
	/* The configured key moved into the directory; the original is gone. */
	assert_int_equal(stat(f->signer_path, &st), -1);
	snprintf(key, sizeof(key), "%s/signer.key", f->dir);
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	add_records(w, 10, "acme");
	assert_true(audit_writer_tick(w) >= 0);	/* checkpoint: 11 >= 3 */
	add_records(w, 2, "beta");
	audit_writer_close(w, 1);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 0);

	for (r = 0; r < 2; r++) {
		memset(&c, 0, sizeof(c));
		c.in_order = 1;
		assert_int_equal(audit_log_read(f->dir, f->reader[r], 0, 0,
		    count_cb, &c, err, sizeof(err)), 0);
		/* start + 12 disclosures + stop */
		assert_int_equal(c.n, 14);
		assert_int_equal(c.types[0], 12);
		assert_int_equal(c.types[1], 2);
		assert_true(c.in_order);
		assert_int_equal(strncmp(c.first, "{\"seq\":1,\"time\":\"", 17),
		    0);
		assert_non_null(strstr(c.first, "\"instance\":\"test-gw\","
		    "\"type\":\"lifecycle\",\"event\":\"start\""));
	}
	/* Restart continues the sequence in a new segment. */
	w = wopen(f);
	add_records(w, 1, "acme");
	audit_writer_close(w, 1);
	memset(&c, 0, sizeof(c));
	c.in_order = 1;
	assert_int_equal(audit_log_read(f->dir, f->reader[0], 0, 0, count_cb,
	    &c, err, sizeof(err)), 0);
	assert_int_equal(c.n, 17);
	assert_int_equal(c.last_seq, 17);
	assert_true(c.in_order);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 0);
	/* A wrong first key fails every signature. */
	f->pub[0] ^= 1;
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 1);
	fx_free(f);
}

/*
 * Segment 1 closed, segment 2 crashed: a header, a start record and
 * records, no checkpoint (so recovery at any cut needs no lost key).
 */
static struct fx *
crashed_log(unsigned char **seg2, size_t *len2)
{
	struct fx		*f = fx_new(1);
	struct audit_writer	*w;
	char			 p[256];

	w = wopen(f);
	add_records(w, 2, "acme");
	audit_writer_close(w, 1);
	w = wopen(f);
	add_records(w, 3, "acme");
	audit_writer_close(w, 0);
	seg_path(f, 2, p, sizeof(p));
	*seg2 = slurp(p, len2);
	return f;
}

static void
copy_dir(const char *from, const char *to)
{
	char	 cmd[512];

	rm_rf(to);
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", from, to);
	assert_int_equal(system(cmd), 0);
}

static void
test_torn_tail_every_offset(void **state)
{
	struct fx		*f;
	struct audit_writer	*w;
	unsigned char		*seg2;
	size_t			 len2, b[64], nb, k, j, cut;
	char			 p[256], saved[160], err[512];
	int			 boundary, v, after, zeros;
	struct count		 c;

	(void)state;
	f = crashed_log(&seg2, &len2);
	/* An unclosed segment ending on a frame boundary is a live log, the
	 * zeros preallocated after it unused space. */
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 0);
	nb = boundaries(seg2, len2, b, 64);
	assert_true(nb >= 2 && b[nb - 1] < len2);
	assert_true(all_zero(seg2 + b[nb - 1], len2 - b[nb - 1]));
	len2 = b[nb - 1];
	snprintf(saved, sizeof(saved), "%s/saved", f->root);
	copy_dir(f->dir, saved);
	seg_path(f, 2, p, sizeof(p));
	/* zeros 0: cut at k (end of file); 1: the bytes from k on are lost
	 * in preallocated space (zeros to past the end). */
	for (k = 0; k < 2 * len2; k++) {
		copy_dir(saved, f->dir);
		zeros = k >= len2;
		cut = k % len2;
		spill_zeros(p, seg2, cut, zeros ? len2 + 4096 : cut);
		/* Lost bytes that were zeros anyway complete their frame;
		 * kept bytes that are all zeros (the high bytes of a frame
		 * length) are no frame yet. */
		for (j = 0; j < nb; j++)
			if (b[j] > cut) {
				if (zeros && all_zero(seg2 + cut, b[j] - cut))
					cut = b[j];
				else if (j > 0 && all_zero(seg2 + b[j - 1],
				    cut - b[j - 1]))
					cut = b[j - 1];
				break;
			}
		boundary = 0;
		for (j = 0; j < nb; j++)
			boundary |= b[j] == cut;
		v = verify_dir(f, NULL, err, sizeof(err));
		if (v != (boundary ? 0 : 2))
			fail_msg("cut at %zu%s: verify %d (%s)", k % len2,
			    zeros ? " + zeros" : "", v, err);
		/* The writer recovers: a new segment closes the torn one. */
		w = wopen(f);
		audit_writer_close(w, 1);
		v = verify_dir(f, NULL, err, sizeof(err));
		if (v != 0)
			fail_msg("cut at %zu, recovered: verify %d (%s)", k, v,
			    err);
		/* Records before the cut survive, in order, without gaps. */
		memset(&c, 0, sizeof(c));
		c.in_order = 1;
		assert_int_equal(audit_log_read(f->dir, f->reader[0], 0, 0,
		    count_cb, &c, err, sizeof(err)), 0);
		assert_true(c.in_order);
		after = c.types[2];
		assert_int_equal(after, cut >= b[0] ? 1 : 0);
	}
	free(seg2);
	fx_free(f);
}

/*
 * The scan rules for a preallocated segment: zeros after whole frames are
 * the end of the data; a torn last frame followed only by zeros is torn;
 * a damaged frame with more data after it is corruption. A closed segment
 * has no zeros after its close checkpoint.
 */
static void
test_scan_zero_tail(void **state)
{
	struct fx		*f;
	struct auditfmt_scan	 sc;
	unsigned char		*seg2, *seg1, *m;
	const unsigned char	*body;
	size_t			 len2, len1, b[64], nb, last, blen, flen, big;
	char			 p[256];

	(void)state;
	f = crashed_log(&seg2, &len2);
	nb = boundaries(seg2, len2, b, 64);
	assert_true(nb >= 4);
	last = b[nb - 1];
	assert_true(len2 >= last + 4096);
	m = malloc(len2);
	assert_non_null(m);

	/* Live (or killed) segment: whole frames, then zeros. */
	auditfmt_segment_scan(seg2, len2, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_CLEAN);
	assert_int_equal(sc.valid_len, last);
	assert_int_equal(sc.frames, nb);
	assert_false(sc.closed);

	/* The last frame torn part-way, the rest of it lost as zeros. */
	memcpy(m, seg2, len2);
	memset(m + b[nb - 2] + 20, 0, last - b[nb - 2] - 20);
	auditfmt_segment_scan(m, len2, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_TORN);
	assert_int_equal(sc.valid_len, b[nb - 2]);
	assert_int_equal(auditfmt_frame_decode(m + b[nb - 2], len2 - b[nb - 2],
	    &body, &blen, &flen), 0);
	/* ... a page lost in its middle, its end written: torn too. */
	memcpy(m, seg2, len2);
	memset(m + b[nb - 2] + 14, 0, 8);
	auditfmt_segment_scan(m, len2, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_TORN);
	assert_int_equal(sc.valid_len, b[nb - 2]);
	/* ... and with non-zero bytes after it in the last batch's window
	 * (a later page of the lost batch written), but not beyond it. */
	big = b[nb - 2] + AUDITFMT_MAX_BATCH + 4096;
	assert_true(big > len2);
	m = realloc(m, big);
	assert_non_null(m);
	memset(m + len2, 0, big - len2);
	m[b[nb - 2] + AUDITFMT_MAX_BATCH - 1] = 1;
	auditfmt_segment_scan(m, big, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_TORN);
	assert_int_equal(sc.valid_len, b[nb - 2]);
	m[b[nb - 2] + AUDITFMT_MAX_BATCH - 1] = 0;
	m[b[nb - 2] + AUDITFMT_MAX_BATCH] = 1;
	auditfmt_segment_scan(m, big, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_CORRUPT);
	assert_int_equal(sc.valid_len, b[nb - 2]);
	/* ... and verify says tampered, where the torn one says torn. */
	seg_path(f, 2, p, sizeof(p));
	spill(p, m, big);
	assert_int_equal(verify_dir(f, NULL, NULL, 0), AUDITFMT_TAMPERED);
	/* A damaged frame before other frames of the last batch: torn. */
	memcpy(m, seg2, len2);
	memset(m + b[nb - 3] + 14, 0, 8);
	auditfmt_segment_scan(m, len2, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_TORN);
	assert_int_equal(sc.valid_len, b[nb - 3]);
	assert_int_equal(auditfmt_frame_decode(m + b[nb - 3], len2 - b[nb - 3],
	    &body, &blen, &flen), -1);
	spill(p, m, len2);
	assert_int_equal(verify_dir(f, NULL, NULL, 0), AUDITFMT_TORN);
	memcpy(m, seg2, len2);
	memset(m + b[nb - 2] + 14, 0, 8);
	spill(p, m, len2);
	assert_int_equal(verify_dir(f, NULL, NULL, 0), AUDITFMT_TORN);
	spill(p, seg2, len2);
	assert_int_equal(verify_dir(f, NULL, NULL, 0), AUDITFMT_INTACT);

	/* A closed segment ends at its close checkpoint: no zeros. */
	seg_path(f, 1, p, sizeof(p));
	seg1 = slurp(p, &len1);
	nb = boundaries(seg1, len1, b, 64);
	assert_int_equal(b[nb - 1], len1);
	auditfmt_segment_scan(seg1, len1, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_CLEAN);
	assert_true(sc.closed);
	free(seg1);
	free(m);
	free(seg2);
	fx_free(f);
}

/* Append n disclosure records of about 64 KiB each, then commit. */
static void
add_big_records(struct audit_writer *w, int n)
{
	static char	 j[65536 + 64];
	size_t		 len;
	int		 i;

	len = (size_t)snprintf(j, sizeof(j), "{\"type\":\"disclosure\","
	    "\"pad\":\"");
	memset(j + len, 'a', 65536);
	len += 65536;
	memcpy(j + len, "\"}", 3);
	len += 2;
	for (i = 0; i < n; i++)
		assert_int_equal(audit_writer_append(w, j, len, NULL), 0);
	assert_int_equal(audit_writer_commit(w), 0);
}

/* Last frame end in b[0..nb) at or before pos (0 if none). */
static size_t
boundary_before(const size_t *b, size_t nb, size_t pos)
{
	size_t	 i, r = 0;

	for (i = 0; i < nb; i++)
		if (b[i] <= pos)
			r = b[i];
	return r;
}

/*
 * A power cut during the last (unsynced) batch can keep a later page of
 * it and lose an earlier one: a hole of zeros inside the data, non-zero
 * bytes after it. Within the last batch's window (AUDITFMT_MAX_BATCH) of
 * an unclosed segment that is a torn tail: scan and verify say torn, the
 * writer recovers at the last good frame, show reads the records before
 * it. The same hole further back is corruption: verify says tampered and
 * the writer refuses to start.
 */
static void
test_lost_page_in_last_batch(void **state)
{
	struct fx		*f = fx_new(1);
	struct audit_writer	*w;
	struct auditfmt_scan	 sc;
	struct count		 c;
	unsigned char		*seg, *m;
	size_t			 len, synced, end, nb, hole, valid, n;
	size_t			*b;
	char			 p[256], saved[160], err[512];
	int			 i;

	(void)state;
	b = calloc(4096, sizeof(*b));
	assert_non_null(b);
	f->c.audit_segment_bytes = 64 << 20;
	w = wopen(f);
	for (i = 0; i < 12; i++)
		add_big_records(w, 4);	/* 3 MiB in batches of 256 KiB */
	seg_path(f, 1, p, sizeof(p));
	seg = slurp(p, &len);
	nb = boundaries(seg, len, b, 4096);
	synced = b[nb - 1];
	free(seg);
	add_big_records(w, 24);		/* the last batch: 1.5 MiB */
	audit_writer_close(w, 0);	/* the power cut: no close */
	seg = slurp(p, &len);
	nb = boundaries(seg, len, b, 4096);
	end = b[nb - 1];
	assert_int_equal(nb, 2 + 12 * 4 + 24);
	assert_true(end - synced > AUDITFMT_MAX_BATCH / 2 &&
	    end - synced <= AUDITFMT_MAX_BATCH);
	assert_true(synced > AUDITFMT_MAX_BATCH + 8192);
	assert_true(all_zero(seg + end, len - end));
	snprintf(saved, sizeof(saved), "%s/saved", f->root);
	copy_dir(f->dir, saved);
	m = malloc(len);
	assert_non_null(m);

	/* A 4 KiB page in the middle of the last batch lost, later ones
	 * (to the end of the batch) written. */
	memcpy(m, seg, len);
	hole = (synced + (end - synced) / 2) & ~(size_t)4095;
	assert_true(hole > synced && hole + 8192 < end);
	memset(m + hole, 0, 4096);
	valid = boundary_before(b, nb, hole);
	assert_true(valid >= synced && valid < hole + 4096);
	auditfmt_segment_scan(m, len, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_TORN);
	assert_int_equal(sc.valid_len, valid);
	spill(p, m, len);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), AUDITFMT_TORN);
	assert_non_null(strstr(err, "torn tail"));
	/* show reads what is before the hole, without an error. */
	memset(&c, 0, sizeof(c));
	c.in_order = 1;
	assert_int_equal(audit_log_read(f->dir, f->reader[0], 0, 0, count_cb,
	    &c, err, sizeof(err)), 0);
	for (n = 0; n < nb && b[n] <= valid; n++)
		;
	/* Frames 0..n-1 kept: the header, the start record, disclosures. */
	assert_int_equal(c.types[0], (int)n - 2);
	/* The writer starts: it cuts at the last good frame and recovers. */
	w = wopen(f);
	audit_writer_close(w, 1);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)),
	    AUDITFMT_INTACT);
	memset(&c, 0, sizeof(c));
	c.in_order = 1;
	assert_int_equal(audit_log_read(f->dir, f->reader[0], 0, 0, count_cb,
	    &c, err, sizeof(err)), 0);
	assert_true(c.in_order);
	assert_int_equal(c.types[0], (int)n - 2);
	assert_int_equal(c.types[2], 1);

	/* The same lost page before the last batch's window: corruption. */
	copy_dir(saved, f->dir);
	memcpy(m, seg, len);
	hole = (end - AUDITFMT_MAX_BATCH - 8192) & ~(size_t)4095;
	assert_true(hole + 4096 < synced);
	memset(m + hole, 0, 4096);
	auditfmt_segment_scan(m, len, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_CORRUPT);
	assert_int_equal(sc.valid_len, boundary_before(b, nb, hole));
	spill(p, m, len);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)),
	    AUDITFMT_TAMPERED);
	w = audit_writer_open(&f->c, err, sizeof(err));
	assert_null(w);
	assert_non_null(strstr(err, "damaged frame"));

	/* In the window, but in the header frame: corruption (the header
	 * is synced in the first batch); the writer keeps the segment. */
	copy_dir(saved, f->dir);
	seg_path(f, 1, p, sizeof(p));
	memcpy(m, seg, len);
	memset(m + 20, 0, 8);
	auditfmt_segment_scan(m, len, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_CORRUPT);
	assert_int_equal(sc.valid_len, 0);
	spill(p, m, len);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)),
	    AUDITFMT_TAMPERED);
	assert_null(audit_writer_open(&f->c, err, sizeof(err)));
	assert_int_equal(access(p, F_OK), 0);

	/* In the window, but the segment was closed (an intact close
	 * checkpoint ends it): corruption too. */
	copy_dir(saved, f->dir);
	w = wopen(f);
	audit_writer_close(w, 1);	/* recovers 1 into 2, closes 2 */
	seg_path(f, 2, p, sizeof(p));
	free(seg);
	seg = slurp(p, &len);
	nb = boundaries(seg, len, b, 4096);
	assert_true(nb >= 4 && b[nb - 1] == len);
	m = realloc(m, len);
	assert_non_null(m);
	memcpy(m, seg, len);
	memset(m + b[0] + 14, 0, 8);
	auditfmt_segment_scan(m, len, &sc);
	assert_int_equal(sc.tail, AUDITFMT_TAIL_CORRUPT);
	spill(p, m, len);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)),
	    AUDITFMT_TAMPERED);
	free(m);
	free(seg);
	free(b);
	fx_free(f);
}

static void
test_every_bit_flip_detected(void **state)
{
	struct fx			*f = fx_new(1);
	struct audit_writer		*w;
	struct auditfmt_segdata		 segs[2];
	unsigned char			*s1, *s2, *copy;
	size_t				 l1, l2, i, b[64], nb;
	char				 p[256], msg[256];
	int				 bit, v;

	(void)state;
	f->c.audit_checkpoint_records = 2;
	w = wopen(f);
	add_records(w, 2, "acme");
	audit_writer_tick(w);
	add_records(w, 1, "acme");
	audit_writer_close(w, 1);
	w = wopen(f);
	add_records(w, 3, "beta");
	audit_writer_tick(w);
	audit_writer_close(w, 1);
	seg_path(f, 1, p, sizeof(p));
	s1 = slurp(p, &l1);
	seg_path(f, 2, p, sizeof(p));
	s2 = slurp(p, &l2);
	segs[0].id = 1;
	segs[0].data = s1;
	segs[0].len = l1;
	segs[1].id = 2;
	segs[1].len = l2;
	assert_true(l2 < 4096);
	segs[1].data = s2;
	assert_int_equal(auditfmt_verify_log(f->pub, segs, 2, NULL, 0, NULL,
	    msg, sizeof(msg), NULL), AUDITFMT_INTACT);
	copy = malloc(l2);
	segs[1].data = copy;
	/* Segment 2 is the last: damage to its close checkpoint (its last
	 * frame) is a lost close batch, a torn tail (auditfmt.h); before it
	 * the intact close checkpoint makes any damage corruption. */
	nb = boundaries(s2, l2, b, 64);
	assert_true(nb >= 2 && b[nb - 1] == l2);
	for (i = 0; i < l2; i++)
		for (bit = 0; bit < 8; bit++) {
			memcpy(copy, s2, l2);
			copy[i] ^= (unsigned char)(1 << bit);
			v = auditfmt_verify_log(f->pub, segs, 2, NULL, 0, NULL,
			    msg, sizeof(msg), NULL);
			if (v != (i < b[nb - 2] ? AUDITFMT_TAMPERED :
			    AUDITFMT_TORN))
				fail_msg("flip byte %zu bit %d: verdict %d (%s)",
				    i, bit, v, msg);
		}
	/* The first segment too (it holds the first key's hand-over). */
	segs[1].data = s2;
	free(copy);
	copy = malloc(l1);
	segs[0].data = copy;
	for (i = 0; i < l1; i++)
		for (bit = 0; bit < 8; bit++) {
			memcpy(copy, s1, l1);
			copy[i] ^= (unsigned char)(1 << bit);
			v = auditfmt_verify_log(f->pub, segs, 2, NULL, 0, NULL,
			    msg, sizeof(msg), NULL);
			if (v != AUDITFMT_TAMPERED)
				fail_msg("seg 1 flip byte %zu bit %d: %d (%s)",
				    i, bit, v, msg);
		}
	free(copy);
	free(s1);
	free(s2);
	fx_free(f);
}

/* Rebuild a segment with frames in a different order. */
static void
reframe(const unsigned char *seg, size_t len, const size_t *order, size_t n,
    unsigned char *out, size_t *outlen)
{
	size_t	 starts[64], ends[64], nb, i, o = 0;

	nb = boundaries(seg, len, ends, 64);
	for (i = 0; i < nb; i++)
		starts[i] = i ? ends[i - 1] : 0;
	for (i = 0; i < n; i++) {
		assert_true(order[i] < nb);
		memcpy(out + o, seg + starts[order[i]],
		    ends[order[i]] - starts[order[i]]);
		o += ends[order[i]] - starts[order[i]];
	}
	*outlen = o;
}

static void
test_reorder_replay_drop_detected(void **state)
{
	struct fx		*f = fx_new(1);
	struct audit_writer	*w;
	unsigned char		*s, *out;
	size_t			 len, olen, nb, b[64];
	char			 p[256], err[512];
	/* frames: 0 header, 1 start, 2..6 records, 7 checkpoint, 8 stop,
	 * 9 close */
	const size_t		 swapped[] = { 0, 1, 3, 2, 4, 5, 6, 7, 8, 9 };
	const size_t		 replayed[] = { 0, 1, 2, 3, 3, 4, 5, 6, 7, 8,
				    9 };
	const size_t		 dropped[] = { 0, 1, 2, 4, 5, 6, 7, 8, 9 };
	const size_t		 tail_swap[] = { 0, 1, 2, 3, 4, 5, 6, 7, 9,
				    8 };

	(void)state;
	f->c.audit_checkpoint_records = 5;
	w = wopen(f);
	add_records(w, 5, "acme");
	audit_writer_tick(w);
	audit_writer_close(w, 1);
	seg_path(f, 1, p, sizeof(p));
	s = slurp(p, &len);
	nb = boundaries(s, len, b, 64);
	assert_int_equal(nb, 10);
	out = malloc(len * 2);

	reframe(s, len, swapped, 10, out, &olen);
	spill(p, out, olen);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 1);
	assert_non_null(strstr(err, "reordered"));

	reframe(s, len, replayed, 11, out, &olen);
	spill(p, out, olen);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 1);
	assert_non_null(strstr(err, "replayed"));

	reframe(s, len, dropped, 9, out, &olen);
	spill(p, out, olen);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 1);
	assert_non_null(strstr(err, "missing"));

	reframe(s, len, tail_swap, 10, out, &olen);
	spill(p, out, olen);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 1);

	spill(p, s, len);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 0);
	free(out);
	free(s);
	fx_free(f);
}

static void
test_missing_segment_detected(void **state)
{
	struct fx		*f = fx_new(1);
	struct audit_writer	*w;
	char			 p[256], p3[256], err[512], lines[8][512];
	unsigned char		*s3;
	size_t			 l3, ends[8], n;
	int			 i;

	(void)state;
	for (i = 0; i < 3; i++) {
		w = wopen(f);
		add_records(w, 2, "acme");
		audit_writer_close(w, 1);
	}
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 0);
	seg_path(f, 3, p3, sizeof(p3));
	s3 = slurp(p3, &l3);
	n = checkpoint_lines(s3, l3, lines, ends, 8);
	assert_true(n >= 1);

	/* A middle segment. */
	seg_path(f, 2, p, sizeof(p));
	assert_int_equal(rename(p, "/tmp/test_auditfmt_seg2"), 0);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 1);
	assert_non_null(strstr(err, "missing"));
	assert_int_equal(rename("/tmp/test_auditfmt_seg2", p), 0);

	/* The first segment, without a retention record. */
	seg_path(f, 1, p, sizeof(p));
	assert_int_equal(rename(p, "/tmp/test_auditfmt_seg1"), 0);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 1);
	assert_int_equal(rename("/tmp/test_auditfmt_seg1", p), 0);

	/* The last segment: only an anchor can tell. */
	assert_int_equal(unlink(p3), 0);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 0);
	assert_int_equal(verify_dir(f, lines[n - 1], err, sizeof(err)), 1);
	assert_non_null(strstr(err, "shorter than the anchor"));
	spill(p3, s3, l3);
	assert_int_equal(verify_dir(f, lines[n - 1], err, sizeof(err)), 0);
	free(s3);
	fx_free(f);
}

static void
test_truncation_to_earlier_checkpoint_anchor(void **state)
{
	struct fx		*f = fx_new(1);
	struct audit_writer	*w;
	char			 p[256], err[512], lines[8][512], *h;
	unsigned char		*s;
	size_t			 len, ends[8], n;

	(void)state;
	f->c.audit_checkpoint_records = 2;
	w = wopen(f);
	add_records(w, 2, "acme");
	audit_writer_tick(w);
	add_records(w, 2, "acme");
	audit_writer_tick(w);
	add_records(w, 1, "acme");
	audit_writer_close(w, 0);	/* still being written */
	seg_path(f, 1, p, sizeof(p));
	s = slurp(p, &len);
	n = checkpoint_lines(s, len, lines, ends, 8);
	assert_int_equal(n, 2);
	assert_int_equal(verify_dir(f, lines[1], err, sizeof(err)), 0);
	assert_int_equal(verify_dir(f, lines[0], err, sizeof(err)), 0);
	/* Cut right after the first checkpoint: looks like a live log... */
	spill(p, s, ends[0]);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 0);
	assert_int_equal(verify_dir(f, lines[0], err, sizeof(err)), 0);
	/* ...but not to someone holding the later checkpoint line. */
	assert_int_equal(verify_dir(f, lines[1], err, sizeof(err)), 1);
	assert_non_null(strstr(err, "shorter than the anchor"));
	/* A forged anchor (changed head) is not found either. */
	spill(p, s, len);
	h = strstr(lines[1], "head=") + 5;
	*h = *h == '0' ? '1' : '0';
	assert_int_equal(verify_dir(f, lines[1], err, sizeof(err)), 1);
	assert_int_equal(verify_dir(f, "garbage", err, sizeof(err)), 1);
	free(s);
	fx_free(f);
}

static void
test_retention_keeps_verify_green(void **state)
{
	struct fx		*f = fx_new(1);
	struct audit_writer	*w;
	struct count		 c;
	struct timespec		 ts;
	uint64_t		 now;
	char			 p[256], err[512], kc[256];
	unsigned char		*k;
	size_t			 klen;
	struct stat		 st;

	(void)state;
	f->c.audit_retention_days = 1;
	f->c.audit_segment_seconds = 5;
	f->c.audit_checkpoint_records = 2;
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000;
	w = wopen(f);
	add_records(w, 3, "old");
	audit_writer_set_time(w, now + 10000);
	audit_writer_tick(w);		/* checkpoint, rotate to 2 */
	assert_int_equal(audit_writer_segment(w), 2);
	add_records(w, 3, "old");
	audit_writer_set_time(w, now + 20000);
	audit_writer_tick(w);		/* rotate to 3 */
	add_records(w, 3, "old");
	assert_int_equal(audit_writer_segment(w), 3);
	audit_writer_set_time(w, now + 2 * 86400000ull);
	/* Rotate to 4; delete 1 and 2. Segment 3 ends (is closed) now, so
	 * it stays. */
	audit_writer_tick(w);
	assert_int_equal(audit_writer_segment(w), 4);
	add_records(w, 2, "new");
	audit_writer_close(w, 1);
	seg_path(f, 1, p, sizeof(p));
	assert_int_equal(stat(p, &st), -1);
	seg_path(f, 2, p, sizeof(p));
	assert_int_equal(stat(p, &st), -1);
	seg_path(f, 3, p, sizeof(p));
	assert_int_equal(stat(p, &st), 0);
	if (verify_dir(f, NULL, err, sizeof(err)) != 0)
		fail_msg("after retention: %s", err);
	memset(&c, 0, sizeof(c));
	c.in_order = 1;
	assert_int_equal(audit_log_read(f->dir, f->reader[0], 0, 0, count_cb,
	    &c, err, sizeof(err)), 0);
	assert_int_equal(c.types[0], 3 + 2);
	assert_true(c.in_order);

	/* Without the keychain the first key no longer reaches segment 4. */
	snprintf(kc, sizeof(kc), "%s/keychain", f->dir);
	k = slurp(kc, &klen);
	assert_int_equal(unlink(kc), 0);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 1);
	k[klen - 10] ^= 1;
	spill(kc, k, klen);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 1);
	k[klen - 10] ^= 1;
	spill(kc, k, klen);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 0);
	/* Deleting the retained segment too is not covered by the record. */
	assert_int_equal(unlink(p), 0);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 1);
	free(k);
	fx_free(f);
}

static void
test_lost_checkpoint_refuses_restart(void **state)
{
	struct fx		*f = fx_new(1);
	struct audit_writer	*w;
	char			 p[256], err[256];
	unsigned char		*s;
	size_t			 len, b[64], nb;

	(void)state;
	f->c.audit_checkpoint_records = 2;
	w = wopen(f);
	add_records(w, 2, "acme");
	audit_writer_tick(w);
	audit_writer_close(w, 0);
	seg_path(f, 1, p, sizeof(p));
	s = slurp(p, &len);
	nb = boundaries(s, len, b, 64);
	/* Cut off the durable checkpoint: its key is already in use. */
	spill(p, s, b[nb - 2]);
	assert_null(audit_writer_open(&f->c, err, sizeof(err)));
	assert_non_null(strstr(err, "does not match"));
	spill(p, s, len);
	w = wopen(f);
	audit_writer_close(w, 1);
	assert_int_equal(verify_dir(f, NULL, err, sizeof(err)), 0);
	free(s);
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_known_answer),
		cmocka_unit_test(test_frame_roundtrip_and_damage),
		cmocka_unit_test(test_chain_order_sensitive),
		cmocka_unit_test(test_chain_known_answer),
		cmocka_unit_test(test_checkpoint_sign_verify_line),
		cmocka_unit_test(test_seal_open_one_reader),
		cmocka_unit_test(test_seal_open_two_readers),
		cmocka_unit_test(test_segkey_seal_frame),
		cmocka_unit_test(test_time_format_parse),
		cmocka_unit_test(test_subject_normalise_and_hash),
		cmocka_unit_test(test_segment_names),
		cmocka_unit_test(test_log_roundtrip_verify_show),
		cmocka_unit_test(test_torn_tail_every_offset),
		cmocka_unit_test(test_scan_zero_tail),
		cmocka_unit_test(test_every_bit_flip_detected),
		cmocka_unit_test(test_reorder_replay_drop_detected),
		cmocka_unit_test(test_missing_segment_detected),
		cmocka_unit_test(test_truncation_to_earlier_checkpoint_anchor),
		cmocka_unit_test(test_retention_keeps_verify_green),
		cmocka_unit_test(test_lost_checkpoint_refuses_restart),
		cmocka_unit_test(test_lost_page_in_last_batch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
