/* SPDX-License-Identifier: MIT */
/*
 * llhttp's api.c (Debian's node-llhttp ships the C sources, no library),
 * compiled into awith in strict mode. Generated code: its unused callback
 * parameters are not ours to fix. See meson.build for where it is found.
 */
#define LLHTTP_STRICT_MODE 1
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include AW_LLHTTP_API_C   /* "<dir>/api.c", from meson.build */
