/* log.c -- operational log: logfmt lines on stderr, one write(2) per line */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_level	log_max = LOG_LVL_INFO;
static pthread_mutex_t	log_rl_mtx = PTHREAD_MUTEX_INITIALIZER;

void
log_init(enum log_level max)
{
	log_max = max;
}

static void
log_emit(enum log_level lvl, int with_errno, const char *fmt, va_list ap)
{
	static const char	*names[] = { "error", "warn", "info", "debug" };
	char			 line[2048], ts[32];
	struct timespec		 now;
	struct tm		 tm;
	int			 saved = errno, n, m;

	if (lvl > log_max)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "time=%s.%03ldZ level=%s msg=\"", ts,
	    now.tv_nsec / 1000000, names[lvl]);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (m < 0)
		return;
	n = (size_t)(n + m) >= sizeof(line) - 64 ? (int)sizeof(line) - 64 : n + m;
	if (with_errno)
		n += snprintf(line + n, sizeof(line) - (size_t)n, ": %s",
		    strerror(saved));
	n += snprintf(line + n, sizeof(line) - (size_t)n, "\"\n");
	if (n > (int)sizeof(line))
		n = sizeof(line);
	(void)!write(STDERR_FILENO, line, (size_t)n);
	errno = saved;
}

#define LOG_FN(fn, lvl, e)						\
void									\
fn(const char *fmt, ...)						\
{									\
	va_list ap;							\
	va_start(ap, fmt);						\
	log_emit(lvl, e, fmt, ap);					\
	va_end(ap);							\
}

LOG_FN(log_warn, LOG_LVL_WARN, 1)
LOG_FN(log_warnx, LOG_LVL_WARN, 0)
LOG_FN(log_info, LOG_LVL_INFO, 0)
LOG_FN(log_debug, LOG_LVL_DEBUG, 0)
LOG_FN(log_errx, LOG_LVL_ERROR, 0)

void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list	 ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int
log_enabled(enum log_level lvl)
{
	return lvl <= log_max;
}

void
log_line(const char *line, size_t len)
{
	if (log_max >= LOG_LVL_INFO)
		(void)!write(STDERR_FILENO, line, len);
}

int
log_ratelimit_ok(struct log_ratelimit *rl, unsigned burst,
    unsigned long *suppressed)
{
	long	now = (long)time(NULL);
	int	ok;

	pthread_mutex_lock(&log_rl_mtx);
	*suppressed = 0;
	if (now != rl->window) {
		rl->window = now;
		rl->used = 0;
		*suppressed = rl->suppressed;
		rl->suppressed = 0;
	}
	ok = rl->used < burst;
	if (ok)
		rl->used++;
	else
		rl->suppressed++;
	pthread_mutex_unlock(&log_rl_mtx);
	return ok;
}
