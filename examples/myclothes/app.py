#!/usr/bin/env python3
"""myclothes: a small clothing shop for Sprout, with state that outlives its instances.

Carts live in server-side sessions in Redis (`REDIS_URL`): the browser holds only a random
session id in the `myclothes_session` cookie, so any instance can serve any customer.
Orders live in PostgreSQL (`DATABASE_URL`); the `orders` table is created at start if it is
missing. `MYCLOTHES_STORE=memory` keeps both in the process instead (for comparison: lost
with the instance and not shared between instances).

Standard library only (Debian bookworm's python3). Listens on 0.0.0.0:$PORT and answers JSON:

  GET  /          the catalogue
  POST /cart      adds an item to the cart: form or JSON fields `item` (a catalogue id) and
                  `qty` (1-99, default 1); starts a session if there is none
  GET  /cart      the cart: items, quantities, total
  POST /checkout  turns the cart into an order (201) and empties the cart
  GET  /orders    this session's orders
  GET  /healthz   200 while the process serves (does not touch the stores)

Every response carries X-Sprout-Instance and X-Sprout-Version. A store that is missing or
down gives 503 with the reason. SIGTERM stops accepting, lets requests in flight finish and
exits 0.
"""

import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import stores

INSTANCE = os.environ.get("SPROUT_INSTANCE") or socket.gethostname()
VERSION = os.environ.get("SPROUT_VERSION") or "dev"
COOKIE = "myclothes_session"
MAX_BODY = 64 * 1024
DRAIN_SECONDS = 8

CATALOGUE = {
    "tshirt": {"name": "Organic cotton T-shirt", "price_cents": 1900},
    "hoodie": {"name": "Grey hoodie", "price_cents": 4900},
    "jeans": {"name": "Straight jeans", "price_cents": 6900},
    "socks": {"name": "Wool socks (2 pairs)", "price_cents": 1200},
    "cap": {"name": "Canvas cap", "price_cents": 1500},
    "jacket": {"name": "Rain jacket", "price_cents": 11900},
}

STORES = stores.from_environment(os.environ)


