# Test client for libkadiag_keepalive: python3's socket module calls libc's
# socket(), so the library manages it; prints its own getsockopt view.
import socket
import sys

family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.connect((sys.argv[1], int(sys.argv[2])))
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)
print("connected keepalive=%d idle=%d intvl=%d cnt=%d user_timeout=%d" % (
    s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    s.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT)), flush=True)
sys.stdin.read()
