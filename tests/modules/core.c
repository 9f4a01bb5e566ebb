/* SPDX-License-Identifier: MIT */
/* A core-only program (tests/check_modules.sh): built with
 * `pkg-config awith-core` only; a task sleeps, the versions agree. */
#include <awith/core.h>

#include <stdio.h>
#include <string.h>

static int task(void *arg)
{
	(void)arg;
	if (aw_sleep(AW_MS(1)) < 0)
		return 1;
	return strcmp(aw_version(), AW_VERSION_STRING) == 0 ? 0 : 1;
}

int main(void)
{
	int rc = aw_run(task, NULL);
	printf("core %s: %d\n", aw_version(), rc);
	return rc == 0 ? 0 : 1;
}
