/* conf.c -- libconfig -> validated, immutable struct conf (the only user of libconfig.h) */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libconfig.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "buf.h"
#include "conf.h"

#define CONF_OBJ_MAX		512
#define CONF_SECRET_MAX		8192
#define CONF_DEFAULT_TOKEN_DOMAIN "tokens.invalid"

/* Loader state: where errors go and what this build can apply. */
struct conf_ld {
	const char	*path;
	const char	*dir;		/* where @include files are found */
	unsigned	 implemented;
	char		*err;
	size_t		 errlen;
	char		*src_path;	/* the source file last read back */
	char		*src_text;
};

/* The actions a rule list may name, in the order they are read. */
static const struct {
	const char		*key;
	enum policy_action	 action;
} conf_rule_keys[] = {
	{ "allow",		POLICY_ALLOW },
	{ "tokenize",		POLICY_TOKENIZE },
	{ "format_preserve",	POLICY_FORMAT_PRESERVE },
	{ "hash",		POLICY_HASH },
	{ "mask",		POLICY_MASK },
};
#define CONF_NRULE_KEYS	(sizeof(conf_rule_keys) / sizeof(conf_rule_keys[0]))

/*
 * The path of a source file as libconfig names it: the main file as given,
 * an @include'd one relative to the include directory (libconfig 1.5
 * records the name as written in the directive).
 */
static void
conf_source_path(const struct conf_ld *ld, const char *file, char *out,
    size_t outlen)
{
	if (file == NULL || strcmp(file, ld->path) == 0 || file[0] == '/' ||
	    strcmp(ld->dir, ".") == 0)
		snprintf(out, outlen, "%s", file != NULL ? file : ld->path);
	else
		snprintf(out, outlen, "%s/%s", ld->dir, file);
}

/*
 * Write "FILE:LINE: message" for setting s into the caller's buffer and
 * return -1. FILE is the file the setting came from (@include aware).
 */
static int	conf_err(struct conf_ld *, const config_setting_t *,
		    const char *, ...) __attribute__((format(printf, 3, 4)));

static int
conf_err(struct conf_ld *ld, const config_setting_t *s, const char *fmt, ...)
{
	va_list		 ap;
	char		 file[PATH_MAX];
	int		 line = 0, n;

	conf_source_path(ld, s != NULL ? config_setting_source_file(s) : NULL,
	    file, sizeof(file));
	if (s != NULL)
		line = config_setting_source_line(s);
	if (line <= 0)
		line = 1;
	n = snprintf(ld->err, ld->errlen, "%s:%d: ", file, line);
	if (n < 0 || (size_t)n >= ld->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* snprintf for object paths: a long name is cut, never overflows. */
static void	conf_objf(char *, size_t, const char *, ...)
		    __attribute__((format(printf, 3, 4)));

static void
conf_objf(char *dst, size_t n, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(dst, n, fmt, ap);
	va_end(ap);
}

/* "obj.key", or "key" at the top level. */
static const char *
conf_join(char *dst, size_t n, const char *obj, const char *key)
{
	if (obj[0] == '\0')
		conf_objf(dst, n, "%s", key);
	else
		conf_objf(dst, n, "%s.%s", obj, key);
	return dst;
}

static int
conf_oom(struct conf_ld *ld, const config_setting_t *s)
{
	return conf_err(ld, s, "out of memory");
}

static int
conf_dup(struct conf_ld *ld, const config_setting_t *s, char **dst,
    const char *src)
{
	free(*dst);
	if ((*dst = strdup(src)) == NULL)
		return conf_oom(ld, s);
	return 0;
}

/* Refuse any member of group g whose name is not in keys (NULL-terminated). */
static int
conf_check_keys(struct conf_ld *ld, const config_setting_t *g,
    const char *obj, const char *const *keys)
{
	const config_setting_t	*m;
	const char		*name;
	char			 o[CONF_OBJ_MAX];
	int			 i, k, n;

	n = config_setting_length(g);
	for (i = 0; i < n; i++) {
		m = config_setting_get_elem(g, (unsigned)i);
		name = config_setting_name(m);
		for (k = 0; keys[k] != NULL; k++)
			if (strcmp(keys[k], name) == 0)
				break;
		if (keys[k] == NULL)
			return conf_err(ld, m, "%s: unknown key \"%s\"; remove "
			    "it or fix its spelling",
			    conf_join(o, sizeof(o), obj, name), name);
	}
	return 0;
}

/*
 * The member key of g as a group. Returns 1 found (*out set), 0 absent
 * (an error when required), -1 error.
 */
static int
conf_get_group(struct conf_ld *ld, const config_setting_t *g, const char *obj,
    const char *key, int required, config_setting_t **out)
{
	config_setting_t	*m;
	char			 o[CONF_OBJ_MAX];

	*out = NULL;
	if ((m = config_setting_get_member(g, key)) == NULL) {
		if (required)
			return conf_err(ld, g, "%s: required setting is "
			    "missing; add it", conf_join(o, sizeof(o), obj, key));
		return 0;
	}
	if (!config_setting_is_group(m))
		return conf_err(ld, m, "%s: must be a group { ... }",
		    conf_join(o, sizeof(o), obj, key));
	*out = m;
	return 1;
}

/* Like conf_get_group, for a string that must not be empty. */
static int
conf_get_str(struct conf_ld *ld, const config_setting_t *g, const char *obj,
    const char *key, int required, const char **out,
    config_setting_t **where)
{
	config_setting_t	*m;
	char			 o[CONF_OBJ_MAX];

	if (where != NULL)
		*where = NULL;
	if ((m = config_setting_get_member(g, key)) == NULL) {
		if (required)
			return conf_err(ld, g, "%s: required setting is "
			    "missing; add it", conf_join(o, sizeof(o), obj, key));
		return 0;
	}
	if (config_setting_type(m) != CONFIG_TYPE_STRING)
		return conf_err(ld, m, "%s: must be a string (in double quotes)",
		    conf_join(o, sizeof(o), obj, key));
	*out = config_setting_get_string(m);
	if (where != NULL)
		*where = m;
	return 1;
}

/* A string setting copied into *dst (kept as is when absent). */
static int
conf_get_strdup(struct conf_ld *ld, const config_setting_t *g,
    const char *obj, const char *key, int required, int allow_empty,
    char **dst)
{
	config_setting_t	*m;
	const char		*s;
	char			 o[CONF_OBJ_MAX];
	int			 rc;

	if ((rc = conf_get_str(ld, g, obj, key, required, &s, &m)) <= 0)
		return rc;
	if (!allow_empty && s[0] == '\0')
		return conf_err(ld, m, "%s: must not be empty",
		    conf_join(o, sizeof(o), obj, key));
	if (conf_dup(ld, m, dst, s) == -1)
		return -1;
	return 1;
}

/* Line n (1-based) of the source file of setting s, or NULL. */
static const char *
conf_source_line(struct conf_ld *ld, const config_setting_t *s, size_t *len)
{
	char		 path[PATH_MAX];
	const char	*p, *e;
	FILE		*f;
	size_t		 cap = 0, n;
	int		 line;

	conf_source_path(ld, config_setting_source_file(s), path, sizeof(path));
	if (ld->src_path == NULL || strcmp(ld->src_path, path) != 0) {
		free(ld->src_path);
		free(ld->src_text);
		ld->src_path = ld->src_text = NULL;
		if ((f = fopen(path, "r")) == NULL)
			return NULL;
		n = (size_t)getdelim(&ld->src_text, &cap, '\0', f);
		fclose(f);
		if (ld->src_text == NULL || n == (size_t)-1 ||
		    (ld->src_path = strdup(path)) == NULL) {
			free(ld->src_text);
			ld->src_text = NULL;
			return NULL;
		}
	}
	p = ld->src_text;
	for (line = config_setting_source_line(s); line > 1 && p != NULL;
	    line--)
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	if (p == NULL)
		return NULL;
	e = strchr(p, '\n');
	*len = e != NULL ? (size_t)(e - p) : strlen(p);
	return p;
}

/*
 * libconfig 1.5 stores a literal beyond 32 bits without an L suffix as a
 * wrapped int (4294967297 reads as 1). Find "key = literal" on the
 * setting's source line and report whether the value read is such a wrap.
 */
static int
conf_int_wrapped(struct conf_ld *ld, const config_setting_t *s,
    const char *key, long long v)
{
	const char	*line, *p, *end;
	char		 num[32];
	size_t		 len, klen = strlen(key), n;
	long long	 lit;
	int		 neg;

	if ((line = conf_source_line(ld, s, &len)) == NULL)
		return 0;
	end = line + len;
	for (p = line; p + klen <= end; p++) {
		if (memcmp(p, key, klen) != 0 || (p > line &&
		    (isalnum((unsigned char)p[-1]) || p[-1] == '_' ||
		    p[-1] == '-' || p[-1] == '*')))
			continue;
		for (p += klen; p < end && (*p == ' ' || *p == '\t'); p++)
			;
		if (p == end || (*p != '=' && *p != ':'))
			continue;
		for (p++; p < end && (*p == ' ' || *p == '\t'); p++)
			;
		neg = p < end && *p == '-';
		if (neg || (p < end && *p == '+'))
			p++;
		for (n = 0; p + n < end && n < sizeof(num) - 1 &&
		    isxdigit((unsigned char)p[n]) | (p[n] == 'x') |
		    (p[n] == 'X'); n++)
			num[n] = p[n];
		num[n] = '\0';
		if (n == 0 || (p + n < end && (p[n] == 'L' || p[n] == 'l')))
			continue;
		errno = 0;
		lit = strtoll(num, NULL, (n > 2 && num[0] == '0' &&
		    (num[1] == 'x' || num[1] == 'X')) ? 16 : 10);
		if (errno != 0)
			return 1;
		if (neg)
			lit = -lit;
		if ((lit > INT_MAX || lit < INT_MIN) &&
		    (long long)(int32_t)(uint32_t)(unsigned long long)lit == v)
			return 1;
	}
	return 0;
}

/* An integer in [min, max]; *out is left alone when absent. */
static int
conf_get_int(struct conf_ld *ld, const config_setting_t *g, const char *obj,
    const char *key, long long min, long long max, long long *out)
{
	config_setting_t	*m;
	long long		 v;
	char			 o[CONF_OBJ_MAX];

	if ((m = config_setting_get_member(g, key)) == NULL)
		return 0;
	if (config_setting_type(m) == CONFIG_TYPE_INT) {
		v = config_setting_get_int(m);
		if (conf_int_wrapped(ld, m, key, v))
			return conf_err(ld, m, "%s: is too large for a 32-bit "
			    "integer; append L to the number (as in "
			    "6710886400L)", conf_join(o, sizeof(o), obj, key));
	} else if (config_setting_type(m) == CONFIG_TYPE_INT64)
		v = config_setting_get_int64(m);
	else
		return conf_err(ld, m, "%s: must be an integer",
		    conf_join(o, sizeof(o), obj, key));
	if (v < min || v > max) {
		if (min == 1 && (max == INT_MAX || max == LLONG_MAX))
			return conf_err(ld, m, "%s: must be greater than 0",
			    conf_join(o, sizeof(o), obj, key));
		if (max == INT_MAX || max == LLONG_MAX)
			return conf_err(ld, m, "%s: must be at least %lld",
			    conf_join(o, sizeof(o), obj, key), min);
		return conf_err(ld, m, "%s: must be between %lld and %lld",
		    conf_join(o, sizeof(o), obj, key), min, max);
	}
	*out = v;
	return 1;
}

static int
conf_get_int_into(struct conf_ld *ld, const config_setting_t *g,
    const char *obj, const char *key, long long min, long long max, int *out)
{
	long long	 v = *out;

	if (conf_get_int(ld, g, obj, key, min, max, &v) == -1)
		return -1;
	*out = (int)v;
	return 0;
}

static int
conf_get_size_into(struct conf_ld *ld, const config_setting_t *g,
    const char *obj, const char *key, long long min, size_t *out)
{
	long long	 v = (long long)*out;

	if (conf_get_int(ld, g, obj, key, min, LLONG_MAX, &v) == -1)
		return -1;
	*out = (size_t)v;
	return 0;
}

static int
conf_get_bool(struct conf_ld *ld, const config_setting_t *g, const char *obj,
    const char *key, int *out)
{
	config_setting_t	*m;
	char			 o[CONF_OBJ_MAX];

	if ((m = config_setting_get_member(g, key)) == NULL)
		return 0;
	if (config_setting_type(m) != CONFIG_TYPE_BOOL)
		return conf_err(ld, m, "%s: must be true or false",
		    conf_join(o, sizeof(o), obj, key));
	*out = config_setting_get_bool(m);
	return 1;
}

/*
 * A list of strings written [ ] or ( ). Returns 1 and the setting in *out,
 * 0 when absent, -1 on a type error (also for a non-string element).
 */
static int
conf_get_names(struct conf_ld *ld, const config_setting_t *g, const char *obj,
    const char *key, config_setting_t **out)
{
	config_setting_t	*m, *e;
	char			 o[CONF_OBJ_MAX];
	int			 i, n;

	*out = NULL;
	if ((m = config_setting_get_member(g, key)) == NULL)
		return 0;
	if (!config_setting_is_array(m) && !config_setting_is_list(m))
		return conf_err(ld, m, "%s: must be a list of strings "
		    "[ \"a\", \"b\" ]", conf_join(o, sizeof(o), obj, key));
	n = config_setting_length(m);
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(m, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return conf_err(ld, e, "%s: every element must be a "
			    "string (in double quotes)",
			    conf_join(o, sizeof(o), obj, key));
		if (config_setting_get_string(e)[0] == '\0')
			return conf_err(ld, e, "%s: an element is empty; "
			    "remove it", conf_join(o, sizeof(o), obj, key));
	}
	*out = m;
	return 1;
}

/* A list ( ) of groups; 0 when absent. */
static int
conf_get_group_list(struct conf_ld *ld, const config_setting_t *g,
    const char *obj, const char *key, config_setting_t **out)
{
	config_setting_t	*m;
	char			 o[CONF_OBJ_MAX];
	int			 i, n;

	*out = NULL;
	if ((m = config_setting_get_member(g, key)) == NULL)
		return 0;
	if (!config_setting_is_list(m))
		return conf_err(ld, m, "%s: must be a list of groups "
		    "( { ... }, { ... } )", conf_join(o, sizeof(o), obj, key));
	n = config_setting_length(m);
	for (i = 0; i < n; i++)
		if (!config_setting_is_group(config_setting_get_elem(m,
		    (unsigned)i)))
			return conf_err(ld, config_setting_get_elem(m,
			    (unsigned)i), "%s: every element must be a group "
			    "{ ... }", conf_join(o, sizeof(o), obj, key));
	*out = m;
	return 1;
}

static int
conf_check_readable(struct conf_ld *ld, const config_setting_t *s,
    const char *objkey, const char *file)
{
	if ((ld->implemented & CONF_NO_FILES) || access(file, R_OK) == 0)
		return 0;
	return conf_err(ld, s, "%s: cannot read \"%s\": %s; check the path "
	    "(relative to the working directory) and its permissions", objkey,
	    file, strerror(errno));
}

/* A file-name setting: copied, and the file must be readable. */
static int
conf_get_file(struct conf_ld *ld, const config_setting_t *g, const char *obj,
    const char *key, int required, char **dst)
{
	config_setting_t	*m;
	char			 o[CONF_OBJ_MAX];
	int			 rc;

	if ((rc = conf_get_strdup(ld, g, obj, key, required, 0, dst)) <= 0)
		return rc;
	m = config_setting_get_member(g, key);
	if (conf_check_readable(ld, m, conf_join(o, sizeof(o), obj, key),
	    *dst) == -1)
		return -1;
	return 1;
}

static int
conf_ident_ok(const char *s)
{
	size_t	 i;

	if (s[0] == '\0' || strlen(s) > 64)
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return 0;
	return 1;
}

/* A DNS host name: LDH labels of 1..63, at most 253 in all, not numeric. */
static int
conf_dns_name_ok(const char *s)
{
	size_t	 len = strlen(s), i, lab = 0;
	int	 alldigit = 1;

	if (len == 0 || len > 253)
		return 0;
	for (i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (lab == 0 || lab > 63 || s[i - 1] == '-' ||
			    s[i - lab] == '-')
				return 0;
			if (i == len && alldigit)
				return 0;
			lab = 0;
			alldigit = 1;
			continue;
		}
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
		if (s[i] < '0' || s[i] > '9')
			alldigit = 0;
		lab++;
	}
	return 1;
}

static int
conf_ip_ok(const char *s)
{
	unsigned char	 a[16];

	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* 0.0.0.0 or :: (binds every address). */
static int
conf_ip_wildcard(const char *s)
{
	unsigned char	 a[16];
	static const unsigned char zero[16];

	if (inet_pton(AF_INET, s, a) == 1)
		return memcmp(a, zero, 4) == 0;
	if (inet_pton(AF_INET6, s, a) == 1)
		return memcmp(a, zero, 16) == 0;
	return 0;
}

/* RFC 9110 token. */
static int
conf_token_ok(const char *s)
{
	size_t	 i;

	if (s[0] == '\0')
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') ||
		    strchr("!#$%&'*+-.^_`|~", s[i]) != NULL))
			return 0;
	return 1;
}

