"""ESipa client of the IPAd (SGP.32 v1.2 §5.14 functions, §6.1/§6.3 ASN.1 binding over HTTPS).

Every ESipa function is one HTTPS POST to ``https://<eimFqdn>/gsma/rsp2/asn1`` with
``Content-Type: application/x-gsma-rsp-asn1``, ``X-Admin-Protocol: gsma/rsp/v2.1.0`` (what deployed eIMs
send and accept) and ``User-Agent: gsma-rsp-ipad`` (SGP.32 v1.2); the body is one DER
``EsipaMessageFromIpaToEim``, the reply one DER ``EsipaMessageFromEimToIpa`` (HTTP 204 without a body
where the function has no response: HandleNotification, and an empty ProvideEimPackageResult answer).
One :class:`EsipaClient` keeps one keep-alive connection; the IPA uses one per procedure.

eUICC-signed data (EuiccPackageResult, notifications, AuthenticateServerResponse,
PrepareDownloadResponse, CancelSessionResponse, EUICCInfo1) is never re-encoded: the messages are
assembled from the exact bytes the eUICC returned (:func:`tlv`, :func:`retag`), then checked by decoding
them with the ASN.1 codec.  Signed parts of the eIM's replies (serverSigned1, smdpSigned2, the BPP,
EuiccPackageRequest) are handed on as the exact received bytes, taken with the TLV walker.

Errors raise :class:`EsipaError` naming the function and what was expected: ``kind`` is ``transport``
(connection, TLS), ``timeout``, ``http`` (status other than 200/204), ``malformed`` (a body that is not
the expected DER message) or ``rejected`` (the function's own error alternative, with ``code``/``name``).
Every exchange is recorded as an :class:`EsipaExchange` for report attachments.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ...drivers.es10.decode import asn1_names, to_jsonable
from ..asn1 import Asn1Error, Tlv, TlvError, parse_single, tlv
from ..asn1 import decode as asn1_decode
from ..asn1 import encode as asn1_encode
from ..es9p_client import _tls_context

__all__ = [
    "ADMIN_PROTOCOL",
    "CONTENT_TYPE",
    "DEFAULT_TIMEOUT",
    "ESIPA_PATH",
    "USER_AGENT",
    "AuthenticateClientOk",
    "BoundProfilePackageOk",
    "EimPackage",
    "EimPackageResultAck",
    "EsipaClient",
    "EsipaError",
    "EsipaExchange",
    "InitiateAuthenticationOk",
    "eim_base_url",
    "render_esipa",
    "retag",
    "tlv",
]

ESIPA_PATH = "/gsma/rsp2/asn1"
CONTENT_TYPE = "application/x-gsma-rsp-asn1"
ADMIN_PROTOCOL = "gsma/rsp/v2.1.0"
USER_AGENT = "gsma-rsp-ipad"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
FROM_IPA = "EsipaMessageFromIpaToEim"
FROM_EIM = "EsipaMessageFromEimToIpa"

# ESipa function name -> (request alternative, expected response alternative or None for no body)
FUNCTIONS: dict[str, tuple[str, str | None]] = {
    "GetEimPackage": ("getEimPackageRequest", "getEimPackageResponse"),
    "ProvideEimPackageResult": ("provideEimPackageResult", "provideEimPackageResultResponse"),
    "HandleNotification": ("handleNotificationEsipa", None),
    "InitiateAuthentication": ("initiateAuthenticationRequestEsipa", "initiateAuthenticationResponseEsipa"),
    "AuthenticateClient": ("authenticateClientRequestEsipa", "authenticateClientResponseEsipa"),
    "GetBoundProfilePackage": ("getBoundProfilePackageRequestEsipa", "getBoundProfilePackageResponseEsipa"),
    "CancelSession": ("cancelSessionRequestEsipa", "cancelSessionResponseEsipa"),
}


# --- DER assembly from exact bytes ---------------------------------------------------------------------


def retag(der: bytes, tag: bytes) -> bytes:
    """``der`` (one TLV) with its tag replaced by ``tag`` and the content bytes unchanged (implicit tagging)."""
    return tlv(tag, parse_single(der).value)


def eim_base_url(eim: str) -> str:
    """``https://host[:port]`` for an eimFqdn (``host[:port]``) or a URL (``https://host:port[/...]``)."""
    eim = eim.strip()
    if not eim:
        raise ValueError("eIM address is empty")
    if "://" in eim:
        url = httpx.URL(eim)
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError(f"eIM URL must be https://host[:port], got {eim!r}")
        port = f":{url.port}" if url.port else ""
        return f"{url.scheme}://{url.host}{port}"
    if "/" in eim:
        raise ValueError(f"eimFqdn must be host[:port], got {eim!r}")
    return f"https://{eim}"


