/* SPDX-License-Identifier: MIT */
/*
 * awith/version.h — the version of the headers, for the preprocessor, and
 * of the library a program runs with.
 *
 *     #if AW_VERSION_NUMBER >= AW_VERSION_ENCODE(0, 3, 0)
 *         ... use something 0.3.0 added ...
 *     #endif
 *
 * AW_VERSION_* describe the headers the program was compiled against;
 * aw_version() and aw_version_number() the libawith-core it runs with
 * (the two differ when the shared library was upgraded under a built
 * program). Included by awith/core.h. meson.build refuses to configure
 * when these numbers differ from its project() version.
 */
#ifndef AWITH_VERSION_H
#define AWITH_VERSION_H

/* The version of these headers: what the program is compiled against.
 * MAJOR changes break the API; before 1.0, MINOR changes may too (see
 * docs/design.md, "Modules and the soname"). */
#define AW_VERSION_MAJOR 0
#define AW_VERSION_MINOR 2
#define AW_VERSION_PATCH 0
#define AW_VERSION_STRING "0.2.0"

/* MAJOR, MINOR, PATCH as one comparable number: 0.2.0 is 200, 1.12.3 is
 * 11203 (MINOR and PATCH below 100). */
#define AW_VERSION_ENCODE(major, minor, patch) ((major) * 10000 + (minor) * 100 + (patch))
#define AW_VERSION_NUMBER AW_VERSION_ENCODE(AW_VERSION_MAJOR, AW_VERSION_MINOR, AW_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

/* The running library's version, "MAJOR.MINOR.PATCH" (static storage). */
const char *aw_version(void);
/* The running library's AW_VERSION_NUMBER. */
int aw_version_number(void);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
