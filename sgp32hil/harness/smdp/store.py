"""SM-DP+ state in SQLite (WAL): profile inventory, download orders, RSP sessions, notifications.

Every acknowledged step commits in one transaction, so a server restarted on the same database
keeps confirmed orders, completed downloads and received notifications. Profile states follow
SGP.22 §3.1.1 / §5.3 (ES2+): available -> allocated -> linked -> confirmed -> released ->
downloaded -> installed (or error).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..sqlite import SqliteStore

__all__ = ["Order", "ProfileState", "Session", "SmdpStore", "StoreError"]


class ProfileState:
    AVAILABLE = "available"
    ALLOCATED = "allocated"
    LINKED = "linked"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    DOWNLOADED = "downloaded"
    INSTALLED = "installed"
    ERROR = "error"


class StoreError(ValueError):
    """A store operation that violates the order/profile state rules."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    iccid TEXT PRIMARY KEY,
    imsi TEXT,
    package BLOB NOT NULL,
    state TEXT NOT NULL,
    name TEXT NOT NULL,
    spn TEXT NOT NULL,
    profile_type TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    matching_id TEXT PRIMARY KEY,
    iccid TEXT NOT NULL REFERENCES profiles(iccid),
    eid TEXT,
    cc_hash BLOB,
    expires REAL,
    cc_attempts INTEGER NOT NULL DEFAULT 0,
    max_cc_attempts INTEGER NOT NULL,
    downloads INTEGER NOT NULL DEFAULT 0,
    max_downloads INTEGER NOT NULL,
    fallback INTEGER NOT NULL DEFAULT 0,
    bound_otpk BLOB,
    bound_otsk BLOB,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    transaction_id BLOB PRIMARY KEY,
    euicc_challenge BLOB NOT NULL,
    server_challenge BLOB NOT NULL,
    ci_pkid BLOB NOT NULL,
    curve TEXT NOT NULL,
    phase TEXT NOT NULL,
    eid TEXT,
    matching_id TEXT,
    euicc_cert BLOB,
    smdp_signature2 BLOB,
    cc_required INTEGER NOT NULL DEFAULT 0,
    otpk BLOB,
    otsk BLOB,
    bpp BLOB,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    transaction_id BLOB,
    eid TEXT,
    seq_number INTEGER,
    iccid TEXT,
    result TEXT,
    raw BLOB NOT NULL,
    received REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS downloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id BLOB NOT NULL,
    matching_id TEXT,
    iccid TEXT,
    eid TEXT,
    event TEXT NOT NULL,
    detail TEXT,
    at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Order:
    matching_id: str
    iccid: str
    eid: str | None
    cc_hash: bytes | None
    expires: float | None
    cc_attempts: int
    max_cc_attempts: int
    downloads: int
    max_downloads: int
    fallback: bool
    bound_otpk: bytes | None
    bound_otsk: bytes | None

    @property
    def cc_required(self) -> bool:
        return self.cc_hash is not None

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (now if now is not None else time.time()) > self.expires


@dataclass(frozen=True)
class Session:
    transaction_id: bytes
    euicc_challenge: bytes
    server_challenge: bytes
    ci_pkid: bytes
    curve: str
    phase: str
    eid: str | None
    matching_id: str | None
    euicc_cert: bytes | None
    smdp_signature2: bytes | None
    cc_required: bool
    otpk: bytes | None
    otsk: bytes | None
    bpp: bytes | None


def confirmation_code_hash(code: str | bytes) -> bytes:
    """SHA-256 of the confirmation code, the value the SM-DP+ keeps (SGP.22 §3.1.3.2)."""
    return hashlib.sha256(code.encode("utf-8") if isinstance(code, str) else code).digest()


