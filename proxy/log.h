/* log.h -- operational log: logfmt lines on stderr */
#ifndef SUBGATE_LOG_H
#define SUBGATE_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Set the most verbose level printed (default info). */
void	log_init(enum log_level max);
/* log_warn appends strerror(errno); the others print the message as is.
 * Messages must never contain field values, concrete paths or queries. */
void	log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Format an error message into err[0..errlen), for callers that report
 * errors in a buffer; does nothing when err is NULL or errlen is 0. */
void	seterr(char *err, size_t errlen, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
/* Whether messages of level lvl are printed. */
int	log_enabled(enum log_level lvl);
/* Print pre-formatted logfmt records (request lines) at info, one write. */
void	log_line(const char *line, size_t len);
/*
 * Rate limiting for noisy events (refused handshakes): returns 1 when the
 * caller may log now. At most burst lines per second per limiter; the
 * number suppressed is reported by the next allowed call in *suppressed.
 */
struct log_ratelimit {
	long		window;		/* second of the current window */
	unsigned	used;
	unsigned long	suppressed;
};
int	log_ratelimit_ok(struct log_ratelimit *rl, unsigned burst,
	    unsigned long *suppressed);

#endif
