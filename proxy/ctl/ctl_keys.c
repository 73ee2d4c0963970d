/* ctl_keys.c -- subgatectl keys (not yet implemented in this build) */
#include <stdio.h>

#include "ctl.h"

int
ctl_keys_main(int argc, char **argv)
{
	(void)argc;
	fprintf(stderr, "subgatectl: keys %s: not implemented in this build\n", argv[0]);
	return 2;
}
