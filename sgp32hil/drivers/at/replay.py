"""Replay an AT transcript (:mod:`.transcript` JSONL) as a fake port, for regression tests without hardware.

:class:`ReplaySerial` implements the pyserial subset :class:`~.channel.AtChannel` uses.  Each command line the
host writes is compared with the next recorded TX (after applying the ``masks``, regexes whose matches are
variable fields); on a match the RX recorded up to the next TX becomes readable, with the recorded gaps
multiplied by ``time_scale`` and capped at ``max_gap_s``.  ``strict`` raises :class:`ReplayDivergence`
(record index, expected and actual line) on the first mismatch; lenient mode skips ahead to the next
matching TX, or answers ``unmatched_reply``, and lists every divergence.  A recorded ``port gone`` event
makes reads fail as a closed pty does until the channel reopens the port.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from re import Pattern

import serial

MASK_CGLA_DATA = r'(?<=\+CGLA=)[^\r]*'
MASK_CSIM_DATA = r'(?<=\+CSIM=)[^\r]*'


class ReplayDivergence(AssertionError):
    """The host wrote something other than the transcript recorded."""

    def __init__(self, index: int | None, expected: str | None, got: str):
        self.index = index
        self.expected = expected
        self.got = got
        where = f"transcript record {index}" if index is not None else "end of transcript"
        super().__init__(f"{where}: expected TX {expected!r}, got {got!r}")


@dataclass(frozen=True)
class Record:
    index: int
    t: float
    dir: str
    data: bytes


def unescape(text: str) -> bytes:
    """Inverse of :func:`.transcript.escape_bytes`."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x" and i + 3 < len(text):
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}.get(nxt, nxt.encode())
            i += 2
            continue
        out += ch.encode("latin-1")
        i += 1
    return bytes(out)


def load_records(source: str | Path | Iterable[str]) -> list[Record]:
    """Records of a JSONL transcript file (or its lines); ``hex`` wins over ``data`` when present."""
    lines = Path(source).read_text(encoding="ascii").splitlines() if isinstance(source, (str, Path)) else list(source)
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        obj = json.loads(line)
        data = bytes.fromhex(obj["hex"]) if "hex" in obj else unescape(obj.get("data", ""))
        out.append(Record(i, float(obj.get("t", 0.0)), obj["dir"], data))
    return out


def _lines(data: bytes) -> list[bytes]:
    return [p for p in re.split(rb"[\r\x1a]", data) if p.strip()]


