"""ES9+ JSON binding (SGP.22 v2.5 §6.5, functions §5.6) as typed frozen dataclasses.

Every ES9+ function is an HTTPS POST to ``/gsma/rsp2/es9plus/<function>`` with
``Content-Type: application/json;charset=UTF-8`` and ``X-Admin-Protocol: gsma/rsp/v2.x.y``
(§6.5.1). ASN.1 values travel base64-encoded (RFC 4648 §4, padded), ``transactionId`` as
upper-case hex (1..16 bytes). A response carries ``header.functionExecutionStatus``;
``handleNotification`` is answered with HTTP 204 and no body.

Parsing is strict in both directions: malformed JSON, duplicate or unknown members,
missing mandatory members, wrong JSON types and bad base64/hex raise :class:`Es9Error`
with a generic status code of SGP.22 §5.2.6 (subject ``1.2`` Function Provider,
reason ``2.1`` Invalid / ``2.2`` Mandatory Element Missing). Serialisers emit exactly
the members the specification defines.

Public API
    ``parse_request(function, body) -> <Function>Request``
    ``request_json(request) -> bytes``
    ``response_json(response) -> bytes`` (a response dataclass, or an :class:`Es9Error`)
    ``parse_response(function, body) -> <Function>Response``; a ``Failed``/``Expired``
    status raises :class:`Es9Error` carrying the received codes and header.
    ``admin_protocol_accepted(value)``, ``content_type_accepted(value)``
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

__all__ = [
    "ADMIN_PROTOCOL",
    "CONTENT_TYPE",
    "ES9P_PATH",
    "FUNCTIONS",
    "AuthenticateClientRequest",
    "AuthenticateClientResponse",
    "CancelSessionRequest",
    "CancelSessionResponse",
    "Code",
    "Es9Error",
    "FunctionExecutionStatus",
    "GetBoundProfilePackageRequest",
    "GetBoundProfilePackageResponse",
    "HandleNotificationRequest",
    "InitiateAuthenticationRequest",
    "InitiateAuthenticationResponse",
    "RequestHeader",
    "ResponseHeader",
    "Status",
    "StatusCodeData",
    "admin_protocol_accepted",
    "content_type_accepted",
    "parse_request",
    "parse_response",
    "request_json",
    "response_json",
]

CONTENT_TYPE = "application/json;charset=UTF-8"
ADMIN_PROTOCOL = "gsma/rsp/v2.5.0"
ES9P_PATH = "/gsma/rsp2/es9plus/"

_ADMIN_RE = re.compile(r"gsma/rsp/v2\.(\d{1,3})\.(\d{1,3})")


def admin_protocol_accepted(value: str | None) -> bool:
    """True for ``gsma/rsp/v2.<minor>.<patch>`` (v2.1.0, v2.2.x, v2.5.x ... ; SGP.22 §6.5.1)."""
    return value is not None and _ADMIN_RE.fullmatch(value.strip()) is not None


def content_type_accepted(value: str | None) -> bool:
    """True for ``application/json`` with no charset or charset UTF-8 (case-insensitive)."""
    if not value:
        return False
    parts = [p.strip().lower() for p in value.split(";")]
    if parts[0] != "application/json":
        return False
    for param in parts[1:]:
        if not param:
            continue
        name, _, val = param.partition("=")
        if name.strip() != "charset" or val.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


class Code(NamedTuple):
    """A (subjectCode, reasonCode) pair of SGP.22 §5.2.6."""

    subject: str
    reason: str


class Status:
    """``functionExecutionStatus.status`` values (SGP.22 §6.5.1.4)."""

    SUCCESS = "Executed-Success"
    WARNING = "Executed-WithWarning"
    FAILED = "Failed"
    EXPIRED = "Expired"
    ALL = (SUCCESS, WARNING, FAILED, EXPIRED)


# Generic codes (SGP.22 §5.2.6.1 subject 1.2 Function Provider; §5.2.6.2 reasons).
INVALID = Code("1.2", "2.1")
MANDATORY_ELEMENT_MISSING = Code("1.2", "2.2")
UNSUPPORTED = Code("1.2", "3.1")
EXECUTION_ERROR = Code("1.2", "4.2")
# ES9+.InitiateAuthentication (SGP.22 §5.6.1)
SMDP_ADDRESS_REFUSED = Code("8.8.1", "3.8")
SECURITY_CONFIGURATION_UNSUPPORTED = Code("8.8.2", "3.1")
SPECIFICATION_VERSION_UNSUPPORTED = Code("8.8.3", "3.1")
DPAUTH_CERT_UNAVAILABLE = Code("8.8.4", "3.7")
# ES9+.AuthenticateClient (§5.6.3), GetBoundProfilePackage (§5.6.2), CancelSession (§5.6.5)
EUM_CERT_INVALID = Code("8.1.2", "6.1")
EUM_CERT_EXPIRED = Code("8.1.2", "6.3")
EUICC_CERT_INVALID = Code("8.1.3", "6.1")
EUICC_CERT_EXPIRED = Code("8.1.3", "6.3")
EUICC_SIGNATURE_INVALID = Code("8.1", "6.1")
INSUFFICIENT_MEMORY = Code("8.1", "4.8")
CI_PK_UNKNOWN = Code("8.11.1", "3.9")
PROFILE_NOT_RELEASED = Code("8.2", "1.2")
TRANSACTION_ID_UNKNOWN = Code("8.10.1", "3.9")
MATCHING_ID_REFUSED = Code("8.2.6", "3.8")
EID_REFUSED = Code("8.1.1", "3.8")
NO_ELIGIBLE_PROFILE = Code("8.2.5", "4.3")
DOWNLOAD_ORDER_EXPIRED = Code("8.8.5", "4.10")
DOWNLOAD_ORDER_RETRIES_EXCEEDED = Code("8.8.5", "6.4")
BPP_UNAVAILABLE = Code("8.2", "3.7")
CONFIRMATION_CODE_MISSING = Code("8.2.7", "2.2")
CONFIRMATION_CODE_REFUSED = Code("8.2.7", "3.8")
CONFIRMATION_CODE_RETRIES_EXCEEDED = Code("8.2.7", "6.4")
SMDP_OID_INVALID = Code("8.8", "3.10")

FUNCTIONS = (
    "initiateAuthentication",
    "authenticateClient",
    "getBoundProfilePackage",
    "handleNotification",
    "cancelSession",
)


class Es9Error(Exception):
    """A function failure with its SGP.22 subject/reason codes (SGP.22 §6.5.1.4)."""

    def __init__(
        self,
        subject_code: str,
        reason_code: str,
        message: str = "",
        *,
        subject_identifier: str | None = None,
        status: str = Status.FAILED,
        header: "ResponseHeader | None" = None,
    ):
        super().__init__(f"{subject_code}/{reason_code}: {message}" if message else f"{subject_code}/{reason_code}")
        self.subject_code = subject_code
        self.reason_code = reason_code
        self.message = message
        self.subject_identifier = subject_identifier
        self.status = status
        self.header = header

    @property
    def code(self) -> Code:
        return Code(self.subject_code, self.reason_code)

    def response_header(self) -> "ResponseHeader":
        if self.header is not None:
            return self.header
        return ResponseHeader(
            FunctionExecutionStatus(
                self.status,
                StatusCodeData(self.subject_code, self.reason_code, self.subject_identifier, self.message or None),
            )
        )


def _invalid(message: str) -> Es9Error:
    return Es9Error(*INVALID, message)


def _b64(json_name: str, *, optional: bool = False):
    return field(default=None if optional else MISSING, metadata={"json": json_name, "kind": "b64"})


def _hex(json_name: str):
    return field(metadata={"json": json_name, "kind": "hex"})


def _str(json_name: str, *, optional: bool = False):
    return field(default=None if optional else MISSING, metadata={"json": json_name, "kind": "str"})


@dataclass(frozen=True)
class StatusCodeData:
    """``statusCodeData`` (SGP.22 §6.5.1.4)."""

    subject_code: str = _str("subjectCode")
    reason_code: str = _str("reasonCode")
    subject_identifier: str | None = _str("subjectIdentifier", optional=True)
    message: str | None = _str("message", optional=True)


@dataclass(frozen=True)
class FunctionExecutionStatus:
    """``functionExecutionStatus`` (SGP.22 §6.5.1.4)."""

    status: str = _str("status")
    status_code_data: StatusCodeData | None = field(
        default=None, metadata={"json": "statusCodeData", "kind": StatusCodeData, "optional": True}
    )

    def __post_init__(self) -> None:
        if self.status not in Status.ALL:
            raise _invalid(f"unknown status {self.status!r}")


@dataclass(frozen=True)
class ResponseHeader:
    """Response ``header`` (SGP.22 §6.5.1.4)."""

    function_execution_status: FunctionExecutionStatus = field(
        metadata={"json": "functionExecutionStatus", "kind": FunctionExecutionStatus}
    )

    @classmethod
    def success(cls) -> "ResponseHeader":
        return cls(FunctionExecutionStatus(Status.SUCCESS))

    @property
    def ok(self) -> bool:
        return self.function_execution_status.status in (Status.SUCCESS, Status.WARNING)


@dataclass(frozen=True)
class RequestHeader:
    """Request ``header`` (SGP.22 §6.5.1.3); optional on ES9+, mandatory on ES2+."""

    function_requester_identifier: str = _str("functionRequesterIdentifier")
    function_call_identifier: str = _str("functionCallIdentifier")


def _success_header() -> ResponseHeader:
    return ResponseHeader.success()


def _req_header():
    return field(default=None, metadata={"json": "header", "kind": RequestHeader, "optional": True})


def _resp_header():
    return field(default_factory=_success_header, metadata={"json": "header", "kind": ResponseHeader})


@dataclass(frozen=True)
class InitiateAuthenticationRequest:
    """ES9+.InitiateAuthentication request (SGP.22 §5.6.1)."""

    FUNCTION: ClassVar[str] = "initiateAuthentication"
    euicc_challenge: bytes = _b64("euiccChallenge")
    euicc_info1: bytes = _b64("euiccInfo1")
    smdp_address: str = _str("smdpAddress")
    header: RequestHeader | None = _req_header()

    def __post_init__(self) -> None:
        if len(self.euicc_challenge) != 16:
            raise _invalid("euiccChallenge must be 16 bytes")


@dataclass(frozen=True)
class InitiateAuthenticationResponse:
    """ES9+.InitiateAuthentication response (SGP.22 §5.6.1)."""

    FUNCTION: ClassVar[str] = "initiateAuthentication"
    transaction_id: bytes = _hex("transactionId")
    server_signed1: bytes = _b64("serverSigned1")
    server_signature1: bytes = _b64("serverSignature1")
    euicc_ci_pkid_to_be_used: bytes = _b64("euiccCiPKIdToBeUsed")
    server_certificate: bytes = _b64("serverCertificate")
    header: ResponseHeader = _resp_header()


@dataclass(frozen=True)
class AuthenticateClientRequest:
    """ES9+.AuthenticateClient request (SGP.22 §5.6.3)."""

    FUNCTION: ClassVar[str] = "authenticateClient"
    transaction_id: bytes = _hex("transactionId")
    authenticate_server_response: bytes = _b64("authenticateServerResponse")
    header: RequestHeader | None = _req_header()


@dataclass(frozen=True)
class AuthenticateClientResponse:
    """ES9+.AuthenticateClient response (SGP.22 §5.6.3)."""

    FUNCTION: ClassVar[str] = "authenticateClient"
    transaction_id: bytes = _hex("transactionId")
    profile_metadata: bytes = _b64("profileMetadata")
    smdp_signed2: bytes = _b64("smdpSigned2")
    smdp_signature2: bytes = _b64("smdpSignature2")
    smdp_certificate: bytes = _b64("smdpCertificate")
    header: ResponseHeader = _resp_header()


@dataclass(frozen=True)
class GetBoundProfilePackageRequest:
    """ES9+.GetBoundProfilePackage request (SGP.22 §5.6.2)."""

    FUNCTION: ClassVar[str] = "getBoundProfilePackage"
    transaction_id: bytes = _hex("transactionId")
    prepare_download_response: bytes = _b64("prepareDownloadResponse")
    header: RequestHeader | None = _req_header()


@dataclass(frozen=True)
class GetBoundProfilePackageResponse:
    """ES9+.GetBoundProfilePackage response (SGP.22 §5.6.2)."""

    FUNCTION: ClassVar[str] = "getBoundProfilePackage"
    transaction_id: bytes = _hex("transactionId")
    bound_profile_package: bytes = _b64("boundProfilePackage")
    header: ResponseHeader = _resp_header()


@dataclass(frozen=True)
class HandleNotificationRequest:
    """ES9+.HandleNotification request (SGP.22 §5.6.4); answered with HTTP 204, no body."""

    FUNCTION: ClassVar[str] = "handleNotification"
    pending_notification: bytes = _b64("pendingNotification")
    header: RequestHeader | None = _req_header()


@dataclass(frozen=True)
class CancelSessionRequest:
    """ES9+.CancelSession request (SGP.22 §5.6.5)."""

    FUNCTION: ClassVar[str] = "cancelSession"
    transaction_id: bytes = _hex("transactionId")
    cancel_session_response: bytes = _b64("cancelSessionResponse")
    header: RequestHeader | None = _req_header()


@dataclass(frozen=True)
class CancelSessionResponse:
    """ES9+.CancelSession response (SGP.22 §5.6.5): the header only."""

    FUNCTION: ClassVar[str] = "cancelSession"
    header: ResponseHeader = _resp_header()


REQUESTS: dict[str, type] = {
    c.FUNCTION: c
    for c in (
        InitiateAuthenticationRequest,
        AuthenticateClientRequest,
        GetBoundProfilePackageRequest,
        HandleNotificationRequest,
        CancelSessionRequest,
    )
}
RESPONSES: dict[str, type | None] = {
    "initiateAuthentication": InitiateAuthenticationResponse,
    "authenticateClient": AuthenticateClientResponse,
    "getBoundProfilePackage": GetBoundProfilePackageResponse,
    "handleNotification": None,
    "cancelSession": CancelSessionResponse,
}

_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2}){1,16}")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
MAX_BODY = 4 * 1024 * 1024


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _invalid(f"duplicate member {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise _invalid(f"non-JSON number {name}")


def load_json_object(body: bytes | str) -> dict[str, Any]:
    """Decode one JSON object strictly (UTF-8, no duplicate members, no NaN)."""
    if isinstance(body, bytes):
        if len(body) > MAX_BODY:
            raise _invalid("body too large")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _invalid("body is not UTF-8") from exc
    else:
        text = body
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except Es9Error:
        raise
    except (ValueError, RecursionError) as exc:
        raise _invalid(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _invalid("body is not a JSON object")
    return obj


def decode_b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise _invalid(f"{name} must be a base64 string")
    if not value or len(value) % 4 or not _B64_RE.fullmatch(value):
        raise _invalid(f"{name} is not valid base64")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{name} is not valid base64") from None
    if base64.b64encode(data).decode("ascii") != value:
        raise _invalid(f"{name} is not canonical base64")
    return data


def decode_hex(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.fullmatch(value):
        raise _invalid(f"{name} must be 1..16 bytes of hex")
    return bytes.fromhex(value)


def from_json(cls: type, obj: Any, where: str = "body") -> Any:
    """Build dataclass ``cls`` from a decoded JSON object, rejecting unknown/missing members."""
    if not isinstance(obj, dict):
        raise _invalid(f"{where} must be a JSON object")
    specs = fields(cls)
    known = {f.metadata["json"] for f in specs}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise _invalid(f"unknown member(s) in {where}: {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for f in specs:
        name = f.metadata["json"]
        kind = f.metadata["kind"]
        required = f.default is MISSING and f.default_factory is MISSING
        if name not in obj:
            if required:
                raise Es9Error(*MANDATORY_ELEMENT_MISSING, f"{where}.{name} missing")
            continue
        value = obj[name]
        if kind == "b64":
            kwargs[f.name] = decode_b64(value, name)
        elif kind == "hex":
            kwargs[f.name] = decode_hex(value, name)
        elif kind == "str":
            if not isinstance(value, str):
                raise _invalid(f"{name} must be a string")
            kwargs[f.name] = value
        elif kind == "bool":
            if not isinstance(value, bool):
                raise _invalid(f"{name} must be a boolean")
            kwargs[f.name] = value
        else:
            kwargs[f.name] = from_json(kind, value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except Es9Error:
        raise
    except (TypeError, ValueError) as exc:
        raise _invalid(f"{where}: {exc}") from None


def to_json(obj: Any) -> dict[str, Any]:
    """The JSON object of a dataclass: exactly its spec members, ``header`` first, ``None`` omitted."""
    out: dict[str, Any] = {}
    specs = sorted(fields(obj), key=lambda f: f.metadata["json"] != "header")
    for f in specs:
        value = getattr(obj, f.name)
        if value is None:
            continue
        kind = f.metadata["kind"]
        name = f.metadata["json"]
        if kind == "b64":
            out[name] = base64.b64encode(value).decode("ascii")
        elif kind == "hex":
            out[name] = value.hex().upper()
        elif kind in ("str", "bool"):
            out[name] = value
        else:
            out[name] = to_json(value)
    return out


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_request(function: str, body: bytes | str) -> Any:
    """Strictly parse the request body of ES9+ ``function`` into its dataclass."""
    cls = REQUESTS.get(function)
    if cls is None:
        raise Es9Error(*UNSUPPORTED, f"unknown ES9+ function {function!r}")
    return from_json(cls, load_json_object(body))


def request_json(request: Any) -> bytes:
    """Serialise a request dataclass to the JSON body."""
    return _dump(to_json(request))


def response_json(response: Any) -> bytes:
    """Serialise a response dataclass, or an :class:`Es9Error` as a header-only failure."""
    if isinstance(response, Es9Error):
        return _dump({"header": to_json(response.response_header())})
    return _dump(to_json(response))


def parse_response(function: str, body: bytes | str) -> Any:
    """Strictly parse a response of ES9+ ``function``.

    A ``Failed``/``Expired`` header (with no other members) raises :class:`Es9Error` carrying
    the received status code data and header. ``handleNotification`` has no response body;
    an empty body returns ``None``.
    """
    if function not in RESPONSES:
        raise Es9Error(*UNSUPPORTED, f"unknown ES9+ function {function!r}")
    cls = RESPONSES[function]
    if cls is None:
        if body in (b"", ""):
            return None
        raise _invalid("handleNotification response must be empty")
    return parse_response_as(cls, body)


def parse_response_as(cls: type, body: bytes | str) -> Any:
    """Strictly parse a JSON response body into ``cls``; a failed status raises :class:`Es9Error`."""
    obj = load_json_object(body)
    if "header" not in obj:
        raise Es9Error(*MANDATORY_ELEMENT_MISSING, "body.header missing")
    header = from_json(ResponseHeader, obj["header"], "body.header")
    if not header.ok:
        if set(obj) != {"header"}:
            raise _invalid("failed response carries members besides header")
        scd = header.function_execution_status.status_code_data
        if scd is None:
            raise Es9Error(*INVALID, "failed response without statusCodeData", header=header)
        raise Es9Error(
            scd.subject_code,
            scd.reason_code,
            scd.message or "",
            subject_identifier=scd.subject_identifier,
            status=header.function_execution_status.status,
            header=header,
        )
    return from_json(cls, obj)
