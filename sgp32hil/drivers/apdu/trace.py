"""APDU tracing: a transport wrapper that records every exchange (for reports and ES10 decoding)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .base import ApduTransport


@dataclass(frozen=True)
class ApduExchange:
    """One C-APDU and what came back: the R-APDU, or the transport error that replaced it."""

    transport: str
    timestamp: float
    duration_s: float
    command: bytes
    response: bytes | None
    error: str | None = None

    @property
    def sw(self) -> int | None:
        if self.response is None or len(self.response) < 2:
            return None
        return (self.response[-2] << 8) | self.response[-1]

    @property
    def data(self) -> bytes:
        return self.response[:-2] if self.response else b""

    def render(self) -> str:
        """``> C-APDU`` / ``< R-APDU`` lines in upper-case hex, as APDU logs are usually written."""
        out = f"> {self.command.hex().upper()}\n"
        if self.response is not None:
            return out + f"< {self.response.hex().upper()}  ({self.duration_s * 1000:.3f} ms)"
        return out + f"! {self.error}"


class TracingTransport:
    """Wraps an :class:`~sgp32hil.drivers.apdu.base.ApduTransport` and reports each exchange to ``sink``.

    Without a sink the exchanges accumulate in :attr:`exchanges`.  Transport errors are recorded and
    re-raised unchanged.
    """

    def __init__(self, inner: ApduTransport, sink: Callable[[ApduExchange], None] | None = None):
        self.inner = inner
        self.name = inner.name
        self.exchanges: list[ApduExchange] = []
        self._sink = sink if sink is not None else self.exchanges.append

    def transmit(self, apdu: bytes) -> bytes:
        command = bytes(apdu)
        timestamp = time.time()
        start = time.perf_counter()
        try:
            response = self.inner.transmit(command)
        except Exception as exc:
            self._sink(ApduExchange(self.name, timestamp, time.perf_counter() - start, command, None,
                                    f"{type(exc).__name__}: {exc}"))
            raise
        self._sink(ApduExchange(self.name, timestamp, time.perf_counter() - start, command, bytes(response)))
        return response

    def close(self) -> None:
        self.inner.close()
