/* policy.h -- compiled field rules applied to JSON, forms, params, query, headers (pure) */
#ifndef SUBGATE_POLICY_H
#define SUBGATE_POLICY_H

#include <stddef.h>

#include "buf.h"
#include "json.h"

/* Ordered from least to most visible to the processor. */
enum policy_action {
	POLICY_DROP = 0,
	POLICY_HASH,
	POLICY_TOKENIZE,
	POLICY_FORMAT_PRESERVE,
	POLICY_MASK,
	POLICY_ALLOW,
	POLICY_NACTIONS,
};

/* "drop", "allow", "tokenize", "format_preserve", "hash", "mask". */
const char *policy_action_name(enum policy_action a);
/* 0 and *a set, or -1 for an unknown name. */
int	policy_action_parse(const char *name, enum policy_action *a);

/*
 * A set of path rules (DESIGN.md "Policy"): a.b, a[].b, [][] , a.*, a.**,
 * ** alone, "quoted.keys" with \" and \\ escapes. Rules without ** match
 * scalars only.
 */
struct policy_rules;

struct policy_rules *policy_rules_new(void);
/*
 * Add a rule. Returns 0, or -1 with err for a syntax error (empty segment,
 * unterminated quote, ** not last, [] misplaced, ...) or when the path can
 * match a node that a rule of another action already added can match
 * (err names the other rule). Adding the same path with the same action
 * twice is an error too ("listed twice").
 */
int	policy_rules_add(struct policy_rules *r, const char *path,
	    enum policy_action a, char *err, size_t errlen);
size_t	policy_rules_count(const struct policy_rules *r);
/* The i-th rule as added (for policy diff/explain). */
const char *policy_rules_path(const struct policy_rules *r, size_t i,
	    enum policy_action *a);
void	policy_rules_free(struct policy_rules *r);

/*
 * What one application decided, for the audit record and metrics: per
 * action the distinct paths it applied to, in the rule-path syntax, where
 * a key no rule names literally at that place is written "*" (keys chosen
 * by a client can be personal data). paths[a] holds the paths NUL-separated
 * (each terminated by NUL), npaths[a] how many; count[a] how many values.
 */
struct policy_report {
	struct buf	paths[POLICY_NACTIONS];
	size_t		npaths[POLICY_NACTIONS];
	size_t		count[POLICY_NACTIONS];
	size_t		dropped_nonscalar;	/* object/array where a scalar rule pointed */
	size_t		dropped_invalid;	/* transform refused the value (e.g. < 6 digits) */
};

void	policy_report_reset(struct policy_report *rep);
void	policy_report_free(struct policy_report *rep);
/* Record one decision for path (deduplicated). 0 or -1 on ENOMEM. */
int	policy_report_add(struct policy_report *rep, enum policy_action a,
	    const char *path, size_t len);

/*
 * Transform for actions other than allow and drop. Called with the scalar
 * token (its raw bytes and, for strings, the unescaped value). Writes the
 * complete JSON value to out and returns 0; returns 1 to drop the member
 * (counted in dropped_invalid); -1 on a hard error.
 * For response processing the action passed is POLICY_TOKENIZE for
 * "detokenize" rules and POLICY_FORMAT_PRESERVE for format_preserve rules;
 * the callback then writes either the restored value or the raw token.
 */
struct policy_transform {
	int	(*fn)(void *arg, enum policy_action a,
		    const struct json_token *value, struct buf *out);
	void	*arg;
};

/*
 * Request direction: rebuild the JSON object in[0..len) under rules,
 * writing only what the rules let through to out (kept values byte for
 * byte, emptied objects/arrays dropped, compact separators). Everything no
 * rule names is dropped. Returns 0, or -1 with err when the input is not
 * valid JSON under the reader's rules (nothing usable is in out then).
 * r is a reader from json_reader_new (reused across calls; it carries the
 * depth limit). xf may be NULL when the rules use allow only.
 */
int	policy_apply_json(const struct policy_rules *rules, struct json_reader *r,
	    const char *in, size_t len, const struct policy_transform *xf,
	    struct buf *out, struct policy_report *rep, char *err, size_t errlen);

/*
 * Response direction: copy in[0..len) to out unchanged, except that the
 * scalars at paths the rules name are passed to xf (with the rule's action)
 * which writes their replacement (tokens are strings: the detokeniser
 * copies anything else as is; the subject hasher also takes numbers).
 * Returns 0 or -1 (invalid JSON).
 */
