/* SPDX-License-Identifier: MIT */
/* Internal state of the client layer. Not installed. */
#ifndef AW_CLIENT_INTERNAL_H
#define AW_CLIENT_INTERNAL_H

#include <awith/client.h>

#include <curl/curl.h>
#include <stddef.h>

#include <awith/ext.h>
#include "../common/alloc.h"   /* aw__malloc and friends: every allocation of src/ */


typedef struct aw_client_sock aw_client_sock;

#define AW_CLIENT_SPARE_EASY 64

struct aw_client {
	CURLM *multi;
	CURLSH *share;                /* the cookie jar (opts.cookies), or NULL */
	struct curl_slist *headers;   /* the session's default headers */
	aw_client_sock *socks;        /* watched sockets */
	aw_client_xfer *xfers;        /* transfers of entered responses */
	aw_event timer_ev;            /* set when curl changes its timeout */
	aw_event timer_done;          /* set when the timer task has ended */
	aw_time timer_deadline;       /* curl's timeout, AW_NEVER: none */
	int in_action;
	bool closing;
	/* Entered with aw_enter: reported and released at loop end if never
	 * exited (the entry lives here, not in the caller's session struct,
	 * which may be gone by then). */
	aw_ledger_entry ledger;
	bool ledgered;
	char *label;                  /* the base URL, for reports */
	/* Easy handles of finished transfers, reset, for the next requests
	 * (one malloc'd handle with its buffers per request is most of a
	 * request's allocations). */
	CURL *spare[AW_CLIENT_SPARE_EASY];
	int nspare;
};

/* A growable byte buffer, always NUL-terminated when non-empty. */
typedef struct aw_client_buf {
	char *data;
	size_t len, cap;
} aw_client_buf;

/* Why our layer (not curl) ended a transfer. */
enum { AW_XFER_OURS_NONE, AW_XFER_OURS_CONNECT, AW_XFER_OURS_IDLE };

struct aw_client_xfer {
	CURL *easy;
	aw_client *c;                 /* the session's state; NULL once it is gone */
	aw_client_xfer *prev, *next;  /* in c->xfers */
	struct curl_slist *headers;
	char errbuf[CURL_ERROR_SIZE];
	bool finished, in_multi;
	CURLcode result;
	int ours;                     /* AW_XFER_OURS_*: we ended it */
	aw_client_buf body;
	aw_client_buf hdrs;           /* the final response's header lines */
	size_t max_body;
	bool too_long;
	char *json_body;              /* serialised request JSON */
	/* streamed bodies */
	bool streaming;
	bool headers_done;            /* the final response's headers are in */
	bool saw_location;
	bool follow;
	bool pending;                 /* body.data holds a chunk not yet taken */
	bool paused;                  /* the write callback said PAUSE */
	aw_event progress;            /* headers done, a chunk, or the end */
	/* deadlines kept by our layer */
	aw_time timeout;              /* the total timeout in force (0: none) */
	aw_time ctimeout;             /* the connect timeout in force (0: none) */
	aw_time idle;                 /* the read idle timeout (0: none) */
	aw_time started;              /* when it was handed to curl */
	aw_time last_rx;              /* the last sign of life (bytes in or out) */
	bool connected;               /* a connection is up for it */
	bool sock_opened;             /* curl opened a socket for it */
	curl_off_t last_ul, last_dl;  /* progress seen by the idle check */
	/* streamed request bodies */
	aw_client_body_fn body_fn;
	void *body_arg;
	struct aw_stream *body_stream;
	char *up_buf;
	size_t up_len, up_off;
	bool up_eof, up_paused, up_failed;
	aw_event up_room;             /* the pump may refill the buffer */
	aw_task *pump;                /* detached; NULL once it has ended */
	bool pump_started;
	bool pump_stopped;            /* we cancelled it (its error is not the
	                                 request's) */
	aw_event pump_done;           /* set when the pump has ended */
	int pump_rc;                  /* its result: 0, or the source's error */
	aw_error *pump_err;           /* and that error, taken from the pump */
	char *url;
	/* Entered with aw_enter: see aw_client.ledger. */
	aw_ledger_entry ledger;
	bool ledgered;
};

void aw__client_check_done(aw_client *c);
void aw__client_easy_setup(CURL *e);
void aw__client_xfer_link(aw_client *c, aw_client_xfer *x);
void aw__client_xfer_unlink(aw_client_xfer *x);
/* Take a transfer out of the CURLM (curl closes its connection if it was
 * not done). */
void aw__client_xfer_detach(aw_client_xfer *x);
/* An easy handle: a spare one of the session's, or a new one. NULL: out
 * of memory. */
CURL *aw__client_easy_get(aw_client *c);
/* Give a handle back: kept (reset) while the session lives and has room,
 * else cleaned up. c may be NULL. */
void aw__client_easy_put(aw_client *c, CURL *e);

#endif
