"""ES9+ client of the IPA/LPA (SGP.22 v2.5 §5.6, JSON binding §6.5) over HTTPS with httpx.

One :class:`Es9Client` per SM-DP+ and download: one keep-alive HTTPS connection, every function a POST
to ``https://<SM-DP+ address>/gsma/rsp2/es9plus/<function>`` with the §6.5.1 headers
(``Content-Type: application/json;charset=UTF-8``, ``X-Admin-Protocol``, ``User-Agent``).  Bodies are
built and parsed by :mod:`sgp32hil.harness.es9p`.

TLS: the SM-DP+ certificate is verified against a CA bundle, by default the bench PKI's trust bundle
(CI certificates, which issue CERT.DPtls, plus the test TLS CA); ``insecure=True`` turns verification
off as many LPAs do (trust then rests on the eUICC verifying CERT.DPauth/CERT.DPpb).

Errors: a ``Failed``/``Expired`` functionExecutionStatus raises :class:`~sgp32hil.harness.es9p.Es9Error`
(subject code, reason code, message); anything below the ES9+ layer (connection, TLS, timeout, HTTP
status other than 200/204, a body that is not the function's response) raises :class:`Es9TransportError`.

Every exchange is recorded as an :class:`Es9Exchange` (headers, JSON as sent and received, the base64
ASN.1 members decoded by type, timing) for report attachments.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..drivers.es10.decode import to_jsonable
from . import es9p
from .asn1 import Asn1Error
from .asn1 import decode as asn1_decode

__all__ = [
    "ASN1_MEMBERS",
    "DEFAULT_TIMEOUT",
    "Es9Client",
    "Es9Error",
    "Es9Exchange",
    "Es9TransportError",
    "USER_AGENT",
    "default_ca_bundle",
    "render_exchanges",
]

Es9Error = es9p.Es9Error

USER_AGENT = "gsma-rsp-lpad"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

# JSON members carrying base64 DER (SGP.22 §6.5.2) -> the ASN.1 type used to decode them in traces.
ASN1_MEMBERS: dict[str, str] = {
    "euiccInfo1": "EUICCInfo1",
    "serverSigned1": "ServerSigned1",
    "serverCertificate": "Certificate",
    "authenticateServerResponse": "SGP32-AuthenticateServerResponse",
    "profileMetadata": "SGP32-StoreMetadataRequest",
    "smdpSigned2": "SmdpSigned2",
    "smdpCertificate": "Certificate",
    "prepareDownloadResponse": "SGP32-PrepareDownloadResponse",
    "boundProfilePackage": "BoundProfilePackage",
    "pendingNotification": "SGP32-PendingNotification",
    "cancelSessionResponse": "SGP32-CancelSessionResponse",
}


class Es9TransportError(Exception):
    """ES9+ could not be carried out: connection, TLS, timeout, unexpected HTTP status or body.

    ``function`` is the ES9+ function, ``status_code`` the HTTP status when one was received,
    ``timeout`` True for a time-out.
    """

    def __init__(self, function: str, message: str, *, status_code: int | None = None, timeout: bool = False):
        self.function = function
        self.status_code = status_code
        self.timeout = timeout
        super().__init__(f"ES9+ {function}: {message}")


@dataclass
class Es9Exchange:
    """One ES9+ call as it crossed the interface."""

    function: str
    url: str
    request_headers: dict[str, str]
    request: dict[str, Any]
    status_code: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response: Any = None
    seconds: float = 0.0
    error: str = ""

    def decoded(self) -> dict[str, Any]:
        """Request and response with every known base64 ASN.1 member decoded (never raises)."""
        return {"request": _decode_members(self.request), "response": _decode_members(self.response)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "url": self.url,
            "status_code": self.status_code,
            "seconds": round(self.seconds, 6),
            "request_headers": self.request_headers,
            "request": self.request,
            "response_headers": self.response_headers,
            "response": self.response,
            "decoded": self.decoded(),
            "error": self.error,
        }


def _decode_members(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    out: dict[str, Any] = {}
    for name, value in body.items():
        type_name = ASN1_MEMBERS.get(name)
        if type_name and isinstance(value, str):
            try:
                der = es9p.decode_b64(value, name)
                out[name] = to_jsonable(asn1_decode(type_name, der))
            except (es9p.Es9Error, Asn1Error) as exc:
                out[name] = {"undecoded": value, "error": str(exc)}
        elif isinstance(value, dict):
            out[name] = _decode_members(value)
        else:
            out[name] = value
    return out


def render_exchanges(exchanges: list[Es9Exchange]) -> str:
    """Text rendering of ES9+ exchanges (decoded JSON) for report attachments."""
    blocks = []
    for ex in exchanges:
        status = f"HTTP {ex.status_code}" if ex.status_code is not None else "no response"
        head = f"{ex.function} {status} ({ex.seconds * 1000:.1f} ms)" + (f"  error: {ex.error}" if ex.error else "")
        decoded = ex.decoded()
        blocks.append("\n".join([
            head, f"  POST {ex.url}",
            "  request:", _indent(json.dumps(decoded["request"], indent=2)),
            "  response:", _indent(json.dumps(decoded["response"], indent=2)),
        ]))
    return "\n\n".join(blocks) + "\n"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def default_ca_bundle(pki_dir: str | os.PathLike | None = None) -> Path:
    """The bench PKI's TLS trust bundle (``tls/ca-bundle.pem``), generating the test PKI if there is none."""
    from . import pki

    bundle = pki.ensure(pki_dir, quiet=True).tls_files.get("trust_bundle")
    if bundle is None or not Path(bundle).is_file():
        raise FileNotFoundError(f"no TLS trust bundle in the PKI at {pki_dir or pki.default_dir()} "
                                "(expected tls/ca-bundle.pem; regenerate it with 'sgp32-hil pki generate')")
    return Path(bundle)


