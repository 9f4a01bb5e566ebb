/* SPDX-License-Identifier: MIT */
/*
 * io's error range (AW_EIO_BASE, awith/io.h): its messages, registered with
 * aw_strerror when the library is loaded. Every object of the io layer
 * includes awith/io.h, which refers to aw__io_error_range, so a static link
 * of any program using the layer's header takes this file and its
 * constructor too.
 */
#include "internal.h"

const char aw__io_error_range = 1;

static const char *io_strerror(int code)
{
	switch (code) {
	case AW_ETLS: return "TLS failure";
	case AW_ETLS_VERIFY: return "TLS certificate verification failed";
	case AW_EDNS: return "name resolution failed";
	default: return NULL;
	}
}

__attribute__((constructor)) static void io_errors_register(void)
{
	(void)aw_error_range_register(AW_EIO_BASE, "io", io_strerror);
}
