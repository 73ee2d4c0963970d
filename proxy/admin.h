/* admin.h -- /healthz /readyz /metrics on the admin listener */
#ifndef SUBGATE_ADMIN_H
#define SUBGATE_ADMIN_H

#include <event2/event.h>

#include "buf.h"

struct admin;

struct admin_hooks {
	/* 1 when ready to forward; else 0 with the reason in why. */
	int	(*ready)(void *arg, char *why, size_t len);
	/* Append the Prometheus text of every metric. */
	void	(*metrics)(void *arg, struct buf *out);
	void	*arg;
};

/* Serve on the bound, listening socket fd (taken) from base's thread. */
struct admin *admin_start(struct event_base *base, int fd,
	    const struct admin_hooks *hooks, char *err, size_t errlen);
void	admin_free(struct admin *a);

#endif
