/* SPDX-License-Identifier: MIT */
/*
 * WebSocket echo server for bench/ws_bench.sh: GET /echo upgrades, and
 * every message comes back as it came (aw_app_ws, AW_FOR over the socket,
 * aw_ws_send). --port N as every example (aw_app_main).
 */
#include <awith/http.h>

static int echo(aw_ws *ws, aw_http_request *req, void *ud)
{
	(void)req, (void)ud;
	aw_ws_msg *msg;
	AW_WITH(aw_ws_mgr(ws)) {
		AW_FOR(msg, aw_ws_messages(ws)) {
			if (aw_ws_send(ws, msg->type, msg->data, msg->len) < 0)
				break;
		}
	}
	return aw_error_pending();
}

int main(int argc, char **argv)
{
	aw_app *app;
	if (aw_app_new(&app, "ws_echo") < 0)
		return 1;
	if (aw_app_ws(app, "/echo", echo, NULL, NULL) < 0) {
		aw_app_free(app);
		return 1;
	}
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc == 0 ? 0 : 1;
}