class SmdpStore(SqliteStore):
    """Thread-safe SQLite store; one short transaction per call."""

    def __init__(self, path: str | Path):
        super().__init__(path, _SCHEMA)


    # -- profiles ---------------------------------------------------------------------------

    def add_profile(
        self,
        iccid: str,
        package: bytes,
        *,
        imsi: str | None = None,
        name: str = "sgp32-hil test profile",
        spn: str = "sgp32-hil",
        profile_type: str | None = None,
    ) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO profiles(iccid, imsi, package, state, name, spn, profile_type) VALUES (?,?,?,?,?,?,?)",
                (iccid, imsi, package, ProfileState.AVAILABLE, name, spn, profile_type),
            )

    def profile(self, iccid: str) -> dict | None:
        row = self._one("SELECT * FROM profiles WHERE iccid=?", (iccid,))
        return dict(row) if row else None

    def profile_state(self, iccid: str) -> str | None:
        row = self._one("SELECT state FROM profiles WHERE iccid=?", (iccid,))
        return row["state"] if row else None

    def set_profile_state(self, iccid: str, state: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE profiles SET state=? WHERE iccid=?", (state, iccid))

    def allocate_profile(self, iccid: str | None = None, profile_type: str | None = None) -> str | None:
        """Move one available profile (by ICCID or type) to ``allocated``; None if none fits."""
        with self.tx() as db:
            if iccid is not None:
                row = db.execute("SELECT iccid, state FROM profiles WHERE iccid=?", (iccid,)).fetchone()
                if row is None or row["state"] != ProfileState.AVAILABLE:
                    return None
            else:
                sql = "SELECT iccid FROM profiles WHERE state=?"
                args: tuple = (ProfileState.AVAILABLE,)
                if profile_type is not None:
                    sql += " AND profile_type=?"
                    args += (profile_type,)
                row = db.execute(sql + " ORDER BY iccid LIMIT 1", args).fetchone()
                if row is None:
                    return None
            db.execute("UPDATE profiles SET state=? WHERE iccid=?", (ProfileState.ALLOCATED, row["iccid"]))
            return row["iccid"]

    # -- orders -----------------------------------------------------------------------------

    def add_order(
        self,
        matching_id: str,
        *,
        iccid: str | None = None,
        package: bytes | None = None,
        imsi: str | None = None,
        name: str = "sgp32-hil test profile",
        spn: str = "sgp32-hil",
        eid: str | None = None,
        confirmation_code: str | None = None,
        expires: float | None = None,
        fallback: bool = False,
        max_cc_attempts: int = 3,
        max_downloads: int = 5,
        state: str = ProfileState.RELEASED,
    ) -> Order:
        """A released download order for tests and pre-load; adds the profile when ``package`` is given.

        ``expires`` is a Unix time; ``state`` is the profile state after the call (``released`` makes the
        order downloadable at once, ``confirmed`` needs an ES2+ releaseProfile first)."""
        if package is not None:
            if iccid is None:
                from ..saip import read_profile

                iccid = read_profile(package).iccid
            if self.profile(iccid) is None:
                self.add_profile(iccid, package, imsi=imsi, name=name, spn=spn)
        if iccid is None or self.profile(iccid) is None:
            raise StoreError(f"order {matching_id!r}: unknown profile {iccid!r}")
        cc_hash = confirmation_code_hash(confirmation_code) if confirmation_code else None
        with self.tx() as db:
            if db.execute("SELECT 1 FROM orders WHERE matching_id=?", (matching_id,)).fetchone():
                raise StoreError(f"matchingId {matching_id!r} already in use")
            db.execute(
                "INSERT INTO orders(matching_id, iccid, eid, cc_hash, expires, max_cc_attempts, max_downloads,"
                " fallback, created) VALUES (?,?,?,?,?,?,?,?,?)",
                (matching_id, iccid, eid, cc_hash, expires, max_cc_attempts, max_downloads, int(fallback), time.time()),
            )
            db.execute("UPDATE profiles SET state=? WHERE iccid=?", (state, iccid))
        order = self.order(matching_id)
        assert order is not None
        return order

    @staticmethod
    def _order(row: sqlite3.Row) -> Order:
        return Order(
            matching_id=row["matching_id"],
            iccid=row["iccid"],
            eid=row["eid"],
            cc_hash=row["cc_hash"],
            expires=row["expires"],
            cc_attempts=row["cc_attempts"],
            max_cc_attempts=row["max_cc_attempts"],
            downloads=row["downloads"],
            max_downloads=row["max_downloads"],
            fallback=bool(row["fallback"]),
            bound_otpk=row["bound_otpk"],
            bound_otsk=row["bound_otsk"],
        )

    def order(self, matching_id: str) -> Order | None:
        row = self._one("SELECT * FROM orders WHERE matching_id=?", (matching_id,))
        return self._order(row) if row else None

    def order_for_iccid(self, iccid: str) -> Order | None:
        row = self._one("SELECT * FROM orders WHERE iccid=? ORDER BY created DESC LIMIT 1", (iccid,))
        return self._order(row) if row else None

    def order_for_eid(self, eid: str) -> Order | None:
        """The oldest downloadable order bound to ``eid`` (default SM-DP+ address case, no matchingId)."""
        row = self._one(
            "SELECT o.* FROM orders o JOIN profiles p ON p.iccid=o.iccid WHERE o.eid=? AND p.state IN (?,?)"
            " ORDER BY o.created LIMIT 1",
            (eid, ProfileState.RELEASED, ProfileState.DOWNLOADED),
        )
        return self._order(row) if row else None

    def delete_order(self, matching_id: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM orders WHERE matching_id=?", (matching_id,))

    def count_cc_attempt(self, matching_id: str) -> int:
        with self.tx() as db:
            db.execute("UPDATE orders SET cc_attempts=cc_attempts+1 WHERE matching_id=?", (matching_id,))
            return db.execute("SELECT cc_attempts FROM orders WHERE matching_id=?", (matching_id,)).fetchone()[0]

    def count_download_attempt(self, matching_id: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE orders SET downloads=downloads+1 WHERE matching_id=?", (matching_id,))

    def bind_order(self, matching_id: str, otpk: bytes, otsk: bytes) -> None:
        with self.tx() as db:
            db.execute("UPDATE orders SET bound_otpk=?, bound_otsk=? WHERE matching_id=?", (otpk, otsk, matching_id))

    def update_order(self, matching_id: str, **values) -> None:
        allowed = {"eid", "cc_hash", "expires"}
        if not values or set(values) - allowed:
            raise StoreError(f"cannot update {sorted(set(values) - allowed)}")
        cols = ", ".join(f"{k}=?" for k in values)
        with self.tx() as db:
            db.execute(f"UPDATE orders SET {cols} WHERE matching_id=?", (*values.values(), matching_id))

    # -- sessions ---------------------------------------------------------------------------

    def new_session(
        self, transaction_id: bytes, euicc_challenge: bytes, server_challenge: bytes, ci_pkid: bytes, curve: str
    ) -> None:
        now = time.time()
        with self.tx() as db:
            db.execute(
                "INSERT INTO sessions(transaction_id, euicc_challenge, server_challenge, ci_pkid, curve, phase,"
                " created, updated) VALUES (?,?,?,?,?,?,?,?)",
                (transaction_id, euicc_challenge, server_challenge, ci_pkid, curve, "initiated", now, now),
            )

    def session(self, transaction_id: bytes) -> Session | None:
        row = self._one("SELECT * FROM sessions WHERE transaction_id=?", (transaction_id,))
        if row is None:
            return None
        return Session(
            transaction_id=row["transaction_id"],
            euicc_challenge=row["euicc_challenge"],
            server_challenge=row["server_challenge"],
            ci_pkid=row["ci_pkid"],
            curve=row["curve"],
            phase=row["phase"],
            eid=row["eid"],
            matching_id=row["matching_id"],
            euicc_cert=row["euicc_cert"],
            smdp_signature2=row["smdp_signature2"],
            cc_required=bool(row["cc_required"]),
            otpk=row["otpk"],
            otsk=row["otsk"],
            bpp=row["bpp"],
        )

    _SESSION_COLS = frozenset(
        {"phase", "eid", "matching_id", "euicc_cert", "smdp_signature2", "cc_required", "otpk", "otsk", "bpp"}
    )

    def update_session(self, transaction_id: bytes, *, expect_phase: str | None = None, **values) -> bool:
        """Update a session; with ``expect_phase`` only if it is still in that phase (False otherwise)."""
        if set(values) - self._SESSION_COLS:
            raise StoreError(f"unknown session columns {sorted(set(values) - self._SESSION_COLS)}")
        cols = ", ".join(f"{k}=?" for k in values) + ", updated=?"
        sql = f"UPDATE sessions SET {cols} WHERE transaction_id=?"
        args: tuple = (*values.values(), time.time(), transaction_id)
        if expect_phase is not None:
            sql += " AND phase=?"
            args += (expect_phase,)
        with self.tx() as db:
            return db.execute(sql, args).rowcount == 1

    # -- records ----------------------------------------------------------------------------

    def record_download(
        self, transaction_id: bytes, event: str, *, matching_id=None, iccid=None, eid=None, detail=None
    ) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO downloads(transaction_id, matching_id, iccid, eid, event, detail, at) VALUES (?,?,?,?,?,?,?)",
                (transaction_id, matching_id, iccid, eid, event, detail, time.time()),
            )

    def downloads(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._db.execute("SELECT * FROM downloads ORDER BY id")]

    def record_notification(
        self, kind: str, raw: bytes, *, transaction_id=None, eid=None, seq_number=None, iccid=None, result=None
    ) -> int:
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO notifications(kind, transaction_id, eid, seq_number, iccid, result, raw, received)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (kind, transaction_id, eid, seq_number, iccid, result, raw, time.time()),
            )
            return int(cur.lastrowid)

    def notifications(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._db.execute("SELECT * FROM notifications ORDER BY id")]

    def dump(self) -> str:
        """A JSON summary of profiles and orders (for the CLI and debugging)."""
        with self._lock:
            profiles = [
                {k: r[k] for k in ("iccid", "imsi", "state", "name")} for r in self._db.execute("SELECT * FROM profiles")
            ]
            orders = [
                {k: r[k] for k in ("matching_id", "iccid", "eid", "expires", "cc_attempts", "downloads")}
                for r in self._db.execute("SELECT * FROM orders")
            ]
        return json.dumps({"profiles": profiles, "orders": orders}, indent=2)
