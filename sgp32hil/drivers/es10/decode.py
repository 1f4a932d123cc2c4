"""ES10 function table and decoded traces (SGP.22 v2.5 §5.7, SGP.32 v1.2 §5.9).

- :data:`FUNCTIONS` maps every ES10a/b/c command tag of SGP.22 v2.5 and SGP.32 v1.2 to the function
  name and the ASN.1 request and response types of the project's modules (``sgp32hil/harness/asn1``;
  SGP.32 redefinitions carry the ``SGP32-`` prefix there).
- :class:`Asn1Names` reads named numbers and named bits straight from the ``.asn`` files, so result
  codes and flags are reported with the names the specification gives them.
- :func:`decode_exchange` turns an :class:`~sgp32hil.drivers.es10.session.Es10Exchange` into a
  JSON-able :class:`DecodedExchange`; :func:`render_trace` renders a list of them as text for report
  attachments.  Decoding a trace never raises: what cannot be decoded is shown as hex with the reason.
"""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...harness.asn1 import Asn1Error, Tlv, TlvError, iter_tlvs, parse_tlv
from ...harness.asn1 import decode as asn1_decode
from .session import Es10Exchange


@dataclass(frozen=True)
class Es10Function:
    """One ES10 function: command tag, spec name, ASN.1 request/response types, where it is specified."""

    tag: int
    name: str
    request_type: str
    response_type: str | None
    spec: str


