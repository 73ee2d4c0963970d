/* keys.c -- key files, permissions, wrapping, derivation, wiping */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "conf.h"
#include "fileio.h"
#include "keys.h"
#include "log.h"

#define WRAPPED_LEN	(KEYS_DATA_KEY_LEN + 8)
#define KEYID_LEN	32		/* hex characters */
#define MAX_FILE	(16 * 1024 * 1024)

struct keyring {
	struct keys_pair	*pairs;
	size_t			 npairs;
};

struct master {
	uint32_t	 version;
	int		 active;
	unsigned char	 key[32];
};

/* A data.keys record: a wrapped data-key version, or a tombstone. */
struct drec {
	int		 shredded;
	char		*tenant;
	char		*integration;
	uint32_t	 version;
	int		 active;
	char		 keyid[KEYID_LEN + 1];
	uint32_t	 master;
	unsigned char	 wrapped[WRAPPED_LEN];
};

/* Both files as read. */
struct kfiles {
	struct master	*m;
	size_t		 nm;
	struct drec	*d;
	size_t		 nd;
};

/* ---- small helpers ---- */

static void
kfiles_free(struct kfiles *k)
{
	size_t i;

	if (k->m != NULL) {
		OPENSSL_cleanse(k->m, k->nm * sizeof(*k->m));
		free(k->m);
	}
	for (i = 0; i < k->nd; i++) {
		free(k->d[i].tenant);
		free(k->d[i].integration);
	}
	free(k->d);
	memset(k, 0, sizeof(*k));
}

