"""Result and error types of the AT layer; +CME/+CMS error tables (3GPP TS 27.007 §9.2, TS 27.005 §3.2.5)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FinalKind(StrEnum):
    """Final result codes (ITU-T V.250 §5.7.1, 27.007 §9.2, 27.005 §3.2.5) plus profile extras."""

    OK = "OK"
    CONNECT = "CONNECT"
    ERROR = "ERROR"
    CME_ERROR = "+CME ERROR"
    CMS_ERROR = "+CMS ERROR"
    NO_CARRIER = "NO CARRIER"
    BUSY = "BUSY"
    NO_ANSWER = "NO ANSWER"
    NO_DIALTONE = "NO DIALTONE"
    VENDOR_ERROR = "VENDOR ERROR"

    @property
    def success(self) -> bool:
        return self in (FinalKind.OK, FinalKind.CONNECT)


CME_ERRORS: dict[int, str] = {
    0: "phone failure",
    1: "no connection to phone",
    2: "phone-adaptor link reserved",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    6: "PH-FSIM PIN required",
    7: "PH-FSIM PUK required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    26: "dial string too long",
    27: "invalid characters in dial string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    40: "network personalization PIN required",
    41: "network personalization PUK required",
    42: "network subset personalization PIN required",
    43: "network subset personalization PUK required",
    44: "service provider personalization PIN required",
    45: "service provider personalization PUK required",
    46: "corporate personalization PIN required",
    47: "corporate personalization PUK required",
    48: "hidden key required",
    49: "EAP method not supported",
    50: "incorrect parameters",
    51: "command implemented but currently disabled",
    52: "command aborted by user",
    53: "not attached to network due to MT functionality restrictions",
    54: "modem not allowed - MT restricted to emergency calls only",
    55: "operation not allowed because of MT functionality restrictions",
    56: "fixed dial number only allowed - called number is not a fixed dial number",
    57: "temporarily out of service due to other MT usage",
    58: "language/alphabet not supported",
    59: "unexpected data value",
    60: "system failure",
    61: "data missing",
    62: "call barred",
    63: "message waiting indication subscription failure",
    100: "unknown",
    103: "illegal MS",
    106: "illegal ME",
    107: "GPRS services not allowed",
    108: "GPRS services and non-GPRS services not allowed",
    111: "PLMN not allowed",
    112: "location area not allowed",
    113: "roaming not allowed in this location area",
    114: "GPRS services not allowed in this PLMN",
    115: "no suitable cells in location area",
    122: "congestion",
    125: "insufficient resources",
    126: "missing or unknown APN",
    127: "missing or unknown APN",
    128: "unknown PDP address or PDP type",
    129: "user authentication failed",
    130: "activation rejected by GGSN, Serving GW or PDN GW",
    131: "activation rejected, unspecified",
    132: "service option not supported",
    133: "requested service option not subscribed",
    134: "service option temporarily out of order",
    143: "feature not supported",
    148: "unspecified GPRS error",
    149: "PDP authentication failure",
    150: "invalid mobile class",
    171: "last PDN disconnection not allowed",
}

CMS_ERRORS: dict[int, str] = {
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    500: "unknown error",
}


def normalise_error_text(text: str) -> str:
    """Key for comparing error texts across vendors: lowercase, spaces removed (as ModemManager does)."""
    return "".join(text.lower().split())


_CME_BY_KEY = {normalise_error_text(v): k for k, v in sorted(CME_ERRORS.items(), reverse=True)}
_CMS_BY_KEY = {normalise_error_text(v): k for k, v in sorted(CMS_ERRORS.items(), reverse=True)}


def cme_code_for(text: str) -> int | None:
    return _CME_BY_KEY.get(normalise_error_text(text))


def cms_code_for(text: str) -> int | None:
    return _CMS_BY_KEY.get(normalise_error_text(text))


@dataclass(frozen=True)
class AtResponse:
    """A completed command: information lines (echo and URCs removed) and the final result line."""

    command: str
    lines: tuple[str, ...]
    final: str
    error_code: int | None = None
    error_text: str | None = None
    duration: float = 0.0
    kind: FinalKind = FinalKind.OK

    @property
    def ok(self) -> bool:
        return self.kind.success

    def with_prefix(self, prefix: str) -> list[str]:
        """Information lines starting with ``prefix`` (case-insensitive)."""
        p = prefix.upper()
        return [line for line in self.lines if line.upper().startswith(p)]


class AtChannelError(Exception):
    """Base of every AT-layer failure."""


class AtError(AtChannelError):
    """The modem answered with an error final result (ERROR, +CME ERROR, +CMS ERROR, NO CARRIER, vendor)."""

    def __init__(self, response: AtResponse):
        self.response = response
        self.command = response.command
        self.kind = response.kind
        self.code = response.error_code
        self.text = response.error_text
        self.key = normalise_error_text(response.error_text) if response.error_text else None
        detail = response.final
        if self.text and self.text not in detail:
            detail += f" ({self.text})"
        super().__init__(f"{response.command}: {detail}")

    def matches(self, code_or_text: int | str) -> bool:
        """True when the error has this numeric code or this text (compared normalised)."""
        if isinstance(code_or_text, int):
            return self.code == code_or_text
        return self.key == normalise_error_text(code_or_text)


class CmeError(AtError):
    """+CME ERROR: mobile termination error (27.007 §9.2)."""


class CmsError(AtError):
    """+CMS ERROR: message service failure (27.005 §3.2.5)."""


class AtTimeout(AtChannelError):
    """No final result before the deadline; carries whatever arrived so far."""

    def __init__(self, command: str, timeout: float, lines: tuple[str, ...] = (), partial: str = "", reason: str = ""):
        self.command = command
        self.timeout = timeout
        self.lines = lines
        self.partial = partial
        what = reason or "no final result"
        extra = ""
        if lines:
            extra += f"; lines so far: {list(lines)!r}"
        if partial:
            extra += f"; unterminated: {partial!r}"
        super().__init__(f"{command}: {what} within {timeout:g} s{extra}")


class PortGone(AtChannelError):
    """The port vanished (EIO, USB re-enumeration, closed pty) or did not come back within the budget."""


class AtProtocolError(AtChannelError):
    """The byte stream broke framing for the command in flight (over-long line, discarded garbage)."""

    def __init__(self, message: str, response: AtResponse | None = None):
        self.response = response
        super().__init__(message)
