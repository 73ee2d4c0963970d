/* buf.c -- growable byte buffer with an optional hard limit (pure) */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int
buf_reserve(struct buf *b, size_t n)
{
	size_t	 want, cap;
	char	*p;

	if (n > (size_t)-1 - b->len - 1)
		return -1;
	want = b->len + n + 1;
	if (b->max != 0 && b->len + n > b->max)
		return -1;
	if (want <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap = cap > ((size_t)-1) / 2 ? want : cap * 2;
	/* Not realloc: the old block is wiped before it goes back to the
	 * allocator (buffers hold request bodies and records).
	 * explicit_bzero: a memset the compiler may not drop, at memset
	 * speed (OPENSSL_cleanse stores a byte at a time). */
	if ((p = malloc(cap)) == NULL)
		return -1;
	if (b->data != NULL) {
		memcpy(p, b->data, b->len + 1);
		explicit_bzero(b->data, b->len);
		free(b->data);
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int
buf_append_slow(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) == -1)
		return -1;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) == -1)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int
buf_append_u64(struct buf *b, unsigned long long v)
{
	char	d[24];
	size_t	i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return buf_append(b, d + i, sizeof(d) - i);
}

int
buf_append_hex(struct buf *b, const unsigned char *p, size_t n)
{
	static const char	x[] = "0123456789abcdef";
	size_t			i;

	if (buf_reserve(b, 2 * n) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		b->data[b->len++] = x[p[i] >> 4];
		b->data[b->len++] = x[p[i] & 15];
	}
	b->data[b->len] = '\0';
	return 0;
}

void
buf_truncate(struct buf *b, size_t len)
{
	if (b->data == NULL || len > b->len)
		return;
	/* Bytes past len are wiped now, so buf_free need only wipe len. */
	explicit_bzero(b->data + len, b->len - len);
	b->len = len;
	b->data[len] = '\0';
}

void
buf_reset(struct buf *b)
{
	buf_truncate(b, 0);
}

void
buf_free(struct buf *b)
{
	if (b == NULL)
		return;
	if (b->data != NULL) {
		/* Every byte ever written is below len (buf_truncate wipes
		 * what it cuts): wiping len bytes wipes the contents. */
		explicit_bzero(b->data, b->len);
		free(b->data);
	}
	b->data = NULL;
	b->len = b->cap = 0;
}