FUNCTIONS: tuple[Es10Function, ...] = (
    # ES10a (SGP.22 §5.7.3-5.7.4)
    Es10Function(0xBF3C, "GetEuiccConfiguredAddresses", "EuiccConfiguredAddressesRequest",
                 "EuiccConfiguredAddressesResponse", "SGP.22 §5.7.3"),
    Es10Function(0xBF3F, "SetDefaultDpAddress", "SetDefaultDpAddressRequest", "SetDefaultDpAddressResponse",
                 "SGP.22 §5.7.4"),
    # ES10b (SGP.22 §5.7.5-5.7.13, §5.7.22)
    Es10Function(0xBF21, "PrepareDownload", "PrepareDownloadRequest", "SGP32-PrepareDownloadResponse",
                 "SGP.22 §5.7.5, SGP.32 §5.9"),
    Es10Function(0xBF36, "LoadBoundProfilePackage", "BoundProfilePackage", "SGP32-ProfileInstallationResult",
                 "SGP.22 §5.7.6"),
    Es10Function(0xBF2E, "GetEUICCChallenge", "GetEuiccChallengeRequest", "GetEuiccChallengeResponse",
                 "SGP.22 §5.7.7"),
    Es10Function(0xBF20, "GetEUICCInfo1", "GetEuiccInfo1Request", "EUICCInfo1", "SGP.22 §5.7.8"),
    Es10Function(0xBF22, "GetEUICCInfo2", "GetEuiccInfo2Request", "SGP32-EUICCInfo2",
                 "SGP.22 §5.7.8, SGP.32 §5.9"),
    Es10Function(0xBF28, "ListNotification", "ListNotificationRequest", "ListNotificationResponse",
                 "SGP.22 §5.7.9"),
    Es10Function(0xBF2B, "RetrieveNotificationsList", "SGP32-RetrieveNotificationsListRequest",
                 "SGP32-RetrieveNotificationsListResponse", "SGP.22 §5.7.10, SGP.32 §5.9"),
    Es10Function(0xBF30, "RemoveNotificationFromList", "NotificationSentRequest", "NotificationSentResponse",
                 "SGP.22 §5.7.11"),
    Es10Function(0xBF35, "LoadCRL", "LoadCRLRequest", "LoadCRLResponse", "SGP.22 §5.7.12"),
    Es10Function(0xBF38, "AuthenticateServer", "AuthenticateServerRequest", "SGP32-AuthenticateServerResponse",
                 "SGP.22 §5.7.13, SGP.32 §5.9"),
    Es10Function(0xBF41, "CancelSession", "CancelSessionRequest", "SGP32-CancelSessionResponse",
                 "SGP.22 §5.7.14"),
    Es10Function(0xBF43, "GetRAT", "GetRatRequest", "GetRatResponse", "SGP.22 §5.7.22"),
    # ES10c (SGP.22 §5.7.15-5.7.21)
    Es10Function(0xBF2D, "GetProfilesInfo", "ProfileInfoListRequest", "SGP32-ProfileInfoListResponse",
                 "SGP.22 §5.7.15, SGP.32 §5.9"),
    Es10Function(0xBF31, "EnableProfile", "EnableProfileRequest", "EnableProfileResponse", "SGP.22 §5.7.16"),
    Es10Function(0xBF32, "DisableProfile", "DisableProfileRequest", "DisableProfileResponse", "SGP.22 §5.7.17"),
    Es10Function(0xBF33, "DeleteProfile", "DeleteProfileRequest", "DeleteProfileResponse", "SGP.22 §5.7.18"),
    Es10Function(0xBF34, "eUICCMemoryReset", "EuiccMemoryResetRequest", "EuiccMemoryResetResponse",
                 "SGP.22 §5.7.19"),
    Es10Function(0xBF3E, "GetEID", "GetEuiccDataRequest", "GetEuiccDataResponse", "SGP.22 §5.7.20"),
    Es10Function(0xBF29, "SetNickname", "SetNicknameRequest", "SetNicknameResponse", "SGP.22 §5.7.21"),
    # SGP.32 v1.2 additions (§5.9)
    Es10Function(0xBF42, "IpaeActivation", "IpaeActivationRequest", "IpaeActivationResponse", "SGP.32 §5.9"),
    Es10Function(0xBF51, "LoadEuiccPackage", "EuiccPackageRequest", "EuiccPackageResult", "SGP.32 §5.9.1"),
    Es10Function(0xBF55, "GetEimConfigurationData", "GetEimConfigurationDataRequest",
                 "GetEimConfigurationDataResponse", "SGP.32 §5.9"),
    Es10Function(0xBF56, "GetCerts", "GetCertsRequest", "GetCertsResponse", "SGP.32 §5.9"),
    Es10Function(0xBF57, "AddInitialEim", "AddInitialEimRequest", "AddInitialEimResponse", "SGP.32 §5.9"),
    Es10Function(0xBF58, "ProfileRollback", "ProfileRollbackRequest", "ProfileRollbackResponse",
                 "SGP.32 §5.9"),
    Es10Function(0xBF59, "ConfigureImmediateProfileEnabling", "ConfigureImmediateProfileEnablingRequest",
                 "ConfigureImmediateProfileEnablingResponse", "SGP.32 §5.9"),
    Es10Function(0xBF5A, "ImmediateEnable", "ImmediateEnableRequest", "ImmediateEnableResponse",
                 "SGP.32 §5.9"),
    Es10Function(0xBF5B, "EnableEmergencyProfile", "EnableEmergencyProfileRequest",
                 "EnableEmergencyProfileResponse", "SGP.32 §5.9"),
    Es10Function(0xBF5C, "DisableEmergencyProfile", "DisableEmergencyProfileRequest",
                 "DisableEmergencyProfileResponse", "SGP.32 §5.9"),
    Es10Function(0xBF5D, "ExecuteFallbackMechanism", "ExecuteFallbackMechanismRequest",
                 "ExecuteFallbackMechanismResponse", "SGP.32 §5.9"),
    Es10Function(0xBF5E, "ReturnFromFallback", "ReturnFromFallbackRequest", "ReturnFromFallbackResponse",
                 "SGP.32 §5.9"),
    Es10Function(0xBF5F, "GetConnectivityParameters", "GetConnectivityParametersRequest",
                 "GetConnectivityParametersResponse", "SGP.32 §5.9"),
    Es10Function(0xBF64, "SGP32-eUICCMemoryReset", "SGP32-EuiccMemoryResetRequest",
                 "SGP32-EuiccMemoryResetResponse", "SGP.32 §5.9"),
    Es10Function(0xBF65, "SGP32-SetDefaultDpAddress", "SGP32-SetDefaultDpAddressRequest",
                 "SGP32-SetDefaultDpAddressResponse", "SGP.32 §5.9"),
)

BY_TAG: dict[int, Es10Function] = {f.tag: f for f in FUNCTIONS}
BY_NAME: dict[str, Es10Function] = {f.name: f for f in FUNCTIONS}

# LoadBoundProfilePackage is sent as one STORE DATA sequence per BPP part (SGP.22 §2.5.5, §5.7.6):
# 'BF36 len BF23..' first, then the 'A0'..'A3' containers and their '87'/'88'/'86' elements.
_BPP_SEGMENT_TAGS = {0xA0: "firstSequenceOf87", 0xA1: "sequenceOf88", 0xA2: "secondSequenceOf87",
                     0xA3: "sequenceOf86", 0x87: "'87' element", 0x88: "'88' element", 0x86: "'86' element"}


# --- TLV ---------------------------------------------------------------------------------------------


def tag_int(tlv: Tlv) -> int:
    """A TLV's tag bytes as one integer (``BF22`` -> 0xBF22)."""
    return int.from_bytes(tlv.tag, "big")


def command_tag(command: bytes) -> int | None:
    """The top-level tag of an ES10 command, or None when it does not start with a TLV tag."""
    try:
        return tag_int(parse_tlv(command))
    except TlvError:
        if len(command) >= 2 and command[0] & 0x1F == 0x1F:
            return (command[0] << 8) | command[1]
        return command[0] if command else None