int	policy_apply_response(const struct policy_rules *rules,
	    struct json_reader *r, const char *in, size_t len,
	    const struct policy_transform *xf, struct buf *out, char *err,
	    size_t errlen);

/*
 * Collect only: make exactly the calls to xf that policy_apply_response
 * would make for the same rules and document, in the same order and with
 * the same tokens, but with out NULL (the transform must not write) and
 * no output. Values that cannot lead to a call are skipped unread, so
 * in[0..len) must be a document r's rules accept (e.g. one that
 * policy_apply_json has just read with r): on other input the walk stays
 * within the buffer and returns, but which calls it makes is unspecified.
 * Returns 0, or -1 with err (input found malformed, a transform failed,
 * memory).
 */
int	policy_collect_json(const struct policy_rules *rules,
	    struct json_reader *r, const char *in, size_t len,
	    const struct policy_transform *xf, char *err, size_t errlen);

/*
 * Form fields and other flat names decided by body rules: the decision
 * for a scalar member name[0..len) of the root object, exactly as
 * policy_apply_json makes it for {"name": value}. So a name matches the
 * rule "name" (a name holding . [ ] * or " only the quoted rule
 * "\"con.tact\""), "*", "name.**", "*.**" or "**"; a rule with more
 * than one segment never matches. Returns the action, POLICY_DROP when no
 * rule matches. When repath is not NULL it is set to the path for the
 * report (rule syntax, "*" for a name no rule names literally, ".**"
 * after it under a ** rule, "**" for the root rule).
 */
enum policy_action policy_rules_root(const struct policy_rules *r,
	    const char *name, size_t len, struct buf *repath);

/*
 * For `policy explain`: what decided one node of a document. path is the
 * concrete path, keys in rule syntax (quoted when needed), array elements
 * as [i] with input indices: contact.email, attendees[1].email, m[0][2].
 */
struct policy_decision {
	const char		*path;		/* NUL-terminated, valid during the call */
	size_t			 pathlen;
	enum policy_action	 action;	/* the rule's action; POLICY_DROP when none */
	const char		*rule;		/* the rule's path as added; NULL: not listed */
	const struct json_token	*value;		/* the scalar; NULL for a container */
	int			 container;	/* POLICY_EMPTY or POLICY_NONSCALAR, else 0 */
};

#define POLICY_EMPTY		1	/* an empty object or array */
#define POLICY_NONSCALAR	2	/* an object/array where a scalar rule points: dropped */

/*
 * Walk the JSON object in[0..len) and call cb for every scalar (in
 * document order), every empty object or array, and every container a
 * scalar rule names that no rule looks into, with the rule that decides
 * it under the same semantics as policy_apply_json: a ** rule whose
 * prefix matches the node or an ancestor (the outermost one), else the
 * scalar rule naming the node (a literal key preferred over *, then the
 * first added). The action given is the rule's: a transform may still
 * refuse the value (see token_xform_request). A separate, slower walk:
 * policy_apply_json is unchanged. cb returns 0 to go on, -1 to stop.
 * Returns 0, or -1 with err for invalid JSON, memory, or a stop.
 */
int	policy_explain_json(const struct policy_rules *rules,
	    struct json_reader *r, const char *in, size_t len,
	    int (*cb)(void *arg, const struct policy_decision *d), void *arg,
	    char *err, size_t errlen);

/*
 * The rule that decides a root-level name for explain (form fields): as
 * policy_rules_root, but returns in *rule the rule's path as added (NULL:
 * not listed).
 */
enum policy_action policy_explain_root(const struct policy_rules *r,
	    const char *name, size_t len, const char **rule);

/*
 * Flat name -> action tables for path params, query parameters, form
 * fields and headers (headers compare case-insensitively). A name not in
 * the table is POLICY_DROP.
 */
struct policy_names;

struct policy_names *policy_names_new(int case_insensitive);
/* 0, or -1 with err when name is listed twice. */
int	policy_names_add(struct policy_names *n, const char *name,
	    enum policy_action a, char *err, size_t errlen);
enum policy_action policy_names_lookup(const struct policy_names *n,
	    const char *name, size_t len);
size_t	policy_names_count(const struct policy_names *n);
const char *policy_names_at(const struct policy_names *n, size_t i,
	    enum policy_action *a);
void	policy_names_free(struct policy_names *n);

#endif