static int
hex_decode(const char *s, size_t n, unsigned char *out, size_t outlen)
{
	size_t	i;
	int	hi, lo;

	if (n != outlen * 2)
		return -1;
	for (i = 0; i < outlen; i++) {
		hi = OPENSSL_hexchar2int((unsigned char)s[2 * i]);
		lo = OPENSSL_hexchar2int((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0 || (s[2 * i] >= 'A' && s[2 * i] <= 'F') ||
		    (s[2 * i + 1] >= 'A' && s[2 * i + 1] <= 'F'))
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

static int
hex_append(struct buf *b, const unsigned char *p, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	size_t i;

	if (buf_reserve(b, 2 * n) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		b->data[b->len++] = hx[p[i] >> 4];
		b->data[b->len++] = hx[p[i] & 15];
	}
	b->data[b->len] = '\0';
	return 0;
}

static int
name_safe(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || strchr("._~:@+-", c) != NULL;
}

/* Names are percent-encoded so that a line always splits on spaces. */
static int
name_append(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (name_safe((unsigned char)*s)) {
			if (buf_append_char(b, *s) == -1)
				return -1;
		} else if (buf_printf(b, "%%%02X", (unsigned char)*s) == -1)
			return -1;
	}
	return 0;
}

static char *
name_decode(const char *s)
{
	char	*o, *p;
	int	 hi, lo;

	if (*s == '\0' || (o = p = malloc(strlen(s) + 1)) == NULL)
		return NULL;
	for (; *s != '\0'; s++) {
		if (*s != '%') {
			*p++ = *s;
			continue;
		}
		hi = OPENSSL_hexchar2int((unsigned char)s[1]);
		lo = hi < 0 ? -1 : OPENSSL_hexchar2int((unsigned char)s[2]);
		if (lo < 0 || (hi == 0 && lo == 0)) {
			free(o);
			return NULL;
		}
		*p++ = (char)(hi << 4 | lo);
		s += 2;
	}
	*p = '\0';
	return o;
}

static int
parse_u32(const char *s, uint32_t *out)
{
	char		*end;
	unsigned long	 v;

	if (*s < '1' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/*
 * Read a key file: a regular file owned by the current user that group
 * and others cannot read. Returns 0, 1 when it does not exist and
 * missing_ok, -1 with err.
 */
static int
read_key_file(const char *path, int missing_ok, struct buf *out, char *err,
    size_t errlen)
{
	struct stat	 st;
	ssize_t		 r;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		if (errno == ENOENT && missing_ok)
			return 1;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s is not owned by the user subgate runs "
		    "as (uid %u): chown it", path, (unsigned)geteuid());
		goto fail;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(err, errlen, "%s is readable by group or others: "
		    "chmod 600 %s", path, path);
		goto fail;
	}
	if (st.st_size > MAX_FILE || buf_reserve(out, (size_t)st.st_size) == -1) {
		snprintf(err, errlen, "%s: too large", path);
		goto fail;
	}
	for (;;) {
		if (buf_reserve(out, 4096) == -1) {
			snprintf(err, errlen, "%s: too large", path);
			goto fail;
		}
		r = read(fd, out->data + out->len, 4096);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		out->len += (size_t)r;
		if (out->len > MAX_FILE) {
			snprintf(err, errlen, "%s: too large", path);
			goto fail;
		}
	}
	out->data[out->len] = '\0';
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

/*
 * Replace path with data atomically: temp file 0600, fsync, rename, fsync
 * of the directory. Then the file replaced, held open across the rename,
 * is wiped: the keys it held (a shredded pair's, a retired master) must
 * not stay in the blocks it frees. Not when another link keeps it: that
 * copy is someone's on purpose, a backup perhaps, and the warning says so.
 */
static int
write_atomic(const char *path, const struct buf *data, char *err,
    size_t errlen)
{
	struct stat	 st;
	char		*tmp;
	int		 fd, old;

	if (asprintf(&tmp, "%s.tmpXXXXXX", path) == -1) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	if ((fd = mkstemp(tmp)) == -1) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	if (fchmod(fd, 0600) == -1 ||
	    fio_write_all(fd, data->data, data->len) == -1 || fsync(fd) == -1) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	fd = -1;
	if ((old = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) == -1 &&
	    errno != ENOENT)
		log_warn("%s: the previous version cannot be opened to be "
		    "wiped", path);
	if (rename(tmp, path) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (old != -1)
			close(old);
		goto fail;
	}
	free(tmp);
	if (fio_fsync_dir_of(path) == -1) {
		snprintf(err, errlen, "%s: directory fsync: %s", path,
		    strerror(errno));
		if (old != -1)
			close(old);
		return -1;
	}
	if (old != -1) {
		if (fstat(old, &st) == 0 && st.st_nlink > 0)
			log_warnx("%s: the previous version has another hard "
			    "link and was not wiped; its keys live on there",
			    path);
		else if (fio_wipe(old, 1) == -1)
			log_warn("%s: wiping the previous version", path);
		close(old);
	}
	return 0;
fail:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	free(tmp);
	return -1;
}

/* ---- parsing ---- */

/* Split line (modified in place) on single spaces into at most max fields. */
static size_t
split(char *line, char **f, size_t max)
{
	size_t n = 0;

	while (n < max) {
		f[n++] = line;
		if ((line = strchr(line, ' ')) == NULL)
			break;
		*line++ = '\0';
	}
	return line == NULL ? n : max + 1;
}

/* Reading a key file line by line: comments and blank lines skipped, the
 * first line must be the file's header. */
struct kf_lines {
	char	*next;
	size_t	 lineno;
	int	 header;
};

/* 1 with the next record in *line (NUL-terminated in place), 0 at the
 * end, -1 with err when the first line is not header. */
static int
kf_next(struct kf_lines *l, const char *header, const char *kind,
    const char *path, char **line, char *err, size_t errlen)
{
	char	*p;

	while ((p = l->next) != NULL && *p != '\0') {
		l->lineno++;
		if ((l->next = strchr(p, '\n')) != NULL)
			*l->next++ = '\0';
		if (*p == '#' || *p == '\0')
			continue;
		if (!l->header) {
			if (strcmp(p, header) != 0) {
				snprintf(err, errlen, "%s:%zu: not a subgate "
				    "%s key file (version 1)", path, l->lineno,
				    kind);
				return -1;
			}
			l->header = 1;
			continue;
		}
		*line = p;
		return 1;
	}
	return 0;
}

static int
parse_token_keys(const char *path, struct buf *text, struct kfiles *k,
    char *err, size_t errlen)
{
	struct kf_lines	 l = { text->data, 0, 0 };
	char		*line, *f[5];
	size_t		 nf, nactive = 0, i;
	struct master	*m;
	int		 rc;

	while ((rc = kf_next(&l, "subgate-token-keys 1", "token", path, &line,
	    err, errlen)) == 1) {
		nf = split(line, f, 4);
		if (nf != 4 || strcmp(f[0], "master") != 0)
			goto bad;
		if ((m = reallocarray(k->m, k->nm + 1, sizeof(*m))) == NULL) {
			snprintf(err, errlen, "%s: out of memory", path);
			return -1;
		}
		k->m = m;
		m = &k->m[k->nm];
		memset(m, 0, sizeof(*m));
		if (parse_u32(f[1], &m->version) == -1 ||
		    hex_decode(f[3], strlen(f[3]), m->key, sizeof(m->key)) == -1)
			goto bad;
		if (strcmp(f[2], "active") == 0)
			m->active = 1;
		else if (strcmp(f[2], "retired") != 0)
			goto bad;
		OPENSSL_cleanse(f[3], strlen(f[3]));
		for (i = 0; i < k->nm; i++)
			if (k->m[i].version == m->version) {
				snprintf(err, errlen, "%s:%zu: master version %u "
				    "listed twice", path, l.lineno, m->version);
				return -1;
			}
		nactive += (size_t)m->active;
		k->nm++;
	}
	if (rc == -1)
		return -1;
	if (!l.header || nactive != 1) {
		snprintf(err, errlen, "%s: needs exactly one active master key "
		    "(found %zu)", path, nactive);
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "%s:%zu: expected \"master VERSION active|retired "
	    "HEX64\"", path, l.lineno);
	return -1;
}

static struct drec *
find_rec(const struct kfiles *k, const char *tenant, const char *integration,
    size_t from)
{
	size_t i;

	for (i = from; i < k->nd; i++)
		if (strcmp(k->d[i].tenant, tenant) == 0 &&
		    strcmp(k->d[i].integration, integration) == 0)
			return &k->d[i];
	return NULL;
}

static int
parse_data_keys(const char *path, struct buf *text, struct kfiles *k,
    char *err, size_t errlen)
{
	struct kf_lines	 l = { text->data, 0, 0 };
	char		*line, *f[9];
	size_t		 nf, i;
	struct drec	*d, *o;
	int		 rc;

	while ((rc = kf_next(&l, "subgate-data-keys 1", "data", path, &line,
	    err, errlen)) == 1) {
		nf = split(line, f, 8);
		if ((d = reallocarray(k->d, k->nd + 1, sizeof(*d))) == NULL) {
			snprintf(err, errlen, "%s: out of memory", path);
			return -1;
		}
		k->d = d;
		d = &k->d[k->nd];
		memset(d, 0, sizeof(*d));
		if (nf == 3 && strcmp(f[0], "shredded") == 0)
			d->shredded = 1;
		else if (nf != 8 || strcmp(f[0], "key") != 0)
			goto bad;
		d->tenant = name_decode(f[1]);
		d->integration = name_decode(f[2]);
		k->nd++;
		if (d->tenant == NULL || d->integration == NULL)
			goto bad;
		if (!d->shredded) {
			if (parse_u32(f[3], &d->version) == -1 ||
			    parse_u32(f[6], &d->master) == -1 ||
			    strlen(f[5]) != KEYID_LEN ||
			    hex_decode(f[5], KEYID_LEN, d->wrapped, 16) == -1 ||
			    hex_decode(f[7], strlen(f[7]), d->wrapped,
			    WRAPPED_LEN) == -1)
				goto bad;
			memcpy(d->keyid, f[5], KEYID_LEN);
			if (strcmp(f[4], "active") == 0)
				d->active = 1;
			else if (strcmp(f[4], "decrypt") != 0)
				goto bad;
		}
		/* One tombstone or distinct versions per pair. */
		for (i = 0; (o = find_rec(k, d->tenant, d->integration, i)) != NULL &&
		    o != d; i = (size_t)(o - k->d) + 1)
			if (o->shredded || d->shredded || o->version == d->version ||
			    (o->active && d->active)) {
				snprintf(err, errlen, "%s:%zu: conflicts with "
				    "an earlier record of the same pair", path,
				    l.lineno);
				return -1;
			}
	}
	if (rc == -1)
		return -1;
	if (!l.header && text->len > 0) {
		snprintf(err, errlen, "%s: not a subgate data key file", path);
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "%s:%zu: expected \"key TENANT INTEGRATION VERSION "
	    "active|decrypt KEYID MASTER WRAPPED\" or \"shredded TENANT "
	    "INTEGRATION\"", path, l.lineno);
	return -1;
}

static int
kfiles_read(const char *token_keys, const char *data_keys, struct kfiles *k,
    char *err, size_t errlen)
{
	struct buf	t = { 0 }, d = { 0 };
	int		rc = -1, r;

	memset(k, 0, sizeof(*k));
	if (read_key_file(token_keys, 0, &t, err, errlen) == -1 ||
	    parse_token_keys(token_keys, &t, k, err, errlen) == -1)
		goto done;
	if ((r = read_key_file(data_keys, 1, &d, err, errlen)) == -1 ||
	    (r == 0 && parse_data_keys(data_keys, &d, k, err, errlen) == -1))
		goto done;
	rc = 0;
done:
	buf_free(&t);
	buf_free(&d);
	if (rc == -1)
		kfiles_free(k);
	return rc;
}

static int
token_keys_text(const struct kfiles *k, struct buf *b)
{
	size_t i;

	if (buf_append_str(b, "# subgate master keys: written by subgatectl "
	    "keys; mode 0600\nsubgate-token-keys 1\n") == -1)
		return -1;
	for (i = 0; i < k->nm; i++)
		if (buf_printf(b, "master %u %s ", k->m[i].version,
		    k->m[i].active ? "active" : "retired") == -1 ||
		    hex_append(b, k->m[i].key, sizeof(k->m[i].key)) == -1 ||
		    buf_append_char(b, '\n') == -1)
			return -1;
	return 0;
}

static int
data_keys_text(const struct kfiles *k, struct buf *b)
{
	const struct drec *d;
	size_t i;

	if (buf_append_str(b, "# subgate data keys (wrapped): written by "
	    "subgatectl keys; mode 0600\nsubgate-data-keys 1\n") == -1)
		return -1;
	for (i = 0; i < k->nd; i++) {
		d = &k->d[i];
		if (buf_append_str(b, d->shredded ? "shredded " : "key ") == -1 ||
		    name_append(b, d->tenant) == -1 ||
		    buf_append_char(b, ' ') == -1 ||
		    name_append(b, d->integration) == -1)
			return -1;
		if (!d->shredded && (buf_printf(b, " %u %s %s %u ", d->version,
		    d->active ? "active" : "decrypt", d->keyid, d->master) == -1 ||
		    hex_append(b, d->wrapped, WRAPPED_LEN) == -1))
			return -1;
		if (buf_append_char(b, '\n') == -1)
			return -1;
	}
	return 0;
}

static int
save(const char *path, const struct kfiles *k, int token, char *err,
    size_t errlen)
{
	struct buf	b = { 0 };
	int		rc;

	if ((token ? token_keys_text(k, &b) : data_keys_text(k, &b)) == -1) {
		snprintf(err, errlen, "%s: out of memory", path);
		buf_free(&b);
		return -1;
	}
	rc = write_atomic(path, &b, err, errlen);
	buf_free(&b);
	return rc;
}

/* ---- wrapping and derivation ---- */

static const struct master *
master_find(const struct kfiles *k, uint32_t version, int active)
{
	size_t i;

	for (i = 0; i < k->nm; i++)
		if (active ? k->m[i].active : k->m[i].version == version)
			return &k->m[i];
	return NULL;
}

/* AES-KW (RFC 3394) of the data key under kek; enc or unwrap. */
static int
kw(const unsigned char *kek, const unsigned char *in, size_t inlen,
    unsigned char *out, int enc)
{
	EVP_CIPHER	*c;
	EVP_CIPHER_CTX	*x = NULL;
	int		 l, l2, rc = -1;
	size_t		 want = enc ? inlen + 8 : inlen - 8;

	if ((c = EVP_CIPHER_fetch(NULL, "AES-256-WRAP", NULL)) == NULL)
		return -1;
	if ((x = EVP_CIPHER_CTX_new()) == NULL)
		goto done;
	EVP_CIPHER_CTX_set_flags(x, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_CipherInit_ex2(x, c, kek, NULL, enc, NULL) != 1 ||
	    EVP_CipherUpdate(x, out, &l, in, (int)inlen) != 1 ||
	    EVP_CipherFinal_ex(x, out + l, &l2) != 1 ||
	    (size_t)(l + l2) != want)
		goto done;
	rc = 0;
done:
	EVP_CIPHER_CTX_free(x);
	EVP_CIPHER_free(c);
	return rc;
}

static int
put_info(unsigned char *p, size_t *off, size_t cap, const char *s)
{
	size_t n = strlen(s);

	if (n > 0xffff || *off + 2 + n > cap)
		return -1;
	p[(*off)++] = (unsigned char)(n >> 8);
	p[(*off)++] = (unsigned char)n;
	memcpy(p + *off, s, n);
	*off += n;
	return 0;
}

int
keys_derive(const unsigned char data_key[KEYS_DATA_KEY_LEN],
    const char *purpose, const char *key_id, uint32_t version,
    unsigned char *out, size_t outlen)
{
	EVP_KDF		*kdf;
	EVP_KDF_CTX	*x = NULL;
	OSSL_PARAM	 params[4];
	unsigned char	 info[512];
	char		 ver[16];
	size_t		 n = 0;
	int		 rc = -1;

	snprintf(ver, sizeof(ver), "%u", (unsigned)version);
	if (put_info(info, &n, sizeof(info), "subgate/v1") == -1 ||
	    put_info(info, &n, sizeof(info), purpose) == -1 ||
	    put_info(info, &n, sizeof(info), key_id) == -1 ||
	    put_info(info, &n, sizeof(info), ver) == -1)
		return -1;
	if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL)
		return -1;
	if ((x = EVP_KDF_CTX_new(kdf)) == NULL)
		goto done;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
	    (char *)(uintptr_t)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
	    (void *)(uintptr_t)data_key, KEYS_DATA_KEY_LEN);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    info, n);
	params[3] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(x, out, outlen, params) != 1)
		goto done;
	rc = 0;
