#!/bin/bash
# SPDX-License-Identifier: MIT
# HTTPS from outside, with the real tools: examples/hello_server with
# --tls-cert/--tls-key beside its cleartext port, against curl and
# `openssl s_client`:
#   - curl over https with --cacert (HTTP/1.1 forced, and curl's own ALPN
#     offer, which gets h2), h2load over https (h2 by ALPN, streams in
#     flight), cleartext on the other port, curl without
#     the CA refuses (exit 60);
#   - s_client: a client trusting another CA refuses the certificate; a
#     wrong SNI gets the same (only) certificate, which a client that checks
#     the name refuses; TLS 1.2 and 1.3 work, TLS 1.0 and 1.1 are refused by
#     the server (protocol_version alert) even from a client willing to
#     speak them;
#   - a handshake that stalls is closed at --tls-handshake-timeout;
#   - mutual TLS (--tls-client-ca): curl with a client certificate gets 200,
#     without one the handshake fails;
#   - SIGHUP reload: a keep-alive s_client connection opened on the old
#     certificate is still served after the reload, and new curl
#     connections get the new certificate (one process, and 2 workers: the
#     supervisor passes SIGHUP on).
# Certificates are made here with openssl, in a temp dir removed on exit.
# Usage: check_https.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: check_https.sh BUILD_DIR}
hello=$build/examples/hello_server
pass=0 fails=0
ok()   { pass=$((pass + 1)); echo "ok $*"; }
fail() { fails=$((fails + 1)); echo "FAIL $*"; }
check() { # NAME COMMAND...: ok if the command succeeds
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name"; fi
}
finish() { echo "$pass passed, $fails failed"; ((fails == 0)); exit $?; }

for tool in curl openssl; do
    command -v "$tool" >/dev/null || { fail "$tool is not installed (scripts/test.sh installs it)"; finish; }
done
[[ -x $hello ]] || { fail "no $hello (configure with -Dexamples=true)"; finish; }

tmp=$(mktemp -d)
pids=()
cleanup() {
    local p
    exec 3>&- 2>/dev/null
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- certificates: CA 1 signs srv1 and the client's, CA 2 signs srv2 ----
(
    set -e
    cd "$tmp"
    K='genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256'
    for k in ca1 ca2 srv1 srv2 cli; do openssl $K -out $k.key; done
    for c in 1 2; do
        openssl req -x509 -new -key ca$c.key -subj "/CN=check_https CA $c" -days 2 -out ca$c.pem \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    done
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -new -key srv1.key -subj '/CN=localhost/O=first' -out srv1.csr
    openssl x509 -req -in srv1.csr -CA ca1.pem -CAkey ca1.key -CAcreateserial -days 2 -extfile server.ext -out srv1.pem
    openssl req -new -key srv2.key -subj '/CN=localhost/O=second' -out srv2.csr
    openssl x509 -req -in srv2.csr -CA ca2.pem -CAkey ca2.key -CAcreateserial -days 2 -extfile server.ext -out srv2.pem
    openssl req -new -key cli.key -subj '/CN=carol/O=check_https' -out cli.csr
    openssl x509 -req -in cli.csr -CA ca1.pem -CAkey ca1.key -CAcreateserial -days 2 -extfile client.ext -out cli.pem
) >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log"; fail "making the test certificates"; finish; }

wait_log() { # FILE PATTERN [COUNT]: until the log has COUNT lines matching (10 s)
    local i
    for ((i = 0; i < 200; i++)); do
        [ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "${3:-1}" ] && return 0
        sleep 0.05
    done
    return 1
}

# start NAME ARGS...: hello_server with ARGS on fresh ports ($port, $tport)
start() {
    local name=$1
    shift
    local log=$tmp/$name.log
    "$hello" --port 0 --tls-port 0 "$@" >"$log" 2>&1 &
    pids+=($!)
    pid=$!
    wait_log "$log" "listening on https://" "$(grep -q -- --workers <<<"$*" && echo 2 || echo 1)" ||
        { fail "$name: hello_server does not listen"; cat "$log"; finish; }
    # The ports it picked, from its log (the supervisor's, with workers).
    port=$(grep -m1 -oE '(listening|workers) on http://127.0.0.1:[0-9]+' "$log" | grep -oE '[0-9]+$')
    tport=$(grep -m1 -oE '(listening|workers) on https://127.0.0.1:[0-9]+' "$log" | grep -oE '[0-9]+$')
}

stop() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }

hello_body='{"message":"Hello, World!"}'

