# A slow HTTP service, as in the seed report: every GET is answered after
# SECONDS of work. Usage: python3 slow.py HOST:PORT SECONDS
import http.server
import sys
import time

listen, delay = sys.argv[1], float(sys.argv[2])
host, port = listen.rsplit(":", 1)
host = host.strip("[]")


class Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(delay)
        body = b"slow answer\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    address_family = __import__("socket").AF_INET6 if ":" in host else __import__("socket").AF_INET


Server((host, int(port)), Slow).serve_forever()
