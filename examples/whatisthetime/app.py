#!/usr/bin/env python3
"""whatisthetime: Sprout's first example app.

Standard library only (runs on Debian bookworm's python3). Listens on
0.0.0.0:$PORT (default 8080) and answers:

  GET /        the current time, as JSON when the client prefers
               application/json (Accept header) or asks ?format=json,
               otherwise as a small HTML page
  GET /health  200 "ok"
  POST /enqueue  sends the request body as a job to the application's worker
               queue through Sprout's SQS-compatible endpoint (sqs_client.py)

Every response carries X-Sprout-Instance and X-Sprout-Version. One access-log
line per request goes to stdout. SIGTERM (or SIGINT) stops accepting, lets
in-flight requests finish, closes idle keep-alive connections and exits 0.
"""

import html
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

INSTANCE = os.environ.get("SPROUT_INSTANCE") or socket.gethostname()
VERSION = os.environ.get("SPROUT_VERSION") or "dev"
ENVIRONMENT = os.environ.get("SPROUT_ENV") or "local"
ZONE = os.environ.get("SPROUT_ZONE") or "local"

# Seconds an idle keep-alive connection is kept open.
IDLE_TIMEOUT = 60
# Seconds in-flight requests get to finish after SIGTERM (docker stop waits 10).
DRAIN_SECONDS = 8
# Largest request body read (and thrown away) to keep a connection reusable.
MAX_DISCARD = 1 << 20


def log(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def now_iso():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _accept_quality(accept, wanted):
    """(q, specificity) of media type `wanted` in an Accept header."""
    wanted_type, _, _ = wanted.partition("/")
    best = (0.0, -1)
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        if not media:
            continue
        q = 1.0
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value.strip())))
                except ValueError:
                    q = 0.0
        if media == wanted:
            specificity = 2
        elif media == wanted_type + "/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        # The most specific matching range decides (RFC 9110, 12.5.1).
        if specificity > best[1]:
            best = (q, specificity)
    return best


def wants_json(accept, query):
    fmt = (query.get("format") or [""])[0].lower()
    if fmt == "json":
        return True
    if fmt == "html":
        return False
    if not accept:
        return False
    json_q, json_spec = _accept_quality(accept, "application/json")
    html_q, html_spec = _accept_quality(accept, "text/html")
    if json_q <= 0:
        return False
    if json_q != html_q:
        return json_q > html_q
    # Same quality: the type the client named itself wins; a tie stays HTML.
    return json_spec > html_spec


