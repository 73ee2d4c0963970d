/* ctl_audit.c -- subgatectl audit (not yet implemented in this build) */
#include <stdio.h>

#include "ctl.h"

int
ctl_audit_main(int argc, char **argv)
{
	(void)argc;
	fprintf(stderr, "subgatectl: audit %s: not implemented in this build\n", argv[0]);
	return 2;
}