/* Headers that subgate sets, frames or strips itself. */
static int
conf_header_reserved(const char *name)
{
	static const char *const reserved[] = {
		"Host", "Content-Length", "Content-Type", "Transfer-Encoding",
		"Connection", "TE", "Upgrade", "Content-Encoding",
		"Accept-Encoding", "Expect", "Forwarded", "Keep-Alive",
		"Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate",
		"Trailer", NULL
	};
	size_t	 i;

	if (strncasecmp(name, "X-Forwarded-", 12) == 0)
		return 1;
	for (i = 0; reserved[i] != NULL; i++)
		if (strcasecmp(name, reserved[i]) == 0)
			return 1;
	return 0;
}

/*
 * "https://host[:port]" or "https://[v6][:port]". Returns NULL and fills
 * host/port, or a fixed reason.
 */
static const char *
conf_parse_upstream(const char *u, char **host, int *port)
{
	const char	*p, *h, *he, *e;
	char		*hs;
	unsigned char	 a[16];
	long		 v = 0;
	int		 v6 = 0;

	if (strncmp(u, "https://", 8) != 0)
		return "must start with \"https://\" (only TLS upstreams are "
		    "supported)";
	h = u + 8;
	if (*h == '[') {
		h++;
		if ((he = strchr(h, ']')) == NULL)
			return "has an unterminated '[' around an IPv6 address";
		p = he + 1;
		v6 = 1;
	} else {
		for (he = h; *he != '\0' && *he != ':' && *he != '/' &&
		    *he != '?' && *he != '#' && *he != '@'; he++)
			;
		p = he;
	}
	if (he == h)
		return "has no host";
	if (*p == ':') {
		for (e = p + 1; *e >= '0' && *e <= '9' && e - p <= 6; e++)
			v = v * 10 + (*e - '0');
		if (e == p + 1 || *e != '\0' || v < 1 || v > 65535)
			return "has a bad port: use 1..65535";
		p = e;
	} else
		v = 443;
	if (*p != '\0')
		return "must be https://host[:port] with nothing after the port";
	if ((hs = strndup(h, (size_t)(he - h))) == NULL)
		return "out of memory";
	if (v6 ? inet_pton(AF_INET6, hs, a) != 1 :
	    (inet_pton(AF_INET, hs, a) != 1 && !conf_dns_name_ok(hs))) {
		free(hs);
		return v6 ? "has a bad IPv6 address" :
		    "has a bad host: use a DNS name or an IPv4 address";
	}
	*host = hs;
	*port = (int)v;
	return NULL;
}