# --- errors and records ------------------------------------------------------------------------------


class EsipaError(Exception):
    """An ESipa function failed.  ``kind``: transport | timeout | http | malformed | rejected.

    ``code``/``name`` carry the function's error alternative (``rejected``), ``status_code`` the HTTP
    status when a reply came.  ``infrastructure`` is True when the eIM could not be reached at all.
    """

    def __init__(self, function: str, kind: str, message: str, *, status_code: int | None = None,
                 code: int | None = None, name: str | None = None):
        self.function = function
        self.kind = kind
        self.status_code = status_code
        self.code = code
        self.name = name
        self.undecodable = False  # set when the reply's DER did not decode as the expected message
        super().__init__(f"ESipa {function}: {message}")

    @property
    def infrastructure(self) -> bool:
        return self.kind in ("transport", "timeout")


@dataclass
class EsipaExchange:
    """One ESipa call as it crossed the interface: DER both ways, decoded both ways, timing."""

    function: str
    url: str
    request_der: bytes
    response_der: bytes = b""
    request: Any = None
    response: Any = None
    status_code: int | None = None
    duration_ms: float = 0.0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "url": self.url,
            "status_code": self.status_code,
            "duration_ms": round(self.duration_ms, 3),
            "request_der": self.request_der.hex().upper(),
            "response_der": self.response_der.hex().upper(),
            "request": to_jsonable(self.request),
            "response": to_jsonable(self.response),
            "error": self.error,
        }

    def render(self) -> str:
        """Text block for report attachments (decoded messages plus the DER in hex)."""
        status = f"HTTP {self.status_code}" if self.status_code is not None else "no response"
        head = f"{self.function} {status} ({self.duration_ms:.1f} ms)" + (f"  error: {self.error}" if self.error else "")
        lines = [head, f"  POST {self.url}", "  request:", _indent(json.dumps(to_jsonable(self.request), indent=2)),
                 f"  request DER: {self.request_der.hex().upper()}"]
        if self.response_der or self.response is not None:
            lines += ["  response:", _indent(json.dumps(to_jsonable(self.response), indent=2)),
                      f"  response DER: {self.response_der.hex().upper()}"]
        return "\n".join(lines)


def render_esipa(exchanges: list[EsipaExchange]) -> str:
    """All exchanges rendered for one report attachment."""
    return "\n\n".join(e.render() for e in exchanges) + "\n"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


# --- typed replies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EimPackage:
    """GetEimPackageResponse (SGP.32 v1.2 §5.14.3): ``kind`` is euiccPackageRequest,
    ipaEuiccDataRequest, profileDownloadTriggerRequest or eimPackageError; ``der`` the exact inner
    element (the signed EuiccPackageRequest BF51 to load unchanged), ``value`` its decoded form."""

    kind: str
    der: bytes = field(repr=False)
    value: Any = field(repr=False)
    error_code: int | None = None
    error_name: str | None = None

    @property
    def available(self) -> bool:
        return self.kind != "eimPackageError"

    @property
    def eim_transaction_id(self) -> bytes | None:
        if self.kind == "euiccPackageRequest":
            return self.value["euiccPackageSigned"].get("eimTransactionId")
        if self.kind in ("ipaEuiccDataRequest", "profileDownloadTriggerRequest"):
            return self.value.get("eimTransactionId")
        return None

    @property
    def counter_value(self) -> int | None:
        if self.kind == "euiccPackageRequest":
            return self.value["euiccPackageSigned"].get("counterValue")
        return None


@dataclass(frozen=True)
class EimPackageResultAck:
    """ProvideEimPackageResultResponse (SGP.32 v1.2 §5.14.4): the acknowledged sequence numbers, an
    empty response, or (raised instead) an error."""

    acknowledgements: tuple[int, ...]
    empty: bool


@dataclass(frozen=True)
class InitiateAuthenticationOk:
    """InitiateAuthenticationOkEsipa, attribute names as the ES9+ response the download procedure uses."""

    transaction_id: bytes
    server_signed1: bytes = field(repr=False)
    server_signature1: bytes = field(repr=False)
    euicc_ci_pkid_to_be_used: bytes
    server_certificate: bytes = field(repr=False)
    matching_id: str | None = None
    ctx_params1: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AuthenticateClientOk:
    """AuthenticateClientOkDPEsipa (exact bytes of each member)."""

    transaction_id: bytes | None
    profile_metadata: bytes = field(repr=False)
    smdp_signed2: bytes = field(repr=False)
    smdp_signature2: bytes = field(repr=False)
    smdp_certificate: bytes = field(repr=False)
    hash_cc: bytes | None = None


