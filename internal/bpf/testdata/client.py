# A client that connects to argv[1]:argv[2] and reports its sockets' keepalive
# options as JSON lines, read in-process with getsockopt: after connect, after
# turning keepalive off, after asking for a long and a short idle; then the
# same for a socket accepted from its own listener.
import json, socket, sys

def opts(s):
    g = lambda lvl, name: s.getsockopt(lvl, name)
    return {"keepalive": g(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "idle": g(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "intvl": g(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "cnt": g(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            "user_timeout": g(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)}

def out(step, s):
    print(json.dumps({"step": step, **opts(s)}), flush=True)

c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
out("connect", c)
c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
out("keepalive-off", c)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 3600)
out("idle-3600", c)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10)
out("idle-10", c)
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.bind(("127.0.0.1", 0))
l.listen()
out("listen", l)
d = socket.create_connection(l.getsockname())
a, _ = l.accept()
out("accepted", a)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
print(json.dumps({"step": "udp", "keepalive": u.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}), flush=True)