done:
	EVP_KDF_CTX_free(x);
	EVP_KDF_free(kdf);
	return rc;
}

/* ---- the daemon's keyring ---- */

static void
pair_wipe(struct keys_pair *p)
{
	size_t i;

	for (i = 0; p->versions != NULL && i < p->nversions; i++) {
		EVP_CIPHER_CTX_free(p->versions[i].siv_enc);
		EVP_CIPHER_CTX_free(p->versions[i].siv_dec);
	}
	EVP_CIPHER_CTX_free(p->email_enc);
	EVP_CIPHER_CTX_free(p->email_dec);
	EVP_CIPHER_CTX_free(p->ff1_ecb);
	EVP_MAC_CTX_free(p->hash_mac);
	if (p->versions != NULL) {
		OPENSSL_cleanse(p->versions, p->nversions * sizeof(*p->versions));
		free(p->versions);
	}
	free(p->tenant);
	free(p->integration);
	OPENSSL_cleanse(p, sizeof(*p));
}

/*
 * Keyed contexts, copied per call instead of keyed there (a key schedule,
 * and for SIV the CMAC and CTR set-up: about 1 us of 3 per token). They
 * hold key material and go with the pair (pair_wipe). NULL on failure.
 */
static EVP_CIPHER_CTX *
cipher_template(const char *name, const unsigned char *key, int enc,
    int nopad)
{
	EVP_CIPHER	*c;
	EVP_CIPHER_CTX	*x;

	if ((c = EVP_CIPHER_fetch(NULL, name, NULL)) == NULL)
		return NULL;
	if ((x = EVP_CIPHER_CTX_new()) != NULL &&
	    (EVP_CipherInit_ex2(x, c, key, NULL, enc, NULL) != 1 ||
	    (nopad && EVP_CIPHER_CTX_set_padding(x, 0) != 1))) {
		EVP_CIPHER_CTX_free(x);
		x = NULL;
	}
	EVP_CIPHER_free(c);
	return x;
}