@dataclass(frozen=True)
class BoundProfilePackageOk:
    """GetBoundProfilePackageOkEsipa: the BoundProfilePackage (BF36) as received."""

    transaction_id: bytes | None
    bound_profile_package: bytes = field(repr=False)


def _tag(node: Tlv) -> bytes:
    return node.tag


# --- the client --------------------------------------------------------------------------------------


class EsipaClient:
    """ESipa functions towards one eIM (SGP.32 v1.2 §5.14), recorded in :attr:`exchanges`.

    ``eim`` is the eimFqdn (``host[:port]``) or a URL.  TLS is verified against ``ca`` or, by default,
    the PKI's trust bundle (:func:`~sgp32hil.harness.es9p_client.default_ca_bundle`); ``insecure`` turns
    verification off.  ``transport`` replaces httpx's network transport (tests).
    """

    def __init__(
        self,
        eim: str,
        *,
        ca: str | os.PathLike | None = None,
        insecure: bool = False,
        pki_dir: str | os.PathLike | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        admin_protocol: str = ADMIN_PROTOCOL,
        user_agent: str = USER_AGENT,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = eim_base_url(eim)
        self.url = self.base_url + ESIPA_PATH
        self.exchanges: list[EsipaExchange] = []
        self.headers = {"Content-Type": CONTENT_TYPE, "X-Admin-Protocol": admin_protocol, "User-Agent": user_agent}
        verify = False if (insecure or transport is not None and ca is None and pki_dir is None) else \
            _tls_context(ca, insecure, pki_dir)
        self._http = httpx.Client(base_url=self.base_url, verify=verify, timeout=timeout, headers=self.headers,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "EsipaClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- one exchange ----------------------------------------------------------------------------------

    def send(self, function: str, body: bytes) -> tuple[str | None, Any, Tlv | None]:
        """POST one ``EsipaMessageFromIpaToEim``; return ``(alternative, value, inner TLV)`` of the reply
        (``(None, None, None)`` for a 204).  The request must decode as the function's alternative."""
        request_alt, response_alt = FUNCTIONS[function]
        ex = EsipaExchange(function, self.url, body)
        self.exchanges.append(ex)
        try:
            try:
                alt, ex.request = asn1_decode(FROM_IPA, body)
            except Asn1Error as exc:  # our own assembly is wrong: a programming error, say so plainly
                raise EsipaError(function, "malformed", f"request does not encode as {FROM_IPA}: {exc}") from None
            if alt != request_alt:
                raise EsipaError(function, "malformed", f"request is {alt}, expected {request_alt}")
            ex.request = (alt, ex.request)
            t0 = time.perf_counter()
            try:
                reply = self._http.post(ESIPA_PATH, content=body)
            except httpx.TimeoutException as exc:
                raise EsipaError(function, "timeout", f"timed out ({type(exc).__name__}) at {self.url}") from None
            except httpx.HTTPError as exc:
                raise EsipaError(function, "transport", f"{type(exc).__name__} at {self.url}: {exc}") from None
            finally:
                ex.duration_ms = (time.perf_counter() - t0) * 1000
            ex.status_code = reply.status_code
            ex.response_der = reply.content
            return self._parse(function, response_alt, reply, ex)
        except EsipaError as exc:
            ex.error = str(exc)
            raise

    @staticmethod
    def _parse(function: str, expected: str | None, reply: httpx.Response,
               ex: EsipaExchange) -> tuple[str | None, Any, Tlv | None]:
        status = reply.status_code
        if status == 204 or (status == 200 and not reply.content and expected is None):
            if expected is None or function == "ProvideEimPackageResult":
                return None, None, None
            raise EsipaError(function, "malformed", f"HTTP 204 without a body; expected {expected}",
                             status_code=status)
        if status != 200:
            snippet = reply.content[:200].decode("utf-8", "replace")
            raise EsipaError(function, "http", f"HTTP {status} (expected 200 with {expected or 'no body'})"
                             + (f": {snippet}" if snippet else ""), status_code=status)
        ctype = (reply.headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype != CONTENT_TYPE:
            raise EsipaError(function, "malformed", f"response Content-Type {ctype or '(none)'!r}, expected "
                             f"{CONTENT_TYPE}", status_code=status)
        der = reply.content
        try:
            alt, value = asn1_decode(FROM_EIM, der)
            inner = parse_single(der)
        except (Asn1Error, TlvError) as exc:
            shown = der[:48].hex().upper() + ("..." if len(der) > 48 else "")
            error = EsipaError(function, "malformed", f"response is not a DER {FROM_EIM} "
                               f"(expected {expected}): {shown or '(empty)'}: {exc}", status_code=status)
            error.undecodable = True
            raise error from None
        ex.response = (alt, value)
        if alt is None:
            raise EsipaError(function, "malformed", f"response is not a known {FROM_EIM} alternative (tag "
                             f"{inner.tag.hex().upper()}; expected {expected})", status_code=status)
        if expected is None or alt != expected:
            raise EsipaError(function, "malformed", f"the eIM answered {alt}, expected {expected or 'no body'}",
                             status_code=status)
        return alt, value, inner

    def _rejected(self, function: str, type_name: str, member: str, code: int) -> EsipaError:
        try:
            name = asn1_names().number_name(code, type_name, member)
        except Exception:  # noqa: BLE001 - a name is only decoration
            name = str(code)
        return EsipaError(function, "rejected", f"the eIM returned {member} {name} ({code})", code=code, name=name)

    # --- package retrieval (§5.14.3, §5.14.4, §5.14.7) ------------------------------------------------

    def get_eim_package(self, eid: bytes | str, *, notify_state_change: bool = False,
                        state_change_cause: int | str | None = None, rplmn: bytes | None = None) -> EimPackage:
        """ESipa.GetEimPackage (SGP.32 v1.2 §5.14.3).  ``eimPackageError`` (noEimPackageAvailable
        included) is returned as an :class:`EimPackage` of that kind, not raised."""
        eid_b = bytes.fromhex(eid) if isinstance(eid, str) else bytes(eid)
        request: dict[str, Any] = {"eidValue": eid_b}
        if notify_state_change:
            request["notifyStateChange"] = None
        if state_change_cause is not None:
            if isinstance(state_change_cause, str):
                state_change_cause = _named_number("StateChangeCause", state_change_cause)
            request["stateChangeCause"] = state_change_cause
        if rplmn is not None:
            request["rPLMN"] = bytes(rplmn)
        body = asn1_encode(FROM_IPA, ("getEimPackageRequest", request))
        _, value, node = self.send("GetEimPackage", body)
        kind, inner = value
        if kind == "eimPackageError":
            return EimPackage(kind, b"", inner, inner, _number_name(inner, "GetEimPackageResponse", "eimPackageError"))
        return EimPackage(kind, node.children()[0].raw if node.constructed else b"", inner)

    def provide_eim_package_result(self, eim_package_result: bytes, eid: bytes | str | None = None) -> EimPackageResultAck:
        """ESipa.ProvideEimPackageResult (SGP.32 v1.2 §5.14.4): ``eim_package_result`` is one complete
        EimPackageResult CHOICE element (e.g. the eUICC's BF51 as returned) sent unchanged."""
        body = b""
        if eid is not None:
            body += tlv(b"\x5a", bytes.fromhex(eid) if isinstance(eid, str) else bytes(eid))
        msg = tlv(b"\xbf\x50", body + eim_package_result)
        alt, value, _ = self.send("ProvideEimPackageResult", msg)
        if alt is None:
            return EimPackageResultAck((), True)
        kind, inner = value
        if kind == "eimAcknowledgements":
            return EimPackageResultAck(tuple(inner), False)
        if kind == "emptyResponse":
            return EimPackageResultAck((), True)
        raise self._rejected("ProvideEimPackageResult", "ProvideEimPackageResultResponse",
                             "provideEimPackageResultError", inner)

    def handle_notification(self, pending_notification: bytes) -> None:
        """ESipa.HandleNotification (SGP.32 v1.2 §5.14.5) with one signed PendingNotification as the
        eUICC returned it."""
        self.send("HandleNotification", tlv(b"\xbf\x3d", tlv(b"\xa0", pending_notification)))

    # --- indirect profile download (§5.14.1, §5.14.2, §5.14.6, §5.14.8) ----------------------------------

    def initiate_authentication(self, euicc_challenge: bytes, euicc_info1: bytes | None, smdp_address: str | None,
                                eim_transaction_id: bytes | None = None) -> InitiateAuthenticationOk:
        """ESipa.InitiateAuthentication (BF39): the eIM relays ES9+.InitiateAuthentication."""
        body = tlv(b"\x81", euicc_challenge)
        if smdp_address:
            body += tlv(b"\x83", smdp_address.encode())
        if euicc_info1:
            body += euicc_info1
        if eim_transaction_id is not None:
            body += tlv(b"\x82", eim_transaction_id)
        _, value, node = self.send("InitiateAuthentication", tlv(b"\xbf\x39", body))
        kind, inner = value
        if kind != "initiateAuthenticationOkEsipa":
            raise self._rejected("InitiateAuthentication", "InitiateAuthenticationResponseEsipa", kind, inner)
        parts = _first_by_tag(node.children()[0])
        tid = inner.get("transactionId")
        if tid is None:
            tid = asn1_decode("ServerSigned1", parts[b"\x30"])["transactionId"]
        return InitiateAuthenticationOk(tid, parts[b"\x30"], parts[b"\x5f\x37"], inner["euiccCiPKIdentifierToBeUsed"],
                                        _second(node.children()[0], b"\x30"), inner.get("matchingId"),
                                        parts.get(b"\xa2"))

    def authenticate_client(self, transaction_id: bytes, authenticate_server_response: bytes) -> AuthenticateClientOk:
        """ESipa.AuthenticateClient (BF3B) with the eUICC's AuthenticateServerResponse unchanged."""
        msg = tlv(b"\xbf\x3b", tlv(b"\x80", transaction_id) + authenticate_server_response)
        _, value, node = self.send("AuthenticateClient", msg)
        kind, inner = value
        if kind == "authenticateClientOkDSEsipa":
            raise EsipaError("AuthenticateClient", "malformed", "the eIM answered authenticateClientOkDSEsipa "
                             "(SM-DS event), expected authenticateClientOkDPEsipa for a profile download")
        if kind != "authenticateClientOkDPEsipa":
            raise self._rejected("AuthenticateClient", "AuthenticateClientResponseEsipa", kind, inner)
        ok = node.children()[0]
        parts = _first_by_tag(ok)
        return AuthenticateClientOk(inner.get("transactionId"), parts.get(b"\xbf\x25", b""), parts[b"\x30"],
                                    parts[b"\x5f\x37"], _second(ok, b"\x30"), inner.get("hashCc"))

    def get_bound_profile_package(self, transaction_id: bytes, prepare_download_response: bytes) -> BoundProfilePackageOk:
        """ESipa.GetBoundProfilePackage (BF3A) with the eUICC's PrepareDownloadResponse unchanged."""
        msg = tlv(b"\xbf\x3a", tlv(b"\x80", transaction_id) + prepare_download_response)
        _, value, node = self.send("GetBoundProfilePackage", msg)
        kind, inner = value
        if kind != "getBoundProfilePackageOkEsipa":
            raise self._rejected("GetBoundProfilePackage", "GetBoundProfilePackageResponseEsipa", kind, inner)
        parts = {_tag(c): c.raw for c in node.children()[0].children()}
        return BoundProfilePackageOk(inner.get("transactionId"), parts[b"\xbf\x36"])

    def cancel_session(self, transaction_id: bytes, cancel_session_response: bytes) -> None:
        """ESipa.CancelSession (BF41) with the eUICC's CancelSessionResponse (BF41, carried as [1])."""
        msg = tlv(b"\xbf\x41", tlv(b"\x80", transaction_id) + retag(cancel_session_response, b"\xa1"))
        _, value, _ = self.send("CancelSession", msg)
        kind, inner = value
        if kind != "cancelSessionOk":
            raise self._rejected("CancelSession", "CancelSessionResponseEsipa", kind, inner)


def _first_by_tag(node: Tlv) -> dict[bytes, bytes]:
    """Raw bytes of the first child per tag (serverSigned1 before serverCertificate, both '30')."""
    parts: dict[bytes, bytes] = {}
    for child in node.children():
        parts.setdefault(child.tag, child.raw)
    return parts


def _second(node: Tlv, tag: bytes) -> bytes:
    """The raw bytes of the second child with ``tag`` (the certificate after serverSigned1/smdpSigned2)."""
    found = [c.raw for c in node.children() if _tag(c) == tag]
    if len(found) < 2:
        raise TlvError(f"expected two {tag.hex().upper()} elements")
    return found[1]


def _number_name(code: int, type_name: str, *path: str) -> str:
    try:
        return asn1_names().number_name(code, type_name, *path)
    except Exception:  # noqa: BLE001
        return str(code)


def _named_number(type_name: str, name: str) -> int:
    """The number of a named INTEGER value (StateChangeCause ``fallback`` -> 1); digits pass through."""
    if name.isdigit():
        return int(name)
    numbers = asn1_names().numbers(type_name)
    for number, known in numbers.items():
        if known == name:
            return number
    raise ValueError(f"unknown {type_name} {name!r} (known: {', '.join(numbers.values())})")
