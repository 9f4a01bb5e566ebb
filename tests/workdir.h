/* SPDX-License-Identifier: MIT */
/* A private directory for a test's files, under $TMPDIR or /tmp (shared by
 * the file tests). Each test makes it, works in it, removes it. */
#ifndef AW_TEST_WORKDIR_H
#define AW_TEST_WORKDIR_H

#include <stdbool.h>
#include <stddef.h>

/* The directory's path, after make_workdir. */
extern char workdir[256];

/* mkdtemp "<$TMPDIR or /tmp>/awith-<tag>-XXXXXX" into workdir; false on
 * failure. */
bool make_workdir(const char *tag);
/* rm -rf the directory (a message on stderr if that fails). */
void remove_workdir(void);
/* "<workdir>/<name>" into out. */
void in_workdir(char *out, size_t len, const char *name);

#endif
