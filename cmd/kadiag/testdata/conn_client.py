# A client whose connections the exporter tests open and close on command.
# stdin lines: "open KIND N" opens N connections of a kind, "close KIND N"
# closes N of them; each answers "ok". Kinds: off (keepalive off, Python's
# default), long (keepalive on, first probe after 600 s), short (keepalive
# on, first probe after 25 s).
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
idle = {"long": 600, "short": 25}
conns = {"off": [], "long": [], "short": []}
print("ready", flush=True)
for line in sys.stdin:
    op, kind, n = line.split()
    for _ in range(int(n)):
        if op == "open":
            s = socket.create_connection((host, port))
            if kind in idle:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle[kind])
            conns[kind].append(s)
        else:
            conns[kind].pop().close()
    print("ok", flush=True)
