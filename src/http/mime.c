/* SPDX-License-Identifier: MIT */
/*
 * Content types by file extension, for aw_http_file, aw_http_file_in and
 * static directories. A short table of what web servers serve (the types
 * nginx's mime.types gives the same extensions), text types with
 * "; charset=utf-8"; anything else is application/octet-stream, which a
 * browser downloads rather than renders (with X-Content-Type-Options:
 * nosniff, the static directories' answers say so).
 */
#include "internal.h"

#include <strings.h>

static const struct {
	const char *ext, *type;
} types[] = {
	{ "html", "text/html; charset=utf-8" },
	{ "htm", "text/html; charset=utf-8" },
	{ "css", "text/css; charset=utf-8" },
	{ "js", "text/javascript; charset=utf-8" },
	{ "mjs", "text/javascript; charset=utf-8" },
	{ "json", "application/json" },
	{ "map", "application/json" },
	{ "txt", "text/plain; charset=utf-8" },
	{ "md", "text/markdown; charset=utf-8" },
	{ "csv", "text/csv; charset=utf-8" },
	{ "xml", "application/xml" },
	{ "svg", "image/svg+xml" },
	{ "png", "image/png" },
	{ "jpg", "image/jpeg" },
	{ "jpeg", "image/jpeg" },
	{ "gif", "image/gif" },
	{ "webp", "image/webp" },
	{ "avif", "image/avif" },
	{ "ico", "image/vnd.microsoft.icon" },
	{ "woff", "font/woff" },
	{ "woff2", "font/woff2" },
	{ "ttf", "font/ttf" },
	{ "otf", "font/otf" },
	{ "pdf", "application/pdf" },
	{ "wasm", "application/wasm" },
	{ "zip", "application/zip" },
	{ "gz", "application/gzip" },
	{ "tar", "application/x-tar" },
	{ "mp3", "audio/mpeg" },
	{ "ogg", "audio/ogg" },
	{ "wav", "audio/wav" },
	{ "mp4", "video/mp4" },
	{ "webm", "video/webm" },
	{ "webmanifest", "application/manifest+json" },
};

const char *aw__http_mime_type(const char *path, size_t len)
{
	/* The extension: after the last '.' of the last path segment. */
	size_t i = len;
	while (i > 0 && path[i - 1] != '.' && path[i - 1] != '/')
		i--;
	if (i == 0 || path[i - 1] != '.')
		return "application/octet-stream";
	const char *ext = path + i;
	size_t elen = len - i;
	for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
		if (strlen(types[k].ext) == elen && strncasecmp(ext, types[k].ext, elen) == 0)
			return types[k].type;
	return "application/octet-stream";
}
