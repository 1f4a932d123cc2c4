"""AT command channel over pyserial (ITU-T V.250 framing, 3GPP TS 27.007 result codes).

One reader thread per open port feeds a :class:`LineAssembler`; each complete line is either
echo, a final result for the command in flight, an information line that command claims, or an
unsolicited result code (URC) routed to subscribers.  Exactly one command is in flight; every
wait has a deadline; every byte goes to the :class:`~.transcript.Transcript`.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from re import Pattern

import serial

from .errors import (
    CME_ERRORS,
    CMS_ERRORS,
    AtChannelError,
    AtError,
    AtProtocolError,
    AtResponse,
    AtTimeout,
    CmeError,
    CmsError,
    FinalKind,
    PortGone,
    cme_code_for,
    cms_code_for,
)
from .port import PortIdentity
from .transcript import Transcript, escape_bytes

log = logging.getLogger(__name__)

MAX_LINE = 4096
CTRL_Z = b"\x1a"

# --------------------------------------------------------------------------- final results

_CME_RE = re.compile(r"^\+CME ERROR:\s*(.*)$", re.IGNORECASE)
_CMS_RE = re.compile(r"^\+CMS ERROR:\s*(.*)$", re.IGNORECASE)
_STANDARD_FINALS = {
    "OK": FinalKind.OK,
    "ERROR": FinalKind.ERROR,
    "NO CARRIER": FinalKind.NO_CARRIER,
    "BUSY": FinalKind.BUSY,
    "NO ANSWER": FinalKind.NO_ANSWER,
    "NO DIALTONE": FinalKind.NO_DIALTONE,
}


@dataclass(frozen=True)
class FinalResult:
    kind: FinalKind
    code: int | None = None
    text: str | None = None


def classify_final(line: str, extra_errors: Iterable[str] = (), extra_ok: Iterable[str] = ()) -> FinalResult | None:
    """Classify ``line`` as a final result code (V.250 §5.7.1, 27.007 §9.2) or return None.

    ``+CME ERROR: 10`` and ``+CME ERROR: SIM not inserted`` both give code 10 and the text;
    ``extra_errors``/``extra_ok`` are whole-line vendor finals from the profile (e.g. ``COMMAND NOT SUPPORT``).
    """
    text = line.strip()
    upper = text.upper()
    if upper in _STANDARD_FINALS:
        return FinalResult(_STANDARD_FINALS[upper])
    if upper == "CONNECT" or upper.startswith("CONNECT "):
        return FinalResult(FinalKind.CONNECT, text=text[8:].strip() or None)
    for regex, kind, lookup, table in (
        (_CME_RE, FinalKind.CME_ERROR, cme_code_for, "cme"),
        (_CMS_RE, FinalKind.CMS_ERROR, cms_code_for, "cms"),
    ):
        m = regex.match(text)
        if m:
            arg = m.group(1).strip().strip('"').strip()
            if arg.isdigit():
                code = int(arg)
                return FinalResult(kind, code, _error_text(table, code))
            return FinalResult(kind, lookup(arg) if arg else None, arg or None)
    for extra in extra_ok:
        if upper == extra.upper():
            return FinalResult(FinalKind.OK)
    for extra in extra_errors:
        if upper == extra.upper():
            return FinalResult(FinalKind.VENDOR_ERROR, text=text)
    return None


def _error_text(table: str, code: int) -> str | None:
    return (CME_ERRORS if table == "cme" else CMS_ERRORS).get(code)


# --------------------------------------------------------------------------- timeouts

DEFAULT_TIMEOUTS: Mapping[str, float] = {
    "": 3.0,
    "+CPIN?": 10.0,
    "+CPIN=": 20.0,
    "+CLCK": 20.0,
    "+CFUN?": 3.0,
    "+CFUN=": 15.0,
    "+COPS=?": 315.0,
    "+COPS=0": 120.0,
    "+COPS=1": 120.0,
    "+COPS=2": 30.0,
    "+COPS=4": 120.0,
    "+COPS?": 3.0,
    "+CGATT=": 140.0,
    "+CGACT=": 150.0,
    "+CGDCONT": 5.0,
    "+CGPADDR": 5.0,
    "+CCHO": 30.0,
    "+CCHC": 30.0,
    "+CGLA": 240.0,
    "+CSIM": 240.0,
    "+CRSM": 10.0,
    "+CMGS": 60.0,
    "D": 60.0,
}


def command_key(command: str) -> str:
    """``AT+cops=?`` → ``+COPS=?``: the part after ``AT``, uppercased, used for timeout lookup."""
    body = command.strip()
    if body[:2].upper() == "AT":
        body = body[2:]
    return body.upper()


@dataclass(frozen=True)
class TimeoutTable:
    """Per-command timeouts: the longest key that prefixes the command wins; ``""`` is the default."""

    entries: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))

    def lookup(self, command: str) -> float:
        key = command_key(command)
        best = ""
        for k in self.entries:
            if len(k) > len(best) and key.startswith(k.upper()):
                best = k
        return float(self.entries.get(best, DEFAULT_TIMEOUTS[""]))

    def merged(self, overrides: Mapping[str, float]) -> "TimeoutTable":
        merged = dict(self.entries)
        merged.update({k: float(v) for k, v in overrides.items()})
        return TimeoutTable(merged)


# --------------------------------------------------------------------------- line assembly


@dataclass(frozen=True)
class Fragment:
    """Output of the assembler: a complete line, a data prompt, or a discard notice."""

    kind: str  # "line" | "prompt" | "discard"
    data: bytes = b""
    reason: str = ""


class LineAssembler:
    """Splits a byte stream into lines on any run of CR/LF (``\\r\\n``, ``\\r\\r\\n``, bare ``\\r`` or ``\\n``).

    A pending ``>`` / ``> `` with nothing else since the last terminator is reported as a prompt
    (27.005 §3.5.1) when ``want_prompt`` is set.  Lines longer than ``max_line`` bytes are
    discarded up to the next terminator and reported, never buffered without bound.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = 0

    @property
    def partial(self) -> bytes:
        return bytes(self._buf)

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = 0

    def feed(self, data: bytes, want_prompt: bool = False) -> list[Fragment]:
        out: list[Fragment] = []
        start = 0
        n = len(data)
        while start < n:
            cut = _next_terminator(data, start)
            if cut < 0:
                chunk = data[start:]
                if self._discarding:
                    self._discarding += len(chunk)
                else:
                    self._buf += chunk
                    if len(self._buf) > self.max_line:
                        self._discarding = len(self._buf)
                        self._buf.clear()
                break
            chunk = data[start:cut]
            if self._discarding:
                total = self._discarding + len(chunk)
                self._discarding = 0
                out.append(Fragment("discard", reason=f"line of {total} bytes exceeds {self.max_line}"))
            else:
                self._buf += chunk
                if len(self._buf) > self.max_line:
                    out.append(Fragment("discard", bytes(self._buf[:64]), f"line of {len(self._buf)} bytes exceeds {self.max_line}"))
                elif self._buf:
                    out.append(Fragment("line", bytes(self._buf)))
                self._buf.clear()
            start = cut + 1
        if want_prompt and not self._discarding and self._buf.strip() == b">":
            self._buf.clear()
            out.append(Fragment("prompt"))
        return out