# ---- one app, both ports; curl ------------------------------------------
cp "$tmp/srv1.pem" "$tmp/live.pem"
cp "$tmp/srv1.key" "$tmp/live.key"
start main --tls-cert "$tmp/live.pem" --tls-key "$tmp/live.key" --tls-handshake-timeout 700
url=https://localhost:$tport/

out=$(curl -sS --max-time 5 --cacert "$tmp/ca1.pem" --http1.1 -w ' %{http_version}' "$url" 2>&1)
check "curl_https_http1.1_with_cacert" [ "$out" = "$hello_body 1.1" ]
out=$(curl -sS --max-time 5 --cacert "$tmp/ca1.pem" -w ' %{http_version}' "$url" 2>&1)
check "curl_offering_h2_gets_http2_by_alpn" [ "$out" = "$hello_body 2" ]
# h2load (nghttp2-client) over https: ALPN h2, 10 streams at once per
# connection, every request answered.
out=$(h2load -n 400 -c 4 -m 10 "$url" 2>&1)
check "h2load_over_https_gets_every_request_answered_on_h2" \
    bash -c 'grep -q "Application protocol: h2" <<<"$1" && grep -q "400 succeeded, 0 failed, 0 errored" <<<"$1"' _ "$out"
out=$(curl -sS --max-time 5 "http://127.0.0.1:$port/" 2>&1)
check "cleartext_port_beside_tls_still_serves" [ "$out" = "$hello_body" ]
curl -sS --max-time 5 "$url" >/dev/null 2>&1
check "curl_without_the_ca_refuses_the_certificate_exit_60" [ $? -eq 60 ]
curl -sS --max-time 5 --cacert "$tmp/ca2.pem" "$url" >/dev/null 2>&1
check "curl_trusting_another_ca_refuses_exit_60" [ $? -eq 60 ]

# ---- openssl s_client -----------------------------------------------------
sc() { # ARGS...: s_client to the TLS port, no input; output in $sc_out, status in $sc_rc
    sc_out=$(timeout 10 openssl s_client -connect "127.0.0.1:$tport" "$@" </dev/null 2>&1)
    sc_rc=$?
}
sc -servername localhost -CAfile "$tmp/ca1.pem" -verify_return_error -verify_hostname localhost
check "s_client_verifies_the_chain_and_the_name" grep -q "^Verification: OK" <<<"$sc_out"
sc -servername localhost -CAfile "$tmp/ca2.pem" -verify_return_error
check "s_client_trusting_another_ca_refuses_the_certificate" \
    bash -c '[ '$sc_rc' -ne 0 ] && grep -q "unable to get local issuer certificate" <<<"$1"' _ "$sc_out"
sc -servername wrong.example -CAfile "$tmp/ca1.pem"
check "wrong_sni_gets_the_one_certificate_there_is" \
    bash -c 'grep -q "^Verification: OK" <<<"$1" && grep -q "subject=CN = localhost, O = first" <<<"$1"' _ "$sc_out"
sc -servername wrong.example -CAfile "$tmp/ca1.pem" -verify_return_error -verify_hostname wrong.example
check "wrong_sni_is_refused_by_a_client_that_checks_the_name" \
    bash -c '[ '$sc_rc' -ne 0 ] && grep -q "hostname mismatch" <<<"$1"' _ "$sc_out"
sc -tls1_2 -CAfile "$tmp/ca1.pem"
check "tls1.2_is_accepted" bash -c 'grep -q "^New, TLSv1.2, Cipher is" <<<"$1" && grep -q "^Verification: OK" <<<"$1"' _ "$sc_out"
sc -tls1_2 -CAfile "$tmp/ca1.pem"
check "tls1.2_uses_a_forward_secret_aead_cipher" grep -Eq "^New, TLSv1.2, Cipher is ECDHE-ECDSA-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)" <<<"$sc_out"
sc -tls1_3 -CAfile "$tmp/ca1.pem"
check "tls1.3_is_accepted" bash -c 'grep -q "^New, TLSv1.3, Cipher is" <<<"$1" && grep -q "^Verification: OK" <<<"$1"' _ "$sc_out"
# The client must really offer 1.0/1.1 (Debian's OpenSSL refuses them at
# its default security level): SECLEVEL=0. The server answers with a
# protocol_version alert.
for v in tls1 tls1_1; do
    sc -"$v" -cipher 'DEFAULT:@SECLEVEL=0'
    check "${v}_is_refused_by_the_server_with_a_protocol_version_alert" \
        bash -c '[ '$sc_rc' -ne 0 ] && grep -Eq "alert protocol version|unsupported protocol|wrong version number" <<<"$1"' _ "$sc_out"
