/* conn.h -- one client connection's life: handshake, identity, requests, responses */
#ifndef SUBGATE_CONN_H
#define SUBGATE_CONN_H

#include <sys/socket.h>

struct worker;
struct conn;

/* Take over an accepted socket fd (owned from now on) on worker w. */
void	conn_accept(struct worker *w, int fd, const struct sockaddr *sa);
/* Close w's connections that are between requests (drain); mark the
 * others to close after the response in flight. */
void	conn_drain_all(struct worker *w);
/* Close all of w's connections now, whatever they are doing. */
void	conn_abort_all(struct worker *w);

#endif
