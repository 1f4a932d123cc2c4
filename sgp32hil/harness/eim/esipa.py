"""ESipa ASN.1 binding (SGP.32 v1.2 §6.1, §6.3): one DER ``EsipaMessageFromIpaToEim`` in, one DER
``EsipaMessageFromEimToIpa`` (or no body) out.

:func:`dispatch` never raises. Garbage that is not an ``EsipaMessageFromIpaToEim`` at all (empty body,
truncated or over-long TLV, unknown top-level tag) is a transport-level error: HTTP 400. A known
function whose content does not decode gets that function's own error answer (GetEimPackage:
missingEid / invalidEid / undefinedError; ProvideEimPackageResult: provideEimPackageResultError
undefinedError; the relay functions their undefinedError). HandleNotification has no response: HTTP 204.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import asn1
from ..asn1 import TlvError, parse_single

if TYPE_CHECKING:
    from .service import EimService

__all__ = ["CONTENT_TYPE", "ESIPA_PATH", "EsipaAnswer", "FROM_EIM", "FROM_IPA", "MAX_BODY", "dispatch"]

log = logging.getLogger(__name__)

ESIPA_PATH = "/gsma/rsp2/asn1"
CONTENT_TYPE = "application/x-gsma-rsp-asn1"
MAX_BODY = 64 * 1024
FROM_IPA = "EsipaMessageFromIpaToEim"
FROM_EIM = "EsipaMessageFromEimToIpa"

TAG_GET_PACKAGE = b"\xbf\x4f"
TAG_PROVIDE_RESULT = b"\xbf\x50"
TAG_NOTIFICATION = b"\xbf\x3d"
_KNOWN = {
    b"\xbf\x39": "initiateAuthenticationRequestEsipa", b"\xbf\x3b": "authenticateClientRequestEsipa",
    b"\xbf\x3a": "getBoundProfilePackageRequestEsipa", b"\xbf\x41": "cancelSessionRequestEsipa",
    TAG_NOTIFICATION: "handleNotificationEsipa", b"\xbf\x4e": "transferEimPackageResponse",
    TAG_GET_PACKAGE: "getEimPackageRequest", TAG_PROVIDE_RESULT: "provideEimPackageResult",
}
_UNDEFINED = 127


@dataclass(frozen=True)
class EsipaAnswer:
    """HTTP status and body of one ESipa exchange (body empty for 204 and errors carry a text)."""

    status: int
    body: bytes = b""
    function: str = ""
    error: str = ""


def _der(value) -> EsipaAnswer:
    return EsipaAnswer(200, asn1.encode(FROM_EIM, value), value[0])


# Constant answers, encoded once.
_GET_ERRORS = {code: asn1.encode(FROM_EIM, ("getEimPackageResponse", ("eimPackageError", code)))
               for code in (1, 2, 3, 4, 127)}


def get_package_error(code: int) -> EsipaAnswer:
    return EsipaAnswer(200, _GET_ERRORS[code], "getEimPackageResponse")


def provide_result_error(code: int) -> EsipaAnswer:
    return _der(("provideEimPackageResultResponse", ("provideEimPackageResultError", code)))


def _malformed_get(node) -> EsipaAnswer:
    try:
        eid = next((c for c in node.children() if c.tag == b"\x5a"), None)
    except TlvError:
        return get_package_error(_UNDEFINED)
    if eid is None:
        return get_package_error(4)  # missingEid
    if len(eid.value) != 16:
        return get_package_error(3)  # invalidEid
    return get_package_error(_UNDEFINED)


_RELAY_ERRORS = {
    b"\xbf\x39": ("initiateAuthenticationResponseEsipa", "initiateAuthenticationErrorEsipa"),
    b"\xbf\x3b": ("authenticateClientResponseEsipa", "authenticateClientErrorEsipa"),
    b"\xbf\x3a": ("getBoundProfilePackageResponseEsipa", "getBoundProfilePackageErrorEsipa"),
    b"\xbf\x41": ("cancelSessionResponseEsipa", "cancelSessionError"),
}


def _function_error(tag: bytes, node) -> EsipaAnswer:
    if tag == TAG_GET_PACKAGE:
        return _malformed_get(node)
    if tag == TAG_PROVIDE_RESULT:
        return provide_result_error(_UNDEFINED)
    if tag in _RELAY_ERRORS:
        alt, err = _RELAY_ERRORS[tag]
        return _der((alt, (err, _UNDEFINED)))
    if tag == TAG_NOTIFICATION:
        return EsipaAnswer(204, b"", "handleNotificationEsipa", "malformed notification ignored")
    # transferEimPackageResponse: inject mode is not supported (answer as garbage)
    return EsipaAnswer(400, b"", _KNOWN.get(tag, ""), "not supported in retrieve mode")


def dispatch(service: "EimService", body: bytes) -> EsipaAnswer:
    """Handle one ESipa request body; never raises."""
    try:
        node = parse_single(body)
    except TlvError as exc:
        return EsipaAnswer(400, b"", "", f"not one BER-TLV: {exc}")
    function = _KNOWN.get(node.tag)
    if function is None:
        return EsipaAnswer(400, b"", "", f"unknown ESipa message tag {node.tag.hex().upper()}")
    try:
        alt, value = asn1.decode(FROM_IPA, body)
    except asn1.Asn1Error as exc:
        log.info("ESipa %s does not decode: %s", function, exc)
        return _function_error(node.tag, node)
    try:
        if alt == "getEimPackageRequest":
            return service.get_eim_package(value)
        if alt == "provideEimPackageResult":
            return service.provide_eim_package_result(node, value)
        if alt == "handleNotificationEsipa":
            return service.handle_notification(node, value)
        if alt == "initiateAuthenticationRequestEsipa":
            return EsipaAnswer(200, service.relay.initiate_authentication(node, value), alt)
        if alt == "authenticateClientRequestEsipa":
            return EsipaAnswer(200, service.relay.authenticate_client(node, value), alt)
        if alt == "getBoundProfilePackageRequestEsipa":
            return EsipaAnswer(200, service.relay.get_bound_profile_package(node, value), alt)
        if alt == "cancelSessionRequestEsipa":
            return EsipaAnswer(200, service.relay.cancel_session(node, value), alt)
        return _function_error(node.tag, node)
    except Exception:  # noqa: BLE001 - the IPA gets the function's error answer, the log the trace
        log.exception("ESipa %s: unexpected error", function)
        return _function_error(node.tag, node)