done
# A TLS 1.2 client offering only CBC ciphers: no shared cipher.
sc -tls1_2 -cipher 'ECDHE-ECDSA-AES128-SHA' -CAfile "$tmp/ca1.pem"
check "tls1.2_cbc_only_client_finds_no_shared_cipher" bash -c '[ '$sc_rc' -ne 0 ]'

# Resumption by session ticket (stateless; OpenSSL's in-memory session
# cache is off, as nginx's default), TLS 1.3 and 1.2.
creq=$'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
for v in tls1_3 tls1_2; do
    rm -f "$tmp/sess"
    printf '%s' "$creq" | timeout 10 openssl s_client -connect "127.0.0.1:$tport" -"$v" -CAfile "$tmp/ca1.pem" \
        -sess_out "$tmp/sess" -ign_eof >"$tmp/sess1.out" 2>&1
    printf '%s' "$creq" | timeout 10 openssl s_client -connect "127.0.0.1:$tport" -"$v" -CAfile "$tmp/ca1.pem" \
        -sess_in "$tmp/sess" -ign_eof >"$tmp/sess2.out" 2>&1
    check "${v}_session_resumed_with_a_ticket" \
        bash -c 'grep -q "^New, " "$1" && grep -q "^Reused, " "$2" && grep -q "Hello, World" "$2"' _ "$tmp/sess1.out" "$tmp/sess2.out"
done

# ---- a handshake that stalls ----------------------------------------------
# The start of a record header, then nothing; read until the server closes.
t0=$(date +%s%N)
exec 4<>"/dev/tcp/127.0.0.1/$tport"
printf '\x16\x03\x01' >&4
timeout 10 cat <&4 >/dev/null 2>&1
stall=$((($(date +%s%N) - t0) / 1000000))
exec 4<&-
check "a_stalled_handshake_is_cut_at_the_timeout_(${stall}_ms_for_700)" [ "${stall:-0}" -ge 500 -a "${stall:-0}" -lt 3000 ]

# ---- reload on SIGHUP, an old keep-alive connection goes on -------------------
req=$'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'
mkfifo "$tmp/in"
openssl s_client -connect "127.0.0.1:$tport" -servername localhost -CAfile "$tmp/ca1.pem" -quiet \
    <"$tmp/in" >"$tmp/old.out" 2>"$tmp/old.err" &
old=$!
pids+=($old)
exec 3>"$tmp/in"
printf '%s' "$req" >&3
for ((i = 0; i < 100; i++)); do grep -q 'Hello, World' "$tmp/old.out" && break; sleep 0.05; done
check "old_connection_served_before_the_reload" grep -q 'Hello, World' "$tmp/old.out"
cp "$tmp/srv2.pem" "$tmp/live.pem"
cp "$tmp/srv2.key" "$tmp/live.key"
kill -HUP "$pid"
wait_log "$tmp/main.log" 'SIGHUP: reloaded'
out=$(curl -sS --max-time 5 --cacert "$tmp/ca2.pem" "$url" 2>&1)
check "after_sighup_new_connections_get_the_new_certificate" [ "$out" = "$hello_body" ]
curl -sS --max-time 5 --cacert "$tmp/ca1.pem" "$url" >/dev/null 2>&1
check "after_sighup_nobody_gets_the_old_certificate" [ $? -eq 60 ]
printf '%s' "$req" >&3
for ((i = 0; i < 100; i++)); do [ "$(grep -c 'Hello, World' "$tmp/old.out")" -ge 2 ] && break; sleep 0.05; done
check "the_old_keepalive_connection_is_still_served_after_the_reload" [ "$(grep -c 'Hello, World' "$tmp/old.out")" -eq 2 ]
exec 3>&-
kill "$old" 2>/dev/null   # -quiet ignores the end of its input: it would wait for the idle timeout
wait "$old" 2>/dev/null
stop

