/* SPDX-License-Identifier: MIT */
/*
 * 05_temporary_file — the seed's @asynccontextmanager, line for line:
 *
 *     @asynccontextmanager
 *     async def temporary_file():
 *         print("Setting up async resource")
 *         yield "/tmp/temp.txt"
 *         print("Cleaning up async resource")
 *
 *     async def main():
 *         async with temporary_file() as path:
 *             print(f"Using temp file at {path}")
 *
 * Output, exactly:
 *     Setting up async resource
 *     Using temp file at /tmp/temp.txt
 *     Cleaning up async resource
 *
 * (Like the seed, it only passes a name around. examples/temp_file.c makes
 * and removes a real file; io.h's aw_tempfile_init is the library's own.)
 */
#include <awith/core.h>

#include <stdio.h>

static int temporary_file(aw_gen *g, void *arg)
{
	(void)arg;
	puts("Setting up async resource");
	int err = aw_gen_yield(g, (char *)"/tmp/temp.txt");
	puts("Cleaning up async resource");
	return err;   /* the body's error (0 if none) goes on */
}

static int amain(void *arg)
{
	(void)arg;
	aw_gen tf;
	AW_WITH(aw_gen_init(&tf, "temporary_file", temporary_file, NULL)) {
		const char *path = aw_gen_value(&tf);
		printf("Using temp file at %s\n", path);
	}
	return aw_error_pending();
}

int main(void)
{
	return aw_run(amain, NULL) == 0 ? 0 : 1;
}
