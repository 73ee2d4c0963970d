/* json.h -- strict streaming JSON reader and writer helpers (pure) */
#ifndef SUBGATE_JSON_H
#define SUBGATE_JSON_H

#include <stddef.h>

#include "buf.h"

enum json_type {
	JSON_NONE = 0,
	JSON_OBJECT_BEGIN,
	JSON_OBJECT_END,
	JSON_ARRAY_BEGIN,
	JSON_ARRAY_END,
	JSON_KEY,		/* an object member name */
	JSON_STRING,
	JSON_NUMBER,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL,
	JSON_EOF,		/* the root value ended and only whitespace followed */
};

/*
 * One token. raw/raw_len: the exact input bytes of the token (strings and
 * keys with their quotes, numbers as written), so kept values are copied
 * byte for byte. str/str_len: for KEY and STRING, the unescaped UTF-8 value
 * (may contain NUL for strings, never for keys); valid until the next
 * json_next() call. depth: nesting depth of the token (the root object's
 * BEGIN and END are depth 1, its members depth 1 keys with values at 1 for
 * scalars, containers open at 2).
 */
struct json_token {
	enum json_type	 type;
	const char	*raw;
	size_t		 raw_len;
	const char	*str;
	size_t		 str_len;
	int		 depth;
};

struct json_reader;

/* Create a reader that refuses nesting deeper than max_depth. NULL on ENOMEM. */
struct json_reader *json_reader_new(int max_depth);
/* Start reading buf[0..len) (borrowed; must outlive the reads). */
void	json_reader_reset(struct json_reader *r, const char *buf, size_t len);
/*
 * The next token. Returns 0, or -1 with a reason in err (no input bytes are
 * quoted in it) for: invalid UTF-8 anywhere, a root that is not an object,
 * duplicate keys in one object (compared after unescaping), NUL in a key,
 * lone surrogates, bad escapes, control characters in strings, leading
 * zeros, NaN/Infinity, comments, trailing commas, a BOM, trailing data,
 * nesting beyond max_depth. After JSON_EOF, further calls return JSON_EOF.
 */
int	json_next(struct json_reader *r, struct json_token *t, char *err,
	    size_t errlen);
/*
 * Skipping without checking, for a document known to be valid under this
 * reader's rules (a reader with the same depth limit accepted all of it):
 * what is skipped is only balanced (quotes, backslashes, brackets by
 * count), not validated, so on other input which bytes a skip covers is
 * unspecified -- it never reads outside the buffer, though, and returns -1
 * with err when the input ends first.
 *
 * json_skip_value: the value json_next would return next (after a KEY or
 * inside an array): a scalar, or a whole object or array. 0 or -1 (also
 * when no value comes next).
 * json_skip_container: the rest of the innermost open container, up to and
 * including its closing bracket, as if json_next had returned its END
 * (e.g. right after its BEGIN). 0 or -1.
 */
int	json_skip_value(struct json_reader *r, char *err, size_t errlen);
int	json_skip_container(struct json_reader *r, char *err, size_t errlen);
/* Byte offset of the reader in its input (for error messages). */
size_t	json_reader_offset(const struct json_reader *r);
void	json_reader_free(struct json_reader *r);

/* Validate a whole document with the same rules. 0 or -1 with err. */
int	json_validate(const char *buf, size_t len, int max_depth, char *err,
	    size_t errlen);

/* Append s[0..len) as a JSON string literal (quotes included, minimal
 * escaping: ", \\, control characters as \uXXXX or short escapes). */
int	json_write_string(struct buf *out, const char *s, size_t len);

/* Is s[0..len) valid UTF-8 (no surrogates, no overlongs, <= U+10FFFF)? */
int	json_utf8_valid(const char *s, size_t len);

#endif