def _tls_context(ca: str | os.PathLike | None, insecure: bool, pki_dir: str | os.PathLike | None) -> ssl.SSLContext | bool:
    if insecure:
        if ca is not None:
            raise ValueError("give either a CA bundle or insecure=True, not both")
        return False
    path = Path(ca) if ca is not None else default_ca_bundle(pki_dir)
    if not path.is_file():
        raise FileNotFoundError(f"CA bundle {str(path)!r} does not exist")
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise ValueError(f"CA bundle {str(path)!r} holds no usable PEM certificates: {exc}") from None


class Es9Client:
    """ES9+ functions towards one SM-DP+ (SGP.22 §5.6), recorded in :attr:`exchanges`.

    ``address`` is the SM-DP+ Address (``host`` or ``host:port``) as in the Activation Code.  Use as a
    context manager or call :meth:`close`.  ``transport`` replaces httpx's network transport (tests).
    """

    def __init__(
        self,
        address: str,
        *,
        ca: str | os.PathLike | None = None,
        insecure: bool = False,
        pki_dir: str | os.PathLike | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        admin_protocol: str = es9p.ADMIN_PROTOCOL,
        user_agent: str = USER_AGENT,
        transport: httpx.BaseTransport | None = None,
    ):
        if not address or "/" in address:
            raise ValueError(f"SM-DP+ address must be host[:port], got {address!r}")
        if not es9p.admin_protocol_accepted(admin_protocol):
            raise ValueError(f"X-Admin-Protocol must be gsma/rsp/v2.x.y, got {admin_protocol!r}")
        self.address = address
        self.base_url = f"https://{address}"
        self.admin_protocol = admin_protocol
        self.exchanges: list[Es9Exchange] = []
        self._headers = {
            "Content-Type": es9p.CONTENT_TYPE,
            "X-Admin-Protocol": admin_protocol,
            "User-Agent": user_agent,
        }
        self._http = httpx.Client(
            base_url=self.base_url,
            verify=_tls_context(ca, insecure, pki_dir),
            timeout=timeout,
            headers=self._headers,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Es9Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def url(self, function: str) -> str:
        return f"{self.base_url}{es9p.ES9P_PATH}{function}"

    def call(self, request: Any) -> Any:
        """POST one ES9+ request dataclass of :mod:`~sgp32hil.harness.es9p`; return the parsed response
        (None for handleNotification)."""
        function = request.FUNCTION
        body = es9p.request_json(request)
        ex = Es9Exchange(function, self.url(function), dict(self._headers), json.loads(body))
        self.exchanges.append(ex)
        t0 = time.perf_counter()
        try:
            try:
                reply = self._http.post(es9p.ES9P_PATH + function, content=body)
            except httpx.TimeoutException as exc:
                raise Es9TransportError(function, f"timed out ({type(exc).__name__}) at {ex.url}",
                                        timeout=True) from None
            except httpx.HTTPError as exc:
                raise Es9TransportError(function, f"{type(exc).__name__} at {ex.url}: {exc}") from None
            finally:
                ex.seconds = time.perf_counter() - t0
            ex.status_code = reply.status_code
            ex.response_headers = dict(reply.headers)
            ex.response = _json_or_text(reply.content)
            return self._parse(function, reply)
        except (Es9Error, Es9TransportError) as exc:
            ex.error = str(exc)
            raise

    @staticmethod
    def _parse(function: str, reply: httpx.Response) -> Any:
        expected = 204 if function == "handleNotification" else 200
        if reply.status_code != expected:
            snippet = reply.text[:200]
            raise Es9TransportError(function, f"HTTP {reply.status_code} (expected {expected})"
                                    + (f": {snippet}" if snippet else ""), status_code=reply.status_code)
        if expected == 200 and not es9p.content_type_accepted(reply.headers.get("content-type")):
            raise Es9TransportError(function, f"response Content-Type {reply.headers.get('content-type')!r} "
                                    "is not application/json", status_code=reply.status_code)
        try:
            return es9p.parse_response(function, reply.content)
        except Es9Error as exc:
            if exc.header is None:
                raise Es9TransportError(function, f"malformed response: {exc}",
                                        status_code=reply.status_code) from None
            raise

    # --- ES9+ functions (SGP.22 §5.6) ---------------------------------------------------------------

    def initiate_authentication(self, euicc_challenge: bytes, euicc_info1: bytes,
                                smdp_address: str | None = None) -> es9p.InitiateAuthenticationResponse:
        """ES9+.InitiateAuthentication (SGP.22 §5.6.1); ``smdp_address`` defaults to this client's address."""
        return self.call(es9p.InitiateAuthenticationRequest(
            euicc_challenge=euicc_challenge, euicc_info1=euicc_info1, smdp_address=smdp_address or self.address))

    def authenticate_client(self, transaction_id: bytes,
                            authenticate_server_response: bytes) -> es9p.AuthenticateClientResponse:
        """ES9+.AuthenticateClient (SGP.22 §5.6.3) with the eUICC's AuthenticateServerResponse."""
        return self.call(es9p.AuthenticateClientRequest(
            transaction_id=transaction_id, authenticate_server_response=authenticate_server_response))

    def get_bound_profile_package(self, transaction_id: bytes,
                                  prepare_download_response: bytes) -> es9p.GetBoundProfilePackageResponse:
        """ES9+.GetBoundProfilePackage (SGP.22 §5.6.2) with the eUICC's PrepareDownloadResponse."""
        return self.call(es9p.GetBoundProfilePackageRequest(
            transaction_id=transaction_id, prepare_download_response=prepare_download_response))

    def handle_notification(self, pending_notification: bytes) -> None:
        """ES9+.HandleNotification (SGP.22 §5.6.4): deliver one signed notification (HTTP 204)."""
        self.call(es9p.HandleNotificationRequest(pending_notification=pending_notification))

    def cancel_session(self, transaction_id: bytes, cancel_session_response: bytes) -> es9p.CancelSessionResponse:
        """ES9+.CancelSession (SGP.22 §5.6.5) with the eUICC's CancelSessionResponse."""
        return self.call(es9p.CancelSessionRequest(
            transaction_id=transaction_id, cancel_session_response=cancel_session_response))


def _json_or_text(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content[:2000].decode("utf-8", "replace")
