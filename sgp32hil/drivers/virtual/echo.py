"""Minimal echo card: the baseline for APDU round-trip benchmarks (no application logic at all).

Same ATR as the software eUICC (T=0 offered).  SELECT (INS A4) answers 9000; any other command echoes
its data field (ISO/IEC 7816-4 §5.1, cases 3 and 4) followed by 9000.
"""

from __future__ import annotations

from .euicc.card import DEFAULT_ATR


class EchoCard:
    """:class:`~sgp32hil.drivers.virtual.card.Card` that echoes command data."""

    def __init__(self, atr: bytes = DEFAULT_ATR):
        self._atr = bytes(atr)
        self.powered = False

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_on(self) -> None:
        self.powered = True

    def power_off(self) -> None:
        self.powered = False

    def reset(self) -> None:
        self.powered = True

    def process_apdu(self, capdu: bytes) -> bytes:
        if len(capdu) < 4:
            return b"\x67\x00"
        if capdu[1] == 0xA4 or len(capdu) <= 5:
            return b"\x90\x00"
        lc = capdu[4]
        if len(capdu) not in (5 + lc, 6 + lc):
            return b"\x67\x00"
        return bytes(capdu[5:5 + lc]) + b"\x90\x00"
