/* SPDX-License-Identifier: MIT */
/*
 * The running library's version (awith/version.h): the header's numbers as
 * this library was compiled, so a program can compare them with the
 * AW_VERSION_* it was compiled against.
 */
#include "awith/version.h"

const char *aw_version(void)
{
	return AW_VERSION_STRING;
}

int aw_version_number(void)
{
	return AW_VERSION_NUMBER;
}
