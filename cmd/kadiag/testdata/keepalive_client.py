# A real Python client for kadiag's sockets tests: one connection with
# keepalive off (Python's default), one with keepalive tuned and
# TCP_USER_TIMEOUT set. It prints what getsockopt reads for each, then
# "ready", and holds the connections until stdin closes.
import json
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
off = socket.create_connection((host, port))
on = socket.create_connection((host, port))
on.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
on.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 25)
on.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 4)
on.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)
on.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 7000)
for s in (off, on):
    print(json.dumps({
        "fd": s.fileno(),
        "local_port": s.getsockname()[1],
        "keepalive": s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "idle": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "intvl": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "cnt": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "user_timeout": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    }))
print("ready", flush=True)
sys.stdin.read()