static int
conf_b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict padded base64 of exactly 32 bytes (44 characters, one '='). */
static int
conf_pin_decode(const char *s, unsigned char out[32])
{
	uint32_t	 acc = 0;
	size_t		 i, o = 0;
	int		 v, bits = 0;

	if (strlen(s) != 44 || s[43] != '=')
		return -1;
	for (i = 0; i < 43; i++) {
		if ((v = conf_b64val(s[i])) < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o < 32)
				out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* 43 * 6 = 258 bits: 256 used, the last 2 must be zero. */
	return o == 32 && acc == 0 ? 0 : -1;
}

static void
conf_header_set_free(struct conf_header_set *set, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		free(set[i].name);
		free(set[i].file);
		if (set[i].value != NULL) {
			OPENSSL_cleanse(set[i].value, set[i].value_len);
			free(set[i].value);
		}
	}
	free(set);
}

static void
conf_account_free(struct conf_account *a)
{
	size_t	 i;

	free(a->upstream);
	free(a->host);
	free(a->server_name);
	free(a->ca);
	free(a->client_certificate);
	free(a->client_private_key);
	for (i = 0; i < a->npins; i++)
		free(a->pins[i]);
	free(a->pins);
	free(a->pin_bin);
	conf_header_set_free(a->set, a->nset);
	free(a->key);
	memset(a, 0, sizeof(*a));
}

static char *
conf_strdup_null(const char *s, int *oom)
{
	char	*d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*oom = 1;
	return d;
}

/* Deep copy (every string its own); 0 or -1 on ENOMEM (dst then freed). */
static int
conf_account_copy(struct conf_account *dst, const struct conf_account *src)
{
	size_t	 i;
	int	 oom = 0;

	memset(dst, 0, sizeof(*dst));
	dst->upstream = conf_strdup_null(src->upstream, &oom);
	dst->host = conf_strdup_null(src->host, &oom);
	dst->port = src->port;
	dst->server_name = conf_strdup_null(src->server_name, &oom);
	dst->ca = conf_strdup_null(src->ca, &oom);
	dst->client_certificate = conf_strdup_null(src->client_certificate,
	    &oom);
	dst->client_private_key = conf_strdup_null(src->client_private_key,
	    &oom);
	dst->key = conf_strdup_null(src->key, &oom);
	if (src->npins > 0) {
		dst->pins = calloc(src->npins, sizeof(*dst->pins));
		dst->pin_bin = calloc(src->npins, sizeof(*dst->pin_bin));
		if (dst->pins == NULL || dst->pin_bin == NULL)
			oom = 1;
		else {
			for (i = 0; i < src->npins; i++)
				dst->pins[i] = conf_strdup_null(src->pins[i],
				    &oom);
			memcpy(dst->pin_bin, src->pin_bin,
			    src->npins * sizeof(*dst->pin_bin));
			dst->npins = src->npins;
		}
	}
	if (src->nset > 0) {
		if ((dst->set = calloc(src->nset, sizeof(*dst->set))) == NULL)
			oom = 1;
		else {
			dst->nset = src->nset;
			for (i = 0; i < src->nset; i++) {
				dst->set[i].name = conf_strdup_null(
				    src->set[i].name, &oom);
				dst->set[i].file = conf_strdup_null(
				    src->set[i].file, &oom);
				if ((dst->set[i].value = malloc(
				    src->set[i].value_len + 1)) == NULL) {
					oom = 1;
					continue;
				}
				memcpy(dst->set[i].value, src->set[i].value,
				    src->set[i].value_len + 1);
				dst->set[i].value_len = src->set[i].value_len;
			}
		}
	}
	if (oom) {
		conf_account_free(dst);
		return -1;
	}
	return 0;
}

/* The pooling identity: length-prefixed fields, so no separator is ambiguous. */
static int
conf_account_key(struct conf_account *a)
{
	struct buf	 b = { 0 };
	const char	*f[6];
	size_t		 i;
	int		 rc = 0;

	f[0] = a->upstream;
	f[1] = a->server_name;
	f[2] = a->ca;
	f[3] = a->client_certificate;
	f[4] = a->client_private_key;
	f[5] = "pins";
	for (i = 0; i < 5; i++)
		rc |= buf_printf(&b, "%zu:%s|", strlen(f[i]), f[i]);
	rc |= buf_printf(&b, "%s=%zu", f[5], a->npins);
	for (i = 0; i < a->npins; i++)
		rc |= buf_printf(&b, ",%s", a->pins[i]);
	if (rc != 0) {
		buf_free(&b);
		return -1;
	}
	free(a->key);
	a->key = b.data;	/* ownership moves to the account */
	return 0;
}

/*
 * Read a secret header value: a regular file nobody but its owner can
 * read, one trailing newline stripped, no CR/LF/NUL or other control bytes
 * left. The value never appears in a message.
 */
