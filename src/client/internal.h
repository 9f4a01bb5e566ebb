/* Internal state of the client layer. Not installed. */
#ifndef AW_CLIENT_INTERNAL_H
#define AW_CLIENT_INTERNAL_H

#include <awith/client.h>

#include <curl/curl.h>

typedef struct aw_client_sock aw_client_sock;

struct aw_client {
	CURLM *multi;
	struct curl_slist *headers;   /* the session's default headers */
	aw_client_sock *socks;        /* watched sockets */
	aw_task *timer;               /* the timer task (joinable) */
	aw_event timer_ev;            /* set when curl changes its timeout */
	aw_time timer_deadline;       /* curl's timeout, AW_NEVER: none */
	int in_action;
	bool closing;
};

/* A growable byte buffer, always NUL-terminated when non-empty. */
typedef struct aw_client_buf {
	char *data;
	size_t len, cap;
} aw_client_buf;

struct aw_client_xfer {
	CURL *easy;
	struct curl_slist *headers;
	char errbuf[CURL_ERROR_SIZE];
	aw_event done;
	bool finished, in_multi;
	CURLcode result;
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
	aw_time ctimeout;             /* the connect timeout in force */
	aw_event progress;            /* headers done, a chunk, or the end */
	char *url;
};

void aw__client_check_done(aw_client *c);
void aw__client_easy_setup(CURL *e);

#endif
