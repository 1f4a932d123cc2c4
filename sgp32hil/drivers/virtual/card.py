"""Card-side contract shared by the vpcd bridge and the in-process transport.

A card receives control events (power on/off, reset) and raw C-APDUs, and returns raw R-APDUs.
It never raises for bad input: malformed commands get ISO 7816-4 status words.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Card(Protocol):
    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...

    def reset(self) -> None: ...

    def process_apdu(self, capdu: bytes) -> bytes: ...