static int
conf_read_secret(struct conf_ld *ld, const config_setting_t *s,
    const char *objkey, const char *file, struct conf_header_set *hs)
{
	struct stat	 st;
	char		*v = NULL;
	size_t		 len = 0, i;
	ssize_t		 n;
	int		 fd;

	if (ld->implemented & CONF_NO_FILES) {
		/* Reviewer tools and the audit process never hold secrets. */
		if ((hs->value = strdup("")) == NULL)
			return conf_err(ld, s, "%s: out of memory", objkey);
		hs->value_len = 0;
		return 0;
	}
	if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return conf_err(ld, s, "%s: cannot open \"%s\": %s; check the "
		    "path (relative to the working directory)", objkey, file,
		    strerror(errno));
	if (fstat(fd, &st) == -1) {
		conf_err(ld, s, "%s: cannot stat \"%s\": %s", objkey, file,
		    strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		conf_err(ld, s, "%s: \"%s\" is not a regular file; point it at "
		    "the secret file itself", objkey, file);
		goto fail;
	}
	if ((st.st_mode & 077) != 0) {
		conf_err(ld, s, "%s: secret file is readable by group or "
		    "others: chmod 600 %s", objkey, file);
		goto fail;
	}
	if ((v = malloc(CONF_SECRET_MAX + 1)) == NULL) {
		conf_oom(ld, s);
		goto fail;
	}
	while (len <= CONF_SECRET_MAX) {
		n = read(fd, v + len, CONF_SECRET_MAX + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			conf_err(ld, s, "%s: cannot read \"%s\": %s", objkey,
			    file, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CONF_SECRET_MAX) {
		conf_err(ld, s, "%s: secret file \"%s\" is larger than %d "
		    "bytes; it must hold one header value", objkey, file,
		    CONF_SECRET_MAX);
		goto fail;
	}
	if (len >= 2 && v[len - 2] == '\r' && v[len - 1] == '\n')
		len -= 2;
	else if (len >= 1 && v[len - 1] == '\n')
		len -= 1;
	if (len == 0) {
		conf_err(ld, s, "%s: secret file \"%s\" is empty; write the "
		    "header value into it", objkey, file);
		goto fail;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '\r' || c == '\n' || c == '\0') {
			conf_err(ld, s, "%s: secret file \"%s\" holds CR, LF "
			    "or NUL besides one trailing newline; a header "
			    "value must be a single line", objkey, file);
			goto fail;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			conf_err(ld, s, "%s: secret file \"%s\" holds control "
			    "characters; a header value must be printable",
			    objkey, file);
			goto fail;
		}
	}
	v[len] = '\0';
	close(fd);
	hs->value = v;
	hs->value_len = len;
	/* Wipe the stripped tail too. */
	OPENSSL_cleanse(v + len + 1, CONF_SECRET_MAX - len);
	return 0;

fail:
	if (v != NULL) {
		OPENSSL_cleanse(v, CONF_SECRET_MAX + 1);
		free(v);
	}
	close(fd);
	return -1;
}

/* headers.set = ( { name = "..."; file = "..."; }, ... ): replaces acct->set. */
static int
conf_parse_header_set(struct conf_ld *ld, const config_setting_t *h,
    const char *obj, const struct policy_names *allow,
    struct conf_account *acct)
{
	static const char *const keys[] = { "name", "file", NULL };
	config_setting_t	*l, *e, *fs;
	struct conf_header_set	*set = NULL;
	const char		*name, *file;
	char			 o[CONF_OBJ_MAX], ok[CONF_OBJ_MAX];
	size_t			 n = 0, i, k;
	int			 rc;

	if ((rc = conf_get_group_list(ld, h, obj, "set", &l)) <= 0)
		return rc;
	if (config_setting_length(l) > 0 &&
	    (set = calloc((size_t)config_setting_length(l),
	    sizeof(*set))) == NULL)
		return conf_oom(ld, l);
	for (i = 0; i < (size_t)config_setting_length(l); i++) {
		e = config_setting_get_elem(l, (unsigned)i);
		conf_objf(o, sizeof(o), "%s.set", obj);
		if (conf_get_str(ld, e, o, "name", 1, &name, NULL) == -1)
			goto fail;
		conf_objf(o, sizeof(o), "%s.set[%s]", obj, name);
		if (conf_check_keys(ld, e, o, keys) == -1 ||
		    conf_get_str(ld, e, o, "file", 1, &file, &fs) == -1)
			goto fail;
		if (!conf_token_ok(name)) {
			conf_err(ld, e, "%s.name: \"%s\" is not a valid header "
			    "name", o, name);
			goto fail;
		}
		if (conf_header_reserved(name)) {
			conf_err(ld, e, "%s.name: header \"%s\" is set by "
			    "subgate itself; remove this entry", o, name);
			goto fail;
		}
		if (allow != NULL && policy_names_lookup(allow, name,
		    strlen(name)) != POLICY_DROP) {
			conf_err(ld, e, "%s.name: header \"%s\" is both "
			    "allowed from the client and set from a file; "
			    "remove it from headers.allow", o, name);
			goto fail;
		}
		for (k = 0; k < n; k++)
			if (strcasecmp(set[k].name, name) == 0) {
				conf_err(ld, e, "%s.name: header \"%s\" is set "
				    "twice; keep one entry", o, name);
				goto fail;
			}
		if ((set[n].name = strdup(name)) == NULL ||
		    (set[n].file = strdup(file)) == NULL) {
			n++;
			conf_oom(ld, e);
			goto fail;
		}
		n++;
		if (conf_read_secret(ld, fs, conf_join(ok, sizeof(ok), o,
		    "file"), file, &set[n - 1]) == -1)
			goto fail;
	}
	conf_header_set_free(acct->set, acct->nset);
	acct->set = set;
	acct->nset = n;
	return 1;

fail:
	conf_header_set_free(set, n);
	return -1;
}

/*
 * headers = { allow = [...]; set = (...); } of an integration (allowp !=
 * NULL: allow accepted, *allowp created) or of a tenant override (set only;
 * allow_check is the integration's allow list).
 */
static int
conf_parse_headers(struct conf_ld *ld, const config_setting_t *g,
    const char *obj, struct policy_names **allowp,
    const struct policy_names *allow_check, struct conf_account *acct)
{
	static const char *const ikeys[] = { "allow", "set", NULL };
	static const char *const okeys[] = { "set", NULL };
	config_setting_t	*h, *l, *e;
	const char		*name;
	char			 o[CONF_OBJ_MAX], pe[256];
	int			 i, rc;

	if (allowp != NULL && (*allowp = policy_names_new(1)) == NULL)
		return conf_oom(ld, g);
	conf_objf(o, sizeof(o), "%s.headers", obj);
	if ((rc = conf_get_group(ld, g, obj, "headers", 0, &h)) <= 0)
		return rc;
	if (conf_check_keys(ld, h, o, allowp != NULL ? ikeys : okeys) == -1)
		return -1;
	if (allowp != NULL) {
		if (conf_get_names(ld, h, o, "allow", &l) == -1)
			return -1;
		for (i = 0; l != NULL && i < config_setting_length(l); i++) {
			e = config_setting_get_elem(l, (unsigned)i);
			name = config_setting_get_string(e);
			if (!conf_token_ok(name))
				return conf_err(ld, e, "%s.allow: \"%s\" is not "
				    "a valid header name", o, name);
			if (conf_header_reserved(name))
				return conf_err(ld, e, "%s.allow: header \"%s\" "
				    "is set by subgate itself and cannot be "
				    "allowed through; remove it", o, name);
			if (policy_names_lookup(*allowp, name, strlen(name)) !=
			    POLICY_DROP)
				return conf_err(ld, e, "%s.allow: header \"%s\" "
				    "is listed twice; remove one", o, name);
			if (policy_names_add(*allowp, name, POLICY_ALLOW, pe,
			    sizeof(pe)) == -1)
				return conf_err(ld, e, "%s.allow: %s", o, pe);
		}
		allow_check = *allowp;
	}
	return conf_parse_header_set(ld, h, o, allow_check, acct) == -1 ? -1 :
	    0;
}

/*
 * The account fields of an integration (all required but pin_sha256) or
 * of a tenant override (each optional, replacing what acct holds).
 */
static int
conf_parse_account(struct conf_ld *ld, const config_setting_t *g,
    const char *obj, int is_override, struct conf_account *acct)
{
	static const char *const files[] = { "ca", "client_certificate",
	    "client_private_key" };
	config_setting_t	*m, *l, *e;
	char			*host = NULL, **pins = NULL;
	unsigned char		(*bin)[32] = NULL;
	const char		*reason;
	char			 o[CONF_OBJ_MAX];
	char			**dst[3];
	size_t			 i, n;
	int			 port, rc;

	if ((rc = conf_get_strdup(ld, g, obj, "upstream", !is_override, 0,
	    &acct->upstream)) == -1)
		return -1;
	if (rc == 1) {
		m = config_setting_get_member(g, "upstream");
		if ((reason = conf_parse_upstream(acct->upstream, &host,
		    &port)) != NULL)
			return conf_err(ld, m, "%s.upstream: \"%s\" %s", obj,
			    acct->upstream, reason);
		free(acct->host);
		acct->host = host;
		acct->port = port;
	}
	if ((rc = conf_get_strdup(ld, g, obj, "server_name", !is_override, 0,
	    &acct->server_name)) == -1)
		return -1;
	if (rc == 1 && !conf_dns_name_ok(acct->server_name))
		return conf_err(ld, config_setting_get_member(g, "server_name"),
		    "%s.server_name: \"%s\" is not a DNS name; give the name "
		    "the processor's certificate is issued for", obj,
		    acct->server_name);
	dst[0] = &acct->ca;
	dst[1] = &acct->client_certificate;
	dst[2] = &acct->client_private_key;
	for (i = 0; i < 3; i++)
		if (conf_get_file(ld, g, obj, files[i], !is_override,
		    dst[i]) == -1)
			return -1;
	if (conf_get_names(ld, g, obj, "pin_sha256", &l) == -1)
		return -1;
	if (l == NULL)
		return 0;
	n = (size_t)config_setting_length(l);
	if (n > 0 && ((pins = calloc(n, sizeof(*pins))) == NULL ||
	    (bin = calloc(n, sizeof(*bin))) == NULL)) {
		conf_oom(ld, l);
		goto fail;
	}
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(l, (unsigned)i);
		conf_objf(o, sizeof(o), "%s.pin_sha256", obj);
		if (conf_pin_decode(config_setting_get_string(e), bin[i]) == -1) {
			conf_err(ld, e, "%s: \"%s\" is not the base64 of 32 "
			    "bytes (the SHA-256 of the processor's public "
			    "key)", o, config_setting_get_string(e));
			goto fail;
		}
		if ((pins[i] = strdup(config_setting_get_string(e))) == NULL) {
			conf_oom(ld, e);
			goto fail;
		}
	}
	for (i = 0; i < acct->npins; i++)
		free(acct->pins[i]);
	free(acct->pins);
	free(acct->pin_bin);
	acct->pins = pins;
	acct->pin_bin = bin;
	acct->npins = n;
	return 0;

fail:
	for (i = 0; pins != NULL && i < n; i++)
		free(pins[i]);
	free(pins);
	free(bin);
	return -1;
}

static int
conf_action_check(struct conf_ld *ld, const config_setting_t *s,
    const char *objkey, enum policy_action a)
{
	if (ld->implemented & (1u << a) & ~CONF_NO_FILES)
		return 0;
	return conf_err(ld, s, "%s: action \"%s\" is not implemented in this "
	    "build; remove the rule or upgrade subgate", objkey,
	    policy_action_name(a));
}

/*
 * Field-path rules from the lists keys[i] of group g into r (created
 * here). Each non-empty list needs its action implemented.
 */
static int
conf_parse_rule_lists(struct conf_ld *ld, const config_setting_t *g,
    const char *obj, const char *const *keys, const enum policy_action *acts,
    size_t nkeys, struct policy_rules **rp)
{
	config_setting_t	*l, *e;
	char			 ok[CONF_OBJ_MAX], pe[256];
	size_t			 k;
	int			 i;

	if ((*rp = policy_rules_new()) == NULL)
		return conf_oom(ld, g);
	for (k = 0; k < nkeys; k++) {
		if (conf_get_names(ld, g, obj, keys[k], &l) == -1)
			return -1;
		if (l == NULL || config_setting_length(l) == 0)
			continue;
		conf_join(ok, sizeof(ok), obj, keys[k]);
		if (conf_action_check(ld, l, ok, acts[k]) == -1)
			return -1;
		for (i = 0; i < config_setting_length(l); i++) {
			e = config_setting_get_elem(l, (unsigned)i);
			if (policy_rules_add(*rp, config_setting_get_string(e),
			    acts[k], pe, sizeof(pe)) == -1)
				return conf_err(ld, e, "%s: %s", ok, pe);
		}
	}
	return 0;
}

/* request = { allow ...; subjects = [...]; } */
static int
conf_parse_request(struct conf_ld *ld, const config_setting_t *g,
    const char *obj, struct conf_endpoint *ep)
{
	static const char *const keys[] = { "allow", "tokenize",
	    "format_preserve", "hash", "mask", "subjects", NULL };
	const char		*rkeys[CONF_NRULE_KEYS];
	enum policy_action	 acts[CONF_NRULE_KEYS];
	config_setting_t	*l, *e;
	const char		*subj, *rp;
	enum policy_action	 a;
	char			 ok[CONF_OBJ_MAX], pe[256];
	size_t			 k, j;
	int			 i;

	if (conf_check_keys(ld, g, obj, keys) == -1)
		return -1;
	for (k = 0; k < CONF_NRULE_KEYS; k++) {
		rkeys[k] = conf_rule_keys[k].key;
		acts[k] = conf_rule_keys[k].action;
	}
	ep->has_request = 1;
	if (conf_parse_rule_lists(ld, g, obj, rkeys, acts, CONF_NRULE_KEYS,
	    &ep->request) == -1)
		return -1;
	if (conf_get_names(ld, g, obj, "subjects", &l) == -1)
		return -1;
	if (l == NULL)
		return 0;
	conf_join(ok, sizeof(ok), obj, "subjects");
	if ((ep->subjects = policy_rules_new()) == NULL)
		return conf_oom(ld, l);
	for (i = 0; i < config_setting_length(l); i++) {
		e = config_setting_get_elem(l, (unsigned)i);
		subj = config_setting_get_string(e);
		for (j = 0; j < policy_rules_count(ep->request); j++) {
			rp = policy_rules_path(ep->request, j, &a);
			if (rp != NULL && strcmp(rp, subj) == 0)
				break;
		}
		if (j == policy_rules_count(ep->request))
			return conf_err(ld, e, "%s: subject \"%s\" is not "
			    "listed under any action of this request block; "
			    "list it under allow, tokenize, format_preserve, "
			    "hash or mask", ok, subj);
		/* Any action but allow: the daemon walks these paths with
		 * policy_collect_json, which hands only non-allow values to
		 * its callback (the subject hasher); a form body's fields are
		 * decided by policy_rules_root, for which any action but
		 * drop matches. */
		if (policy_rules_add(ep->subjects, subj, POLICY_HASH, pe,
		    sizeof(pe)) == -1)
			return conf_err(ld, e, "%s: %s", ok, pe);
	}
	return 0;
}

/* query = { allow = [...]; hash = [...]; ... } -> case-sensitive names. */
static int
conf_parse_query(struct conf_ld *ld, const config_setting_t *g,
    const char *obj, struct conf_endpoint *ep)
{
	static const char *const keys[] = { "allow", "tokenize",
	    "format_preserve", "hash", "mask", NULL };
	config_setting_t	*l, *e;
	const char		*name;
	enum policy_action	 prev;
	char			 ok[CONF_OBJ_MAX], pe[256];
	size_t			 k;
	int			 i;

	if (conf_check_keys(ld, g, obj, keys) == -1)
		return -1;
	if ((ep->query = policy_names_new(0)) == NULL)
		return conf_oom(ld, g);
	for (k = 0; k < CONF_NRULE_KEYS; k++) {
		if (conf_get_names(ld, g, obj, conf_rule_keys[k].key, &l) == -1)
			return -1;
		if (l == NULL || config_setting_length(l) == 0)
			continue;
		conf_join(ok, sizeof(ok), obj, conf_rule_keys[k].key);
		if (conf_action_check(ld, l, ok, conf_rule_keys[k].action) == -1)
			return -1;
		for (i = 0; i < config_setting_length(l); i++) {
			e = config_setting_get_elem(l, (unsigned)i);
			name = config_setting_get_string(e);
			prev = policy_names_lookup(ep->query, name,
			    strlen(name));
			if (prev != POLICY_DROP)
				return conf_err(ld, e, "%s: query parameter "
				    "\"%s\" is already listed under %s; keep "
				    "one", ok, name, policy_action_name(prev));
			if (policy_names_add(ep->query, name,
			    conf_rule_keys[k].action, pe, sizeof(pe)) == -1)
				return conf_err(ld, e, "%s: %s", ok, pe);
		}
	}
	return 0;
}

/* params = { id = "allow"; }: one action per named segment, in pattern order. */
static int
conf_parse_params(struct conf_ld *ld, const config_setting_t *eg,
    const char *obj, struct conf_endpoint *ep)
{
	config_setting_t	*g, *m;
	const char		*name, *v;
	enum policy_action	 a;
	char			 o[CONF_OBJ_MAX], ok[CONF_OBJ_MAX];
	size_t			 i, k;
	int			 j;

	if (conf_get_group(ld, eg, obj, "params", 0, &g) == -1)
		return -1;
	conf_objf(o, sizeof(o), "%s.params", obj);
	for (j = 0; g != NULL && j < config_setting_length(g); j++) {
		m = config_setting_get_elem(g, (unsigned)j);
		name = config_setting_name(m);
		conf_join(ok, sizeof(ok), o, name);
		for (i = 0; i < ep->pattern.nseg; i++)
			if (ep->pattern.is_param[i] &&
			    strcmp(ep->pattern.seg[i], name) == 0)
				break;
		if (i == ep->pattern.nseg)
			return conf_err(ld, m, "%s: \"%s\" is not a named "
			    "segment of the path \"%s\"; remove it or add "
			    "{%s} to the path", ok, name, ep->path, name);
		if (config_setting_type(m) != CONFIG_TYPE_STRING)
			return conf_err(ld, m, "%s: must be a string (in "
			    "double quotes)", ok);
		v = config_setting_get_string(m);
		if (policy_action_parse(v, &a) == -1 || a == POLICY_DROP)
			return conf_err(ld, m, "%s: \"%s\" is not an action: "
			    "use allow, tokenize, format_preserve, hash or "
			    "mask", ok, v);
		if (conf_action_check(ld, m, ok, a) == -1)
			return -1;
	}
	if (ep->pattern.nparams == 0)
		return 0;
	if ((ep->params = calloc(ep->pattern.nparams,
	    sizeof(*ep->params))) == NULL)
		return conf_oom(ld, eg);
	for (i = 0, k = 0; i < ep->pattern.nseg; i++) {
		if (!ep->pattern.is_param[i])
			continue;
		name = ep->pattern.seg[i];
		if (g == NULL || (m = config_setting_get_member(g,
		    name)) == NULL)
			return conf_err(ld, g != NULL ? g : eg, "%s: named "
			    "segment {%s} has no action; add params = { %s = "
			    "\"allow\"; } (or another action)", o, name, name);
		policy_action_parse(config_setting_get_string(m), &a);
		if ((ep->params[k].name = strdup(name)) == NULL)
			return conf_oom(ld, m);
		ep->params[k].action = a;
		k++;
	}
	return 0;
}

/* Same method and the same path shape (parameters match anything). */
static int
conf_endpoint_same(const struct conf_endpoint *a, const struct conf_endpoint *b)
{
	size_t	 i;

	if (strcmp(a->method, b->method) != 0 ||
	    a->pattern.nseg != b->pattern.nseg)
		return 0;
	for (i = 0; i < a->pattern.nseg; i++) {
		if (a->pattern.is_param[i] != b->pattern.is_param[i])
			return 0;
		if (!a->pattern.is_param[i] &&
		    strcmp(a->pattern.seg[i], b->pattern.seg[i]) != 0)
			return 0;
	}
	return 1;
}

static int
conf_parse_endpoint(struct conf_ld *ld, const config_setting_t *g,
    const char *igobj, struct conf_integration *ig, size_t idx)
{
	static const char *const keys[] = { "method", "path", "params",
	    "query", "request", "response", NULL };
	static const char *const methods[] = { "GET", "HEAD", "POST", "PUT",
	    "PATCH", "DELETE", "OPTIONS", NULL };
	static const char *const rkeys[] = { "detokenize", "format_preserve" };
	static const enum policy_action racts[] = { POLICY_TOKENIZE,
	    POLICY_FORMAT_PRESERVE };
	static const char *const respkeys[] = { "detokenize",
	    "format_preserve", NULL };
	struct conf_endpoint	*ep = &ig->endpoints[idx];
	config_setting_t	*m, *sub;
	const char		*method, *path;
	char			 o[CONF_OBJ_MAX], so[CONF_OBJ_MAX], re[128];
	size_t			 i;

	conf_objf(o, sizeof(o), "%s.endpoints[#%zu]", igobj, idx + 1);
	ep->line = config_setting_source_line(g);
	if (conf_get_str(ld, g, o, "method", 1, &method, &m) == -1)
		return -1;
	for (i = 0; methods[i] != NULL; i++)
		if (strcmp(methods[i], method) == 0)
			break;
	if (methods[i] == NULL)
		return conf_err(ld, m, "%s.method: \"%s\" is not one of GET, "
		    "HEAD, POST, PUT, PATCH, DELETE, OPTIONS (upper case)", o,
		    method);
	if (conf_get_str(ld, g, o, "path", 1, &path, &m) == -1)
		return -1;
	conf_objf(o, sizeof(o), "%s.endpoints[%s %s]", igobj, method, path);
	if ((ep->method = strdup(method)) == NULL ||
	    (ep->path = strdup(path)) == NULL)
		return conf_oom(ld, g);
	if (conf_check_keys(ld, g, o, keys) == -1)
		return -1;
	if (route_pattern_compile(path, 1, &ep->pattern, re, sizeof(re)) == -1)
		return conf_err(ld, m, "%s.path: %s", o, re);
	for (i = 0; i < idx; i++)
		if (conf_endpoint_same(&ig->endpoints[i], ep))
			return conf_err(ld, g, "%s: duplicate endpoint: the "
			    "same method and path as endpoints[%s %s] at line "
			    "%d; remove one", o, ig->endpoints[i].method,
			    ig->endpoints[i].path, ig->endpoints[i].line);
	if (conf_parse_params(ld, g, o, ep) == -1)
		return -1;
	if (conf_get_group(ld, g, o, "query", 0, &sub) == -1)
		return -1;
	conf_join(so, sizeof(so), o, "query");
	if (sub != NULL && conf_parse_query(ld, sub, so, ep) == -1)
		return -1;
	if (conf_get_group(ld, g, o, "request", 0, &sub) == -1)
		return -1;
	conf_join(so, sizeof(so), o, "request");
	if (sub != NULL && conf_parse_request(ld, sub, so, ep) == -1)
		return -1;
	if (conf_get_group(ld, g, o, "response", 0, &sub) == -1)
		return -1;
	conf_join(so, sizeof(so), o, "response");
	if (sub != NULL && (conf_check_keys(ld, sub, so, respkeys) == -1 ||
	    conf_parse_rule_lists(ld, sub, so, rkeys, racts, 2,
	    &ep->response) == -1))
		return -1;
	return 0;
}

static int
conf_parse_integration(struct conf_ld *ld, const config_setting_t *g,
    struct conf *c, size_t idx)
{
	static const char *const keys[] = { "name", "prefix", "upstream",
	    "server_name", "ca", "client_certificate", "client_private_key",
	    "pin_sha256", "token_domain", "headers", "endpoints", NULL };
	struct conf_integration	*ig = &c->integrations[idx], *o2;
	config_setting_t	*m, *l;
	const char		*name, *prefix;
	char			 o[CONF_OBJ_MAX], re[128];
	size_t			 i, k, n;
	int			 rc;

	ig->line = config_setting_source_line(g);
	conf_objf(o, sizeof(o), "integrations[#%zu]", idx + 1);
	if (conf_get_str(ld, g, o, "name", 1, &name, &m) == -1)
		return -1;
	if (!conf_ident_ok(name))
		return conf_err(ld, m, "%s.name: \"%s\" must be 1 to 64 of "
		    "a-z 0-9 _ -", o, name);
	for (i = 0; i < idx; i++)
		if (strcmp(c->integrations[i].name, name) == 0)
			return conf_err(ld, m, "integrations[%s].name: "
			    "duplicate integration \"%s\" (first defined at "
			    "line %d); rename or remove one", name, name,
			    c->integrations[i].line);
	conf_objf(o, sizeof(o), "integrations[%s]", name);
	if ((ig->name = strdup(name)) == NULL)
		return conf_oom(ld, g);
	if (conf_check_keys(ld, g, o, keys) == -1)
		return -1;

	if (conf_get_str(ld, g, o, "prefix", 1, &prefix, &m) == -1)
		return -1;
	if ((ig->prefix = strdup(prefix)) == NULL)
		return conf_oom(ld, m);
	if (route_pattern_compile(prefix, 0, &ig->prefix_pat, re,
	    sizeof(re)) == -1)
		return conf_err(ld, m, "%s.prefix: %s", o, re);
	if (ig->prefix_pat.nseg == 0)
		return conf_err(ld, m, "%s.prefix: must name at least one "
		    "segment, such as \"/%s\"", o, name);
	for (i = 0; i < idx; i++) {
		o2 = &c->integrations[i];
		n = o2->prefix_pat.nseg < ig->prefix_pat.nseg ?
		    o2->prefix_pat.nseg : ig->prefix_pat.nseg;
		for (k = 0; k < n; k++)
			if (strcmp(o2->prefix_pat.seg[k],
			    ig->prefix_pat.seg[k]) != 0)
				break;
		if (k < n)
			continue;
		if (o2->prefix_pat.nseg == ig->prefix_pat.nseg)
			return conf_err(ld, m, "%s.prefix: \"%s\" is already "
			    "the prefix of integration \"%s\"; prefixes must "
			    "be unique", o, prefix, o2->name);
		return conf_err(ld, m, "%s.prefix: \"%s\" overlaps the prefix "
		    "\"%s\" of integration \"%s\" (one is a leading part of "
		    "the other); routing would be ambiguous, choose disjoint "
		    "prefixes", o, prefix, o2->prefix, o2->name);
	}

	if (conf_parse_account(ld, g, o, 0, &ig->account) == -1)
		return -1;
	if ((rc = conf_get_strdup(ld, g, o, "token_domain", 0, 0,
	    &ig->token_domain)) == -1)
		return -1;
	if (rc == 0 && conf_dup(ld, g, &ig->token_domain,
	    CONF_DEFAULT_TOKEN_DOMAIN) == -1)
		return -1;
	if (!conf_dns_name_ok(ig->token_domain))
		return conf_err(ld, config_setting_get_member(g,
		    "token_domain"), "%s.token_domain: \"%s\" is not a DNS "
		    "name", o, ig->token_domain);
	if (conf_parse_headers(ld, g, o, &ig->headers_allow, NULL,
	    &ig->account) == -1)
		return -1;
	if (conf_account_key(&ig->account) == -1)
		return conf_oom(ld, g);

	if (conf_get_group_list(ld, g, o, "endpoints", &l) == -1)
		return -1;
	if (l == NULL || config_setting_length(l) == 0)
		return 0;
	n = (size_t)config_setting_length(l);
	if ((ig->endpoints = calloc(n, sizeof(*ig->endpoints))) == NULL)
		return conf_oom(ld, l);
	for (i = 0; i < n; i++) {
		ig->nendpoints = i + 1;
		if (conf_parse_endpoint(ld, config_setting_get_elem(l,
		    (unsigned)i), o, ig, i) == -1)
			return -1;
	}
	return 0;
}

/* One element of a tenant's integrations list: a name or an override group. */
static int
conf_parse_use(struct conf_ld *ld, const config_setting_t *e,
    const char *tobj, struct conf *c, struct conf_tenant *t)
{
	static const char *const keys[] = { "name", "upstream", "server_name",
	    "ca", "client_certificate", "client_private_key", "pin_sha256",
	    "headers", NULL };
	const struct conf_integration	*ig;
	struct conf_use			*u = &t->uses[t->nuses];
	config_setting_t		*nm;
	const config_setting_t		*m;
	const char			*name;
	char				 o[CONF_OBJ_MAX];
	size_t				 i;
	int				 group;

	group = config_setting_is_group(e);
	if (group) {
		conf_objf(o, sizeof(o), "%s.integrations", tobj);
		if (conf_get_str(ld, e, o, "name", 1, &name, &nm) == -1)
			return -1;
		m = nm;
	} else if (config_setting_type(e) == CONFIG_TYPE_STRING) {
		name = config_setting_get_string(e);
		m = e;
	} else
		return conf_err(ld, e, "%s.integrations: every element must be "
		    "an integration name or a group { name = ...; }", tobj);
	if ((ig = conf_integration_by_name(c, name)) == NULL)
		return conf_err(ld, m, "%s.integrations: unknown integration "
		    "\"%s\"; define it under integrations or fix the name",
		    tobj, name);
	for (i = 0; i < t->nuses; i++)
		if (t->uses[i].integration == ig)
			return conf_err(ld, m, "%s.integrations: integration "
			    "\"%s\" is listed twice; keep one", tobj, name);
	if (conf_account_copy(&u->account, &ig->account) == -1)
		return conf_oom(ld, e);
	u->integration = ig;
	t->nuses++;
	if (!group)
		return 0;
	conf_objf(o, sizeof(o), "%s.integrations[%s]", tobj, name);
	if (conf_check_keys(ld, e, o, keys) == -1 ||
	    conf_parse_account(ld, e, o, 1, &u->account) == -1 ||
	    conf_parse_headers(ld, e, o, NULL, ig->headers_allow,
	    &u->account) == -1)
		return -1;
	if (conf_account_key(&u->account) == -1)
		return conf_oom(ld, e);
	return 0;
}

static int
conf_parse_tenant(struct conf_ld *ld, const config_setting_t *g,
    struct conf *c, size_t idx)
{
	static const char *const keys[] = { "id", "clients",
	    "phone_country_code", "integrations", NULL };
	struct conf_tenant	*t = &c->tenants[idx];
	config_setting_t	*m, *l, *e;
	const char		*id, *cl;
	char			 o[CONF_OBJ_MAX];
	size_t			 i, j, k, n;

	t->line = config_setting_source_line(g);
	conf_objf(o, sizeof(o), "tenants[#%zu]", idx + 1);
	if (conf_get_str(ld, g, o, "id", 1, &id, &m) == -1)
		return -1;
	if (!conf_ident_ok(id))
		return conf_err(ld, m, "%s.id: \"%s\" must be 1 to 64 of "
		    "a-z 0-9 _ -", o, id);
	for (i = 0; i < idx; i++)
		if (strcmp(c->tenants[i].id, id) == 0)
			return conf_err(ld, m, "tenants[%s].id: duplicate "
			    "tenant \"%s\" (first defined at line %d); rename "
			    "or remove one", id, id, c->tenants[i].line);
	conf_objf(o, sizeof(o), "tenants[%s]", id);
	if ((t->id = strdup(id)) == NULL)
		return conf_oom(ld, g);
	if (conf_check_keys(ld, g, o, keys) == -1)
		return -1;

	if (conf_get_names(ld, g, o, "clients", &l) == -1)
		return -1;
	if (l == NULL)
		return conf_err(ld, g, "%s.clients: required setting is "
		    "missing; add it", o);
	if ((n = (size_t)config_setting_length(l)) == 0)
		return conf_err(ld, l, "%s.clients: is empty; list the client "
		    "certificate identities of this tenant", o);
	if ((t->clients = calloc(n, sizeof(*t->clients))) == NULL)
		return conf_oom(ld, l);
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(l, (unsigned)i);
		cl = config_setting_get_string(e);
		for (j = 0; j <= idx; j++) {
			const struct conf_tenant *t2 = &c->tenants[j];

			for (k = 0; k < t2->nclients; k++)
				if (strcmp(t2->clients[k], cl) == 0)
					return conf_err(ld, e, "%s.clients: "
					    "client \"%s\" is already a client "
					    "of tenant \"%s\"; an identity "
					    "belongs to one tenant", o, cl,
					    t2->id);
		}
		if ((t->clients[i] = strdup(cl)) == NULL)
			return conf_oom(ld, e);
		t->nclients = i + 1;
	}

	if (conf_get_strdup(ld, g, o, "phone_country_code", 0, 1,
	    &t->phone_country_code) == -1)
		return -1;
	if (t->phone_country_code == NULL &&
	    (t->phone_country_code = strdup("")) == NULL)
		return conf_oom(ld, g);
	if (strlen(t->phone_country_code) > 4 ||
	    strspn(t->phone_country_code, "0123456789") !=
	    strlen(t->phone_country_code))
		return conf_err(ld, config_setting_get_member(g,
		    "phone_country_code"), "%s.phone_country_code: must be up "
		    "to 4 digits without '+' or \"00\", such as \"1\" or "
		    "\"49\"", o);

	if ((m = config_setting_get_member(g, "integrations")) == NULL)
		return 0;
	if (!config_setting_is_list(m) && !config_setting_is_array(m))
		return conf_err(ld, m, "%s.integrations: must be a list ( ) of "
		    "integration names or groups { name = ...; }", o);
	n = (size_t)config_setting_length(m);
	if (n == 0)
		return 0;
	if ((t->uses = calloc(n, sizeof(*t->uses))) == NULL)
		return conf_oom(ld, m);
	for (i = 0; i < n; i++)
		if (conf_parse_use(ld, config_setting_get_elem(m, (unsigned)i),
		    o, c, t) == -1)
			return -1;
	return 0;
}

