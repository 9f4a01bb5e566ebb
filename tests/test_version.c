/* SPDX-License-Identifier: MIT */
/*
 * The version macros (awith/version.h, through awith/core.h) and the
 * running library's aw_version() agree.
 */
#include "harness.h"

#include <awith/core.h>

#include <stdio.h>
#include <string.h>

AW_TEST(version_string_of_the_library_matches_the_header)
{
	CHECK_STR(aw_version(), AW_VERSION_STRING);
	char s[32];
	snprintf(s, sizeof s, "%d.%d.%d", AW_VERSION_MAJOR, AW_VERSION_MINOR, AW_VERSION_PATCH);
	CHECK_STR(aw_version(), s);
}

AW_TEST(version_number_of_the_library_matches_the_header)
{
	CHECK_EQ(aw_version_number(), AW_VERSION_NUMBER);
	CHECK_EQ(AW_VERSION_NUMBER, AW_VERSION_MAJOR * 10000 + AW_VERSION_MINOR * 100 + AW_VERSION_PATCH);
}

/* The number orders versions as #if needs: a later version is larger. */
AW_TEST(version_numbers_compare_in_release_order)
{
	CHECK(AW_VERSION_ENCODE(0, 2, 0) < AW_VERSION_ENCODE(0, 2, 1));
	CHECK(AW_VERSION_ENCODE(0, 2, 99) < AW_VERSION_ENCODE(0, 3, 0));
	CHECK(AW_VERSION_ENCODE(0, 99, 99) < AW_VERSION_ENCODE(1, 0, 0));
#if AW_VERSION_NUMBER < AW_VERSION_ENCODE(0, 2, 0)
	CHECK(!"AW_VERSION_NUMBER is usable in #if and at least 0.2.0");
#endif
}
