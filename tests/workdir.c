/* SPDX-License-Identifier: MIT */
/* See workdir.h. */
#include "workdir.h"

#include <stdio.h>
#include <stdlib.h>

char workdir[256];

bool make_workdir(const char *tag)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(workdir, sizeof workdir, "%s/awith-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
	return mkdtemp(workdir) != NULL;
}

void remove_workdir(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", workdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", workdir);
}

void in_workdir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", workdir, name);
}