static int
conf_parse_listen(struct conf_ld *ld, const config_setting_t *root,
    struct conf *c)
{
	static const char *const keys[] = { "address", "port", "workers",
	    NULL };
	config_setting_t	*g;

	if (conf_get_group(ld, root, "", "listen", 1, &g) == -1 ||
	    conf_check_keys(ld, g, "listen", keys) == -1)
		return -1;
	if (conf_get_strdup(ld, g, "listen", "address", 0, 0,
	    &c->listen_address) == -1)
		return -1;
	if (!conf_ip_ok(c->listen_address))
		return conf_err(ld, config_setting_get_member(g, "address"),
		    "listen.address: \"%s\" is not an IPv4 or IPv6 address; "
		    "write an address such as \"127.0.0.1\" or \"::\"",
		    c->listen_address);
	if (conf_get_int_into(ld, g, "listen", "port", 1, 65535,
	    &c->listen_port) == -1 ||
	    conf_get_int_into(ld, g, "listen", "workers", 1, 64,
	    &c->workers) == -1)
		return -1;
	return 0;
}

static int
conf_parse_tls(struct conf_ld *ld, const config_setting_t *root,
    struct conf *c)
{
	static const char *const keys[] = { "certificate", "private_key",
	    "client_ca", "crl", "crl_refresh_s", "min_version", NULL };
	config_setting_t	*g, *m;
	const char		*v;
	int			 rc;

