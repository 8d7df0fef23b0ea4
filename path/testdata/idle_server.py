#!/usr/bin/env python3
"""A plain TCP server that closes a connection idle for IDLE seconds (FIN),
as nginx (keepalive_timeout) or Node (keepAliveTimeout) do; IDLE 0 never
closes. Usage: idle_server.py ADDR PORT IDLE"""
import socket
import sys
import threading

addr, port, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
srv = socket.socket(family, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(4096)
print("ready", flush=True)


def serve(conn):
    conn.settimeout(idle if idle > 0 else None)
    try:
        while conn.recv(4096):
            pass
    except socket.timeout:
        pass
    except OSError:
        pass
    conn.close()


while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
