# Accepts TCP connections on [::]:PORT (IPv4 too) and holds them without
# ever answering: the server of kadiag's sockets tests.
import socket
import sys

srv = socket.create_server(("::", int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True)
print("ready", flush=True)
held = []
while True:
    held.append(srv.accept())