static EVP_MAC_CTX *
hmac_template(const unsigned char key[32])
{
	OSSL_PARAM	 params[2];
	EVP_MAC		*m;
	EVP_MAC_CTX	*x;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)(uintptr_t)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((m = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		return NULL;
	if ((x = EVP_MAC_CTX_new(m)) != NULL &&
	    EVP_MAC_init(x, key, 32, params) != 1) {
		EVP_MAC_CTX_free(x);
		x = NULL;
	}
	EVP_MAC_free(m);
	return x;
}

/* Derive the per-pair keys from its data key versions (raw[i] for recs[i]). */
static int
pair_derive(struct keys_pair *p, struct drec **recs, unsigned char (*raw)[32],
    size_t n)
{
	size_t i, first = 0;

	if ((p->versions = calloc(n, sizeof(*p->versions))) == NULL)
		return -1;
	p->nversions = n;
	for (i = 0; i < n; i++) {
		p->versions[i].version = recs[i]->version;
		if (recs[i]->active)
			p->active = recs[i]->version;
		if (recs[i]->version < recs[first]->version)
			first = i;
		if (keys_derive(raw[i], "tok1-siv", recs[i]->keyid,
		    recs[i]->version, p->versions[i].siv, KEYS_SIV_KEY_LEN) == -1 ||
		    (p->versions[i].siv_enc = cipher_template("AES-256-SIV",
		    p->versions[i].siv, 1, 0)) == NULL ||
		    (p->versions[i].siv_dec = cipher_template("AES-256-SIV",
		    p->versions[i].siv, 0, 0)) == NULL)
			return -1;
	}
	if (keys_derive(raw[first], "email-siv", recs[first]->keyid,
	    recs[first]->version, p->email_siv, sizeof(p->email_siv)) == -1 ||
	    keys_derive(raw[first], "ff1", recs[first]->keyid,
	    recs[first]->version, p->ff1, sizeof(p->ff1)) == -1 ||
	    keys_derive(raw[first], "hash", recs[first]->keyid,
	    recs[first]->version, p->hash, sizeof(p->hash)) == -1 ||
	    (p->email_enc = cipher_template("AES-256-SIV", p->email_siv, 1,
	    0)) == NULL ||
	    (p->email_dec = cipher_template("AES-256-SIV", p->email_siv, 0,
	    0)) == NULL ||
	    (p->ff1_ecb = cipher_template("AES-256-ECB", p->ff1, 1, 1)) ==
	    NULL || (p->hash_mac = hmac_template(p->hash)) == NULL)
		return -1;
	return 0;
}

static int
pair_version_ok(const struct keys_pair *p)
{
	return p->active != 0 ? 0 : -1;
}

static int
pair_load(struct keys_pair *p, const struct kfiles *k, const char *tenant,
    const char *integration, const char *conf_path, char *err, size_t errlen)
{
	struct drec	**recs = NULL, *d;
	unsigned char	(*raw)[32] = NULL;
	const struct master *m;
	size_t		 n = 0, i;
	int		 rc = -1;

	memset(p, 0, sizeof(*p));
	if ((p->tenant = strdup(tenant)) == NULL ||
	    (p->integration = strdup(integration)) == NULL ||
	    (recs = calloc(k->nd + 1, sizeof(*recs))) == NULL ||
	    (raw = calloc(k->nd + 1, sizeof(*raw))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	for (i = 0; (d = find_rec(k, tenant, integration, i)) != NULL;
	    i = (size_t)(d - k->d) + 1) {
		if (d->shredded) {
			p->shredded = 1;
			rc = 0;
			goto done;
		}
		recs[n++] = d;
	}
	if (n == 0) {
		snprintf(err, errlen, "tenants[%s].integrations[%s]: no data key: "
		    "run `subgatectl keys sync -c %s`", tenant, integration,
		    conf_path != NULL ? conf_path : "FILE");
		goto done;
	}
	for (i = 0; i < n; i++) {
		if ((m = master_find(k, recs[i]->master, 0)) == NULL) {
			snprintf(err, errlen, "tenants[%s].integrations[%s]: data "
			    "key version %u is wrapped under master key %u, which "
			    "the token key file lacks", tenant, integration,
			    recs[i]->version, recs[i]->master);
			goto done;
		}
		if (kw(m->key, recs[i]->wrapped, WRAPPED_LEN, raw[i], 0) == -1) {
			snprintf(err, errlen, "tenants[%s].integrations[%s]: data "
			    "key version %u does not unwrap under master key %u",
			    tenant, integration, recs[i]->version, recs[i]->master);
			goto done;
		}
	}
	if (pair_derive(p, recs, raw, n) == -1 || pair_version_ok(p) == -1) {
		snprintf(err, errlen, "tenants[%s].integrations[%s]: key "
		    "derivation failed or no active version", tenant, integration);
		goto done;
	}
	rc = 0;
done:
	if (raw != NULL) {
		OPENSSL_cleanse(raw, (k->nd + 1) * sizeof(*raw));
		free(raw);
	}
	free(recs);
	return rc;
}

struct keyring *
keys_load_files(const char *token_keys, const char *data_keys,
    const struct keys_name *pairs, size_t npairs, const char *conf_path,
    char *err, size_t errlen)
{
	struct keyring	*r;
	struct kfiles	 k;
	size_t		 i;

	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->pairs = calloc(npairs + 1, sizeof(*r->pairs))) == NULL) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (kfiles_read(token_keys, data_keys, &k, err, errlen) == -1) {
		keys_free(r);
		return NULL;
	}
	for (i = 0; i < npairs; i++) {
		if (keys_pair_find(r, pairs[i].tenant, pairs[i].integration))
			continue;
		if (pair_load(&r->pairs[r->npairs], &k, pairs[i].tenant,
		    pairs[i].integration, conf_path, err, errlen) == -1) {
			pair_wipe(&r->pairs[r->npairs]);
			kfiles_free(&k);
			keys_free(r);
			return NULL;
		}
		r->npairs++;
	}
	/* The master keys and wrapped keys go now; only derived keys stay. */
	kfiles_free(&k);
	return r;
}

struct keys_name *
keys_conf_pairs(const struct conf *c, size_t *n)
{
	struct keys_name *v;
	size_t		 i, j, total = 0;

	*n = 0;
	for (i = 0; i < c->ntenants; i++)
		total += c->tenants[i].nuses;
	if (total == 0 || (v = calloc(total, sizeof(*v))) == NULL)
		return NULL;
	for (i = 0; i < c->ntenants; i++)
		for (j = 0; j < c->tenants[i].nuses; j++) {
			v[*n].tenant = c->tenants[i].id;
			v[*n].integration = c->tenants[i].uses[j].integration->name;
			(*n)++;
		}
	return v;
}

struct keyring *
keys_load(const struct conf *c, char *err, size_t errlen)
{
	struct keys_name *pairs;
	struct keyring	*r;
	size_t		 n;

	if (!c->has_keys || c->keys_token_keys == NULL ||
	    c->keys_data_keys == NULL) {
		snprintf(err, errlen, "%s: keys: token_keys and data_keys are "
		    "required", c->path);
		return NULL;
	}
	pairs = keys_conf_pairs(c, &n);
	if (pairs == NULL && n != 0) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r = keys_load_files(c->keys_token_keys, c->keys_data_keys, pairs, n,
	    c->path, err, errlen);
	free(pairs);
	return r;
}

const struct keys_pair *
keys_pair_find(const struct keyring *k, const char *tenant,
    const char *integration)
{
	size_t i;

	if (k == NULL)
		return NULL;
	for (i = 0; i < k->npairs; i++)
		if (strcmp(k->pairs[i].tenant, tenant) == 0 &&
		    strcmp(k->pairs[i].integration, integration) == 0)
			return &k->pairs[i];
	return NULL;
}

int
keys_pair_shredded(const struct keys_pair *p)
{
	return p->shredded;
}

void
keys_free(struct keyring *k)
{
	size_t i;

	if (k == NULL)
		return;
	for (i = 0; i < k->npairs; i++)
		pair_wipe(&k->pairs[i]);
	free(k->pairs);
	free(k);
}

struct keys_pair *
keys_pair_demo(const char *tenant, const char *integration)
{
	/* PUBLIC and fixed: `policy explain` output must be reproducible. */
	static const unsigned char demo_key[KEYS_DATA_KEY_LEN] =
	    "subgate-demo-key-PUBLIC-INSECURE";
	struct drec	 rec, *recs[1] = { &rec };
	unsigned char	 raw[1][32];
	struct keys_pair *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	memset(&rec, 0, sizeof(rec));
	rec.version = 1;
	rec.active = 1;
	memcpy(rec.keyid, "00000000000000000000000000000000", KEYID_LEN);
	memcpy(raw[0], demo_key, sizeof(raw[0]));
	if ((p->tenant = strdup(tenant)) == NULL ||
	    (p->integration = strdup(integration)) == NULL ||
	    pair_derive(p, recs, raw, 1) == -1) {
		keys_pair_free(p);
		return NULL;
	}
	return p;
}

void
keys_pair_free(struct keys_pair *p)
{
	if (p == NULL)
		return;
	pair_wipe(p);
	free(p);
}

/* ---- keys init ---- */

static int
create_file(const char *path, mode_t mode, const void *p, size_t n,
    char *err, size_t errlen)
{
	int fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
	    O_NOFOLLOW, mode)) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fchmod(fd, mode) == -1 || fio_write_all(fd, p, n) == -1 ||
	    fsync(fd) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

