/* ctl.c -- subgatectl: key, policy and audit tools for operators, reviewers and compliance */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: subgatectl keys init DIR\n"
	    "       subgatectl keys sync|rotate|activate|shred|rotate-master -c FILE ...\n"
	    "       subgatectl policy explain -c FILE --integration I --method M --path P\n"
	    "                  [--tenant T] [--header 'Name: value']... BODYFILE|-\n"
	    "       subgatectl policy diff OLD.conf NEW.conf\n"
	    "       subgatectl audit verify DIR --public-key FILE [--anchor LINE]\n"
	    "       subgatectl audit show DIR --key READER.key [filters] [--format jsonl|csv|table]\n");
}

int
main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (argc < 3) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "keys") == 0)
		return ctl_keys_main(argc - 2, argv + 2);
	if (strcmp(argv[1], "policy") == 0)
		return ctl_policy_main(argc - 2, argv + 2);
	if (strcmp(argv[1], "audit") == 0)
		return ctl_audit_main(argc - 2, argv + 2);
	fprintf(stderr, "subgatectl: unknown command group \"%s\"\n", argv[1]);
	usage(stderr);
	return 2;
}