class ReplaySerial:
    """A pyserial-like port answering from a transcript; pass :meth:`factory` as ``AtChannel(serial_factory=…)``."""

    def __init__(
        self,
        records: list[Record] | str | Path,
        *,
        strict: bool = True,
        masks: Iterable[str | Pattern[str]] = (),
        time_scale: float = 0.0,
        max_gap_s: float = 0.05,
        unmatched_reply: bytes = b"\r\nERROR\r\n",
        timeout: float = 0.05,
    ):
        recs = load_records(records) if isinstance(records, (str, Path)) else list(records)
        self.steps = [r for r in recs if r.dir in ("tx", "rx") or (r.dir == "event" and r.data.startswith(b"port gone"))]
        self.strict = strict
        self.masks = [re.compile(m) if isinstance(m, str) else m for m in masks]
        self.time_scale = time_scale
        self.max_gap_s = max_gap_s
        self.unmatched_reply = unmatched_reply
        self.timeout = timeout
        self.is_open = True
        self.divergences: list[ReplayDivergence] = []
        self.matched = 0
        self._pos = 0
        self._tx_buf = bytearray()
        self._expected_tx: list[tuple[int, bytes]] = []
        self._pending: list[tuple[float, bytes]] = []
        self._vanished = False
        self._cond = threading.Condition()
        self._release(time.monotonic(), None)

    @staticmethod
    def factory(instance: "ReplaySerial"):
        def make(_target, **kwargs):
            instance.timeout = kwargs.get("timeout", instance.timeout)
            instance.is_open = True
            with instance._cond:
                instance._vanished = False
            return instance

        return make

    # ------------------------------------------------------------------ transcript walking

    def _mask(self, line: bytes) -> str:
        text = line.decode("latin-1").strip()
        for m in self.masks:
            text = m.sub("<*>", text)
        return text

    def _release(self, now: float, after: Record | None) -> None:
        """Make the RX following the cursor readable, up to the next TX, with compressed gaps."""
        last_t = after.t if after is not None else None
        due = now
        while self._pos < len(self.steps):
            rec = self.steps[self._pos]
            if rec.dir == "tx":
                if not self._expected_tx:
                    self._expected_tx = [(rec.index, line) for line in _lines(rec.data)]
                    if not self._expected_tx:
                        self._pos += 1
                        continue
                return
            self._pos += 1
            if last_t is not None:
                due += min(max(0.0, rec.t - last_t) * self.time_scale, self.max_gap_s)
            last_t = rec.t
            if rec.dir == "rx":
                self._pending.append((due, rec.data))
            else:
                self._pending.append((due, b""))

    def _on_line(self, line: bytes) -> None:
        got = self._mask(line)
        with self._cond:
            if self._expected_tx:
                index, expected = self._expected_tx[0]
                if self._mask(expected) == got:
                    self._expected_tx.pop(0)
                    self.matched += 1
                    if not self._expected_tx:
                        self._pos += 1
                        self._release(time.monotonic(), self.steps[self._pos - 1])
                    self._cond.notify_all()
                    return
                divergence = ReplayDivergence(index, expected.decode("latin-1"), got)
            else:
                divergence = ReplayDivergence(None, None, got)
            self.divergences.append(divergence)
            if self.strict:
                raise divergence
            if self._skip_to(got):
                self._cond.notify_all()
                return
            self._pending.append((time.monotonic(), self.unmatched_reply))
            self._cond.notify_all()

    def _skip_to(self, got: str) -> bool:
        """Lenient resync: jump to the next recorded TX equal to ``got`` and replay from there."""
        for j in range(self._pos + 1, len(self.steps)):
            rec = self.steps[j]
            if rec.dir == "tx":
                lines = _lines(rec.data)
                if lines and self._mask(lines[0]) == got:
                    self._pos = j
                    self._expected_tx = [(rec.index, line) for line in lines[1:]]
                    if not self._expected_tx:
                        self._pos += 1
                        self._release(time.monotonic(), rec)
                    self.matched += 1
                    return True
        return False

    @property
    def finished(self) -> bool:
        """Every recorded TX was matched and every RX delivered."""
        with self._cond:
            return self._pos >= len(self.steps) and not self._expected_tx and not self._pending

    def remaining(self) -> list[Record]:
        with self._cond:
            return self.steps[self._pos:]

    # ------------------------------------------------------------------ pyserial subset

    def _due(self) -> bytes:
        now = time.monotonic()
        out = bytearray()
        while self._pending and self._pending[0][0] <= now:
            if self._pending[0][1] == b"":
                if not out:
                    self._pending.pop(0)
                    self._vanished = True
                break
            out += self._pending.pop(0)[1]
        return bytes(out)

    @property
    def in_waiting(self) -> int:
        with self._cond:
            if self._vanished:
                raise serial.SerialException("read failed: [Errno 5] Input/output error")
            now = time.monotonic()
            return sum(len(d) for due, d in self._pending if due <= now and d)

    def read(self, size: int = 1) -> bytes:
        deadline = time.monotonic() + (self.timeout or 0)
        with self._cond:
            while True:
                if self._vanished:
                    raise serial.SerialException("read failed: [Errno 5] Input/output error")
                if self._pending and self._pending[0][0] <= time.monotonic():
                    data = self._due()
                    if len(data) > size:
                        self._pending.insert(0, (0.0, data[size:]))
                        data = data[:size]
                    if data:
                        return data
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return b""
                wait = remaining
                if self._pending:
                    wait = min(wait, max(0.0, self._pending[0][0] - time.monotonic()))
                self._cond.wait(wait)

    def write(self, data: bytes) -> int:
        if self._vanished:
            raise serial.SerialException("write failed: [Errno 5] Input/output error")
        self._tx_buf += data
        while True:
            cut = min((i for i in (self._tx_buf.find(b"\r"), self._tx_buf.find(b"\x1a")) if i >= 0), default=-1)
            if cut < 0:
                break
            line = bytes(self._tx_buf[:cut])
            del self._tx_buf[:cut + 1]
            if line.strip():
                self._on_line(line)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.is_open = False
