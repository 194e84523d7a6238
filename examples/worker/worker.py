#!/usr/bin/env python3
"""A Beanstalk-style worker (standard library only): Sprout's dispatcher POSTs each queue
message to it, like AWS's sqsd. 200 deletes the message; anything else retries it later.

  POST /...        process a job: the body is the message, X-Aws-Sqsd-* headers describe it.
                   A JSON body may ask for {"sleep": seconds} or {"fail": true} (500 while
                   failing is on, to exercise retries and the dead-letter queue).
  GET  /health     200 "ok"
  GET  /records    the jobs this instance processed, as JSON (for tests and curiosity)
  GET  /started    the message ids it started on (finished or not)
  POST /heal       turn failing off (the next retries succeed)
"""

import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INSTANCE = os.environ.get("SPROUT_INSTANCE", "local")
LOCK = threading.Lock()
RECORDS = []
STARTED = []
FAILING = [True]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body, content_type="application/json"):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._send(200, "ok", "text/plain")
        elif self.path == "/started":
            with LOCK:
                self._send(200, json.dumps(STARTED))
        elif self.path == "/records":
            with LOCK:
                self._send(200, json.dumps(RECORDS))
        else:
            self._send(404, "{}")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if self.path == "/heal":
            FAILING[0] = False
            return self._send(200, "{}")
        try:
            job = json.loads(body) if body.startswith("{") else {}
        except ValueError:
            job = {}
        with LOCK:
            STARTED.append(self.headers.get("X-Aws-Sqsd-Msgid"))
        if job.get("sleep"):
            time.sleep(float(job["sleep"]))
        failed = bool(job.get("fail")) and FAILING[0]
        record = {
            "instance": INSTANCE,
            "path": self.path,
            "body": body,
            "status": 500 if failed else 200,
            "at": time.time(),
            "headers": {k: v for k, v in self.headers.items()
                        if k.lower().startswith("x-aws-sqsd") or k.lower() in ("user-agent", "content-type")},
        }
        with LOCK:
            RECORDS.append(record)
        print(f"{INSTANCE} {self.path} {self.headers.get('X-Aws-Sqsd-Msgid')} -> {record['status']}", flush=True)
        self._send(record["status"], "{}")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        # Skip HTTPServer's host name lookup, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


if __name__ == "__main__":
    server = Server(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
    server.serve_forever()
