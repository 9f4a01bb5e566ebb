/* SPDX-License-Identifier: MIT */
/*
 * Small compiler helpers every layer of src/ uses. Not installed.
 * (AW_CONTAINER_OF is public: awith/ext.h.)
 */
#ifndef AW_COMMON_UTIL_H
#define AW_COMMON_UTIL_H

#define AW_LIKELY(x) __builtin_expect(!!(x), 1)
#define AW_UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif
