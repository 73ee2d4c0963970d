/* ctl_policy.c -- subgatectl policy (not yet implemented in this build) */
#include <stdio.h>

#include "ctl.h"

int
ctl_policy_main(int argc, char **argv)
{
	(void)argc;
	fprintf(stderr, "subgatectl: policy %s: not implemented in this build\n", argv[0]);
	return 2;
}
