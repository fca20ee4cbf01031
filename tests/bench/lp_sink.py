#!/usr/bin/env python3
"""Line-protocol sink for tests/bench/outage.sh: counts the lines it is sent and checks that
every series arrives in timestamp order. GET /count answers "lines out_of_order duplicates".

Usage: lp_sink.py PORT
"""
import gzip
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
last = {}
seen = set()
state = {"lines": 0, "out_of_order": 0, "duplicates": 0}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with lock:
            for line in body.decode().splitlines():
                if not line:
                    continue
                series, _, rest = line.partition(" ")
                ts = int(rest.rsplit(" ", 1)[1])
                key = (series, ts)
                if key in seen:
                    state["duplicates"] += 1
                    continue
                seen.add(key)
                if ts <= last.get(series, -1):
                    state["out_of_order"] += 1
                last[series] = ts
                state["lines"] += 1
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        with lock:
            text = f'{state["lines"]} {state["out_of_order"]} {state["duplicates"]}\n'.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