# --- names from the ASN.1 modules -----------------------------------------------------------------


class Asn1Names:
    """Named numbers (INTEGER) and named bits (BIT STRING) as written in the project's ``.asn`` modules.

    Lookups follow a path of member names from a top-level type (``("EnableProfileResponse",
    "enableResult")``) through type references, CHOICE alternatives and SEQUENCE OF elements.
    """

    def __init__(self):
        from ...harness.asn1 import parsed_modules

        parsed = parsed_modules()
        self._types: dict[str, dict] = {}
        for module in parsed.values():
            for name, definition in module.get("types", {}).items():
                self._types.setdefault(name, definition)

    def _resolve(self, definition: dict) -> dict:
        seen = 0
        while definition.get("type") in self._types and seen < 16:
            definition = self._types[definition["type"]]
            seen += 1
        return definition

    def _node(self, path: tuple[str, ...]) -> dict | None:
        node = self._types.get(path[0])
        for member in path[1:]:
            if node is None:
                return None
            node = self._resolve(node)
            while node.get("type") in ("SEQUENCE OF", "SET OF"):
                node = self._resolve(node["element"])
            node = next((m for m in node.get("members", []) if m and m.get("name") == member), None)
        return self._resolve(node) if node is not None else None

    def numbers(self, *path: str) -> dict[int, str]:
        """``{value: name}`` of the INTEGER at ``path`` (empty when it has no named numbers)."""
        node = self._node(path)
        named = (node or {}).get("named-numbers") or {}
        return {int(v): k for k, v in named.items()}

    def bits(self, *path: str) -> dict[int, str]:
        """``{bit number: name}`` of the BIT STRING at ``path``."""
        node = self._node(path)
        return {int(number): name for name, number in (node or {}).get("named-bits") or []}

    def number_name(self, value: int, *path: str) -> str:
        """The spec name of ``value`` at ``path``, or ``"code <value>"`` when the module names none."""
        return self.numbers(*path).get(value, f"code {value}")

    def bit_names(self, bitstring: tuple[bytes, int], *path: str) -> tuple[str, ...]:
        """Names of the bits set in an asn1tools BIT STRING value (``bit<n>`` for unnamed ones)."""
        named = self.bits(*path)
        return tuple(named.get(i, f"bit{i}") for i in set_bits(bitstring))

    def bitstring(self, names: Iterable[str], *path: str) -> tuple[bytes, int]:
        """An asn1tools BIT STRING value with the named bits set, DER-minimal (trailing zeros dropped)."""
        by_name = {v: k for k, v in self.bits(*path).items()}
        numbers = []
        for name in names:
            if name not in by_name:
                raise ValueError(f"{'.'.join(path)} has no bit named {name!r} (known: {', '.join(by_name)})")
            numbers.append(by_name[name])
        return make_bitstring(numbers)


@functools.lru_cache(maxsize=1)
def asn1_names() -> Asn1Names:
    """The shared :class:`Asn1Names`, parsed once per process."""
    return Asn1Names()


