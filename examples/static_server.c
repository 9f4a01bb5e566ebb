/* SPDX-License-Identifier: MIT */
/*
 * static_server — a directory on the web: Starlette's StaticFiles mounted
 * in a FastAPI app, or nginx's `root`.
 *
 *     app = FastAPI()
 *     app.mount("/", StaticFiles(directory="public", html=True))
 *
 * aw_app_static mounts the directory under a prefix: files with their
 * content type, ETag and Last-Modified (conditional requests answer 304),
 * single ranges (206), a directory's index.html, NAME.gz for clients that
 * take gzip, bodies sent with sendfile, and nothing outside the directory
 * whatever the path's encoding or the symlinks in it (docs/http.md,
 * "Static directories").
 *
 *     $ ./static_server --dir public --port 8000 &
 *     $ curl -s http://127.0.0.1:8000/              # public/index.html
 *     $ curl -s -r 0-99 http://127.0.0.1:8000/big.bin | wc -c
 *     100
 *
 * --dir DIR (default "."), --prefix P (default "/"); the other options are
 * aw_app_main's (--port, --host, --workers, --access-log).
 */
#include <awith/http.h>

#include <string.h>

int main(int argc, char **argv)
{
	const char *dir = ".", *prefix = "/";
	char *rest[64];
	int n = 0;
	for (int i = 0; i < argc && n < 63; i++) {
		if ((strcmp(argv[i], "--dir") == 0 || strcmp(argv[i], "--prefix") == 0) && i + 1 < argc) {
			*(argv[i][2] == 'd' ? &dir : &prefix) = argv[i + 1];
			i++;
		} else {
			rest[n++] = argv[i];
		}
	}
	rest[n] = NULL;
	aw_app *app;
	if (aw_app_new(&app, "static") < 0)
		return 1;
	if (aw_app_static(app, prefix, dir, NULL)) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return 1;
	}
	int rc = aw_app_main(app, n, rest);
	aw_app_free(app);
	return rc;
}
