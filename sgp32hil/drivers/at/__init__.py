"""AT channel, generic 3GPP TS 27.007 driver and vendor profiles.

Layers, bottom up:

* :mod:`.transcript` – timestamped JSONL record of every byte (report attachment).
* :mod:`.port` – :class:`PortIdentity` (path, by-id/by-path link, pty symlink, USB serial+interface, URL),
  resolved afresh on every (re)open.
* :mod:`.channel` – :class:`AtChannel`: V.250 line framing, one command in flight, final-result
  classification, URC routing, per-command timeouts, reopen after re-enumeration.
* :mod:`.parsers` – pure 27.007 reply parsers with typed results.
* :mod:`.profiles` – :class:`VendorProfile` loaded from ``profiles/*.yaml``; :func:`detect`.
* :mod:`.driver` – :class:`Modem`, the generic driver.
* :mod:`.scripted` – :class:`ScriptedSerial`, a scripted fake port for tests.
"""

from .channel import AtChannel, LineAssembler, Subscription, TimeoutTable, UrcEvent, classify_final
from .driver import Modem, Signal, SimState
from .errors import (
    AtChannelError,
    AtError,
    AtProtocolError,
    AtResponse,
    AtTimeout,
    CmeError,
    CmsError,
    FinalKind,
    PortGone,
    normalise_error_text,
)
from .parsers import ParseError
from .port import PortIdentity
from .profiles import ProfileError, VendorProfile, all_profiles, detect, load_profile
from .scripted import ScriptedSerial
from .transcript import Transcript

__all__ = [
    "AtChannel",
    "AtChannelError",
    "AtError",
    "AtProtocolError",
    "AtResponse",
    "AtTimeout",
    "CmeError",
    "CmsError",
    "FinalKind",
    "LineAssembler",
    "Modem",
    "ParseError",
    "PortGone",
    "PortIdentity",
    "ProfileError",
    "ScriptedSerial",
    "Signal",
    "SimState",
    "Subscription",
    "TimeoutTable",
    "Transcript",
    "UrcEvent",
    "VendorProfile",
    "all_profiles",
    "classify_final",
    "detect",
    "load_profile",
    "normalise_error_text",
]
