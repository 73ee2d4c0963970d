/* conf.h -- the parsed, validated, immutable configuration */
#ifndef SUBGATE_CONF_H
#define SUBGATE_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "route.h"

/* A header the gateway sets toward a processor; value read from a secret file. */
struct conf_header_set {
	char	*name;
	char	*file;
	char	*value;		/* file contents, one trailing newline stripped; wiped on free */
	size_t	 value_len;
};

/*
 * Everything that decides who receives a call and how we authenticate to
 * them. An integration has one; a tenant's entry may override any field.
 * Two accounts with the same key share upstream connections.
 */
struct conf_account {
	char			*upstream;	/* "https://host:port" as written */
	char			*host;		/* name or address, no brackets */
	int			 port;
	char			*server_name;	/* SNI, Host, host name check */
	char			*ca;
	char			*client_certificate;
	char			*client_private_key;
	char			**pins;		/* base64 SHA-256 of SPKI */
	unsigned char		(*pin_bin)[32];
	size_t			 npins;
	struct conf_header_set	*set;
	size_t			 nset;
	char			*key;		/* pooling identity: upstream|server_name|ca|cert|pins */
};

struct conf_param {
	char			*name;
	enum policy_action	 action;
};

struct conf_endpoint {
	char			*method;
	char			*path;		/* pattern as written */
	int			 line;
	struct route_pattern	 pattern;
	struct conf_param	*params;	/* one per named segment, pattern order */
	struct policy_names	*query;		/* NULL: no query parameter passes */
	int			 has_request;	/* a request block exists: a body is accepted */
	struct policy_rules	*request;	/* body rules (never NULL when has_request) */
	struct policy_rules	*subjects;	/* request.subjects (may be NULL) */
	struct policy_rules	*response;	/* detokenize (TOKENIZE) + format_preserve; may be NULL */
};

struct conf_integration {
	char			*name;
	char			*prefix;
	int			 line;
	struct route_pattern	 prefix_pat;
	struct conf_account	 account;
	char			*token_domain;
	struct policy_names	*headers_allow;	/* never NULL */
	struct conf_endpoint	*endpoints;
	size_t			 nendpoints;
};

/* A tenant's use of an integration with its effective account. */
struct conf_use {
	const struct conf_integration	*integration;	/* borrowed from conf */
	struct conf_account		 account;
};

struct conf_tenant {
	char			*id;
	int			 line;
	char			**clients;
	size_t			 nclients;
	char			*phone_country_code;
	struct conf_use		*uses;
	size_t			 nuses;
};

struct conf_limits {
	size_t	max_header_bytes, max_headers, max_body_bytes, max_response_bytes;
	int	max_json_depth;
	size_t	max_buffered_bytes;
	int	handshake_timeout_ms, client_timeout_ms, upstream_timeout_ms;
	int	upstream_idle_ms, audit_timeout_ms;
	int	max_connections;
	int	max_connection_age_ms, shutdown_grace_ms;
};

struct conf {
	char			*path;
	char			*user;			/* NULL: no drop */
	char			*listen_address;
	int			 listen_port;
	int			 workers;

	char			*tls_certificate;
	char			*tls_private_key;
	char			*tls_client_ca;
	char			*tls_crl;		/* NULL: none */
	int			 tls_crl_refresh_s;
	int			 tls_min_version;	/* TLS1_2_VERSION or TLS1_3_VERSION */

	int			 admin_enabled;
	char			*admin_address;
	int			 admin_port;
	int			 admin_tenant_labels;

	struct conf_limits	 limits;

	int			 has_keys;
	char			*keys_token_keys, *keys_data_keys;
	char			**keys_audit_readers;
	size_t			 keys_naudit_readers;
	char			*keys_audit_index, *keys_audit_signer;

	int			 has_audit;
	char			*audit_directory, *audit_instance;
	uint64_t		 audit_segment_bytes;
	int			 audit_segment_seconds, audit_retention_days;
	uint64_t		 audit_min_free_bytes;
	int			 audit_checkpoint_records, audit_checkpoint_seconds;

	struct conf_tenant	*tenants;
	size_t			 ntenants;
	struct conf_integration	*integrations;
	size_t			 nintegrations;
};

/* With the implemented mask: do not read secret header files (their
 * values are left empty) nor check that certificate and key files exist.
 * For the audit process (forked before any secret is read) and for the
 * reviewer tools, which may run where those files are not. */
#define CONF_NO_FILES	(1u << 31)

/*
 * Load and validate path. implemented: bit (1 << action) set for every
 * action this build can apply; a rule with another action is refused with
 * a message saying so. Relative file names in the config are taken as
 * written (relative to the working directory). Secret header files are
 * read; certificates are not loaded here (tls.c does that).
 * Returns the config, or NULL with "FILE:LINE: object.key: message" in err.
 */
struct conf *conf_load(const char *path, unsigned implemented, char *err,
	    size_t errlen);
void	conf_free(struct conf *c);

/* The tenant whose clients list holds identity, or NULL. */
const struct conf_tenant *conf_tenant_by_client(const struct conf *c,
	    const char *identity);
/* The tenant's use of integration, or NULL. */
const struct conf_use *conf_tenant_use(const struct conf_tenant *t,
	    const struct conf_integration *ig);
const struct conf_integration *conf_integration_by_name(const struct conf *c,
	    const char *name);

#endif