def log(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def priced(cart):
    items = [
        {
            "item": item,
            "name": CATALOGUE[item]["name"],
            "qty": qty,
            "price_cents": CATALOGUE[item]["price_cents"],
        }
        for item, qty in sorted(cart.items())
        if item in CATALOGUE and qty > 0
    ]
    return items, sum(i["qty"] * i["price_cents"] for i in items)


class BadRequest(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "myclothes"
    timeout = 60  # seconds an idle keep-alive connection is kept

    def log_message(self, fmt, *args):
        pass

    def end_headers(self):
        self.send_header("X-Sprout-Instance", INSTANCE)
        self.send_header("X-Sprout-Version", VERSION)
        if self.server.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        super().end_headers()

    def answer(self, status, body, cookie=None):
        self.discard_body()
        data = json.dumps(body, indent=1).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if cookie:
            self.send_header(
                "Set-Cookie", "%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax"
                % (COOKIE, cookie, stores.CART_TTL_SECONDS)
            )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def session(self):
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        value = morsel.value if morsel else ""
        ok = 16 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)
        return value if ok else None

    def form(self):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None:
            raise BadRequest("send the fields with a Content-Length")
        try:
            n = int(length)
        except ValueError:
            raise BadRequest("bad Content-Length")
        if n < 0 or n > MAX_BODY:
            raise BadRequest("body too large")
        self.body_read = True
        raw = self.rfile.read(n).decode("utf-8", errors="replace")
        if "json" in self.headers.get("Content-Type", ""):
            try:
                data = json.loads(raw or "{}")
            except ValueError:
                raise BadRequest("the body is not JSON")
            if not isinstance(data, dict):
                raise BadRequest("send a JSON object")
            return {k: str(v) for k, v in data.items()}
        return {k: v[0] for k, v in parse_qs(raw).items()}

    def discard_body(self):
        """Reads a body no page used, so the keep-alive connection stays in step."""
        if self.body_read:
            return
        length = self.headers.get("Content-Length", "0")
        if self.headers.get("Transfer-Encoding") or not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True
        elif int(length) > 0:
            self.rfile.read(int(length))

    def route(self, method):
        self.body_read = False
        path = urlsplit(self.path).path
        routes = {
            ("GET", "/"): self.catalogue,
            ("GET", "/healthz"): self.healthz,
            ("GET", "/cart"): self.get_cart,
            ("POST", "/cart"): self.add_to_cart,
            ("POST", "/checkout"): self.checkout,
            ("GET", "/orders"): self.orders,
        }
        handler = routes.get((method, path))
        if handler is None:
            allowed = [m for (m, p) in routes if p == path]
            if allowed:
                return self.answer(405, {"error": "use " + " or ".join(allowed)})
            return self.answer(404, {"error": "no such page"})
        try:
            handler()
        except BadRequest as e:
            self.answer(400, {"error": str(e)})
        except (stores.StoreError, OSError) as e:
            log("store error: %s" % e)
            self.answer(503, {"error": str(e)})
        except Exception as e:  # a bug: say so, keep serving
            log("error: %r" % e)
            self.answer(500, {"error": "internal error"})

    def do_GET(self):
        self.server.track(+1)
        try:
            self.route("GET")
        finally:
            self.server.track(-1)

    def do_POST(self):
        self.server.track(+1)
        try:
            self.route("POST")
        finally:
            self.server.track(-1)

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def do_PATCH(self):
        self.route("PATCH")

    # -- pages ---------------------------------------------------------------------------

    def healthz(self):
        self.answer(200, {"ok": True, "instance": INSTANCE, "store": STORES.kind})

    def catalogue(self):
        items = [{"item": k, **v} for k, v in CATALOGUE.items()]
        self.answer(200, {"shop": "myclothes", "instance": INSTANCE, "catalogue": items})

    def get_cart(self):
        session = self.session()
        items, total = priced(STORES.cart(session)) if session else ([], 0)
        self.answer(200, {"items": items, "total_cents": total, "instance": INSTANCE})

    def add_to_cart(self):
        fields = self.form()
        item = fields.get("item", "")
        if item not in CATALOGUE:
            raise BadRequest("unknown item %r (see GET /)" % item[:40])
        try:
            qty = int(fields.get("qty", "1"))
        except ValueError:
            raise BadRequest("qty must be a number")
        if not 1 <= qty <= 99:
            raise BadRequest("qty must be 1-99")
        session = self.session()
        new = None
        if session is None:
            session = new = secrets.token_urlsafe(24)
        items, total = priced(STORES.add_to_cart(session, item, qty))
        self.answer(200, {"items": items, "total_cents": total, "instance": INSTANCE}, cookie=new)

    def checkout(self):
        session = self.session()
        items, total = priced(STORES.cart(session)) if session else ([], 0)
        if not items:
            raise BadRequest("the cart is empty")
        order = STORES.place_order(session, items, total, INSTANCE)
        STORES.clear_cart(session)
        log("order %s: %d cents" % (order["id"], total))
        self.answer(201, {"order": order, "instance": INSTANCE})

    def orders(self):
        session = self.session()
        orders = STORES.orders(session) if session else []
        self.answer(200, {"orders": orders, "instance": INSTANCE})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address):
        super().__init__(address, Handler)
        self.stopping = threading.Event()
        self.active = 0
        self.active_lock = threading.Lock()

    def track(self, delta):
        with self.active_lock:
            self.active += delta

    def drain(self):
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            with self.active_lock:
                if self.active == 0:
                    return
            time.sleep(0.05)


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = Server(("0.0.0.0", port))

    def stop(signum, frame):
        server.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The schema is made in the background: the process answers its health check meanwhile.
    threading.Thread(target=STORES.prepare, daemon=True).start()
    log("myclothes %s on :%d, store %s" % (INSTANCE, port, STORES.kind))
    server.serve_forever()
    server.drain()
    server.server_close()
    log("myclothes %s stopped" % INSTANCE)


if __name__ == "__main__":
    main()