def _next_terminator(data: bytes, start: int) -> int:
    cr = data.find(b"\r", start)
    lf = data.find(b"\n", start)
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)


def clean_line(raw: bytes) -> tuple[str, bool]:
    """Decode a line keeping printable ASCII and TAB; NUL, control and non-ASCII bytes (line noise,
    baud mismatch) are dropped.  Returns (text, had_garbage); the transcript keeps the raw bytes."""
    kept = bytes(b for b in raw if 0x20 <= b < 0x7F or b == 0x09)
    return kept.decode("ascii").strip(), len(kept) != len(raw)


# --------------------------------------------------------------------------- URC routing

_PREFIXED = re.compile(r"^[+%#$^*&][A-Za-z0-9_]+:")


@dataclass(frozen=True)
class UrcEvent:
    """An unsolicited line with its arrival time (``time.monotonic``) and a channel-wide sequence number."""

    line: str
    t: float
    seq: int


def _compile(pattern: str | Pattern[str]) -> Callable[[str], bool]:
    if isinstance(pattern, str):
        p = pattern.upper()
        return lambda line: line.upper().startswith(p)
    return lambda line: pattern.search(line) is not None


class Subscription:
    """A URC subscriber: a callback (run on the channel's dispatcher thread) or a queue of :class:`UrcEvent`."""

    def __init__(self, channel: "AtChannel", pattern: str | Pattern[str], callback: Callable[[UrcEvent], None] | None, maxsize: int):
        self.pattern = pattern
        self.matches = _compile(pattern)
        self.callback = callback
        self.queue: queue.Queue[UrcEvent] | None = None if callback else queue.Queue(maxsize)
        self._channel = channel

    def get(self, timeout: float) -> UrcEvent:
        """Next matching URC; raises ``queue.Empty`` after ``timeout`` seconds."""
        if self.queue is None:
            raise TypeError("callback subscription has no queue")
        return self.queue.get(timeout=max(0.0, timeout))

    def unsubscribe(self) -> None:
        self._channel._unsubscribe(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.unsubscribe()


# --------------------------------------------------------------------------- the channel


@dataclass
class _Pending:
    command: str
    expect: tuple[Callable[[str], bool], ...]
    bare_ok: bool
    want_prompt: bool
    lines: list[str] = field(default_factory=list)
    echo_seen: bool = False
    final: str | None = None
    result: FinalResult | None = None
    error: BaseException | None = None
    protocol_errors: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    prompt: threading.Event = field(default_factory=threading.Event)

    def claims(self, line: str) -> bool:
        return any(m(line) for m in self.expect)


def default_expect(command: str) -> tuple[str, ...]:
    """Information-line prefix a command claims: ``AT+CEREG?`` → ``+CEREG:``, ``AT%XICCID`` → ``%XICCID:``."""
    m = re.match(r"^(?:AT)?([+%#$^*&][A-Za-z0-9_]+)", command.strip(), re.IGNORECASE)
    return (m.group(1).upper() + ":",) if m else ()


SerialFactory = Callable[..., serial.SerialBase]


class AtChannel:
    """AT command channel on one port.

    ``port`` is a :class:`PortIdentity` or anything :meth:`PortIdentity.parse` accepts.
    ``serial_factory(target, baudrate=…, timeout=…)`` defaults to ``serial.serial_for_url``.
    """

    def __init__(
        self,
        port: PortIdentity | str,
        *,
        baudrate: int = 115200,
        transcript: Transcript | None = None,
        timeouts: TimeoutTable | None = None,
        extra_errors: Sequence[str] = (),
        extra_ok: Sequence[str] = (),
        known_urcs: Sequence[str | Pattern[str]] = (),
        max_line: int = MAX_LINE,
        serial_factory: SerialFactory | None = None,
        read_interval: float = 0.05,
        urc_history: int = 2000,
        rtscts: bool = False,
    ):
        self.identity = PortIdentity.parse(port)
        self.baudrate = baudrate
        self.rtscts = rtscts
        self.transcript = transcript or Transcript()
        self.timeouts = timeouts or TimeoutTable()
        self.extra_errors = tuple(extra_errors)
        self.extra_ok = tuple(extra_ok)
        self._known_urcs = [_compile(p) for p in known_urcs]
        self._factory = serial_factory or serial.serial_for_url
        self._read_interval = read_interval
        self._assembler = LineAssembler(max_line)
        self._cmd_lock = threading.Lock()
        self._state = threading.RLock()
        self._pending: _Pending | None = None
        self._serial: serial.SerialBase | None = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._gone = threading.Event()
        self._generation = 0
        self._opened_target: str | None = None
        self._subs: list[Subscription] = []
        self._history: deque[UrcEvent] = deque(maxlen=urc_history)
        self._history_cond = threading.Condition(self._state)
        self._seq = 0
        self._callbacks: queue.Queue[tuple[Subscription, UrcEvent] | None] = queue.Queue()
        self._dispatcher: threading.Thread | None = None
        self._suspect_late_final = False

    # ------------------------------------------------------------------ configuration

    def apply_profile(self, profile) -> None:
        """Take final-result extras, timeout overrides and known bare URCs from a VendorProfile."""
        self.extra_errors = tuple(profile.final_errors)
        self.extra_ok = tuple(profile.final_ok)
        self.timeouts = TimeoutTable().merged(profile.timeouts)
        self._known_urcs = [_compile(re.compile(p)) for p in profile.known_urcs]

    def add_known_urc(self, pattern: str | Pattern[str]) -> None:
        """Treat lines matching ``pattern`` as URCs even while a command that accepts bare lines is in flight."""
        self._known_urcs.append(_compile(pattern))

    # ------------------------------------------------------------------ open / close / reopen

    @property
    def is_open(self) -> bool:
        return self._serial is not None and not self._gone.is_set()

    @property
    def gone(self) -> bool:
        return self._gone.is_set()

    @property
    def target(self) -> str | None:
        """What the identity resolved to at the last successful open."""
        return self._opened_target

    def open(self) -> "AtChannel":
        target = self.identity.resolve()
        if target is None:
            raise PortGone(f"{self.identity}: port not present")
        self._open_target(target)
        return self

    def _open_target(self, target: str) -> None:
        try:
            ser = self._factory(target, baudrate=self.baudrate, timeout=self._read_interval, write_timeout=5, rtscts=self.rtscts)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortGone(f"{self.identity}: cannot open {target}: {exc}") from exc
        with self._state:
            self._generation += 1
            gen = self._generation
            self._serial = ser
            self._opened_target = target
            self._assembler.reset()
            self._gone.clear()
            self._stop.clear()
        self.transcript.event(f"open {self.identity} -> {target}")
        self._reader = threading.Thread(target=self._read_loop, args=(ser, gen), name=f"at-reader[{self.identity}]", daemon=True)
        self._reader.start()
        if self._dispatcher is None or not self._dispatcher.is_alive():
            self._dispatcher = threading.Thread(target=self._dispatch_loop, name=f"at-urc[{self.identity}]", daemon=True)
            self._dispatcher.start()

    def _close_serial(self) -> None:
        with self._state:
            ser, self._serial = self._serial, None
            self._generation += 1
            self._stop.set()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=2)
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError) as exc:
                log.debug("close %s: %s", self.identity, exc)

    def close(self) -> None:
        self._close_serial()
        self.transcript.event(f"close {self.identity}")
        self._callbacks.put(None)
        if self._dispatcher is not None and self._dispatcher is not threading.current_thread():
            self._dispatcher.join(timeout=2)
        self._dispatcher = None

    def __enter__(self) -> "AtChannel":
        if self._serial is None:
            self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_gone(self, timeout: float) -> bool:
        """Block until the port is marked gone (True) or ``timeout`` expires (False)."""
        return self._gone.wait(max(0.0, timeout))

    def reopen(self, budget_s: float, settle_s: float = 0.05) -> str:
        """Close, then wait up to ``budget_s`` for the identity to resolve and open again; returns the new target.

        The identity is resolved afresh on every attempt (moved symlink, new /dev/ttyUSBn).  A port
        that opens but reports EIO within ``settle_s`` counts as not yet back.
        """
        deadline = time.monotonic() + budget_s
        with self._cmd_lock:
            self._close_serial()
            self.transcript.event(f"reopen {self.identity} (budget {budget_s:g} s)")
            last_error = "not present"
            while True:
                target = self.identity.resolve()
                if target is not None:
                    try:
                        self._open_target(target)
                    except PortGone as exc:
                        last_error = str(exc)
                    else:
                        if not self._gone.wait(settle_s):
                            return target
                        last_error = f"{target} vanished right after opening"
                        self._close_serial()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._gone.set()
                    raise PortGone(f"{self.identity} did not come back within {budget_s:g} s ({last_error})")
                time.sleep(min(0.1, remaining))

    # ------------------------------------------------------------------ reader side

    def _read_loop(self, ser: serial.SerialBase, gen: int) -> None:
        while not self._stop.is_set():
            try:
                waiting = ser.in_waiting
                data = ser.read(min(max(1, waiting), 4096))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if gen == self._generation and not self._stop.is_set():
                    self._mark_gone(f"read failed: {exc}")
                return
            if gen != self._generation:
                return
            if data:
                self.transcript.rx(data)
                self._feed(data)

    def _mark_gone(self, reason: str) -> None:
        with self._state:
            self._gone.set()
            pending = self._pending
        self.transcript.event(f"port gone: {reason}")
        log.warning("%s: port gone: %s", self.identity, reason)
        if pending is not None and not pending.done.is_set():
            pending.error = PortGone(f"{self.identity}: {reason} while {pending.command!r} was in flight")
            pending.done.set()
            pending.prompt.set()

    def _feed(self, data: bytes) -> None:
        with self._state:
            want_prompt = self._pending is not None and self._pending.want_prompt and not self._pending.done.is_set()
            fragments = self._assembler.feed(data, want_prompt)
        for frag in fragments:
            if frag.kind == "line":
                self._on_line(frag.data)
            elif frag.kind == "prompt":
                with self._state:
                    if self._pending is not None:
                        self._pending.prompt.set()
            else:
                self._on_discard(frag)

    def _on_discard(self, frag: Fragment) -> None:
        self.transcript.event(f"discarded: {frag.reason}")
        log.warning("%s: discarded %s", self.identity, frag.reason)
        with self._state:
            if self._pending is not None and not self._pending.done.is_set():
                self._pending.protocol_errors.append(frag.reason)

    def _on_line(self, raw: bytes) -> None:
        text, garbage = clean_line(raw)
        if garbage:
            self.transcript.event(f"non-printable bytes removed from line: {escape_bytes(raw)}")
        if not text:
            return
        with self._state:
            p = self._pending
            if p is None or p.done.is_set():
                if classify_final(text, self.extra_errors, self.extra_ok) is not None:
                    self.transcript.event(f"unsolicited final result dropped: {text}")
                    return
                self._route_urc(text)
                return
            if not p.echo_seen and _is_echo(text, p.command):
                p.echo_seen = True
                return
            result = classify_final(text, self.extra_errors, self.extra_ok)
            if result is not None:
                p.final = text
                p.result = result
                p.done.set()
                p.prompt.set()
                return
            if p.claims(text):
                p.lines.append(text)
                return
            if self._is_known_urc(text) or _PREFIXED.match(text):
                self._route_urc(text)
                return
            if p.bare_ok:
                p.lines.append(text)
            else:
                self._route_urc(text)

    def _is_known_urc(self, text: str) -> bool:
        if any(m(text) for m in self._known_urcs):
            return True
        return any(s.matches(text) and not isinstance(s.pattern, str) for s in self._subs)

    def _route_urc(self, text: str) -> None:
        with self._state:
            self._seq += 1
            event = UrcEvent(text, time.monotonic(), self._seq)
            self._history.append(event)
            subs = list(self._subs)
            self._history_cond.notify_all()
        matched = False
        for sub in subs:
            if not sub.matches(text):
                continue
            matched = True
            if sub.callback is not None:
                self._callbacks.put((sub, event))
            else:
                assert sub.queue is not None
                try:
                    sub.queue.put_nowait(event)
                except queue.Full:
                    try:
                        sub.queue.get_nowait()
                    except queue.Empty:
                        pass
                    sub.queue.put_nowait(event)
        if not matched:
            log.debug("%s: URC without subscriber: %s", self.identity, text)

    def _dispatch_loop(self) -> None:
        while True:
            item = self._callbacks.get()
            if item is None:
                return
            sub, event = item
            try:
                assert sub.callback is not None
                sub.callback(event)
            except Exception:  # a subscriber's bug must not kill URC delivery
                log.exception("%s: URC callback for %r failed", self.identity, sub.pattern)

    # ------------------------------------------------------------------ URC API

    def subscribe(
        self, pattern: str | Pattern[str], callback: Callable[[UrcEvent], None] | None = None, *, maxsize: int = 1000
    ) -> Subscription:
        """Route URCs that start with ``pattern`` (str, case-insensitive) or match it (compiled regex).

        A regex subscription also makes matching bare lines count as URCs while a command is in flight.
        """
        sub = Subscription(self, pattern, callback, maxsize)
        with self._state:
            self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._state:
            if sub in self._subs:
                self._subs.remove(sub)

    def urc_mark(self) -> int:
        """Sequence number of the latest URC; pass it as ``since`` to :meth:`wait_urc` to close races."""
        with self._state:
            return self._seq

    def urc_history(self, since: int = 0) -> list[UrcEvent]:
        with self._state:
            return [e for e in self._history if e.seq > since]

    def wait_urc(self, pattern: str | Pattern[str], timeout: float, since: int | None = None) -> UrcEvent:
        """First URC matching ``pattern`` with sequence number above ``since`` (default: from now on).

        Raises :class:`AtTimeout` after ``timeout`` seconds.  Survives port loss and reopen.
        """
        matches = _compile(pattern)
        deadline = time.monotonic() + timeout
        with self._state:
            mark = self._seq if since is None else since
            while True:
                for event in self._history:
                    if event.seq > mark and matches(event.line):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AtTimeout(f"URC {getattr(pattern, 'pattern', pattern)!r}", timeout, reason="no matching URC")
                self._history_cond.wait(remaining)

    # ------------------------------------------------------------------ commands

    def command(
        self,
        command: str,
        *,
        timeout: float | None = None,
        expect: Sequence[str | Pattern[str]] | None = None,
        bare_ok: bool = True,
        data: bytes | str | None = None,
        data_terminator: bytes = CTRL_Z,
        check: bool = True,
    ) -> AtResponse:
        """Send one command and wait for its final result.

        ``expect`` lists prefixes/regexes of the information lines this command claims (default:
        the command's own ``+NAME:``); with ``bare_ok`` lines without a ``+X:``-style prefix are
        claimed too unless they are known URCs.  ``data`` is sent after the ``> `` prompt and
        ``data_terminator``.  With ``check`` an error final raises :class:`AtError`.
        """
        cmd = command.strip()
        if not cmd.upper().startswith("AT"):
            cmd = "AT" + cmd
        limit = self.timeouts.lookup(cmd) if timeout is None else timeout
        deadline = time.monotonic() + limit
        if not self._cmd_lock.acquire(timeout=limit):
            raise AtTimeout(cmd, limit, reason="channel busy with another command")
        try:
            if self._serial is None or self._gone.is_set():
                raise PortGone(f"{self.identity}: port is not open")
            if self._suspect_late_final:
                self._resync(min(2.0, max(0.2, deadline - time.monotonic())))
            return self._run(cmd, limit, deadline, expect, bare_ok, data, data_terminator, check)
        finally:
            self._cmd_lock.release()

    def _run(self, cmd, limit, deadline, expect, bare_ok, data, data_terminator, check) -> AtResponse:
        patterns = tuple(expect) if expect is not None else default_expect(cmd)
        pending = _Pending(cmd, tuple(_compile(p) for p in patterns), bare_ok, data is not None)
        started = time.monotonic()
        with self._state:
            self._pending = pending
        try:
            self._write(cmd.encode("ascii", "strict") + b"\r")
            if data is not None:
                if not pending.prompt.wait(max(0.0, deadline - time.monotonic())):
                    self._suspect_late_final = True
                    raise AtTimeout(cmd, limit, tuple(pending.lines), self._partial(), reason="no '> ' prompt")
                if pending.error:
                    raise pending.error
                if not pending.done.is_set():
                    payload = data.encode("ascii") if isinstance(data, str) else data
                    self._write(payload + data_terminator)
            if not pending.done.wait(max(0.0, deadline - time.monotonic())):
                self._suspect_late_final = True
                self.transcript.event(f"timeout: {cmd} after {limit:g} s")
                raise AtTimeout(cmd, limit, tuple(pending.lines), self._partial())
        finally:
            with self._state:
                self._pending = None
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None and pending.final is not None
        result = pending.result
        response = AtResponse(
            command=cmd,
            lines=tuple(pending.lines),
            final=pending.final,
            error_code=result.code,
            error_text=result.text,
            duration=time.monotonic() - started,
            kind=result.kind,
        )
        if pending.protocol_errors:
            raise AtProtocolError(f"{cmd}: {'; '.join(pending.protocol_errors)}", response)
        if check and not response.ok:
            raise _error_for(response)
        return response

    def _partial(self) -> str:
        with self._state:
            return self._assembler.partial.decode("ascii", "backslashreplace")

    def _write(self, data: bytes) -> None:
        ser = self._serial
        if ser is None:
            raise PortGone(f"{self.identity}: port is not open")
        self.transcript.tx(data)
        try:
            ser.write(data)
            ser.flush()
        except (serial.SerialException, OSError) as exc:
            self._mark_gone(f"write failed: {exc}")
            raise PortGone(f"{self.identity}: write failed: {exc}") from exc

    def _resync(self, budget: float) -> None:
        """After a timeout: absorb a late final result with a bare ``AT`` and a short quiet period."""
        self._suspect_late_final = False
        deadline = time.monotonic() + budget
        try:
            self._run("AT", budget, deadline, (), True, None, CTRL_Z, False)
        except AtTimeout:
            self.transcript.event("resync: no answer to AT")
            return
        time.sleep(min(0.15, max(0.0, deadline - time.monotonic())))

    def send_raw(self, data: bytes) -> None:
        """Write bytes outside any command (e.g. wake-up characters); holds the command lock."""
        with self._cmd_lock:
            self._write(data)


def _is_echo(line: str, command: str) -> bool:
    return line.strip().upper() == command.strip().upper()


def _error_for(response: AtResponse) -> AtError:
    if response.kind is FinalKind.CME_ERROR:
        return CmeError(response)
    if response.kind is FinalKind.CMS_ERROR:
        return CmsError(response)
    return AtError(response)


__all__ = [
    "AtChannel",
    "AtChannelError",
    "AtError",
    "AtProtocolError",
    "AtResponse",
    "AtTimeout",
    "CmeError",
    "CmsError",
    "DEFAULT_TIMEOUTS",
    "FinalKind",
    "FinalResult",
    "Fragment",
    "LineAssembler",
    "PortGone",
    "Subscription",
    "TimeoutTable",
    "UrcEvent",
    "classify_final",
    "clean_line",
    "command_key",
    "default_expect",
]