# ---- mutual TLS ---------------------------------------------------------------
start mtls --tls-cert "$tmp/srv1.pem" --tls-key "$tmp/srv1.key" --tls-client-ca "$tmp/ca1.pem"
url=https://localhost:$tport/
out=$(curl -sS --max-time 5 --cacert "$tmp/ca1.pem" --cert "$tmp/cli.pem" --key "$tmp/cli.key" "$url" 2>&1)
check "mtls_curl_with_a_client_certificate_is_served" [ "$out" = "$hello_body" ]
curl -sS --max-time 5 --cacert "$tmp/ca1.pem" "$url" >/dev/null 2>&1
check "mtls_curl_without_a_client_certificate_is_refused" [ $? -ne 0 ]
creq=$'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
sc2=$(printf '%s' "$creq" | timeout 10 openssl s_client -connect "127.0.0.1:$tport" -CAfile "$tmp/ca1.pem" -quiet 2>&1)
check "mtls_s_client_without_a_certificate_gets_certificate_required" \
    bash -c 'grep -Eq "certificate required|alert handshake failure|peer did not return" <<<"$1" && ! grep -q "Hello" <<<"$1"' _ "$sc2"
sc2=$(printf '%s' "$creq" | timeout 10 openssl s_client -connect "127.0.0.1:$tport" -CAfile "$tmp/ca1.pem" \
    -cert "$tmp/cli.pem" -key "$tmp/cli.key" -quiet 2>&1)
check "mtls_s_client_with_a_certificate_is_served" grep -q 'Hello, World' <<<"$sc2"
stop

# ---- 2 workers: SIGHUP to the supervisor reaches both ----------------------------
cp "$tmp/srv1.pem" "$tmp/live.pem"
cp "$tmp/srv1.key" "$tmp/live.key"
start workers --workers 2 --tls-cert "$tmp/live.pem" --tls-key "$tmp/live.key"
url=https://localhost:$tport/
cp "$tmp/srv2.pem" "$tmp/live.pem"
cp "$tmp/srv2.key" "$tmp/live.key"
kill -HUP "$pid"
wait_log "$tmp/workers.log" '\] SIGHUP: reloaded' 2
good=0
for ((i = 0; i < 12; i++)); do
    [ "$(curl -sS --max-time 5 --cacert "$tmp/ca2.pem" "$url" 2>/dev/null)" = "$hello_body" ] && good=$((good + 1))
done
check "workers_every_new_connection_gets_the_new_certificate_($good/12)" [ "$good" -eq 12 ]
check "workers_both_workers_and_the_supervisor_reloaded" \
    bash -c '[ "$(grep -c "\] SIGHUP: reloaded" "$1")" -eq 2 ] && grep -q "supervisor: SIGHUP: reloaded" "$1"' _ "$tmp/workers.log"

# ---- 2 workers: SIGUSR2 hands the TLS port's sockets over too --------------------
# Requests over TLS go on while the next generation takes over: every one
# is answered, and the new generation names its inherited TLS sockets.
(for ((i = 0; i < 60; i++)); do
    curl -sS --max-time 5 --cacert "$tmp/ca2.pem" -o /dev/null -w '%{http_code}\n' "$url" 2>&1
    sleep 0.02
done) >"$tmp/usr2.codes" &
load=$!
sleep 0.3
kill -USR2 "$pid"
wait_log "$tmp/workers.log" 'graceful restart: pid .* serves'
next=$(grep -m1 -oE 'graceful restart: started .* \(pid [0-9]+\)' "$tmp/workers.log" | grep -oE '[0-9]+\)$' | tr -d ')')
[ -n "$next" ] && pids+=("$next")
wait "$load"
check "usr2_the_next_generation_inherits_the_tls_sockets" \
    grep -q 'inherited listening socket(s) (LISTEN_FDS), 2 of them TLS' "$tmp/workers.log"
check "usr2_every_https_request_during_the_restart_is_answered_($(grep -c '^200$' "$tmp/usr2.codes")/60)" \
    [ "$(grep -c '^200$' "$tmp/usr2.codes")" -eq 60 ]
# What curl said of the ones that were not answered, and what the servers
# logged around the restart, for whoever reads a failure.
if [ "$(grep -c '^200$' "$tmp/usr2.codes")" -ne 60 ]; then
    grep -v '^200$' "$tmp/usr2.codes" | sed 's/^/    curl: /'
    grep -iE 'restart|drain|shutdown|error|warn' "$tmp/workers.log" | tail -20 | sed 's/^/    log: /'
fi
wait "$pid" 2>/dev/null
out=$(curl -sS --max-time 5 --cacert "$tmp/ca2.pem" "$url" 2>&1)
check "usr2_the_new_generation_serves_https_on_the_same_port" [ "$out" = "$hello_body" ]
[ -n "$next" ] && { kill -TERM "$next" 2>/dev/null; for ((i = 0; i < 100; i++)); do kill -0 "$next" 2>/dev/null || break; sleep 0.05; done; }

finish