def set_bits(bitstring: tuple[bytes, int]) -> list[int]:
    """Bit numbers set in an asn1tools BIT STRING ``(bytes, length)``; bit 0 is the first byte's MSB."""
    data, length = bitstring
    return [i for i in range(min(length, len(data) * 8)) if data[i // 8] & (0x80 >> (i % 8))]


def make_bitstring(numbers: Iterable[int]) -> tuple[bytes, int]:
    """asn1tools BIT STRING with the given bit numbers set, length up to the highest set bit."""
    numbers = sorted(set(numbers))
    if not numbers:
        return b"", 0
    length = numbers[-1] + 1
    data = bytearray((length + 7) // 8)
    for i in numbers:
        data[i // 8] |= 0x80 >> (i % 8)
    return bytes(data), length


# --- JSON-able rendering ------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """asn1tools value -> JSON-able: bytes as uppercase hex, CHOICE ``(name, v)`` as ``{name: v}``,
    BIT STRING ``(bytes, n)`` as a string of n ``0``/``1`` characters, times (X.509 validity) in ISO 8601."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex().upper()
    if isinstance(value, tuple) and len(value) == 2:
        first, second = value
        if isinstance(first, (bytes, bytearray)) and isinstance(second, int):
            bits = set(set_bits((bytes(first), second)))
            return "".join("1" if i in bits else "0" for i in range(second))
        if isinstance(first, str):
            return {first: to_jsonable(second)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# --- decoded exchanges -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedApdu:
    command: str
    response: str
    seconds: float


@dataclass(frozen=True)
class DecodedExchange:
    """One ES10 call, readable: function, decoded request/response (JSON-able), SW, APDUs, errors."""

    function: str
    tag: str
    spec: str
    request_hex: str
    response_hex: str
    request: Any
    response: Any
    sw: str
    seconds: float
    apdus: tuple[DecodedApdu, ...] = ()
    error: str = ""
    decode_errors: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "function": self.function,
            "tag": self.tag,
            "spec": self.spec,
            "sw": self.sw,
            "seconds": round(self.seconds, 6),
            "request": self.request,
            "response": self.response,
            "request_hex": self.request_hex,
            "response_hex": self.response_hex,
            "apdus": [{"command": a.command, "response": a.response, "seconds": round(a.seconds, 6)}
                      for a in self.apdus],
            "error": self.error,
            "decode_errors": list(self.decode_errors),
        }


def _decode(type_name: str, der: bytes) -> tuple[Any, str]:
    try:
        return to_jsonable(asn1_decode(type_name, der)), ""
    except Asn1Error as exc:
        return None, str(exc)


def _tlv_outline(data: bytes) -> Any:
    """A generic BER-TLV outline (tag -> value hex or nested outline) for data no type describes."""
    try:
        out = []
        for tlv in iter_tlvs(data):
            inner = _tlv_outline(tlv.value) if tlv.constructed and tlv.value else tlv.value.hex().upper()
            out.append({tlv.tag.hex().upper(): inner})
        return out
    except TlvError:
        return data.hex().upper()


def decode_exchange(exchange: Es10Exchange) -> DecodedExchange:
    """Decode one recorded ES10 call using the tag table (never raises)."""
    tag = command_tag(exchange.request)
    function = BY_TAG.get(tag) if tag is not None else None
    errors: list[str] = []
    request: Any = None
    response: Any = None
    name = exchange.function
    spec = ""
    if function is not None:
        name, spec = function.name, function.spec
        if function.tag == 0xBF36:
            request = _tlv_outline(exchange.request)
        else:
            request, err = _decode(function.request_type, exchange.request)
            if err:
                errors.append(f"request {err}")
                request = _tlv_outline(exchange.request)
        if exchange.response and function.response_type:
            response, err = _decode(function.response_type, exchange.response)
            if err:
                errors.append(f"response {err}")
                response = _tlv_outline(exchange.response)
    else:
        if tag in _BPP_SEGMENT_TAGS:
            name, spec = f"LoadBoundProfilePackage ({_BPP_SEGMENT_TAGS[tag]})", BY_TAG[0xBF36].spec
        request = _tlv_outline(exchange.request)
        if exchange.response:
            if command_tag(exchange.response) == 0xBF37:
                response, err = _decode("SGP32-ProfileInstallationResult", exchange.response)
                if err:
                    errors.append(f"response {err}")
                    response = _tlv_outline(exchange.response)
            else:
                response = _tlv_outline(exchange.response)
    return DecodedExchange(
        function=name or "unknown",
        tag=f"{tag:X}" if tag is not None else "",
        spec=spec,
        request_hex=exchange.request.hex().upper(),
        response_hex=exchange.response.hex().upper(),
        request=request,
        response=response,
        sw=f"{exchange.sw:04X}",
        seconds=exchange.seconds,
        apdus=tuple(DecodedApdu(a.command.hex().upper(), a.response.hex().upper(), a.seconds)
                    for a in exchange.apdus),
        error=exchange.error,
        decode_errors=tuple(errors),
    )


def decode_trace(exchanges: Iterable[Es10Exchange]) -> list[DecodedExchange]:
    return [decode_exchange(e) for e in exchanges]


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def render_exchange(decoded: DecodedExchange, *, apdus: bool = True) -> str:
    """Text block for one exchange: header line, decoded request/response (JSON), APDUs."""
    status = "error: " + decoded.error if decoded.error else f"SW {decoded.sw}"
    lines = [f"{decoded.function} [{decoded.tag}] {status} ({decoded.seconds * 1000:.1f} ms)"
             + (f"  -- {decoded.spec}" if decoded.spec else "")]
    lines.append("  request:")
    lines.append(_indent(json.dumps(decoded.request, indent=2), "    "))
    if decoded.response is not None:
        lines.append("  response:")
        lines.append(_indent(json.dumps(decoded.response, indent=2), "    "))
    for err in decoded.decode_errors:
        lines.append(f"  decode error: {err}")
    if apdus and decoded.apdus:
        lines.append("  apdus:")
        for a in decoded.apdus:
            lines.append(f"    > {a.command}")
            lines.append(f"    < {a.response}")
    return "\n".join(lines)


def render_trace(decoded: Iterable[DecodedExchange], *, apdus: bool = True) -> str:
    """Text rendering of a decoded ES10 trace, one block per call, for report attachments."""
    return "\n\n".join(render_exchange(d, apdus=apdus) for d in decoded) + "\n"
