"""A scripted stand-in for a pyserial port, for unit tests of the AT layer and its users.

``ScriptedSerial`` answers each written command line with canned bytes chosen by regex, can
inject URCs at any time, and can vanish (reads then fail as they do when a pty master closes).
Pass ``ScriptedSerial.factory(instance)`` as ``AtChannel(serial_factory=…)``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from re import Pattern

import serial


@dataclass
class Rule:
    pattern: Pattern[bytes]
    reply: bytes | Callable[[bytes], bytes]
    once: bool = False
    delay: float = 0.0


class ScriptedSerial:
    """Implements the subset of ``serial.SerialBase`` that :class:`~.channel.AtChannel` uses."""

    def __init__(self, *, echo: bool = False, timeout: float = 0.05):
        self.echo = echo
        self.timeout = timeout
        self.is_open = True
        self.written = bytearray()
        self._rules: list[Rule] = []
        self._rx = bytearray()
        self._cond = threading.Condition()
        self._txbuf = bytearray()
        self._vanished = False
        self._timers: list[threading.Timer] = []

    @staticmethod
    def factory(instance: "ScriptedSerial"):
        def make(_target, **kwargs):
            instance.timeout = kwargs.get("timeout", instance.timeout)
            instance.is_open = True
            return instance

        return make

    def on(self, pattern: str | bytes, reply: str | bytes | Callable[[bytes], bytes], *, once: bool = False, delay: float = 0.0) -> None:
        """When a written line (without CR) fully matches ``pattern``, emit ``reply``; later rules win."""
        pat = pattern.encode() if isinstance(pattern, str) else pattern
        body = reply.encode("latin-1") if isinstance(reply, str) else reply
        self._rules.insert(0, Rule(re.compile(pat, re.IGNORECASE | re.DOTALL), body, once, delay))

    def inject(self, data: str | bytes, delay: float = 0.0) -> None:
        """Make ``data`` readable now or after ``delay`` seconds."""
        raw = data.encode("latin-1") if isinstance(data, str) else data
        if delay > 0:
            timer = threading.Timer(delay, self._push, args=(raw,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        else:
            self._push(raw)

    def vanish(self) -> None:
        with self._cond:
            self._vanished = True
            self._cond.notify_all()

    def _push(self, data: bytes) -> None:
        with self._cond:
            self._rx += data
            self._cond.notify_all()

    @property
    def in_waiting(self) -> int:
        with self._cond:
            if self._vanished:
                raise serial.SerialException("read failed: [Errno 5] Input/output error")
            return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        deadline = time.monotonic() + (self.timeout or 0)
        with self._cond:
            while not self._rx and not self._vanished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return b""
                self._cond.wait(remaining)
            if self._vanished:
                raise serial.SerialException("read failed: [Errno 5] Input/output error")
            out = bytes(self._rx[:size])
            del self._rx[:size]
            return out

    def write(self, data: bytes) -> int:
        if self._vanished:
            raise serial.SerialException("write failed: [Errno 5] Input/output error")
        self.written += data
        if self.echo:
            self._push(data)
        self._txbuf += data
        while True:
            cut = min((i for i in (self._txbuf.find(b"\r"), self._txbuf.find(b"\x1a")) if i >= 0), default=-1)
            if cut < 0:
                break
            line = bytes(self._txbuf[:cut])
            del self._txbuf[: cut + 1]
            self._answer(line)
        return len(data)

    def _answer(self, line: bytes) -> None:
        for rule in list(self._rules):
            if rule.pattern.fullmatch(line):
                if rule.once:
                    self._rules.remove(rule)
                reply = rule.reply(line) if callable(rule.reply) else rule.reply
                self.inject(reply, rule.delay)
                return

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.is_open = False
        for timer in self._timers:
            timer.cancel()
