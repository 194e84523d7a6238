"""myclothes' stores: carts in Redis, orders in PostgreSQL, or both in this process's memory.

Standard library only, so the bundle builds with no package index: a Redis client (RESP2,
AUTH, SELECT) and a PostgreSQL client (protocol v3, SCRAM-SHA-256, the extended query
protocol so values travel as parameters, never spliced into SQL), each with a small pool of
connections that are reused across requests and dropped after an error.
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import threading
import time
from urllib.parse import unquote, urlparse

CART_TTL_SECONDS = 7 * 24 * 3600
CONNECT_TIMEOUT = 5


class StoreError(Exception):
    """A store is missing, unreachable or answered an error."""


class Pool:
    """Up to `size` idle connections made by `connect`; a connection that raised is closed."""

    def __init__(self, connect, size=8):
        self.connect, self.size = connect, size
        self.idle, self.lock = [], threading.Lock()

    def run(self, work):
        with self.lock:
            conn = self.idle.pop() if self.idle else None
        try:
            if conn is None:
                conn = self.connect()
            result = work(conn)
        except Exception:
            if conn is not None:
                conn.close()
            raise
        with self.lock:
            if len(self.idle) < self.size:
                self.idle.append(conn)
                conn = None
        if conn is not None:
            conn.close()
        return result


# -- Redis ---------------------------------------------------------------------------------


class Redis:
    def __init__(self, url):
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port or 6379), timeout=CONNECT_TIMEOUT)
        self.file = self.sock.makefile("rb")
        if u.password:
            self.call("AUTH", unquote(u.password))
        db = (u.path or "/0").lstrip("/") or "0"
        if db != "0":
            self.call("SELECT", db)

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            data = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))
        return self.reply()

    def reply(self):
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise StoreError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise StoreError("redis: " + rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            if len(data) != n + 2:
                raise StoreError("redis closed the connection")
            return data[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise StoreError("redis: unexpected reply %r" % line[:20])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# -- PostgreSQL ----------------------------------------------------------------------------


class Postgres:
    def __init__(self, url):
        u = urlparse(url)
        self.user, self.password = unquote(u.username or ""), unquote(u.password or "")
        self.sock = socket.create_connection((u.hostname, u.port or 5432), timeout=CONNECT_TIMEOUT)
        self.buf = b""
        params = b"user\0%s\0database\0%s\0\0" % (self.user.encode(), u.path[1:].encode())
        self.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        self._authenticate()

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise StoreError("postgres closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _message(self):
        kind = self._read(1)
        (length,) = struct.unpack("!i", self._read(4))
        return kind, self._read(length - 4)

    def _send(self, *messages):
        self.sock.sendall(b"".join(k + struct.pack("!i", len(b) + 4) + b for k, b in messages))

    @staticmethod
    def _error_text(body):
        fields = dict((f[:1], f[1:].decode(errors="replace")) for f in body.split(b"\0") if f)
        return "postgres: " + fields.get(b"M", "error")

    def _authenticate(self):
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = "n=,r=" + nonce
        while True:
            kind, body = self._message()
            if kind == b"Z":
                return
            if kind == b"E":
                raise StoreError(self._error_text(body))
            if kind != b"R":
                continue  # ParameterStatus, BackendKeyData
            (code,) = struct.unpack("!i", body[:4])
            if code == 10:  # SASL: SCRAM-SHA-256
                first = ("n,," + first_bare).encode()
                self._send((b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
            elif code == 11:
                server_first = body[4:].decode()
                attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
                if not attrs["r"].startswith(nonce):
                    raise StoreError("postgres: bad SCRAM nonce")
                salted = hashlib.pbkdf2_hmac(
                    "sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
                )
                client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
                stored = hashlib.sha256(client_key).digest()
                without_proof = "c=biws,r=" + attrs["r"]
                auth_message = ",".join([first_bare, server_first, without_proof]).encode()
                signature = hmac.new(stored, auth_message, hashlib.sha256).digest()
                proof = bytes(a ^ b for a, b in zip(client_key, signature))
                self._send((b"p", (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()))
            elif code not in (0, 12):
                raise StoreError("postgres: unsupported authentication method %d" % code)

    def _until_ready(self):
        """Rows of the result (text values), then ReadyForQuery; raises the first error."""
        rows, error = [], None
        while True:
            kind, body = self._message()
            if kind == b"D":
                (n,) = struct.unpack("!h", body[:2])
                pos, row = 2, []
                for _ in range(n):
                    (size,) = struct.unpack("!i", body[pos : pos + 4])
                    pos += 4
                    row.append(None if size < 0 else body[pos : pos + size].decode())
                    pos += max(size, 0)
                rows.append(row)
            elif kind == b"E" and error is None:
                error = StoreError(self._error_text(body))
            elif kind == b"Z":
                if error is not None:
                    raise error
                return rows

    def script(self, sql):
        """Runs statements without parameters (simple query protocol)."""
        self._send((b"Q", sql.encode() + b"\0"))
        return self._until_ready()

    def query(self, sql, *params):
        """One statement; `$1`, `$2`... are bound to `params` (sent as text, None as NULL)."""
        bind = [b"\0\0", struct.pack("!hh", 0, len(params))]
        for p in params:
            if p is None:
                bind.append(struct.pack("!i", -1))
            else:
                data = str(p).encode()
                bind.append(struct.pack("!i", len(data)) + data)
        bind.append(struct.pack("!h", 0))
        self._send(
            (b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0)),
            (b"B", b"".join(bind)),
            (b"E", b"\0" + struct.pack("!i", 0)),
            (b"S", b""),
        )
        return self._until_ready()

    def close(self):
        try:
            self._send((b"X", b""))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


# -- the shop's data -----------------------------------------------------------------------

SCHEMA = """
BEGIN;
SELECT pg_advisory_xact_lock(7151);
CREATE TABLE IF NOT EXISTS orders (
    id          bigserial PRIMARY KEY,
    session     text        NOT NULL,
    items       jsonb       NOT NULL,
    total_cents integer     NOT NULL,
    instance    text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_session ON orders (session);
COMMIT;
"""


def _order(row):
    return {
        "id": int(row[0]),
        "items": json.loads(row[1]),
        "total_cents": int(row[2]),
        "instance": row[3],
        "created_at": row[4],
    }


class AttachedStores:
    """Carts in Redis (`REDIS_URL`), orders in PostgreSQL (`DATABASE_URL`)."""

    kind = "redis+postgres"

    def __init__(self, environ):
        self.redis_url = environ.get("REDIS_URL")
        self.database_url = environ.get("DATABASE_URL")
        self.redis = Pool(lambda: Redis(self.redis_url)) if self.redis_url else None
        self.db = Pool(lambda: Postgres(self.database_url)) if self.database_url else None
        self.schema_ready = False

    def _redis(self, work):
        if self.redis is None:
            raise StoreError("no REDIS_URL: attach a redis resource to this environment")
        return self.redis.run(work)

    def _db(self, work):
        if self.db is None:
            raise StoreError("no DATABASE_URL: attach a postgres resource to this environment")
        if not self.schema_ready:
            self.db.run(lambda c: c.script(SCHEMA))
            self.schema_ready = True
        return self.db.run(work)

    def prepare(self, attempts=30):
        """Creates the orders table if missing (at start; retried while the database boots)."""
        if self.db is None:
            return False
        for _ in range(attempts):
            try:
                self._db(lambda c: None)
                return True
            except (OSError, StoreError):
                time.sleep(1)
        return False

    def add_to_cart(self, session, item, qty):
        key = "cart:" + session

        def work(r):
            r.call("HINCRBY", key, item, qty)
            r.call("EXPIRE", key, CART_TTL_SECONDS)
            return self._pairs(r.call("HGETALL", key))

        return self._redis(work)

    def cart(self, session):
        return self._redis(lambda r: self._pairs(r.call("HGETALL", "cart:" + session)))

    def clear_cart(self, session):
        self._redis(lambda r: r.call("DEL", "cart:" + session))

    @staticmethod
    def _pairs(flat):
        flat = flat or []
        return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}

    def place_order(self, session, items, total_cents, instance):
        rows = self._db(
            lambda c: c.query(
                "INSERT INTO orders (session, items, total_cents, instance) VALUES ($1, $2, $3, $4)"
                " RETURNING id, items, total_cents, instance, created_at",
                session,
                json.dumps(items),
                total_cents,
                instance,
            )
        )
        return _order(rows[0])

    def orders(self, session):
        rows = self._db(
            lambda c: c.query(
                "SELECT id, items, total_cents, instance, created_at FROM orders"
                " WHERE session = $1 ORDER BY id",
                session,
            )
        )
        return [_order(r) for r in rows]


class MemoryStores:
    """Carts and orders in this process (`MYCLOTHES_STORE=memory`): lost with the instance,
    not shared between instances. For comparison (the benchmark) and local runs."""

    kind = "memory"

    def __init__(self):
        self.lock = threading.Lock()
        self.carts, self.all_orders = {}, []

    def prepare(self, attempts=0):
        return True

    def add_to_cart(self, session, item, qty):
        with self.lock:
            cart = self.carts.setdefault(session, {})
            cart[item] = cart.get(item, 0) + qty
            return dict(cart)

    def cart(self, session):
        with self.lock:
            return dict(self.carts.get(session, {}))

    def clear_cart(self, session):
        with self.lock:
            self.carts.pop(session, None)

    def place_order(self, session, items, total_cents, instance):
        with self.lock:
            order = {
                "id": len(self.all_orders) + 1,
                "items": items,
                "total_cents": total_cents,
                "instance": instance,
                "created_at": time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime()),
            }
            self.all_orders.append((session, order))
            return order

    def orders(self, session):
        with self.lock:
            return [o for s, o in self.all_orders if s == session]


def from_environment(environ):
    if environ.get("MYCLOTHES_STORE", "").lower() == "memory":
        return MemoryStores()
    return AttachedStores(environ)
