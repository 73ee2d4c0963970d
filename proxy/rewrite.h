/* rewrite.h -- build the request a processor receives from the policy decision (pure) */
#ifndef SUBGATE_REWRITE_H
#define SUBGATE_REWRITE_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"
#include "http.h"
#include "json.h"
#include "policy.h"
#include "route.h"
#include "token.h"

/* Everything the rewrite reads; all borrowed. */
struct rewrite_in {
	const struct conf_integration	*ig;
	const struct conf_endpoint	*ep;
	const struct conf_account	*acct;		/* effective account */
	const struct route_target	*target;	/* canonical request target */
	const struct http_header	*headers;	/* the service's headers */
	size_t				 nheaders;
	const char			*body;		/* the service's body */
	size_t				 body_len;
	const char			*request_id;	/* forwarded if X-Request-Id is allowed */
	struct token_ctx		*tok;		/* keys of the (tenant, integration) pair */
	struct json_reader		*json;		/* reused reader with the depth limit */
	int				 form;		/* body is application/x-www-form-urlencoded */
};

/* What was decided, per part of the request, for the audit record. */
struct rewrite_report {
	struct policy_report	fields;
	struct policy_report	params;
	struct policy_report	query;
	struct policy_report	headers;
};

void	rewrite_report_free(struct rewrite_report *rep);

/*
 * The kind of request body a Content-Type value v[0..len) announces:
 * application/json (0) or application/x-www-form-urlencoded (1), media
 * type compared case-insensitively, optionally followed by
 * ";charset=utf-8" (quoted or not, white space around ';' allowed).
 * Anything else: -1 (415). Set rewrite_in.form to the result when it is 1.
 */
int	rewrite_content_type(const char *v, size_t len);

/*
 * Produce in out the whole upstream request (request line, headers, body)
 * from the endpoint's rules alone: the path rebuilt from the pattern and
 * the decided params, only listed query parameters and headers, the
 * account's set headers, Host = server_name, Accept-Encoding: identity,
 * Content-Type and Content-Length set here. *body_len is the length of the
 * forwarded body (it is the tail of out).
 *
 * The body is JSON, or when in->form is set a form
 * (application/x-www-form-urlencoded): each name=value pair is decided on
 * its own by the body rule for that literal name at the root
 * (policy_rules_root: a field "contact.email" matches only the rule
 * "\"contact.email\""), repeated names each decided, values transformed
 * like query parameters, unlisted pairs dropped, names and values
 * re-encoded canonically (route_encode), and the forwarded Content-Type is
 * application/x-www-form-urlencoded. Field names no rule names literally
 * are reported as "*".
 *
 * Returns 0, or -1 with a reason for a 400 in err (a body that is not
 * acceptable JSON or form, a path parameter its action refuses, a
 * malformed query, a transform that failed); out is then undefined.
 */
int	rewrite_request(const struct rewrite_in *in, struct buf *out,
	    size_t *body_len, struct rewrite_report *rep, char *err,
	    size_t errlen);

#endif