	if (conf_get_group(ld, root, "", "tls", 1, &g) == -1 ||
	    conf_check_keys(ld, g, "tls", keys) == -1 ||
	    conf_get_file(ld, g, "tls", "certificate", 1,
	    &c->tls_certificate) == -1 ||
	    conf_get_file(ld, g, "tls", "private_key", 1,
	    &c->tls_private_key) == -1 ||
	    conf_get_file(ld, g, "tls", "client_ca", 1,
	    &c->tls_client_ca) == -1 ||
	    conf_get_file(ld, g, "tls", "crl", 0, &c->tls_crl) == -1 ||
	    conf_get_int_into(ld, g, "tls", "crl_refresh_s", 1, INT_MAX,
	    &c->tls_crl_refresh_s) == -1)
		return -1;
	if ((rc = conf_get_str(ld, g, "tls", "min_version", 0, &v, &m)) == -1)
		return -1;
	if (rc == 1) {
		if (strcmp(v, "TLSv1.2") == 0)
			c->tls_min_version = TLS1_2_VERSION;
		else if (strcmp(v, "TLSv1.3") == 0)
			c->tls_min_version = TLS1_3_VERSION;
		else
			return conf_err(ld, m, "tls.min_version: \"%s\" is not "
			    "supported: use \"TLSv1.2\" or \"TLSv1.3\"", v);
	}
	return 0;
}

