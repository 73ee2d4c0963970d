/* notify.c -- telling a service manager (systemd) how the daemon is doing */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"

static int	 notify_fd = -1;
static uint64_t	 watchdog_usec;

/* WATCHDOG_USEC, when it is meant for this process (WATCHDOG_PID). */
static void
watchdog_init(void)
{
	const char		*s, *pid;
	char			*end;
	unsigned long long	 v;

	if ((s = getenv("WATCHDOG_USEC")) == NULL)
		return;
	pid = getenv("WATCHDOG_PID");
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v == 0)
		log_warnx("WATCHDOG_USEC=%s is not a number of microseconds; "
		    "no watchdog", s);
	else if (pid != NULL && strtol(pid, NULL, 10) != (long)getpid())
		;	/* meant for another process */
	else
		watchdog_usec = v;
}

void
notify_init(void)
{
	struct sockaddr_un	 sun;
	const char		*path;
	socklen_t		 len;
	size_t			 n;

	if ((path = getenv("NOTIFY_SOCKET")) == NULL)
		return;
	n = strlen(path);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if ((path[0] != '/' && path[0] != '@') || n < 2 ||
	    n >= sizeof(sun.sun_path)) {
		log_warnx("NOTIFY_SOCKET=%s: not a unix socket path; the "
		    "service manager is not told when subgate is ready", path);
		goto done;
	}
	memcpy(sun.sun_path, path, n);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';		/* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
	    (path[0] == '/'));
	if ((notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(notify_fd, (struct sockaddr *)&sun, len) == -1) {
		log_warn("NOTIFY_SOCKET=%s: the service manager is not told "
		    "when subgate is ready", path);
		if (notify_fd != -1)
			close(notify_fd);
		notify_fd = -1;
		goto done;
	}
	watchdog_init();
 done:
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

void
notify_send(const char *fmt, ...)
{
	char	 msg[512];
	va_list	 ap;
	int	 n;

	if (notify_fd == -1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	while (send(notify_fd, msg, (size_t)n, MSG_NOSIGNAL) == -1 &&
	    errno == EINTR)
		;
}

uint64_t
notify_watchdog_usec(void)
{
	return watchdog_usec;
}
