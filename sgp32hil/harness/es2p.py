"""ES2+ JSON binding (SGP.22 v2.5 §5.3 functions, §6.5.2 binding): operator -> SM-DP+.

Routes ``/gsma/rsp2/es2plus/<function>``; the request ``header`` (functionRequesterIdentifier,
functionCallIdentifier) is mandatory. Same strict rules and JSON machinery as :mod:`.es9p`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .es9p import (
    UNSUPPORTED,
    Code,
    Es9Error,
    RequestHeader,
    ResponseHeader,
    _dump,
    _resp_header,
    _str,
    from_json,
    load_json_object,
    parse_response_as,
    to_json,
)

__all__ = [
    "ES2P_PATH",
    "FUNCTIONS",
    "CancelOrderRequest",
    "ConfirmOrderRequest",
    "ConfirmOrderResponse",
    "DownloadOrderRequest",
    "DownloadOrderResponse",
    "Es2Response",
    "ReleaseProfileRequest",
    "parse_request",
    "parse_response",
    "request_json",
    "response_json",
]

ES2P_PATH = "/gsma/rsp2/es2plus/"

# ES2+ status codes (SGP.22 §5.3.1-§5.3.4).
EID_INVALID = Code("8.1.1", "2.1")
EID_INVALID_ASSOCIATION = Code("8.1.1", "3.10")
ICCID_UNKNOWN = Code("8.2.1", "3.9")
ICCID_UNAVAILABLE = Code("8.2.1", "3.7")
ICCID_INVALID_STATE = Code("8.2.1", "3.10")
PROFILE_TYPE_UNAVAILABLE = Code("8.2.5", "3.7")
MATCHING_ID_IN_USE = Code("8.2.6", "3.3")
MATCHING_ID_INVALID_ASSOCIATION = Code("8.2.6", "3.10")


def _header():
    return field(metadata={"json": "header", "kind": RequestHeader})


def _bool(json_name: str):
    return field(metadata={"json": json_name, "kind": "bool"})


@dataclass(frozen=True)
class DownloadOrderRequest:
    """ES2+.DownloadOrder request (SGP.22 §5.3.1)."""

    FUNCTION: ClassVar[str] = "downloadOrder"
    header: RequestHeader = _header()
    eid: str | None = _str("eid", optional=True)
    iccid: str | None = _str("iccid", optional=True)
    profile_type: str | None = _str("profileType", optional=True)


@dataclass(frozen=True)
class DownloadOrderResponse:
    """ES2+.DownloadOrder response (SGP.22 §5.3.1)."""

    FUNCTION: ClassVar[str] = "downloadOrder"
    iccid: str = _str("iccid")
    header: ResponseHeader = _resp_header()


@dataclass(frozen=True)
class ConfirmOrderRequest:
    """ES2+.ConfirmOrder request (SGP.22 §5.3.2)."""

    FUNCTION: ClassVar[str] = "confirmOrder"
    header: RequestHeader = _header()
    iccid: str = _str("iccid")
    release_flag: bool = _bool("releaseFlag")
    eid: str | None = _str("eid", optional=True)
    matching_id: str | None = _str("matchingId", optional=True)
    confirmation_code: str | None = _str("confirmationCode", optional=True)
    smds_address: str | None = _str("smdsAddress", optional=True)


@dataclass(frozen=True)
class ConfirmOrderResponse:
    """ES2+.ConfirmOrder response (SGP.22 §5.3.2)."""

    FUNCTION: ClassVar[str] = "confirmOrder"
    eid: str | None = _str("eid", optional=True)
    matching_id: str | None = _str("matchingId", optional=True)
    smdp_address: str | None = _str("smdpAddress", optional=True)
    header: ResponseHeader = _resp_header()


@dataclass(frozen=True)
class CancelOrderRequest:
    """ES2+.CancelOrder request (SGP.22 §5.3.3)."""

    FUNCTION: ClassVar[str] = "cancelOrder"
    header: RequestHeader = _header()
    iccid: str = _str("iccid")
    final_profile_status_indicator: str = _str("finalProfileStatusIndicator")
    eid: str | None = _str("eid", optional=True)
    matching_id: str | None = _str("matchingId", optional=True)

    def __post_init__(self) -> None:
        if self.final_profile_status_indicator not in ("Available", "Unavailable"):
            raise Es9Error("1.2", "2.1", "finalProfileStatusIndicator must be Available or Unavailable")


@dataclass(frozen=True)
class ReleaseProfileRequest:
    """ES2+.ReleaseProfile request (SGP.22 §5.3.4)."""

    FUNCTION: ClassVar[str] = "releaseProfile"
    header: RequestHeader = _header()
    iccid: str = _str("iccid")


@dataclass(frozen=True)
class Es2Response:
    """A header-only ES2+ response (cancelOrder, releaseProfile)."""

    header: ResponseHeader = _resp_header()


REQUESTS: dict[str, type] = {
    c.FUNCTION: c for c in (DownloadOrderRequest, ConfirmOrderRequest, CancelOrderRequest, ReleaseProfileRequest)
}
RESPONSES: dict[str, type] = {
    "downloadOrder": DownloadOrderResponse,
    "confirmOrder": ConfirmOrderResponse,
    "cancelOrder": Es2Response,
    "releaseProfile": Es2Response,
}
FUNCTIONS = tuple(REQUESTS)


def parse_request(function: str, body: bytes | str) -> Any:
    """Strictly parse the request body of ES2+ ``function``."""
    cls = REQUESTS.get(function)
    if cls is None:
        raise Es9Error(*UNSUPPORTED, f"unknown ES2+ function {function!r}")
    return from_json(cls, load_json_object(body))


def request_json(request: Any) -> bytes:
    return _dump(to_json(request))


def response_json(response: Any) -> bytes:
    if isinstance(response, Es9Error):
        return _dump({"header": to_json(response.response_header())})
    return _dump(to_json(response))


def parse_response(function: str, body: bytes | str) -> Any:
    """Strictly parse an ES2+ response; a failed status raises :class:`Es9Error`."""
    cls = RESPONSES.get(function)
    if cls is None:
        raise Es9Error(*UNSUPPORTED, f"unknown ES2+ function {function!r}")
    return parse_response_as(cls, body)