static int
conf_parse_admin(struct conf_ld *ld, const config_setting_t *root,
    struct conf *c)
{
	static const char *const keys[] = { "enabled", "address", "port",
	    "tenant_labels", NULL };
	config_setting_t	*g;

	if (conf_get_group(ld, root, "", "admin", 0, &g) == -1)
		return -1;
	if (g != NULL && (conf_check_keys(ld, g, "admin", keys) == -1 ||
	    conf_get_bool(ld, g, "admin", "enabled", &c->admin_enabled) == -1 ||
	    conf_get_strdup(ld, g, "admin", "address", 0, 0,
	    &c->admin_address) == -1 ||
	    conf_get_int_into(ld, g, "admin", "port", 1, 65535,
	    &c->admin_port) == -1 ||
	    conf_get_bool(ld, g, "admin", "tenant_labels",
	    &c->admin_tenant_labels) == -1))
		return -1;
	if (!conf_ip_ok(c->admin_address))
		return conf_err(ld, config_setting_get_member(g, "address"),
		    "admin.address: \"%s\" is not an IPv4 or IPv6 address; "
		    "write an address such as \"127.0.0.1\"", c->admin_address);
	if (c->admin_enabled && c->admin_port == c->listen_port &&
	    (strcmp(c->admin_address, c->listen_address) == 0 ||
	    conf_ip_wildcard(c->admin_address) ||
	    conf_ip_wildcard(c->listen_address)))
		return conf_err(ld, g != NULL ? g : root,
		    "admin.port: %d is also listen.port on an overlapping "
		    "address; choose another port", c->admin_port);
	return 0;
}

static int
conf_parse_limits(struct conf_ld *ld, const config_setting_t *root,
    struct conf *c)
{
	static const char *const keys[] = { "max_header_bytes", "max_headers",
	    "max_body_bytes", "max_response_bytes", "max_json_depth",
	    "max_buffered_bytes", "handshake_timeout_ms", "client_timeout_ms",
	    "upstream_timeout_ms", "upstream_idle_ms", "audit_timeout_ms",
	    "max_connections", "max_connection_age_ms", "shutdown_grace_ms",
	    NULL };
	struct conf_limits	*l = &c->limits;
	config_setting_t	*g;
	const char		*o = "limits";

	if (conf_get_group(ld, root, "", "limits", 0, &g) == -1)
		return -1;
	if (g == NULL)
		return 0;
	if (conf_check_keys(ld, g, o, keys) == -1 ||
	    conf_get_size_into(ld, g, o, "max_header_bytes", 1,
	    &l->max_header_bytes) == -1 ||
	    conf_get_size_into(ld, g, o, "max_headers", 1,
	    &l->max_headers) == -1 ||
	    conf_get_size_into(ld, g, o, "max_body_bytes", 1,
	    &l->max_body_bytes) == -1 ||
	    conf_get_size_into(ld, g, o, "max_response_bytes", 1,
	    &l->max_response_bytes) == -1 ||
	    conf_get_int_into(ld, g, o, "max_json_depth", 1, 1000,
	    &l->max_json_depth) == -1 ||
	    conf_get_size_into(ld, g, o, "max_buffered_bytes", 1,
	    &l->max_buffered_bytes) == -1 ||
	    conf_get_int_into(ld, g, o, "handshake_timeout_ms", 1, INT_MAX,
	    &l->handshake_timeout_ms) == -1 ||
	    conf_get_int_into(ld, g, o, "client_timeout_ms", 1, INT_MAX,
	    &l->client_timeout_ms) == -1 ||
	    conf_get_int_into(ld, g, o, "upstream_timeout_ms", 1, INT_MAX,
	    &l->upstream_timeout_ms) == -1 ||
	    conf_get_int_into(ld, g, o, "upstream_idle_ms", 1, INT_MAX,
	    &l->upstream_idle_ms) == -1 ||
	    conf_get_int_into(ld, g, o, "audit_timeout_ms", 1, INT_MAX,
	    &l->audit_timeout_ms) == -1 ||
	    conf_get_int_into(ld, g, o, "max_connections", 1, INT_MAX,
	    &l->max_connections) == -1 ||
	    conf_get_int_into(ld, g, o, "max_connection_age_ms", 1, INT_MAX,
	    &l->max_connection_age_ms) == -1 ||
	    conf_get_int_into(ld, g, o, "shutdown_grace_ms", 1, INT_MAX,
	    &l->shutdown_grace_ms) == -1)
		return -1;
	return 0;
}

static int
conf_parse_keys(struct conf_ld *ld, const config_setting_t *root,
    struct conf *c)
{
	static const char *const keys[] = { "token_keys", "data_keys",
	    "audit_reader", "audit_index", "audit_signer", NULL };
	config_setting_t	*g, *m, *l;
	size_t			 i, n;

	if (conf_get_group(ld, root, "", "keys", 0, &g) == -1)
		return -1;
	if (g == NULL)
		return 0;
	c->has_keys = 1;
	if (conf_check_keys(ld, g, "keys", keys) == -1 ||
	    conf_get_strdup(ld, g, "keys", "token_keys", 0, 0,
	    &c->keys_token_keys) == -1 ||
	    conf_get_strdup(ld, g, "keys", "data_keys", 0, 0,
	    &c->keys_data_keys) == -1 ||
	    conf_get_strdup(ld, g, "keys", "audit_index", 0, 0,
	    &c->keys_audit_index) == -1 ||
	    conf_get_strdup(ld, g, "keys", "audit_signer", 0, 0,
	    &c->keys_audit_signer) == -1)
		return -1;
	m = config_setting_get_member(g, "audit_reader");
	if (m == NULL || config_setting_type(m) == CONFIG_TYPE_STRING) {
		/* the default (one reader) stays unless a string replaces it */
		if (m != NULL && conf_get_strdup(ld, g, "keys", "audit_reader",
		    0, 0, &c->keys_audit_readers[0]) == -1)
			return -1;
		return 0;
	}
	if (conf_get_names(ld, g, "keys", "audit_reader", &l) == -1)
		return -1;
	if ((n = (size_t)config_setting_length(l)) == 0)
		return conf_err(ld, l, "keys.audit_reader: is empty; name at "
		    "least one reader public key");
	for (i = 0; i < c->keys_naudit_readers; i++)
		free(c->keys_audit_readers[i]);
	free(c->keys_audit_readers);
	c->keys_naudit_readers = 0;
	if ((c->keys_audit_readers = calloc(n, sizeof(char *))) == NULL)
		return conf_oom(ld, l);
	for (i = 0; i < n; i++) {
		if ((c->keys_audit_readers[i] = strdup(config_setting_get_string(
		    config_setting_get_elem(l, (unsigned)i)))) == NULL)
			return conf_oom(ld, l);
		c->keys_naudit_readers = i + 1;
	}
	return 0;
}

static int
conf_parse_audit(struct conf_ld *ld, const config_setting_t *root,
    struct conf *c)
{
	static const char *const keys[] = { "directory", "instance",
	    "segment_bytes", "segment_seconds", "retention_days",
	    "min_free_bytes", "checkpoint_records", "checkpoint_seconds", NULL };
	config_setting_t	*g;
	const char		*o = "audit";
	long long		 v;
	char			 host[256];

	if (conf_get_group(ld, root, "", "audit", 0, &g) == -1)
		return -1;
	if (g == NULL)
		return 0;
	c->has_audit = 1;
	if (conf_check_keys(ld, g, o, keys) == -1 ||
	    conf_get_strdup(ld, g, o, "directory", 0, 0,
	    &c->audit_directory) == -1 ||
	    conf_get_strdup(ld, g, o, "instance", 0, 1,
	    &c->audit_instance) == -1)
		return -1;
	v = (long long)c->audit_segment_bytes;
	if (conf_get_int(ld, g, o, "segment_bytes", 1, LLONG_MAX, &v) == -1)
		return -1;
	c->audit_segment_bytes = (uint64_t)v;
	v = (long long)c->audit_min_free_bytes;
	if (conf_get_int(ld, g, o, "min_free_bytes", 0, LLONG_MAX, &v) == -1)
		return -1;
	c->audit_min_free_bytes = (uint64_t)v;
	if (conf_get_int_into(ld, g, o, "segment_seconds", 1, INT_MAX,
	    &c->audit_segment_seconds) == -1 ||
	    conf_get_int_into(ld, g, o, "retention_days", 1, INT_MAX,
	    &c->audit_retention_days) == -1 ||
	    conf_get_int_into(ld, g, o, "checkpoint_records", 1, INT_MAX,
	    &c->audit_checkpoint_records) == -1 ||
	    conf_get_int_into(ld, g, o, "checkpoint_seconds", 1, INT_MAX,
	    &c->audit_checkpoint_seconds) == -1)
		return -1;
	if (c->audit_instance[0] == '\0') {
		if (gethostname(host, sizeof(host)) == -1)
			return conf_err(ld, g, "audit.instance: cannot get the "
			    "host name (%s); set instance", strerror(errno));
		host[sizeof(host) - 1] = '\0';
		if (conf_dup(ld, g, &c->audit_instance, host) == -1)
			return -1;
	}
	return 0;
}

