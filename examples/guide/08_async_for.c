/* SPDX-License-Identifier: MIT */
/*
 * 08_async_for — the seed's
 *
 *     async with some_streaming_context() as stream:
 *         async for chunk in stream:
 *             await process(chunk)
 *
 * over a file of 10,000 bytes read in 4 KiB chunks. An awith iterator is
 * itself a manager, so AW_FOR is both lines: it opens the file, steps
 * through it (each read on the thread pool) and closes it on every way out
 * of the loop. The file is a temp file whose block removes it.
 */
#include <awith/io.h>

#include <stdio.h>
#include <string.h>

/* await process(chunk) */
static int process(const aw_chunk *chunk)
{
	printf("chunk at %lld: %zu bytes\n", (long long)chunk->offset, chunk->len);
	return aw_sleep(AW_MS(1));   /* processing may wait */
}

static int amain(void *arg)
{
	(void)arg;
	static char text[10000];
	memset(text, 'x', sizeof text);

	aw_tempfile tf;
	AW_WITH(aw_tempfile_init(&tf, NULL, "guide-async-for")) {
		if (aw_file_pwrite(tf.fd, text, sizeof text, 0) < 0)
			break;

		aw_file_chunks stream;
		aw_chunk *chunk;
		AW_FOR(chunk, aw_file_chunks_init(&stream, tf.path, 4096)) {
			if (process(chunk) < 0)
				break;   /* the error goes to the iterator's exit and on */
		}
	}
	if (aw_error_pending())
		return aw_error_pending();
	puts("done: the file is closed and removed");
	return 0;
}

int main(void)
{
	return aw_run(amain, NULL) == 0 ? 0 : 1;
}
