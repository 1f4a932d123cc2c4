"""The eIM over HTTPS (uvicorn, eIM TLS certificate, NIST P-256): ESipa ASN.1 binding (SGP.32 v1.2 §6.1,
§6.3) at ``POST /gsma/rsp2/asn1`` and the operator REST API under ``/api/v1`` on the same listener.

ESipa requests must carry ``Content-Type: application/x-gsma-rsp-asn1`` (415 otherwise), at most
``MAX_BODY`` bytes (413) and one DER ``EsipaMessageFromIpaToEim`` (400 for garbage that is not one); the
answer is one DER ``EsipaMessageFromEimToIpa`` with ``X-Admin-Protocol: gsma/rsp/v2.1.0``, or 204 where
the function has none. The ESipa path is a bare ASGI handler (no router, no Request object); the common
empty-queue poll is answered on the event loop, everything else in the thread pool.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from .. import pki
from .api import build_api
from .esipa import CONTENT_TYPE, ESIPA_PATH, MAX_BODY, EsipaAnswer, dispatch
from .policy import Policy, load_policy
from .service import EimService
from .store import EimStore

__all__ = ["EimApp", "RunningEim", "build_app", "run_in_thread", "serve"]

log = logging.getLogger(__name__)

ADMIN_PROTOCOL = b"gsma/rsp/v2.1.0"
_CT = CONTENT_TYPE.encode()


class EimApp:
    """ASGI app: ESipa on ``ESIPA_PATH``, everything else to the Starlette API app."""

    def __init__(self, service: EimService):
        self.service = service
        self.api = Starlette(routes=build_api(service))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == ESIPA_PATH:
            await self._esipa(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    @staticmethod
    async def _send(send, status: int, body: bytes = b"", content_type: bytes = _CT, extra=()) -> None:
        headers = [(b"x-admin-protocol", ADMIN_PROTOCOL), (b"content-length", str(len(body)).encode()), *extra]
        if body:
            headers.append((b"content-type", content_type))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _text(self, send, status: int, text: str, extra=()) -> None:
        await self._send(send, status, text.encode() + b"\n", b"text/plain; charset=utf-8", extra)

    async def _esipa(self, scope, receive, send) -> None:
        if scope["method"] != "POST":
            await self._text(send, 405, "ESipa takes POST only", [(b"allow", b"POST")])
            return
        ctype = length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value
            elif name == b"content-length":
                length = value
        if ctype is None or ctype.split(b";")[0].strip().lower() != _CT:
            await self._text(send, 415, f"Content-Type must be {CONTENT_TYPE}")
            return
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await self._text(send, 413, f"body larger than {MAX_BODY} bytes")
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                await self._text(send, 413, f"body larger than {MAX_BODY} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        t0 = time.perf_counter()
        answer = self.service.fast_poll(body)
        if answer is None:
            answer = await run_in_threadpool(dispatch, self.service, body)
        # Server-Timing (W3C): the eIM's own share of the exchange, read by benchmarks/eim_polls.py.
        timing = [(b"server-timing", f"handler;dur={(time.perf_counter() - t0) * 1000:.3f}".encode())]
        await self._answer(send, answer, timing)

    async def _answer(self, send, answer: EsipaAnswer, extra=()) -> None:
        if answer.status == 200:
            await self._send(send, 200, answer.body, extra=extra)
        elif answer.status == 204:
            await self._send(send, 204, extra=extra)
        else:
            await self._text(send, answer.status, answer.error or "bad request", extra)


def build_app(service: EimService) -> EimApp:
    return EimApp(service)


def _policy(policy: Policy | str | Path | None) -> Policy | None:
    if policy is None or isinstance(policy, Policy):
        return policy
    return load_policy(policy)


def _service(pki_dir, db, *, eim_id: str, policy, accept_unknown_eids: bool, smdp_ca) -> EimService:
    pki_set = pki.ensure(pki_dir, quiet=True)
    return EimService(pki_set, EimStore(db), eim_id=eim_id, policy=_policy(policy),
                      accept_unknown_eids=accept_unknown_eids, smdp_ca=smdp_ca)


def _config(app, pki_set: pki.PkiSet, **kwargs) -> uvicorn.Config:
    chain, key = pki_set.tls_server_files(pki.Role.EIM_TLS, pki.Curve.NIST)
    return uvicorn.Config(app, ssl_certfile=str(chain), ssl_keyfile=str(key), log_level="warning", lifespan="off",
                          timeout_graceful_shutdown=2, access_log=False, timeout_keep_alive=30, **kwargs)


def _socket(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP given explicitly so asyncio sets TCP_NODELAY (no Nagle + delayed-ACK stall per answer).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def serve(host: str, port: int, pki_dir: str | Path | None, db: str | Path, *, eim_id: str = "sgp32hil-eim",
          policy: Policy | str | Path | None = None, accept_unknown_eids: bool = False,
          smdp_ca: str | Path | None = None, on_started=None) -> None:
    """Run the eIM in the foreground until SIGINT/SIGTERM (uvicorn handles both)."""
    service = _service(pki_dir, db, eim_id=eim_id, policy=policy, accept_unknown_eids=accept_unknown_eids,
                       smdp_ca=smdp_ca)
    sock = _socket(host, port)
    server = uvicorn.Server(_config(EimApp(service), service.pki, host=host, port=sock.getsockname()[1]))
    if on_started is not None:
        _watch_started(server, lambda: on_started(service, sock.getsockname()[1]))
    service.start_forwarder()
    try:
        server.run(sockets=[sock])
    finally:
        service.close()
        sock.close()


def _watch_started(server: uvicorn.Server, callback) -> None:
    def watch():
        for _ in range(3000):
            if server.started:
                callback()
                return
            threading.Event().wait(0.01)

    threading.Thread(target=watch, daemon=True, name="eim-started").start()


@dataclass
class RunningEim:
    """An eIM started by :func:`run_in_thread`."""

    service: EimService
    url: str
    address: str
    ca_file: Path

    @property
    def store(self) -> EimStore:
        return self.service.store


@contextlib.contextmanager
def run_in_thread(pki_dir: str | Path | None, db: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                  eim_id: str = "sgp32hil-eim", policy: Policy | str | Path | None = None,
                  accept_unknown_eids: bool = False, smdp_ca: str | Path | None = None) -> Iterator[RunningEim]:
    """Start the eIM (ESipa + API) on ``host:port`` (0 = ephemeral) in a thread; stop it on exit."""
    service = _service(pki_dir, db, eim_id=eim_id, policy=policy, accept_unknown_eids=accept_unknown_eids,
                       smdp_ca=smdp_ca)
    sock = _socket(host, port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(EimApp(service), service.pki, host=host, port=port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"eim-{port}", daemon=True)
    thread.start()
    service.start_forwarder()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            raise RuntimeError("eIM did not start")
        shown = f"[{host}]" if ":" in host else host
        yield RunningEim(service=service, url=f"https://{shown}:{port}", address=f"{shown}:{port}",
                         ca_file=service.pki.tls_files["trust_bundle"])
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        service.close()
