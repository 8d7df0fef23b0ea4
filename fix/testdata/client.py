# A client for kadiag fix's tests, as client.c: connect to argv[1]:argv[2]
# (argv[3] "off": keepalive off after connect; "mptcp": an MPTCP socket),
# print the socket's options as JSON now and on every stdin line ("off"
# turns keepalive off first). "serve" instead listens on argv[1]:argv[2]
# and reports every socket it holds, the listener and each accepted one.
import json, socket, sys

def opts(s):
    g = s.getsockopt
    try:
        ut = g(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
    except OSError:
        ut = -1  # MPTCP has none
    return {"fd": s.fileno(), "keepalive": g(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "idle": g(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), "intvl": g(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "cnt": g(socket.IPPROTO_TCP, socket.TCP_KEEPCNT), "user_timeout": ut}

host, port = sys.argv[1], int(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else ""
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
socks = []
if mode == "serve":
    l = socket.socket(fam, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((host, port))
    l.listen()
    socks.append(l)
else:
    s = socket.socket(fam, socket.SOCK_STREAM, 262 if mode == "mptcp" else 0)
    s.connect((host, port))
    if mode == "off":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
    socks.append(s)
print(json.dumps([opts(s) for s in socks]), flush=True)
for line in sys.stdin:
    if line.startswith("off"):
        socks[0].setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
    if line.startswith("accept"):
        a, _ = socks[0].accept()
        socks.append(a)
    print(json.dumps([opts(s) for s in socks]), flush=True)
