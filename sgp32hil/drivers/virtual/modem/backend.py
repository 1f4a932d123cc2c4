"""The UICC side of the simulated modem: a :class:`~sgp32hil.drivers.virtual.card.Card` driven like an MT does.

:class:`UiccBackend` opens logical channels with MANAGE CHANNEL + SELECT (ETSI TS 102 221 §11.1.17,
§11.1.1) for +CCHO (27.007 §8.45), sends +CGLA APDUs on them with the channel bits patched into CLA
(ISO/IEC 7816-4 §5.4.1) and optional GET RESPONSE (TS 102 221 §7.3.1.1.4), and passes +CSIM TPDUs
(27.007 §8.17) through on the basic channel.  Subscriber sources answer "which profile is enabled, with
which ICCID/IMSI": from a software eUICC's state, or from ES10 GetProfilesInfo plus the network file's
ICCID table for any other card.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ...apdu.base import ApduError, TransportError, channel_cla, transceive
from ..card import Card
from .network import NetworkModel

log = logging.getLogger(__name__)

ISD_R_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000100")
READ_ONLY_ES10 = {0xBF3E, 0xBF2D, 0xBF20, 0xBF22, 0xBF2E, 0xBF28, 0xBF2B, 0xBF3C, 0xBF43, 0xBF55, 0xBF56}


class UiccError(Exception):
    """An MT-level failure of a UICC operation, carrying the +CME ERROR code to report (27.007 §9.2)."""

    def __init__(self, cme: int, message: str):
        self.cme = cme
        super().__init__(message)


def with_channel(cla: int, channel: int) -> int:
    """``cla`` with its logical channel bits set to ``channel`` (first and further interindustry CLA)."""
    if channel < 4:
        base = cla & 0xBC if not cla & 0x40 else (cla & 0x80)
        return base | channel
    return (cla & 0x80) | 0x40 | (channel - 4)


class UiccBackend:
    """A card behind the MT: logical channels, +CGLA/+CSIM exchanges, reset; thread-safe."""

    def __init__(self, card: Card, *, max_channels: int = 3):
        self.card = card
        self.max_channels = max_channels
        self._lock = threading.RLock()
        self.channels: set[int] = set()
        self.store_data_listeners: list[Callable[[int], None]] = []
        self._chain_tag: dict[int, int] = {}

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def power_on(self) -> None:
        with self._lock:
            self.card.power_on()
            self.channels.clear()

    def power_off(self) -> None:
        with self._lock:
            self.channels.clear()
            self.card.power_off()

    def reset(self) -> None:
        """UICC reset (the MT's reaction to REFRESH "UICC reset", TS 102 223 §6.4.7): every channel dies."""
        with self._lock:
            self.channels.clear()
            self._chain_tag.clear()
            self.card.reset()

    def _raw(self, apdu: bytes) -> bytes:
        try:
            rapdu = bytes(self.card.process_apdu(apdu))
        except TransportError as exc:
            raise UiccError(13, f"card unreachable: {exc}") from exc
        if len(rapdu) < 2:
            raise UiccError(13, f"card answered {rapdu.hex()} (shorter than a status word)")
        self._watch_store_data(apdu, rapdu)
        return rapdu

    def _watch_store_data(self, apdu: bytes, rapdu: bytes) -> None:
        if len(apdu) < 5 or apdu[1] != 0xE2:
            return
        ch = apdu[0] & 0x03 if not apdu[0] & 0x40 else 4 + (apdu[0] & 0x0F)
        if apdu[3] == 0 and len(apdu) > 6:
            tag = apdu[5] << 8 | apdu[6] if apdu[5] & 0x1F == 0x1F else apdu[5]
            self._chain_tag[ch] = tag
        if apdu[2] & 0x80 and rapdu[-2] in (0x90, 0x61):
            tag = self._chain_tag.pop(ch, 0)
            for listener in list(self.store_data_listeners):
                listener(tag)

    def open_channel(self, aid: bytes) -> int:
        """MANAGE CHANNEL open then SELECT by DF name on the new channel; returns the channel number."""
        with self._lock:
            if len(self.channels) >= self.max_channels:
                raise UiccError(3, f"no logical channel available ({len(self.channels)} open, cap {self.max_channels})")
            r = self._raw(bytes.fromhex("0070000001"))
            if r[-2:] != b"\x90\x00" or len(r) != 3:
                raise UiccError(3, f"MANAGE CHANNEL open refused: {r.hex().upper()}")
            ch = r[0]
            select = bytes([with_channel(0x00, ch), 0xA4, 0x04, 0x00, len(aid)]) + aid
            resp = self._transceive(select)
            if resp.sw != 0x9000:
                self._raw(bytes([0x00, 0x70, 0x80, ch, 0x00]))
                raise UiccError(13 if resp.sw in (0x6A82, 0x6999) else 3, f"SELECT {aid.hex().upper()} failed: SW {resp.sw:04X}")
            self.channels.add(ch)
            return ch

    def close_channel(self, ch: int) -> None:
        with self._lock:
            if ch not in self.channels:
                raise UiccError(21, f"logical channel {ch} is not open")
            self.channels.discard(ch)
            self._raw(bytes([0x00, 0x70, 0x80, ch, 0x00]))

    def _transceive(self, apdu: bytes):
        class _T:
            name = "uicc"
            transmit = staticmethod(self._raw)

            def close(self) -> None:
                pass

        try:
            return transceive(_T(), apdu)
        except TransportError as exc:
            raise UiccError(13, str(exc)) from exc

    def transmit_channel(self, ch: int, apdu: bytes, *, get_response: bool) -> bytes:
        """One APDU on logical channel ``ch`` with CLA patched; with ``get_response`` 61xx/6Cxx are resolved here."""
        with self._lock:
            if ch not in self.channels:
                raise UiccError(21, f"logical channel {ch} is not open")
            patched = bytes([with_channel(apdu[0], ch)]) + apdu[1:]
            if not get_response:
                return self._raw(patched)
            r = self._transceive(patched)
            return r.data + r.sw.to_bytes(2, "big")

    def transmit_basic(self, apdu: bytes) -> bytes:
        """A TPDU as given (27.007 +CSIM): the host handles channels and 61xx itself."""
        with self._lock:
            r = self._raw(apdu)
            if apdu[1] == 0x70 and len(apdu) >= 4 and r[-2:] == b"\x90\x00":
                if apdu[2] == 0x00 and len(r) == 3:
                    self.channels.add(r[0])
                elif apdu[2] == 0x80:
                    self.channels.discard(apdu[3])
            return r


@dataclass(frozen=True)
class Subscriber:
    """The enabled profile as the MT sees it after UICC initialisation."""

    iccid: str
    imsi: str | None
    apn: str = ""


class SubscriberSource(Protocol):
    def current(self) -> Subscriber | None: ...


class SoftEuiccSubscriber:
    """Reads the enabled profile straight from a software eUICC's state (in process)."""

    def __init__(self, euicc):
        self.euicc = euicc

    def current(self) -> Subscriber | None:
        p = self.euicc.state.enabled_profile()
        if p is None:
            return None
        return Subscriber(p.iccid, p.imsi or None, p.apn or "")


class _BasicChannel:
    """ApduTransport on the backend's basic channel, for the MT's own ES10 reads."""

    def __init__(self, backend: UiccBackend):
        self.backend = backend
        self.name = "mt-basic"

    def transmit(self, apdu: bytes) -> bytes:
        try:
            return self.backend.transmit_basic(apdu)
        except UiccError as exc:
            raise TransportError(str(exc)) from exc

    def close(self) -> None:
        pass


class Es10Subscriber:
    """Enabled ICCID via ES10c GetProfilesInfo (SGP.22 §5.7.15), IMSI/APN from the network file's table."""

    def __init__(self, backend: UiccBackend, networks: NetworkModel):
        self.backend = backend
        self.networks = networks

    def enabled_iccid(self) -> str | None:
        from ...es10.client import Es10Client, Es10Error

        try:
            with Es10Client(_BasicChannel(self.backend)) as client:
                profiles = client.get_profiles_info(tags=[0x5A, 0x9F70])
        except (TransportError, ApduError, Es10Error, UiccError) as exc:
            log.warning("cannot read the enabled profile over ES10: %s", exc)
            return None
        enabled = [p for p in profiles if p.enabled]
        return enabled[0].iccid if enabled else None

    def current(self) -> Subscriber | None:
        iccid = self.enabled_iccid()
        if iccid is None:
            return None
        entry = self.networks.subscriber(iccid)
        return Subscriber(iccid, entry.imsi if entry else None, entry.apn if entry else "")


class PcscCard:
    """A PC/SC reader as a :class:`Card` (the simulator's backend for a real or vpcd eUICC)."""

    def __init__(self, reader: str | int):
        from ...apdu.pcsc import PcscTransport

        self.transport = PcscTransport(reader)

    @property
    def atr(self) -> bytes:
        return self.transport.atr

    def power_on(self) -> None:
        pass

    def power_off(self) -> None:
        pass

    def reset(self) -> None:
        self.transport.reset()

    def process_apdu(self, capdu: bytes) -> bytes:
        return self.transport.transmit(capdu)

    def close(self) -> None:
        self.transport.close()


__all__ = [
    "ISD_R_AID",
    "READ_ONLY_ES10",
    "Es10Subscriber",
    "PcscCard",
    "SoftEuiccSubscriber",
    "Subscriber",
    "SubscriberSource",
    "UiccBackend",
    "UiccError",
    "channel_cla",
    "with_channel",
]
