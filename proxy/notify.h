/* notify.h -- telling a service manager (systemd) how the daemon is doing */
#ifndef SUBGATE_NOTIFY_H
#define SUBGATE_NOTIFY_H

#include <stdint.h>

/*
 * Read NOTIFY_SOCKET and WATCHDOG_USEC from the environment (the
 * sd_notify(3) protocol; nothing is linked from libsystemd), connect the
 * datagram socket and remove both variables, so nothing started later
 * inherits them. Without NOTIFY_SOCKET every call below does nothing. A
 * socket that cannot be used is logged once and ignored: the daemon runs
 * as it would without a service manager.
 */
void		notify_init(void);
/* Send one message of newline-separated VAR=value assignments. */
void		notify_send(const char *fmt, ...)
		    __attribute__((format(printf, 1, 2)));
/* The watchdog interval the manager asked for, in microseconds; 0: none. */
uint64_t	notify_watchdog_usec(void);

#endif
