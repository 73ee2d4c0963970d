/* buf.h -- growable byte buffer with an optional hard limit (pure) */
#ifndef SUBGATE_BUF_H
#define SUBGATE_BUF_H

#include <stddef.h>
#include <string.h>

/*
 * A byte buffer. data is always NUL-terminated past len (so a buffer holding
 * text can be used as a C string), and never longer than max when max != 0.
 * A zeroed struct is an empty, unlimited buffer.
 */
struct buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
	size_t	 max;	/* 0: unlimited */
};

/* Make room for n more bytes. Returns 0, or -1 when max would be passed or
 * memory is exhausted (the buffer is left as it was). */
int	buf_reserve(struct buf *b, size_t n);
int	buf_append_str(struct buf *b, const char *s);
/* The slow path of buf_append and buf_append_char (growth, limits). */
int	buf_append_slow(struct buf *b, const void *p, size_t n);

/* Append p[0..n). 0, or -1 as buf_reserve. Inline: the JSON writers and
 * record builders call these for every token of every request. */
static inline int
buf_append(struct buf *b, const void *p, size_t n)
{
	if (n < b->cap - b->len && (b->max == 0 || n <= b->max - b->len)) {
		if (n > 0)
			memcpy(b->data + b->len, p, n);
		b->len += n;
		b->data[b->len] = '\0';
		return 0;
	}
	return buf_append_slow(b, p, n);
}

static inline int
buf_append_char(struct buf *b, char c)
{
	if (b->cap - b->len > 1 && (b->max == 0 || b->max > b->len)) {
		b->data[b->len++] = c;
		b->data[b->len] = '\0';
		return 0;
	}
	return buf_append_slow(b, &c, 1);
}
int	buf_printf(struct buf *b, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* Append v in decimal / p[0..n) as lower-case hex, without printf (both
 * run on every request). 0 or -1. */
int	buf_append_u64(struct buf *b, unsigned long long v);
int	buf_append_hex(struct buf *b, const unsigned char *p, size_t n);
/* Drop everything past len (len <= b->len). */
void	buf_truncate(struct buf *b, size_t len);
void	buf_reset(struct buf *b);
/* Free the storage; the contents are wiped first (buffers may hold
 * request bodies). Accepts NULL. */
void	buf_free(struct buf *b);

#endif