def facts():
    return {
        "time": now_iso(),
        "instance": INSTANCE,
        "version": VERSION,
        "environment": ENVIRONMENT,
        "zone": ZONE,
    }


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>What is the time?</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 3rem auto; max-width: 32rem;
         padding: 0 1rem; color: #1d2b1f; background: #f6faf5; }}
  h1 {{ font-size: 1.1rem; font-weight: 600; color: #3b7a3f; margin-bottom: .25rem; }}
  .time {{ font-size: 2rem; font-variant-numeric: tabular-nums; margin: 0 0 1.5rem; }}
  dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; }}
  dt {{ color: #6b7d6c; }}
  dd {{ margin: 0; font-family: ui-monospace, monospace; }}
</style>
</head>
<body>
<h1>What is the time?</h1>
<p class="time"><time datetime="{time}">{time}</time></p>
<dl>
  <dt>instance</dt><dd>{instance}</dd>
  <dt>version</dt><dd>{version}</dd>
  <dt>environment</dt><dd>{environment}</dd>
  <dt>zone</dt><dd>{zone}</dd>
</dl>
</body>
</html>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "whatisthetime/1.0"
    timeout = IDLE_TIMEOUT

    # -- connection bookkeeping (for a clean SIGTERM) -----------------------

    def setup(self):
        super().setup()
        self._started = None
        self._status = "-"
        self._sent = "-"
        self._served = 0
        self.server.track(self, busy=False)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.untrack(self)

    def handle_one_request(self):
        self._started = None
        if not self.server.mark_idle(self) and self._served:
            # Shutting down: do not wait for another request on this connection
            # (a fresh connection still gets its first request answered).
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        finally:
            self._served += 1
            self._access_log()

    def parse_request(self):
        # Called once the request line has arrived: the connection is busy now.
        self._started = time.monotonic()
        self.server.mark_busy(self)
        return super().parse_request()

    # -- headers and logging -------------------------------------------------

    def version_string(self):
        return self.server_version

    def end_headers(self):
        self.send_header("X-Sprout-Instance", INSTANCE)
        self.send_header("X-Sprout-Version", VERSION)
        if self.server.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        super().end_headers()

    def log_request(self, code="-", size="-"):
        self._status = getattr(code, "value", code)

    def log_error(self, format, *args):
        pass  # timeouts and bad request lines: the access line says enough

    def _access_log(self):
        if self._started is None:
            return
        elapsed_ms = (time.monotonic() - self._started) * 1000
        request = (self.requestline or "-").replace('"', "%22")
        log('{} {} "{}" {} {} {:.1f}ms'.format(
            now_iso(), self.client_address[0], request, self._status, self._sent, elapsed_ms))
        self._started = None
        self._status = "-"
        self._sent = "-"

    # -- responses -----------------------------------------------------------

    def _respond(self, status, content_type, body, head_only=False, extra=()):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(data)
        self._sent = 0 if head_only else len(data)

    def _discard_body(self):
        """Read a request body we do not use so the connection stays usable."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_DISCARD:
            self.close_connection = True
        elif length:
            self.rfile.read(length)

    def _get(self, head_only):
        self._discard_body()
        url = urlsplit(self.path)
        if url.path == "/health":
            self._respond(200, "text/plain; charset=utf-8", "ok", head_only)
        elif url.path == "/":
            query = parse_qs(url.query)
            info = facts()
            if wants_json(self.headers.get("Accept", ""), query):
                body = json.dumps(info) + "\n"
                self._respond(200, "application/json", body, head_only, [("Vary", "Accept")])
            else:
                escaped = {k: html.escape(str(v)) for k, v in info.items()}
                self._respond(200, "text/html; charset=utf-8", PAGE.format(**escaped),
                              head_only, [("Vary", "Accept")])
        else:
            self._respond(404, "text/plain; charset=utf-8", "not found\n", head_only)

    def do_GET(self):
        self._get(head_only=False)

    def do_HEAD(self):
        self._get(head_only=True)

    def _not_allowed(self):
        self._discard_body()
        self._respond(405, "text/plain; charset=utf-8", "method not allowed\n",
                      extra=[("Allow", "GET, HEAD")])

    def do_POST(self):
        if urlsplit(self.path).path != "/enqueue":
            return self._not_allowed()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(min(length, MAX_DISCARD)).decode("utf-8", "replace") if length > 0 else ""
        try:
            import sqs_client
            sent = sqs_client.send_message(body or "{}", {"from": INSTANCE})
            self._respond(202, "application/json", json.dumps({"enqueued": sent.get("MessageId")}) + "\n")
        except KeyError as e:
            self._respond(503, "application/json", json.dumps({"error": f"no queue: {e} is not set"}) + "\n")
        except Exception as e:  # the endpoint refused or is unreachable
            self._respond(502, "application/json", json.dumps({"error": str(e)}) + "\n")

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_allowed


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # we drain ourselves, with a deadline

    def __init__(self, address, handler):
        self.stopping = threading.Event()
        self._lock = threading.Condition()
        self._conns = {}  # handler -> busy?
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name (socket.getfqdn), which
        # can stall in a container without DNS. We need none of it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def track(self, handler, busy):
        with self._lock:
            self._conns[handler] = busy

    def untrack(self, handler):
        with self._lock:
            self._conns.pop(handler, None)
            self._lock.notify_all()

    def mark_idle(self, handler):
        """Returns False if the server is stopping (the connection should close)."""
        with self._lock:
            self._conns[handler] = False
            self._lock.notify_all()
            return not self.stopping.is_set()

    def mark_busy(self, handler):
        with self._lock:
            self._conns[handler] = True

    def drain(self, deadline):
        """Close idle connections, wait for busy ones (until `deadline`)."""
        self.stopping.set()
        with self._lock:
            while True:
                for handler, busy in list(self._conns.items()):
                    if not busy:
                        try:
                            handler.connection.shutdown(socket.SHUT_RD)
                        except OSError:
                            pass
                busy = sum(1 for b in self._conns.values() if b)
                if busy == 0:
                    return 0
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return busy
                self._lock.wait(min(remaining, 0.1))


def main():
    raw_port = os.environ.get("PORT") or "8080"
    try:
        port = int(raw_port)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        sys.stderr.write("whatisthetime: PORT must be a TCP port number, got %r\n" % raw_port)
        return 2

    server = Server(("0.0.0.0", port), Handler)

    def on_signal(signum, _frame):
        if not server.stopping.is_set():
            server.stopping.set()
            log("{} received {}, shutting down".format(now_iso(), signal.Signals(signum).name))
            # shutdown() waits for serve_forever() to return: not from this thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log("{} whatisthetime listening on 0.0.0.0:{} (instance={} version={} environment={} zone={})".format(
        now_iso(), port, INSTANCE, VERSION, ENVIRONMENT, ZONE))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()  # stop accepting (block_on_close is off)
        left = server.drain(time.monotonic() + DRAIN_SECONDS)
        if left:
            log("{} {} request(s) still running after {}s, exiting anyway".format(now_iso(), left, DRAIN_SECONDS))
        else:
            log("{} stopped cleanly".format(now_iso()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
