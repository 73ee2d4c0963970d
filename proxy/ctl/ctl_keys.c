/* ctl_keys.c -- subgatectl keys: init, sync, rotate, activate, shred, rotate-master */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "ctl.h"
#include "keys.h"

static int
usage(void)
{
	fprintf(stderr,
	    "usage: subgatectl keys init DIR\n"
	    "       subgatectl keys sync -c FILE\n"
	    "       subgatectl keys rotate -c FILE --tenant T --integration I\n"
	    "       subgatectl keys activate -c FILE --tenant T --integration I "
	    "--version N\n"
	    "       subgatectl keys shred -c FILE --tenant T [--integration I]\n"
	    "       subgatectl keys rotate-master -c FILE\n");
	return 2;
}

struct opts {
	const char	*conf;
	const char	*tenant;
	const char	*integration;
	const char	*version;
};

/* Parse -c/--tenant/--integration/--version after the verb. 0 or -1. */
static int
opts_parse(int argc, char **argv, struct opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	for (i = 1; i < argc; i++) {
		const char **slot = NULL;

		if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0)
			slot = &o->conf;
		else if (strcmp(argv[i], "--tenant") == 0)
			slot = &o->tenant;
		else if (strcmp(argv[i], "--integration") == 0)
			slot = &o->integration;
		else if (strcmp(argv[i], "--version") == 0)
			slot = &o->version;
		if (slot == NULL || i + 1 >= argc || *slot != NULL) {
			fprintf(stderr, "subgatectl keys %s: unexpected or "
			    "repeated argument \"%s\"\n", argv[0], argv[i]);
			return -1;
		}
		*slot = argv[++i];
	}
	if (o->conf == NULL) {
		fprintf(stderr, "subgatectl keys %s: -c FILE is required\n",
		    argv[0]);
		return -1;
	}
	return 0;
}

static int
finish(int rc, const char *verb, struct buf *report, const char *err)
{
	if (rc == 0)
		fputs(report->data != NULL ? report->data : "", stdout);
	else
		fprintf(stderr, "subgatectl keys %s: %s\n", verb, err);
	buf_free(report);
	return rc == 0 ? 0 : 1;
}

static int
keys_cmd_init(int argc, char **argv)
{
	struct buf	report = { 0 };
	char		err[1024];
	int		rc;

	if (argc != 2)
		return usage();
	rc = keys_init_dir(argv[1], &report, err, sizeof(err));
	if (rc == 0)
		buf_printf(&report, "REMINDER: %s/offline/audit-reader.key is the "
		    "audit reader's PRIVATE key: move it off the gateway host "
		    "now (compliance staff keep it; the gateway only needs "
		    "audit-reader.pub)\n", argv[1]);
	return finish(rc, argv[0], &report, err);
}

int
ctl_keys_main(int argc, char **argv)
{
	struct keys_name *pairs = NULL;
	struct conf	*c = NULL;
	struct buf	 report = { 0 };
	struct opts	 o;
	unsigned long	 v;
	uint32_t	 ver;
	char		 err[1024], *end;
	size_t		 npairs = 0;
	int		 rc = -1;

	if (argc < 1)
		return usage();
	if (strcmp(argv[0], "init") == 0)
		return keys_cmd_init(argc, argv);
	if (strcmp(argv[0], "sync") != 0 && strcmp(argv[0], "rotate") != 0 &&
	    strcmp(argv[0], "activate") != 0 && strcmp(argv[0], "shred") != 0 &&
	    strcmp(argv[0], "rotate-master") != 0) {
		fprintf(stderr, "subgatectl keys: unknown command \"%s\"\n",
		    argv[0]);
		return usage();
	}
	if (opts_parse(argc, argv, &o) == -1)
		return usage();
	/* Which arguments each verb takes. */
	if ((strcmp(argv[0], "sync") == 0 || strcmp(argv[0], "rotate-master") == 0) &&
	    (o.tenant != NULL || o.integration != NULL || o.version != NULL))
		return usage();
	if ((strcmp(argv[0], "rotate") == 0 || strcmp(argv[0], "activate") == 0) &&
	    (o.tenant == NULL || o.integration == NULL))
		return usage();
	if ((strcmp(argv[0], "activate") == 0) != (o.version != NULL))
		return usage();
	if (strcmp(argv[0], "shred") == 0 && o.tenant == NULL)
		return usage();

	if ((c = conf_load(o.conf, (1u << POLICY_NACTIONS) - 1, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "subgatectl keys %s: %s\n", argv[0], err);
		return 1;
	}
	if (!c->has_keys || c->keys_token_keys == NULL ||
	    c->keys_data_keys == NULL) {
		snprintf(err, sizeof(err), "%s: keys: token_keys and data_keys "
		    "are required", o.conf);
		goto done;
	}
	pairs = keys_conf_pairs(c, &npairs);
	if (pairs == NULL && npairs != 0) {
		snprintf(err, sizeof(err), "out of memory");
		goto done;
	}
	if (strcmp(argv[0], "sync") == 0)
		rc = keys_sync_files(c->keys_token_keys, c->keys_data_keys,
		    pairs, npairs, &report, err, sizeof(err));
	else if (strcmp(argv[0], "rotate") == 0)
		rc = keys_rotate_files(c->keys_token_keys, c->keys_data_keys,
		    o.tenant, o.integration, &ver, &report, err, sizeof(err));
	else if (strcmp(argv[0], "activate") == 0) {
		v = strtoul(o.version, &end, 10);
		if (*o.version < '1' || *o.version > '9' || *end != '\0' ||
		    v > UINT32_MAX) {
			snprintf(err, sizeof(err), "--version: expected a "
			    "positive number");
			goto done;
		}
		rc = keys_activate_files(c->keys_token_keys, c->keys_data_keys,
		    o.tenant, o.integration, (uint32_t)v, &report, err,
		    sizeof(err));
	} else if (strcmp(argv[0], "shred") == 0)
		rc = keys_shred_files(c->keys_token_keys, c->keys_data_keys,
		    o.tenant, o.integration, pairs, npairs, &report, err,
		    sizeof(err));
	else
		rc = keys_rotate_master_files(c->keys_token_keys,
		    c->keys_data_keys, &ver, &report, err, sizeof(err));
done:
	free(pairs);
	conf_free(c);
	return finish(rc, argv[0], &report, err);
}
