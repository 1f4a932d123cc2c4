"""Timestamped JSONL transcript of every byte crossing an AT port.

One record per read/write chunk or channel event::

    {"t": 1732456789.123456, "dir": "tx", "data": "AT+CPIN?\\r"}
    {"t": 1732456789.140210, "dir": "rx", "data": "\\r\\n+CPIN: READY\\r\\n", }
    {"t": 1732456790.000001, "dir": "rx", "data": "\\xff\\x00OK", "hex": "ff004f4b"}
    {"t": 1732456791.5, "dir": "event", "data": "port gone: read failed: [Errno 5] Input/output error"}

``data`` is printable ASCII with ``\\r``, ``\\n``, ``\\t`` and ``\\xNN`` escapes; ``hex`` is added
whenever the chunk holds bytes that are not printable ASCII or CR/LF/TAB, so a report reader
sees garbage exactly as it arrived.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_ESCAPES = {0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t", 0x5C: "\\\\"}


def escape_bytes(data: bytes) -> str:
    """Printable rendering of ``data``: ASCII as is, CR/LF/TAB/backslash escaped, the rest ``\\xNN``."""
    out = []
    for b in data:
        if b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def has_nonprintable(data: bytes) -> bool:
    return any(not (0x20 <= b < 0x7F or b in (0x0D, 0x0A, 0x09)) for b in data)


@dataclass(frozen=True)
class TranscriptRecord:
    t: float
    dir: str
    data: bytes

    def to_json(self) -> str:
        record: dict[str, object] = {"t": round(self.t, 6), "dir": self.dir, "data": escape_bytes(self.data)}
        if has_nonprintable(self.data):
            record["hex"] = self.data.hex()
        return json.dumps(record, ensure_ascii=True)


class Transcript:
    """Thread-safe recorder; keeps the last ``keep`` records in memory and optionally streams to a file.

    ``path`` (or an open text stream) receives one JSON object per line as records arrive, so a
    crashed run still leaves a usable attachment.
    """

    def __init__(self, path: str | Path | IO[str] | None = None, *, keep: int = 100_000, clock=time.time):
        self._lock = threading.Lock()
        self._records: deque[TranscriptRecord] = deque(maxlen=keep)
        self._clock = clock
        self._owned = False
        self._stream: IO[str] | None
        if path is None:
            self._stream = None
        elif isinstance(path, (str, Path)):
            self._stream = open(path, "a", encoding="ascii", buffering=1)
            self._owned = True
        else:
            self._stream = path

    def _add(self, direction: str, data: bytes) -> None:
        record = TranscriptRecord(self._clock(), direction, bytes(data))
        with self._lock:
            self._records.append(record)
            if self._stream is not None:
                self._stream.write(record.to_json() + "\n")

    def tx(self, data: bytes) -> None:
        self._add("tx", data)

    def rx(self, data: bytes) -> None:
        self._add("rx", data)

    def event(self, text: str) -> None:
        self._add("event", text.encode("utf-8", "backslashreplace"))

    def records(self) -> list[TranscriptRecord]:
        with self._lock:
            return list(self._records)

    def __iter__(self) -> Iterator[TranscriptRecord]:
        return iter(self.records())

    def to_jsonl(self) -> str:
        buf = io.StringIO()
        for record in self.records():
            buf.write(record.to_json() + "\n")
        return buf.getvalue()

    def dump(self, path: str | Path) -> Path:
        """Write every kept record to ``path`` (a report attachment) and return it."""
        target = Path(path)
        target.write_text(self.to_jsonl(), encoding="ascii")
        return target

    def close(self) -> None:
        with self._lock:
            if self._owned and self._stream is not None:
                self._stream.close()
            self._stream = None