/* PEM of pkey (private PKCS#8 or public SPKI) written to a new file. */
static int
create_pem(const char *path, EVP_PKEY *pkey, int private, char *err,
    size_t errlen)
{
	BIO	*b;
	char	*p;
	long	 n;
	int	 rc = -1;

	if ((b = BIO_new(BIO_s_secmem())) == NULL)
		goto fail;
	if ((private ? PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL,
	    NULL) : PEM_write_bio_PUBKEY(b, pkey)) != 1)
		goto fail;
	if ((n = BIO_get_mem_data(b, &p)) <= 0)
		goto fail;
	rc = create_file(path, private ? 0600 : 0644, p, (size_t)n, err, errlen);
	BIO_free(b);
	return rc;
fail:
	snprintf(err, errlen, "%s: cannot encode the key", path);
	BIO_free(b);
	return -1;
}

int
keys_init_dir(const char *dir, struct buf *report, char *err, size_t errlen)
{
	static const char *names[] = { "token.keys", "audit-index.key",
	    "audit-signer.key", "audit-signer.pub", "audit-reader.pub",
	    "offline/audit-reader.key" };
	char		 path[6][PATH_MAX], off[PATH_MAX];
	unsigned char	 master[32], index[32];
	struct buf	 b = { 0 };
	EVP_PKEY	*sign = NULL, *reader = NULL;
	struct stat	 st;
	size_t		 i;
	int		 rc = -1;

	if ((size_t)snprintf(off, sizeof(off), "%s/offline", dir) >= sizeof(off))
		goto toolong;
	for (i = 0; i < 6; i++) {
		if ((size_t)snprintf(path[i], sizeof(path[i]), "%s/%s", dir,
		    names[i]) >= sizeof(path[i]))
			goto toolong;
		if (lstat(path[i], &st) == 0 || errno != ENOENT) {
			snprintf(err, errlen, "%s: already exists; nothing was "
			    "written", path[i]);
			return -1;
		}
	}
	if ((mkdir(dir, 0700) == -1 && errno != EEXIST) ||
	    (mkdir(off, 0700) == -1 && errno != EEXIST)) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (RAND_priv_bytes(master, sizeof(master)) != 1 ||
	    RAND_priv_bytes(index, sizeof(index)) != 1 ||
	    (sign = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL ||
	    (reader = EVP_PKEY_Q_keygen(NULL, NULL, "X25519")) == NULL) {
		snprintf(err, errlen, "key generation failed");
		goto done;
	}
	if (buf_append_str(&b, "# subgate master keys: written by subgatectl "
	    "keys; mode 0600\nsubgate-token-keys 1\nmaster 1 active ") == -1 ||
	    hex_append(&b, master, sizeof(master)) == -1 ||
	    buf_append_char(&b, '\n') == -1) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	if (create_file(path[0], 0600, b.data, b.len, err, errlen) == -1)
		goto done;
	buf_free(&b);
	if (hex_append(&b, index, sizeof(index)) == -1 ||
	    buf_append_char(&b, '\n') == -1) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	if (create_file(path[1], 0600, b.data, b.len, err, errlen) == -1 ||
	    create_pem(path[2], sign, 1, err, errlen) == -1 ||
	    create_pem(path[3], sign, 0, err, errlen) == -1 ||
	    create_pem(path[4], reader, 0, err, errlen) == -1 ||
	    create_pem(path[5], reader, 1, err, errlen) == -1)
		goto done;
	if (fio_fsync_dir_of(path[0]) == -1 || fio_fsync_dir_of(path[5]) == -1) {
		snprintf(err, errlen, "%s: directory fsync: %s", dir,
		    strerror(errno));
		goto done;
	}
	for (i = 0; i < 6; i++)
		if (report != NULL)
			buf_printf(report, "wrote %s\n", path[i]);
	rc = 0;
done:
	OPENSSL_cleanse(master, sizeof(master));
	OPENSSL_cleanse(index, sizeof(index));
	buf_free(&b);
	EVP_PKEY_free(sign);
	EVP_PKEY_free(reader);
	return rc;
toolong:
	snprintf(err, errlen, "%s: path too long", dir);
	return -1;
}

/* ---- data key lifecycle ---- */

static struct drec *
rec_add(struct kfiles *k, const char *tenant, const char *integration)
{
	struct drec *d;

	if ((d = reallocarray(k->d, k->nd + 1, sizeof(*d))) == NULL)
		return NULL;
	k->d = d;
	d = &k->d[k->nd];
	memset(d, 0, sizeof(*d));
	if ((d->tenant = strdup(tenant)) == NULL ||
	    (d->integration = strdup(integration)) == NULL) {
		free(d->tenant);
		free(d->integration);
		return NULL;
	}
	k->nd++;
	return d;
}

/* Fill d with a fresh random data key wrapped under the active master. */
static int
rec_new_key(const struct kfiles *k, struct drec *d, uint32_t version,
    int active)
{
	const struct master *m = master_find(k, 0, 1);
	unsigned char	 raw[KEYS_DATA_KEY_LEN], id[KEYID_LEN / 2];
	struct buf	 hex = { 0 };
	int		 rc = -1;

	if (m == NULL || RAND_priv_bytes(raw, sizeof(raw)) != 1 ||
	    RAND_bytes(id, sizeof(id)) != 1 ||
	    kw(m->key, raw, sizeof(raw), d->wrapped, 1) == -1 ||
	    hex_append(&hex, id, sizeof(id)) == -1)
		goto done;
	memcpy(d->keyid, hex.data, KEYID_LEN);
	d->version = version;
	d->active = active;
	d->master = m->version;
	rc = 0;
done:
	OPENSSL_cleanse(raw, sizeof(raw));
	buf_free(&hex);
	return rc;
}

int
keys_sync_files(const char *token_keys, const char *data_keys,
    const struct keys_name *pairs, size_t npairs, struct buf *report,
    char *err, size_t errlen)
{
	struct kfiles	 k;
	struct drec	*d;
	size_t		 i, made = 0;
	int		 rc = -1;

	if (kfiles_read(token_keys, data_keys, &k, err, errlen) == -1)
		return -1;
	for (i = 0; i < npairs; i++) {
		if (find_rec(&k, pairs[i].tenant, pairs[i].integration, 0) != NULL)
			continue;	/* has keys, or shredded: never recreated */
		if ((d = rec_add(&k, pairs[i].tenant,
		    pairs[i].integration)) == NULL ||
		    rec_new_key(&k, d, 1, 1) == -1) {
			snprintf(err, errlen, "%s: cannot create a data key",
			    data_keys);
			goto done;
		}
		if (report != NULL)
			buf_printf(report, "created data key tenant=%s "
			    "integration=%s version=1 key_id=%s\n",
			    pairs[i].tenant, pairs[i].integration, d->keyid);
		made++;
	}
	if (made > 0 && save(data_keys, &k, 0, err, errlen) == -1)
		goto done;
	if (made == 0 && report != NULL)
		buf_append_str(report, "nothing to create\n");
	rc = 0;
done:
	kfiles_free(&k);
	return rc;
}

/* The pair's records must exist and not be a tombstone. */
static int
pair_live(const struct kfiles *k, const char *tenant, const char *integration,
    const char *path, char *err, size_t errlen)
{
	const struct drec *d = find_rec(k, tenant, integration, 0);

	if (d == NULL) {
		snprintf(err, errlen, "%s: tenant %s, integration %s has no data "
		    "key (run keys sync first)", path, tenant, integration);
		return -1;
	}
	if (d->shredded) {
		snprintf(err, errlen, "%s: tenant %s, integration %s is shredded",
		    path, tenant, integration);
		return -1;
	}
	return 0;
}

int
keys_rotate_files(const char *token_keys, const char *data_keys,
    const char *tenant, const char *integration, uint32_t *version,
    struct buf *report, char *err, size_t errlen)
{
	struct kfiles	 k;
	struct drec	*d;
	uint32_t	 max = 0;
	size_t		 i;
	int		 rc = -1;

	if (kfiles_read(token_keys, data_keys, &k, err, errlen) == -1)
		return -1;
	if (pair_live(&k, tenant, integration, data_keys, err, errlen) == -1)
		goto done;
	for (i = 0; (d = find_rec(&k, tenant, integration, i)) != NULL;
	    i = (size_t)(d - k.d) + 1)
		if (d->version > max)
			max = d->version;
	if (max == UINT32_MAX || (d = rec_add(&k, tenant, integration)) == NULL ||
	    rec_new_key(&k, d, max + 1, 0) == -1) {
		snprintf(err, errlen, "%s: cannot create a data key", data_keys);
		goto done;
	}
	if (save(data_keys, &k, 0, err, errlen) == -1)
		goto done;
	*version = max + 1;
	if (report != NULL)
		buf_printf(report, "added data key tenant=%s integration=%s "
		    "version=%u key_id=%s (decrypt only until activated)\n",
		    tenant, integration, max + 1, d->keyid);
	rc = 0;
done:
	kfiles_free(&k);
	return rc;
}

int
keys_activate_files(const char *token_keys, const char *data_keys,
    const char *tenant, const char *integration, uint32_t version,
    struct buf *report, char *err, size_t errlen)
{
	struct kfiles	 k;
	struct drec	*d, *want = NULL;
	size_t		 i;
	int		 rc = -1;

	if (kfiles_read(token_keys, data_keys, &k, err, errlen) == -1)
		return -1;
	if (pair_live(&k, tenant, integration, data_keys, err, errlen) == -1)
		goto done;
	for (i = 0; (d = find_rec(&k, tenant, integration, i)) != NULL;
	    i = (size_t)(d - k.d) + 1)
		if (d->version == version)
			want = d;
	if (want == NULL) {
		snprintf(err, errlen, "%s: tenant %s, integration %s has no "
		    "version %u", data_keys, tenant, integration, version);
		goto done;
	}
	for (i = 0; (d = find_rec(&k, tenant, integration, i)) != NULL;
	    i = (size_t)(d - k.d) + 1)
		d->active = d == want;
	if (save(data_keys, &k, 0, err, errlen) == -1)
		goto done;
	if (report != NULL)
		buf_printf(report, "activated tenant=%s integration=%s "
		    "version=%u\n", tenant, integration, version);
	rc = 0;
done:
	kfiles_free(&k);
	return rc;
}

/* Replace every record of the pair with one tombstone. */
static int
shred_pair(struct kfiles *k, const char *tenant, const char *integration)
{
	struct drec	*d;
	size_t		 i, j;

	for (i = 0, j = 0; i < k->nd; i++) {
		d = &k->d[i];
		if (strcmp(d->tenant, tenant) == 0 &&
		    strcmp(d->integration, integration) == 0) {
			OPENSSL_cleanse(d->wrapped, sizeof(d->wrapped));
			free(d->tenant);
			free(d->integration);
			continue;
		}
		k->d[j++] = *d;
	}
	k->nd = j;
	if ((d = rec_add(k, tenant, integration)) == NULL)
		return -1;
	d->shredded = 1;
	return 0;
}

int
keys_shred_files(const char *token_keys, const char *data_keys,
    const char *tenant, const char *integration,
    const struct keys_name *pairs, size_t npairs, struct buf *report,
    char *err, size_t errlen)
{
	struct kfiles	 k;
	char		**todo = NULL;
	size_t		 i, j, n = 0;
	int		 rc = -1;

	if (kfiles_read(token_keys, data_keys, &k, err, errlen) == -1)
		return -1;
	/* The integrations to shred: named, or every one the tenant has. */
	if ((todo = calloc(k.nd + npairs + 1, sizeof(*todo))) == NULL)
		goto nomem;
	for (i = 0; i < k.nd + npairs; i++) {
		const char *t = i < k.nd ? k.d[i].tenant : pairs[i - k.nd].tenant;
		const char *ig = i < k.nd ? k.d[i].integration :
		    pairs[i - k.nd].integration;

		if (strcmp(t, tenant) != 0 ||
		    (integration != NULL && strcmp(ig, integration) != 0))
			continue;
		for (j = 0; j < n && strcmp(todo[j], ig) != 0; j++)
			;
		if (j == n && (todo[n++] = strdup(ig)) == NULL)
			goto nomem;
	}
	if (n == 0) {
		snprintf(err, errlen, "%s: tenant %s%s%s has no data key and the "
		    "config does not name it", data_keys, tenant,
		    integration != NULL ? ", integration " : "",
		    integration != NULL ? integration : "");
		goto done;
	}
	for (i = 0; i < n; i++) {
		const struct drec *d = find_rec(&k, tenant, todo[i], 0);

		if (d != NULL && d->shredded)
			continue;
		if (shred_pair(&k, tenant, todo[i]) == -1)
			goto nomem;
		if (report != NULL)
			buf_printf(report, "shredded tenant=%s integration=%s\n",
			    tenant, todo[i]);
	}
	if (save(data_keys, &k, 0, err, errlen) == -1)
		goto done;
	rc = 0;
	goto done;
nomem:
	snprintf(err, errlen, "out of memory");
done:
	for (i = 0; todo != NULL && i < n; i++)
		free(todo[i]);
	free(todo);
	kfiles_free(&k);
	return rc;
}

int
keys_rotate_master_files(const char *token_keys, const char *data_keys,
    uint32_t *version, struct buf *report, char *err, size_t errlen)
{
	struct kfiles	 k;
	struct master	*m, *old;
	unsigned char	 raw[KEYS_DATA_KEY_LEN];
	uint32_t	 max = 0;
	size_t		 i, j;
	int		 rc = -1;

	if (kfiles_read(token_keys, data_keys, &k, err, errlen) == -1)
		return -1;
	for (i = 0; i < k.nm; i++)
		if (k.m[i].version > max)
			max = k.m[i].version;
	if (max == UINT32_MAX ||
	    (m = reallocarray(k.m, k.nm + 1, sizeof(*m))) == NULL)
		goto nomem;
	k.m = m;
	m = &k.m[k.nm];
	memset(m, 0, sizeof(*m));
	if (RAND_priv_bytes(m->key, sizeof(m->key)) != 1)
		goto nomem;
	m->version = max + 1;
	k.nm++;
	for (i = 0; i < k.nm; i++)
		k.m[i].active = k.m[i].version == max + 1;
	/* 1: the new master joins the ring (old ones still unwrap). */
	if (save(token_keys, &k, 1, err, errlen) == -1)
		goto done;
	/* 2: every data key re-wrapped under it. */
	for (i = 0; i < k.nd; i++) {
		if (k.d[i].shredded)
			continue;
		if ((old = (struct master *)(uintptr_t)master_find(&k,
		    k.d[i].master, 0)) == NULL ||
		    kw(old->key, k.d[i].wrapped, WRAPPED_LEN, raw, 0) == -1 ||
		    kw(k.m[k.nm - 1].key, raw, sizeof(raw), k.d[i].wrapped,
		    1) == -1) {
			OPENSSL_cleanse(raw, sizeof(raw));
			snprintf(err, errlen, "%s: tenant %s, integration %s "
			    "version %u: cannot re-wrap", data_keys,
			    k.d[i].tenant, k.d[i].integration, k.d[i].version);
			goto done;
		}
		k.d[i].master = max + 1;
	}
	OPENSSL_cleanse(raw, sizeof(raw));
	if (k.nd > 0 && save(data_keys, &k, 0, err, errlen) == -1)
		goto done;
	/* 3: the retired masters no data key uses any more leave the ring. */
	for (i = 0, j = 0; i < k.nm; i++) {
		if (!k.m[i].active) {
			OPENSSL_cleanse(&k.m[i], sizeof(k.m[i]));
			continue;
		}
		k.m[j++] = k.m[i];
	}
	k.nm = j;
	if (save(token_keys, &k, 1, err, errlen) == -1)
		goto done;
	*version = max + 1;
	for (i = 0, j = 0; i < k.nd; i++)
		j += !k.d[i].shredded;
	if (report != NULL)
		buf_printf(report, "master key version %u active; %zu data keys "
		    "re-wrapped\n", max + 1, j);
	rc = 0;
	goto done;
nomem:
	snprintf(err, errlen, "cannot create a master key");
done:
	kfiles_free(&k);
	return rc;
}

int
keys_load_index(const char *path, unsigned char key[32], char *err,
    size_t errlen)
{
	struct buf	text = { 0 };
	size_t		n;
	int		rc = -1;

	if (read_key_file(path, 0, &text, err, errlen) != 0)
		goto done;
	n = text.len;
	while (n > 0 && (text.data[n - 1] == '\n' || text.data[n - 1] == '\r'))
		n--;
	if (n != 64 || hex_decode(text.data, n, key, 32) == -1) {
		snprintf(err, errlen, "%s: not an audit index key (64 hex "
		    "characters); make one with subgatectl keys init", path);
		goto done;
	}
	rc = 0;
done:
	buf_free(&text);
	return rc;
}
