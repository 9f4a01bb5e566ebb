/* SPDX-License-Identifier: MIT */
/* An io program (tests/check_modules.sh): built with `pkg-config awith-io`
 * only. A TLS client context (OpenSSL), a listener on a free port, a
 * connection to it: the line sent arrives. */
#include <awith/io.h>

#include <stdio.h>
#include <string.h>

static int task(void *arg)
{
	(void)arg;
	aw_tls_ctx *tls;
	if (aw_tls_client_ctx(&tls, NULL) < 0)
		return 1;
	aw_tls_ctx_free(tls);

	aw_listener *l;
	if (aw_tcp_listen(&l, "127.0.0.1", 0, NULL) < 0)
		return 2;
	int ok = 0;
	aw_stream *c, *s;
	if (aw_tcp_connect(&c, "127.0.0.1", aw_listener_port(l), aw_deadline_after(AW_SEC(5))) == 0) {
		if (aw_listener_accept(l, &s, aw_deadline_after(AW_SEC(5))) == 0) {
			const char *line;
			size_t len;
			if (aw_stream_write(c, "hello\n", 6, aw_deadline_after(AW_SEC(5))) == 0 &&
			    aw_stream_read_line(s, 100, &line, &len, aw_deadline_after(AW_SEC(5))) >= 0)
				ok = len >= 5 && memcmp(line, "hello", 5) == 0;
			aw_error_clear();
			if (aw_stream_close(s, aw_deadline_after(AW_SEC(1))) < 0)
				aw_error_clear();
		}
		if (aw_stream_close(c, aw_deadline_after(AW_SEC(1))) < 0)
			aw_error_clear();
	}
	aw_listener_close(l);
	aw_error_clear();
	return ok ? 0 : 3;
}

int main(void)
{
	int rc = aw_run(task, NULL);
	printf("io: %d\n", rc);
	return rc == 0 ? 0 : 1;
}
