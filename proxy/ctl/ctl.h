/* ctl.h -- subgatectl command groups */
#ifndef SUBGATE_CTL_H
#define SUBGATE_CTL_H

/* Each takes the arguments after the group word (argv[0] is the verb) and
 * returns the process exit status. Usage errors print to stderr and return 2. */
int	ctl_keys_main(int argc, char **argv);
int	ctl_policy_main(int argc, char **argv);
int	ctl_audit_main(int argc, char **argv);

#endif
