# awith 0.1 -> 0.2: the pure renames of issue 11 ("one API").
# Apply with: sed -i -E -f migrate-0.2.sed FILES...   (GNU sed; \b = word boundary)
# Lines marked `migrate-0.2: keep` (docs/migration.md's old names) are left alone.
# Signature changes (aw_shield, aw_pg_exec, aw_http_depends,
# aw_client_response_chunks, &lock.mgr ...) are not renames: see docs/migration.md.

# (a) block managers: aw_<what>_init(self, ...) returns &self->mgr
/migrate-0\.2: keep/!s/\baw_tcp_connection\b/aw_tcp_connection_init/g
/migrate-0\.2: keep/!s/\baw_unix_connection\b/aw_unix_connection_init/g
/migrate-0\.2: keep/!s/\baw_pg_fetch\b/aw_pg_rows_init/g
/migrate-0\.2: keep/!s/\baw_client_request_init\b/aw_client_response_init/g
/migrate-0\.2: keep/!s/\baw_client_get\b/aw_client_get_init/g
/migrate-0\.2: keep/!s/\baw_client_post_json\b/aw_client_post_json_init/g
# scopes
/migrate-0\.2: keep/!s/\baw_timeout_after\b/aw_timeout_init/g
/migrate-0\.2: keep/!s/\baw_timeout_at\b/aw_deadline_init/g
/migrate-0\.2: keep/!s/\baw_move_on_after\b/aw_move_on_init/g
/migrate-0\.2: keep/!s/\baw_move_on_at\b/aw_move_on_at_init/g

# one chunk type (core.h)
/migrate-0\.2: keep/!s/\baw_client_chunk\b/aw_chunk/g
/migrate-0\.2: keep/!s/\baw_pg_chunk\b/aw_chunk/g
