#!/usr/bin/env bash
# make demo-sockets: two real connections between two network
# namespaces over veth, one with TCP keepalive and one without, then
# `kadiag sockets` on the client. Everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/kadiag
if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root (it creates network namespaces); try: sudo make demo" >&2
	exit 2
fi
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
srv=kadiag-demo-srv-$$ cli=kadiag-demo-cli-$$
pids=()
. scripts/lib/veth-pair.sh
cleanup() { veth_pair_cleanup "$srv" "$cli" "${pids[@]}"; }
trap cleanup EXIT
veth_pair "$srv" "$cli" kdemo 198.18.200

# The server accepts and holds connections, like a backend working on a slow request.
ip netns exec "$srv" "$py" -c '
import socket
s = socket.create_server(("198.18.200.1", 8080))
print("ready", flush=True)
held = []
while True:
    held.append(s.accept())' > "/tmp/$srv.out" &
pids+=($!)
for _ in $(seq 50); do grep -q ready "/tmp/$srv.out" 2>/dev/null && break; sleep 0.1; done
rm -f "/tmp/$srv.out"

# The client: one connection as most HTTP clients leave it (keepalive off),
# one with keepalive after 60 s idle.
ip netns exec "$cli" "$py" -c '
import signal, socket
off = socket.create_connection(("198.18.200.1", 8080))
on = socket.create_connection(("198.18.200.1", 8080))
on.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
on.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
on.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
on.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
print("ready", flush=True)
signal.pause()' > "/tmp/$cli.out" &
client=$!
pids+=($client)
for _ in $(seq 50); do grep -q ready "/tmp/$cli.out" 2>/dev/null && break; sleep 0.1; done
rm -f "/tmp/$cli.out"

echo "\$ kadiag sockets --pid $client --max-idle aws-nat"
set +e
"$bin" sockets --pid "$client" --max-idle aws-nat
code=$?
set -e
echo "(kadiag exit $code: 1 means a connection would be forgotten by an AWS NAT Gateway after 350 s idle)"
[ "$code" -le 1 ]
