"""In-process APDU transport: a :class:`~sgp32hil.drivers.virtual.card.Card` called directly (unit tests).

No reader, no pcscd: the R-APDU is exactly what the card returns, including T=0 procedure bytes
(61xx / 6Cxx), so :func:`~sgp32hil.drivers.apdu.base.transceive` exercises the same GET RESPONSE logic
as over PC/SC.
"""

from __future__ import annotations

from ..virtual.card import Card
from .base import TransportError


class InProcessTransport:
    """:class:`~sgp32hil.drivers.apdu.base.ApduTransport` over a card object in this process.

    The card is powered on (cold reset) when the transport is created and powered off by :meth:`close`.
    """

    def __init__(self, card: Card, name: str | None = None):
        self.card = card
        self.name = name or f"in-process:{type(card).__name__}"
        self._closed = False
        card.power_on()

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def transmit(self, apdu: bytes) -> bytes:
        if self._closed:
            raise TransportError(f"{self.name}: transport is closed")
        return bytes(self.card.process_apdu(bytes(apdu)))

    def reset(self, cold: bool = False) -> bytes:
        """Warm reset (or power cycle when ``cold``) the card; returns the ATR."""
        if cold:
            self.card.power_off()
            self.card.power_on()
        else:
            self.card.reset()
        return self.card.atr

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.card.power_off()
