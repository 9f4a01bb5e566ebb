/* SPDX-License-Identifier: MIT */
/*
 * Route awith's log records to journald (awith/log.h, a callback sink).
 *
 * The core library writes no journal itself (it links only libc); this
 * sink maps each record onto sd_journal_sendv: MESSAGE, PRIORITY (debug 7,
 * info 6, warn 4, error 3), CODE_FILE/CODE_LINE/CODE_FUNC from the call
 * site, SYSLOG_IDENTIFIER, and every structured field as an upper-case
 * journal field (TASK, REQUEST_ID, ERROR_CODE, ERROR_CAUSES ...), so
 * `journalctl REQUEST_ID=r-42` finds a request's records. The record then
 * goes on to the sink that was installed before (here the default: the
 * line on stderr), so the console keeps its output.
 *
 * Built only when libsystemd is found (Debian: libsystemd-dev); out of
 * tree: cc journald_sink.c $(pkg-config --cflags --libs awith-core libsystemd)
 *
 *   journald_sink            log a few records to the journal
 *   journald_sink --print    also print each journal entry to stdout, as
 *                            FIELD=value lines with a blank line after each
 *                            (what tests/test_examples.c checks: a
 *                            container has no journald to read back)
 *
 * Prints at the end "journald: sent N entries", or, where no journald
 * runs (a container: no /run/systemd/journal/socket, and sd_journal_sendv
 * then drops entries silently), "journald: not running ...", or
 * "journald: not reachable (why)"; exits 0 either way (the records still
 * went to stderr).
 */
#include <awith/core.h>
#include <awith/log.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#define MAX_FIELDS 48

typedef struct journal_sink {
	aw_log_sink_fn next;   /* the sink installed before: forwarded to */
	void *next_ud;
	bool print;            /* --print */
	int sent, failed, last_error;
} journal_sink;

static int priority(aw_log_level l)
{
	return l >= AW_LOG_ERROR ? 3 : l >= AW_LOG_WARN ? 4 : l >= AW_LOG_INFO ? 6 : 7;
}

/* "request_id" -> "REQUEST_ID": journal field names are upper case
 * letters, digits and '_', and do not start with '_' (reserved). */
static void field_name(char *out, size_t size, const char *key)
{
	size_t n = 0;
	for (; *key && n + 1 < size; key++)
		out[n++] = isalnum((unsigned char)*key) ? (char)toupper((unsigned char)*key) : '_';
	out[n] = 0;
	if (out[0] == '_' || isdigit((unsigned char)out[0]))
		out[0] = 'F';
}

/* Called under the log lock (never twice at once): static buffers are fine. */
static void to_journal(void *ud, const aw_log_record *rec, const char *line, size_t len)
{
	journal_sink *j = ud;
	static char bufs[MAX_FIELDS][1024];
	struct iovec iov[MAX_FIELDS];
	int n = 0;
	snprintf(bufs[n], sizeof bufs[n], "MESSAGE=%s", rec->msg);
	n++;
	snprintf(bufs[n], sizeof bufs[n], "PRIORITY=%d", priority(rec->level));
	n++;
	snprintf(bufs[n], sizeof bufs[n], "SYSLOG_IDENTIFIER=journald_sink");
	n++;
	if (rec->loc) {
		snprintf(bufs[n++], sizeof bufs[0], "CODE_FILE=%s", rec->loc->file);
		snprintf(bufs[n++], sizeof bufs[0], "CODE_LINE=%d", rec->loc->line);
		snprintf(bufs[n++], sizeof bufs[0], "CODE_FUNC=%s", rec->loc->func);
	}
	if (rec->channel)
		snprintf(bufs[n++], sizeof bufs[0], "AWITH_CHANNEL=%s", rec->channel);
	for (size_t i = 0; i < rec->nfields && n < MAX_FIELDS; i++) {
		const aw_log_field *f = &rec->fields[i];
		/* The journal keeps its own time and priority; msg is MESSAGE. */
		if (!strcmp(f->key, "time") || !strcmp(f->key, "level") || !strcmp(f->key, "msg"))
			continue;
		char name[64], value[900];
		field_name(name, sizeof name, f->key);
		aw_log_field_text(f, value, sizeof value);
		snprintf(bufs[n++], sizeof bufs[0], "%s=%s", name, value);
	}
	for (int i = 0; i < n; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = strlen(bufs[i]);
		if (j->print)
			printf("%s\n", bufs[i]);
	}
	if (j->print)
		printf("\n");
	int rc = sd_journal_sendv(iov, n);
	if (rc < 0) {
		j->failed++;
		j->last_error = rc;
	} else {
		j->sent++;
	}
	if (j->next)
		j->next(j->next_ud, rec, line, len);
	else
		fwrite(line, 1, len, stderr);
}

/* A manager whose exit replaces the body's error: a cause chain to log. */
static int enter_ok(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int exit_wraps(aw_mgr *m, int err)
{
	(void)m, (void)err;
	return aw_raise(-EIO, "saving the order failed");
}

static const aw_mgr_ops wrapping = { "wrapping", enter_ok, exit_wraps, NULL };

static int serve_one(void *arg)
{
	(void)arg;
	if (aw_log_context_set("request_id", "r-42"))
		return aw_error_pending();
	aw_log_kv(AW_LOG_INFO, "order received", AW_KV_INT("order", 1234), AW_KV_STR("user", "ann"));
	aw_mgr m = { &wrapping };
	AW_WITH(&m) {
		(void)!aw_raise(-ECONNREFUSED, "database at 10.0.0.5:5432 refused");
	}
	aw_log_error(AW_LOG_ERROR, aw_error_current(), "POST /orders failed");
	aw_error_clear();
	return 0;
}

int main(int argc, char **argv)
{
	journal_sink j = { .print = argc > 1 && strcmp(argv[1], "--print") == 0 };
	aw_log_sink_get(&j.next, &j.next_ud);
	aw_log_sink_set(to_journal, &j);
	aw_log(AW_LOG_INFO, "journald_sink starting");
	int rc = aw_run(serve_one, NULL);
	aw_log_sink_set(j.next, j.next_ud);
	if (rc < 0) {
		aw_error_print(stderr, aw_error_current());
		return 1;
	}
	if (access("/run/systemd/journal/socket", W_OK) != 0)
		printf("journald: not running here (no /run/systemd/journal/socket): %d entries dropped by libsystemd\n",
		       j.sent);
	else if (j.failed)
		printf("journald: not reachable (%s); %d entries not sent\n", strerror(-j.last_error), j.failed);
	else
		printf("journald: sent %d entries\n", j.sent);
	return 0;
}
