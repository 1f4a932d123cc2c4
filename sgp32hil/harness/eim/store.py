"""eIM state in SQLite (WAL): registered eUICCs, orders, issued eUICC packages, events, relay sessions.

Every acknowledged step is one transaction (SGP.32 v1.2 §2.11: the counterValue of an eUICC package is
stored, with the package, BEFORE the package leaves the eIM), so a server killed at any moment and
restarted on the same database matches late results to their orders and never reuses a counter.

Poll bookkeeping (last contact, poll count, ``poll`` events) is not an acknowledged step: it is
buffered in memory and written in one transaction at most every ``POLL_FLUSH_S`` seconds (and before
any read of it), which keeps a GetEimPackage with an empty queue to a few indexed reads.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sqlite import SqliteStore

__all__ = ["EimStore", "EuiccRecord", "Event", "IssuedPackage", "Order", "OrderStatus", "RelaySession",
           "StoreError"]

POLL_FLUSH_S = 0.25


class StoreError(ValueError):
    """A store operation that violates the order rules (unknown order, wrong state)."""


class OrderStatus:
    QUEUED = "queued"
    SENT = "sent"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    FINAL = frozenset({"done", "failed", "cancelled"})
    OPEN = ("queued", "sent")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS euiccs (
    eid TEXT PRIMARY KEY,
    counter_value INTEGER NOT NULL,
    association_token INTEGER,
    euicc_cert BLOB,
    result_policy TEXT NOT NULL,
    registered REAL NOT NULL,
    first_contact REAL,
    last_contact REAL,
    polls INTEGER NOT NULL DEFAULT 0,
    last_rplmn TEXT,
    last_state_change_cause TEXT,
    notifications INTEGER NOT NULL DEFAULT 0,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    euicc_info1 BLOB
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    eid TEXT NOT NULL REFERENCES euiccs(eid),
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    counter_value INTEGER,
    eim_transaction_id TEXT NOT NULL UNIQUE,
    result TEXT,
    error TEXT,
    source TEXT NOT NULL DEFAULT 'api',
    created_at REAL NOT NULL,
    sent_at REAL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS orders_open ON orders(eid, status, id);
CREATE TABLE IF NOT EXISTS packages (
    eid TEXT NOT NULL,
    counter_value INTEGER NOT NULL,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    der BLOB NOT NULL,
    issued_at REAL NOT NULL,
    PRIMARY KEY (eid, counter_value)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    eid TEXT NOT NULL,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_eid ON events(eid, id);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    eid TEXT,
    seq_number INTEGER,
    kind TEXT NOT NULL,
    transaction_id TEXT,
    raw BLOB NOT NULL,
    forwarded_to TEXT,
    received REAL NOT NULL,
    forward_address TEXT,
    forward_attempts INTEGER NOT NULL DEFAULT 0,
    forward_last REAL,
    forward_error TEXT
);
CREATE TABLE IF NOT EXISTS relay_sessions (
    transaction_id TEXT PRIMARY KEY,
    smdp_address TEXT NOT NULL,
    eid TEXT,
    order_id INTEGER,
    phase TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Order:
    """One operator order (SGP.32 v1.2 §3.1.1 / §3.2.3: an eUICC package, an IpaEuiccDataRequest or a
    profile download trigger) and its outcome."""

    id: int
    eid: str
    kind: str
    params: dict[str, Any]
    status: str
    counter_value: int | None
    eim_transaction_id: str
    result: dict[str, Any] | None
    error: str | None
    created_at: float
    sent_at: float | None
    done_at: float | None
    source: str = "api"

    @property
    def final(self) -> bool:
        return self.status in OrderStatus.FINAL

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "eid": self.eid, "kind": self.kind, "params": self.params, "status": self.status,
            "counter_value": self.counter_value, "eim_transaction_id": self.eim_transaction_id,
            "result": self.result, "error": self.error, "source": self.source, "created_at": self.created_at,
            "sent_at": self.sent_at, "done_at": self.done_at,
        }


@dataclass(frozen=True)
class EuiccRecord:
    """What the eIM knows about one eUICC (its eIM configuration counterpart, SGP.32 v1.2 §2.11)."""

    eid: str
    counter_value: int
    association_token: int | None
    euicc_certificate: bytes | None
    result_policy: str
    registered: float
    first_contact: float | None
    last_contact: float | None
    polls: int
    last_rplmn: str | None
    last_state_change_cause: str | None
    notifications: int
    failed_attempts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "eid": self.eid, "counter_value": self.counter_value, "association_token": self.association_token,
            "euicc_certificate": self.euicc_certificate.hex().upper() if self.euicc_certificate else None,
            "result_policy": self.result_policy, "registered": self.registered,
            "first_contact": self.first_contact, "last_contact": self.last_contact, "polls": self.polls,
            "last_rplmn": self.last_rplmn, "last_state_change_cause": self.last_state_change_cause,
            "notifications": self.notifications, "failed_attempts": self.failed_attempts,
        }


@dataclass(frozen=True)
class Event:
    time: float
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class IssuedPackage:
    eid: str
    counter_value: int
    order_id: int
    der: bytes
    issued_at: float


@dataclass(frozen=True)
class RelaySession:
    transaction_id: str
    smdp_address: str
    eid: str | None
    order_id: int | None
    phase: str


def _order(row: sqlite3.Row) -> Order:
    return Order(
        id=row["id"], eid=row["eid"], kind=row["kind"], params=json.loads(row["params"]), status=row["status"],
        counter_value=row["counter_value"], eim_transaction_id=row["eim_transaction_id"],
        result=json.loads(row["result"]) if row["result"] else None, error=row["error"],
        created_at=row["created_at"], sent_at=row["sent_at"], done_at=row["done_at"], source=row["source"],
    )


def _euicc(row: sqlite3.Row) -> EuiccRecord:
    return EuiccRecord(
        eid=row["eid"], counter_value=row["counter_value"], association_token=row["association_token"],
        euicc_certificate=row["euicc_cert"], result_policy=row["result_policy"], registered=row["registered"],
        first_contact=row["first_contact"], last_contact=row["last_contact"], polls=row["polls"],
        last_rplmn=row["last_rplmn"], last_state_change_cause=row["last_state_change_cause"],
        notifications=row["notifications"], failed_attempts=row["failed_attempts"],
    )


class EimStore(SqliteStore):
    """Thread-safe SQLite store; one short transaction per acknowledged step."""

    def __init__(self, path: str | Path):
        super().__init__(path, _SCHEMA)
        self._migrate()
        self._known: set[str] = {r[0] for r in self._db.execute("SELECT eid FROM euiccs")}
        # EIDs with queued or sent orders: an empty-queue poll is answered without touching the orders table.
        self._open: set[str] = {r[0] for r in self._db.execute(
            "SELECT DISTINCT eid FROM orders WHERE status IN ('queued','sent')")}
        self._polls: dict[str, list] = {}   # eid -> [count, last_contact, rplmn, cause]
        self._poll_events: list[tuple] = []
        self._last_flush = time.monotonic()

    def _migrate(self) -> None:
        """Columns added after the first release, added to databases created before them."""
        if "euicc_info1" not in {r[1] for r in self._db.execute("PRAGMA table_info(euiccs)")}:
            self._db.execute("ALTER TABLE euiccs ADD COLUMN euicc_info1 BLOB")
        have = {r[1] for r in self._db.execute("PRAGMA table_info(notifications)")}
        for column, decl in (("forward_address", "TEXT"), ("forward_attempts", "INTEGER NOT NULL DEFAULT 0"),
                             ("forward_last", "REAL"), ("forward_error", "TEXT")):
            if column not in have:
                self._db.execute(f"ALTER TABLE notifications ADD COLUMN {column} {decl}")

    def close(self) -> None:
        with self._lock:
            self.flush_polls()
            super().close()

    # -- eUICCs ---------------------------------------------------------------------------------

    def is_known(self, eid: str) -> bool:
        return eid in self._known

    def has_open_orders(self, eid: str) -> bool:
        return eid in self._open

    def register(self, eid: str, *, counter_value: int = 0, association_token: int | None = None,
                 euicc_certificate: bytes | None = None, result_policy: str = "verify-if-known") -> EuiccRecord:
        """Insert or update an eUICC. An update never lowers the counter (SGP.32 v1.2 §2.11.1.1 replay rule)."""
        now = time.time()
        with self.tx() as db:
            row = db.execute("SELECT counter_value FROM euiccs WHERE eid=?", (eid,)).fetchone()
            if row is None:
                db.execute("INSERT INTO euiccs (eid, counter_value, association_token, euicc_cert, result_policy,"
                           " registered) VALUES (?,?,?,?,?,?)",
                           (eid, counter_value, association_token, euicc_certificate, result_policy, now))
            else:
                db.execute("UPDATE euiccs SET counter_value=?, association_token=?, "
                           "euicc_cert=COALESCE(?, euicc_cert), result_policy=? WHERE eid=?",
                           (max(counter_value, row[0]), association_token, euicc_certificate, result_policy, eid))
            self._event(db, eid, "registered", {"counter_value": counter_value,
                                                 "association_token": association_token})
            self._known.add(eid)
        return self.euicc(eid)

    def euicc(self, eid: str) -> EuiccRecord | None:
        self.flush_polls()
        row = self._one("SELECT * FROM euiccs WHERE eid=?", (eid,))
        return _euicc(row) if row else None

    def euiccs(self) -> list[EuiccRecord]:
        self.flush_polls()
        return [_euicc(r) for r in self._all("SELECT * FROM euiccs ORDER BY eid")]

    def set_certificate(self, eid: str, cert: bytes) -> None:
        with self.tx() as db:
            db.execute("UPDATE euiccs SET euicc_cert=? WHERE eid=?", (cert, eid))

    def set_association_token(self, eid: str, token: int | None) -> None:
        with self.tx() as db:
            db.execute("UPDATE euiccs SET association_token=? WHERE eid=?", (token, eid))

    def add_failed_attempt(self, eid: str, reset: bool = False) -> None:
        with self.tx() as db:
            if reset:
                db.execute("UPDATE euiccs SET failed_attempts=0 WHERE eid=?", (eid,))
            else:
                db.execute("UPDATE euiccs SET failed_attempts=failed_attempts+1 WHERE eid=?", (eid,))

    # -- polls (buffered) -----------------------------------------------------------------------

    def note_poll(self, eid: str, rplmn: str | None, cause: str | None, detail: dict[str, Any]) -> None:
        """Count a GetEimPackage poll; written with the next flush (not an acknowledged step)."""
        now = time.time()
        with self._lock:
            entry = self._polls.get(eid)
            if entry is None:
                self._polls[eid] = [1, now, rplmn, cause]
            else:
                entry[0] += 1
                entry[1] = now
                if rplmn is not None:
                    entry[2] = rplmn
                if cause is not None:
                    entry[3] = cause
            self._poll_events.append((eid, now, "poll", detail))
            if time.monotonic() - self._last_flush > POLL_FLUSH_S:
                self.flush_polls()

    def flush_polls(self) -> None:
        with self._lock:
            self._last_flush = time.monotonic()
            if not self._polls and not self._poll_events:
                return
            polls, events = self._polls, self._poll_events
            self._polls, self._poll_events = {}, []
            with self.tx() as db:
                for eid, (count, last, rplmn, cause) in polls.items():
                    db.execute(
                        "UPDATE euiccs SET polls=polls+?, last_contact=?, first_contact=COALESCE(first_contact, ?),"
                        " last_rplmn=COALESCE(?, last_rplmn), last_state_change_cause=COALESCE(?, "
                        "last_state_change_cause) WHERE eid=?", (count, last, last, rplmn, cause, eid))
                db.executemany("INSERT INTO events (eid, time, kind, detail) VALUES (?,?,?,?)",
                               [(e, t, k, json.dumps(d)) for e, t, k, d in events])

    # -- events ---------------------------------------------------------------------------------

    @staticmethod
    def _event(db: sqlite3.Connection, eid: str, kind: str, detail: dict[str, Any]) -> None:
        db.execute("INSERT INTO events (eid, time, kind, detail) VALUES (?,?,?,?)",
                   (eid, time.time(), kind, json.dumps(detail, default=str)))

    def add_event(self, eid: str, kind: str, detail: dict[str, Any] | None = None) -> None:
        with self.tx() as db:
            self._event(db, eid, kind, detail or {})

    def events(self, eid: str, *, since_id: int = 0) -> list[Event]:
        self.flush_polls()
        rows = self._all("SELECT time, kind, detail FROM events WHERE eid=? AND id>? ORDER BY time, id", (eid, since_id))
        return [Event(r["time"], r["kind"], json.loads(r["detail"])) for r in rows]

    # -- orders ---------------------------------------------------------------------------------

    def add_order(self, eid: str, kind: str, params: dict[str, Any], eim_transaction_id: str,
                  source: str = "api") -> Order:
        now = time.time()
        with self.tx() as db:
            cur = db.execute("INSERT INTO orders (eid, kind, params, status, eim_transaction_id, source, created_at)"
                             " VALUES (?,?,?,?,?,?,?)",
                             (eid, kind, json.dumps(params), OrderStatus.QUEUED, eim_transaction_id, source, now))
            order_id = cur.lastrowid
            self._event(db, eid, "order_created", {"order_id": order_id, "kind": kind, "source": source})
            self._open.add(eid)
        return self.order(order_id)

    def order(self, order_id: int) -> Order | None:
        row = self._one("SELECT * FROM orders WHERE id=?", (order_id,))
        return _order(row) if row else None

    def orders(self, eid: str | None = None, status: str | None = None, limit: int = 1000) -> list[Order]:
        sql, args = "SELECT * FROM orders WHERE 1=1", []
        if eid is not None:
            sql += " AND eid=?"
            args.append(eid)
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [_order(r) for r in self._all(sql, tuple(args))]

    def next_open_order(self, eid: str) -> Order | None:
        """Head of the eUICC's FIFO queue: the oldest queued or sent order."""
        row = self._one("SELECT * FROM orders WHERE eid=? AND status IN ('queued','sent') ORDER BY id LIMIT 1",
                        (eid,))
        if row is None:
            with self._lock:
                self._open.discard(eid)
            return None
        return _order(row)

    def order_by_transaction_id(self, eim_transaction_id: str) -> Order | None:
        row = self._one("SELECT * FROM orders WHERE eim_transaction_id=?", (eim_transaction_id.upper(),))
        return _order(row) if row else None

    def order_by_counter(self, eid: str, counter_value: int) -> Order | None:
        row = self._one("SELECT o.* FROM packages p JOIN orders o ON o.id=p.order_id "
                        "WHERE p.eid=? AND p.counter_value=?", (eid, counter_value))
        return _order(row) if row else None

    def issue_package(self, order_id: int, build) -> tuple[Order, bytes]:
        """Hand out ``order_id``: in ONE transaction take the next counterValue of its eUICC (strictly greater
        than any issued before), call ``build(counter_value or None, euicc_record)`` for the DER, store the
        package and mark the order sent. The DER is returned only after the commit (SGP.32 v1.2 §2.11.1.1)."""
        now = time.time()
        with self.tx() as db:
            row = db.execute("SELECT * FROM orders WHERE id=?", (order_id,)).fetchone()
            if row is None or row["status"] not in OrderStatus.OPEN:
                raise StoreError(f"order {order_id} is not open")
            order = _order(row)
            erow = db.execute("SELECT * FROM euiccs WHERE eid=?", (order.eid,)).fetchone()
            euicc = _euicc(erow)
            counter = None
            if order.kind in ("psmo", "eco"):
                counter = euicc.counter_value + 1
                db.execute("UPDATE euiccs SET counter_value=? WHERE eid=?", (counter, order.eid))
            der = build(counter, euicc)
            if counter is not None:
                db.execute("INSERT INTO packages (eid, counter_value, order_id, der, issued_at) VALUES (?,?,?,?,?)",
                           (order.eid, counter, order_id, der, now))
            db.execute("UPDATE orders SET status='sent', sent_at=?, counter_value=COALESCE(?, counter_value) "
                       "WHERE id=?", (now, counter, order_id))
            self._event(db, order.eid, "package_sent", {
                "order_id": order_id, "kind": order.kind, "counter_value": counter,
                "eim_transaction_id": order.eim_transaction_id, "reissue": order.status == OrderStatus.SENT})
        return self.order(order_id), der

    def packages(self, eid: str) -> list[IssuedPackage]:
        rows = self._all("SELECT * FROM packages WHERE eid=? ORDER BY counter_value", (eid,))
        return [IssuedPackage(r["eid"], r["counter_value"], r["order_id"], r["der"], r["issued_at"]) for r in rows]

    def finish_order(self, order_id: int, status: str, result: dict[str, Any] | None, error: str | None,
                     *, event: dict[str, Any] | None = None, notifications: list[tuple] = ()) -> Order:
        """Store an order's outcome (and the notifications that came with it) in one transaction."""
        now = time.time()
        with self.tx() as db:
            row = db.execute("SELECT eid, status FROM orders WHERE id=?", (order_id,)).fetchone()
            if row is None:
                raise StoreError(f"no order {order_id}")
            db.execute("UPDATE orders SET status=?, result=?, error=?, done_at=? WHERE id=?",
                       (status, json.dumps(result, default=str) if result is not None else None, error, now, order_id))
            self._event(db, row["eid"], "result", {"order_id": order_id, "status": status, "error": error,
                                                   **(event or {})})
            for n in notifications:
                self._add_notification(db, *n)
            self._refresh_open(db, row["eid"])
        return self.order(order_id)

    def cancel_order(self, order_id: int) -> Order:
        with self.tx() as db:
            row = db.execute("SELECT eid, status FROM orders WHERE id=?", (order_id,)).fetchone()
            if row is None:
                raise StoreError(f"no order {order_id}")
            if row["status"] in OrderStatus.FINAL:
                raise StoreError(f"order {order_id} is already {row['status']}")
            db.execute("UPDATE orders SET status='cancelled', done_at=? WHERE id=?", (time.time(), order_id))
            self._event(db, row["eid"], "order_cancelled", {"order_id": order_id, "was": row["status"]})
            self._refresh_open(db, row["eid"])
        return self.order(order_id)

    def _refresh_open(self, db: sqlite3.Connection, eid: str) -> None:
        if db.execute("SELECT 1 FROM orders WHERE eid=? AND status IN ('queued','sent') LIMIT 1", (eid,)).fetchone():
            self._open.add(eid)
        else:
            self._open.discard(eid)

    # -- notifications ---------------------------------------------------------------------------

    @staticmethod
    def _add_notification(db: sqlite3.Connection, eid: str | None, seq: int | None, kind: str,
                          transaction_id: str | None, raw: bytes, forwarded_to: str | None,
                          forward_address: str | None = None) -> int:
        cur = db.execute("INSERT INTO notifications (eid, seq_number, kind, transaction_id, raw, forwarded_to, "
                         "received, forward_address) VALUES (?,?,?,?,?,?,?,?)",
                         (eid, seq, kind, transaction_id, raw, forwarded_to, time.time(), forward_address))
        if eid is not None:
            db.execute("UPDATE euiccs SET notifications=notifications+1 WHERE eid=?", (eid,))
            EimStore._event(db, eid, "notification", {"seq_number": seq, "kind": kind,
                                                     "transaction_id": transaction_id, "forwarded_to": forwarded_to})
        return cur.lastrowid

    def add_notification(self, eid: str | None, seq: int | None, kind: str, transaction_id: str | None,
                         raw: bytes, forwarded_to: str | None = None, forward_address: str | None = None) -> int:
        """Record a notification; with ``forward_address`` and no ``forwarded_to`` it waits in the table
        for :meth:`due_forwards` (so an acknowledged notification survives a restart until delivered)."""
        with self.tx() as db:
            return self._add_notification(db, eid, seq, kind, transaction_id, raw, forwarded_to, forward_address)

    def notifications(self, eid: str) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM notifications WHERE eid=? ORDER BY id", (eid,))
        return [{"seq_number": r["seq_number"], "kind": r["kind"], "transaction_id": r["transaction_id"],
                 "forwarded_to": r["forwarded_to"], "forward_address": r["forward_address"],
                 "forward_attempts": r["forward_attempts"], "forward_error": r["forward_error"],
                 "received": r["received"]} for r in rows]

    def set_euicc_info1(self, eid: str, der: bytes) -> None:
        """Keep the EUICCInfo1 an IpaEuiccData carried (the relay's InitiateAuthentication may need it)."""
        with self.tx() as db:
            db.execute("UPDATE euiccs SET euicc_info1=? WHERE eid=?", (der, eid))

    def euicc_info1(self, eid: str) -> bytes | None:
        row = self._one("SELECT euicc_info1 FROM euiccs WHERE eid=?", (eid,))
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def due_forwards(self, now: float, max_attempts: int, backoff_s: float, limit: int = 50) -> list[sqlite3.Row]:
        """Notifications still to forward whose next attempt is due (backoff doubles per failure)."""
        rows = self._all("SELECT id, eid, seq_number, kind, raw, forward_address, forward_attempts, forward_last "
                         "FROM notifications WHERE forward_address IS NOT NULL AND forwarded_to IS NULL "
                         "AND forward_attempts < ? ORDER BY id LIMIT ?", (max_attempts, limit))
        return [r for r in rows if r["forward_last"] is None
                or now - r["forward_last"] >= backoff_s * 2 ** (r["forward_attempts"] - 1)]

    def forward_done(self, row_id: int, address: str, eid: str | None, seq: int | None, kind: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE notifications SET forwarded_to=?, forward_attempts=forward_attempts+1, "
                       "forward_last=?, forward_error=NULL WHERE id=?", (address, time.time(), row_id))
            if eid is not None:
                self._event(db, eid, "notification forwarded", {"seq_number": seq, "kind": kind,
                                                                "forwarded_to": address})

    def forward_failed(self, row_id: int, error: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE notifications SET forward_attempts=forward_attempts+1, forward_last=?, "
                       "forward_error=? WHERE id=?", (time.time(), error[:500], row_id))

    # -- relay sessions (indirect download, SGP.32 v1.2 §3.2.3.2) -----------------------------------

    def put_relay_session(self, transaction_id: str, smdp_address: str, eid: str | None, order_id: int | None,
                          phase: str) -> None:
        now = time.time()
        with self.tx() as db:
            db.execute("INSERT INTO relay_sessions (transaction_id, smdp_address, eid, order_id, phase, created,"
                       " updated) VALUES (?,?,?,?,?,?,?) ON CONFLICT(transaction_id) DO UPDATE SET "
                       "phase=excluded.phase, eid=COALESCE(excluded.eid, eid), updated=excluded.updated",
                       (transaction_id, smdp_address, eid, order_id, phase, now, now))
            if eid is not None:
                self._event(db, eid, "relay", {"transaction_id": transaction_id, "phase": phase,
                                               "smdp_address": smdp_address, "order_id": order_id})

    def relay_session(self, transaction_id: str) -> RelaySession | None:
        row = self._one("SELECT * FROM relay_sessions WHERE transaction_id=?", (transaction_id.upper(),))
        if row is None:
            return None
        return RelaySession(row["transaction_id"], row["smdp_address"], row["eid"], row["order_id"], row["phase"])

    # -- policy bookkeeping ----------------------------------------------------------------------

    def policy_history(self, eid: str) -> dict[int, tuple[int, int]]:
        """rule index -> (orders done, orders failed) of the policy's orders for ``eid``."""
        out: dict[int, list[int]] = {}
        for r in self._all("SELECT source, status, COUNT(*) AS n FROM orders WHERE eid=? AND source LIKE 'policy:%'"
                           " GROUP BY source, status", (eid,)):
            idx = int(r["source"].split(":", 1)[1])
            entry = out.setdefault(idx, [0, 0])
            if r["status"] == OrderStatus.DONE:
                entry[0] += r["n"]
            elif r["status"] == OrderStatus.FAILED:
                entry[1] += r["n"]
        return {k: (v[0], v[1]) for k, v in out.items()}

    def contact_info(self, eid: str) -> tuple[str | None, int]:
        """(last rPLMN, failed attempts) without flushing the poll buffer."""
        with self._lock:
            pending = self._polls.get(eid)
            row = self._db.execute("SELECT last_rplmn, failed_attempts FROM euiccs WHERE eid=?", (eid,)).fetchone()
        rplmn = pending[2] if pending and pending[2] else (row["last_rplmn"] if row else None)
        return rplmn, row["failed_attempts"] if row else 0

    def forwarded_pir(self, transaction_id: str) -> bool:
        return self._one("SELECT 1 FROM notifications WHERE transaction_id=? AND forwarded_to IS NOT NULL "
                         "AND kind IN ('profileInstallationResult','compactProfileInstallationResult')",
                         (transaction_id,)) is not None