static int
conf_parse_integrations(struct conf_ld *ld, const config_setting_t *root,
    struct conf *c)
{
	config_setting_t	*l;
	size_t			 i, n;

	if (conf_get_group_list(ld, root, "", "integrations", &l) == -1)
		return -1;
	if (l == NULL || (n = (size_t)config_setting_length(l)) == 0)
		return 0;
	if ((c->integrations = calloc(n, sizeof(*c->integrations))) == NULL)
		return conf_oom(ld, l);
	for (i = 0; i < n; i++) {
		c->nintegrations = i + 1;
		if (conf_parse_integration(ld, config_setting_get_elem(l,
		    (unsigned)i), c, i) == -1)
			return -1;
	}
	return 0;
}

static int
conf_parse_tenants(struct conf_ld *ld, const config_setting_t *root,
    struct conf *c)
{
	config_setting_t	*l;
	size_t			 i, n;

	if (conf_get_group_list(ld, root, "", "tenants", &l) == -1)
		return -1;
	if (l == NULL || (n = (size_t)config_setting_length(l)) == 0)
		return 0;
	if ((c->tenants = calloc(n, sizeof(*c->tenants))) == NULL)
		return conf_oom(ld, l);
	for (i = 0; i < n; i++) {
		c->ntenants = i + 1;
		if (conf_parse_tenant(ld, config_setting_get_elem(l,
		    (unsigned)i), c, i) == -1)
			return -1;
	}
	return 0;
}

/* The defaults of the configuration contract (DESIGN.md). */
static int
conf_defaults(struct conf *c)
{
	struct conf_limits	*l = &c->limits;

	c->workers = 2;
	c->listen_port = 8443;
	c->tls_crl_refresh_s = 300;
	c->tls_min_version = TLS1_2_VERSION;
	c->admin_enabled = 1;
	c->admin_port = 9901;
	c->admin_tenant_labels = 0;
	l->max_header_bytes = 16384;
	l->max_headers = 100;
	l->max_body_bytes = 1048576;
	l->max_response_bytes = 8388608;
	l->max_json_depth = 32;
	l->max_buffered_bytes = 268435456;
	l->handshake_timeout_ms = 10000;
	l->client_timeout_ms = 30000;
	l->upstream_timeout_ms = 15000;
	l->upstream_idle_ms = 30000;
	l->audit_timeout_ms = 5000;
	l->max_connections = 10000;
	l->max_connection_age_ms = 600000;
	l->shutdown_grace_ms = 10000;
	c->audit_segment_bytes = 67108864;
	c->audit_segment_seconds = 86400;
	c->audit_retention_days = 400;
	c->audit_min_free_bytes = 1073741824;
	c->audit_checkpoint_records = 1000;
	c->audit_checkpoint_seconds = 10;
	c->keys_naudit_readers = 1;
	if ((c->listen_address = strdup("127.0.0.1")) == NULL ||
	    (c->admin_address = strdup("127.0.0.1")) == NULL ||
	    (c->keys_token_keys = strdup("conf/keys/token.keys")) == NULL ||
	    (c->keys_data_keys = strdup("conf/keys/data.keys")) == NULL ||
	    (c->keys_audit_index = strdup("conf/keys/audit-index.key")) ==
	    NULL ||
	    (c->keys_audit_signer = strdup("conf/keys/audit-signer.key")) ==
	    NULL ||
	    (c->keys_audit_readers = calloc(1, sizeof(char *))) == NULL ||
	    (c->keys_audit_readers[0] = strdup("conf/keys/audit-reader.pub")) ==
	    NULL ||
	    (c->audit_directory = strdup("var/audit")) == NULL ||
	    (c->audit_instance = strdup("")) == NULL)
		return -1;
	return 0;
}

/*
 * Read path with libconfig (@include relative to its directory), validate
 * everything against the contract and build the immutable struct conf.
 * Returns it (free with conf_free), or NULL with "FILE:LINE: object.key:
 * message" in err. No message ever holds a secret header value.
 */
struct conf *
conf_load(const char *path, unsigned implemented, char *err, size_t errlen)
{
	static const char *const keys[] = { "user", "listen", "tls", "admin",
	    "limits", "keys", "audit", "tenants", "integrations", NULL };
	struct conf_ld		 ld;
	struct conf		*c = NULL;
	config_t		 cfg;
	config_setting_t	*root;
	const char		*slash;
	char			 efile[PATH_MAX];
	char			*dir = NULL;
	int			 e;

	memset(&ld, 0, sizeof(ld));
	ld.path = path;
	ld.implemented = implemented;
	ld.err = err;
	ld.errlen = errlen;
	config_init(&cfg);
	/* @include paths are taken relative to the config file's directory. */
	slash = strrchr(path, '/');
	if ((dir = slash == NULL ? strdup(".") :
	    strndup(path, slash == path ? 1 : (size_t)(slash - path))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	ld.dir = dir;
	config_set_include_dir(&cfg, dir);
	errno = 0;
	if (config_read_file(&cfg, path) != CONFIG_TRUE) {
		e = errno;
		conf_source_path(&ld, config_error_file(&cfg), efile,
		    sizeof(efile));
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read the configuration "
			    "file: %s", path, e != 0 ? strerror(e) :
			    "I/O error");
		else
			snprintf(err, errlen, "%s:%d: %s", efile,
			    config_error_line(&cfg),
			    config_error_text(&cfg));
		goto fail;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL || conf_defaults(c) == -1 ||
	    (c->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	root = config_root_setting(&cfg);
	if (conf_check_keys(&ld, root, "", keys) == -1 ||
	    conf_get_strdup(&ld, root, "", "user", 0, 0, &c->user) == -1 ||
	    conf_parse_listen(&ld, root, c) == -1 ||
	    conf_parse_tls(&ld, root, c) == -1 ||
	    conf_parse_admin(&ld, root, c) == -1 ||
	    conf_parse_limits(&ld, root, c) == -1 ||
	    conf_parse_keys(&ld, root, c) == -1 ||
	    conf_parse_audit(&ld, root, c) == -1 ||
	    conf_parse_integrations(&ld, root, c) == -1 ||
	    conf_parse_tenants(&ld, root, c) == -1)
		goto fail;
	config_destroy(&cfg);
	free(ld.src_path);
	free(ld.src_text);
	free(dir);
	return c;

fail:
	config_destroy(&cfg);
	free(ld.src_path);
	free(ld.src_text);
	free(dir);
	conf_free(c);
	return NULL;
}

static void
conf_endpoint_free(struct conf_endpoint *ep)
{
	size_t	 i;

	free(ep->method);
	free(ep->path);
	/* params has one entry per parameter of the pattern: free it first */
	for (i = 0; ep->params != NULL && i < ep->pattern.nparams; i++)
		free(ep->params[i].name);
	free(ep->params);
	route_pattern_free(&ep->pattern);
	policy_names_free(ep->query);
	policy_rules_free(ep->request);
	policy_rules_free(ep->subjects);
	policy_rules_free(ep->response);
}

/* Free c and everything it owns; secret values are wiped. NULL is fine. */
void
conf_free(struct conf *c)
{
	size_t	 i, j;

	if (c == NULL)
		return;
	for (i = 0; i < c->ntenants; i++) {
		struct conf_tenant *t = &c->tenants[i];

		free(t->id);
		for (j = 0; j < t->nclients; j++)
			free(t->clients[j]);
		free(t->clients);
		free(t->phone_country_code);
		for (j = 0; j < t->nuses; j++)
			conf_account_free(&t->uses[j].account);
		free(t->uses);
	}
	free(c->tenants);
	for (i = 0; i < c->nintegrations; i++) {
		struct conf_integration *ig = &c->integrations[i];

		free(ig->name);
		free(ig->prefix);
		route_pattern_free(&ig->prefix_pat);
		conf_account_free(&ig->account);
		free(ig->token_domain);
		policy_names_free(ig->headers_allow);
		for (j = 0; j < ig->nendpoints; j++)
			conf_endpoint_free(&ig->endpoints[j]);
		free(ig->endpoints);
	}
	free(c->integrations);
	free(c->path);
	free(c->user);
	free(c->listen_address);
	free(c->tls_certificate);
	free(c->tls_private_key);
	free(c->tls_client_ca);
	free(c->tls_crl);
	free(c->admin_address);
	free(c->keys_token_keys);
	free(c->keys_data_keys);
	for (i = 0; c->keys_audit_readers != NULL &&
	    i < c->keys_naudit_readers; i++)
		free(c->keys_audit_readers[i]);
	free(c->keys_audit_readers);
	free(c->keys_audit_index);
	free(c->keys_audit_signer);
	free(c->audit_directory);
	free(c->audit_instance);
	free(c);
}

/* The tenant listing identity among its clients, or NULL. */
const struct conf_tenant *
conf_tenant_by_client(const struct conf *c, const char *identity)
{
	size_t	 i, j;

	if (identity == NULL)
		return NULL;
	for (i = 0; i < c->ntenants; i++)
		for (j = 0; j < c->tenants[i].nclients; j++)
			if (strcmp(c->tenants[i].clients[j], identity) == 0)
				return &c->tenants[i];
	return NULL;
}

/* t's use of ig (ig borrowed from the same conf), or NULL. */
const struct conf_use *
conf_tenant_use(const struct conf_tenant *t, const struct conf_integration *ig)
{
	size_t	 i;

	for (i = 0; i < t->nuses; i++)
		if (t->uses[i].integration == ig)
			return &t->uses[i];
	return NULL;
}

/* The integration called name, or NULL. */
const struct conf_integration *
conf_integration_by_name(const struct conf *c, const char *name)
{
	size_t	 i;

	for (i = 0; i < c->nintegrations; i++)
		if (strcmp(c->integrations[i].name, name) == 0)
			return &c->integrations[i];
	return NULL;
}
