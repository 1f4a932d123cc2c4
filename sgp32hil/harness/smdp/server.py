"""The bundled SM-DP+ over HTTPS: ES9+ (SGP.22 §6.5.2.x) and ES2+ (§5.3) on Starlette/uvicorn.

ES9+ is served with the DPtls certificate (NIST P-256: the TLS stack has no brainpool groups);
ES2+ runs on its own listener that requires an operator client certificate issued by the PKI's
TLS CA (``client-ca.pem``), because one uvicorn listener has a single client-certificate policy.

Every request is a POST with ``Content-Type: application/json`` and ``X-Admin-Protocol:
gsma/rsp/v2.x.y``. Failures are answered with HTTP 200 and a ``Failed`` header carrying the
SGP.22 status code; unexpected exceptions are logged and answered with 1.2/4.2 (Execution Error).
handleNotification answers HTTP 204 with no body.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import es2p, es9p, pki
from ..es9p import Es9Error
from .preload import load_preload
from .service import SmdpService
from .store import SmdpStore

__all__ = ["RunningSmdp", "build_apps", "run_in_thread", "serve"]

log = logging.getLogger(__name__)

_JSON_HEADERS = {"X-Admin-Protocol": es9p.ADMIN_PROTOCOL}


def _json(body: bytes) -> Response:
    return Response(body, status_code=200, media_type=es9p.CONTENT_TYPE, headers=_JSON_HEADERS)


def _endpoint(parse: Callable, handler: Callable, render: Callable, function: str, *, no_content: bool = False):
    async def endpoint(request: Request) -> Response:
        if not es9p.content_type_accepted(request.headers.get("content-type")):
            return _json(render(Es9Error(*es9p.INVALID, "Content-Type must be application/json;charset=UTF-8")))
        if not es9p.admin_protocol_accepted(request.headers.get("x-admin-protocol")):
            return _json(render(Es9Error(*es9p.UNSUPPORTED, "X-Admin-Protocol must be gsma/rsp/v2.x.y")))
        try:
            body = await request.body()
            req = parse(function, body)
            result = await run_in_threadpool(handler, req)
        except Es9Error as exc:
            log.info("%s failed: %s", function, exc)
            return _json(render(exc))
        except Exception:
            log.exception("%s: unexpected error", function)
            return _json(render(Es9Error(*es9p.EXECUTION_ERROR, "internal error")))
        if no_content:
            return Response(status_code=204, headers=_JSON_HEADERS)
        return _json(render(result))

    return endpoint


def build_apps(service: SmdpService) -> tuple[Starlette, Starlette]:
    """(ES9+ app, ES2+ app) for ``service``."""
    es9_handlers = {
        "initiateAuthentication": service.initiate_authentication,
        "authenticateClient": service.authenticate_client,
        "getBoundProfilePackage": service.get_bound_profile_package,
        "handleNotification": service.handle_notification,
        "cancelSession": service.cancel_session,
    }
    es9_routes = [
        Route(
            es9p.ES9P_PATH + name,
            _endpoint(es9p.parse_request, handler, es9p.response_json, name, no_content=name == "handleNotification"),
            methods=["POST"],
        )
        for name, handler in es9_handlers.items()
    ]
    es2_handlers = {
        "downloadOrder": service.download_order,
        "confirmOrder": service.confirm_order,
        "cancelOrder": service.cancel_order,
        "releaseProfile": service.release_profile,
    }
    es2_routes = [
        Route(es2p.ES2P_PATH + name, _endpoint(es2p.parse_request, handler, es2p.response_json, name), methods=["POST"])
        for name, handler in es2_handlers.items()
    ]
    return Starlette(routes=es9_routes), Starlette(routes=es2_routes)


def _service(pki_dir: str | Path | None, db: str | Path, preload: str | Path | None, **kwargs) -> SmdpService:
    pki_set = pki.ensure(pki_dir, quiet=True)
    store = SmdpStore(db)
    if preload is not None:
        load_preload(store, preload)
    return SmdpService(pki_set, store, **kwargs)


def _config(app, pki_set: pki.PkiSet, *, client_cert: bool, **kwargs) -> uvicorn.Config:
    chain, key = pki_set.tls_server_files(pki.Role.DP_TLS, pki.Curve.NIST)
    extra = {}
    if client_cert:
        extra = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(pki_set.tls_files["client_ca"])}
    return uvicorn.Config(
        app, ssl_certfile=str(chain), ssl_keyfile=str(key), log_level="warning", lifespan="off",
        timeout_graceful_shutdown=2, **extra, **kwargs,
    )


def default_address(host: str, port: int) -> str:
    return host if port == 443 else f"{host}:{port}"


def serve(
    host: str,
    port: int,
    pki_dir: str | Path | None,
    db: str | Path,
    es2_port: int | None = None,
    preload: str | Path | None = None,
    address: str | None = None,
) -> None:
    """Run the SM-DP+ in the foreground until interrupted (ES2+ only when ``es2_port`` is given).

    ``address`` is the SM-DP+ address that activation codes and ``smdpAddress`` must carry (SGP.22 §4.1);
    by default ``HOST:PORT`` (``HOST`` alone on 443).
    """
    import asyncio

    service = _service(pki_dir, db, preload, address=address or default_address(host, port))
    es9_app, es2_app = build_apps(service)
    servers = [uvicorn.Server(_config(es9_app, service.pki, client_cert=False, host=host, port=port))]
    if es2_port is not None:
        servers.append(uvicorn.Server(_config(es2_app, service.pki, client_cert=True, host=host, port=es2_port)))

    async def main() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    try:
        asyncio.run(main())
    finally:
        service.store.close()


@dataclass
class RunningSmdp:
    """A server started by :func:`run_in_thread`."""

    service: SmdpService
    es9_url: str
    es2_url: str | None
    ca_file: Path
    client_cert: tuple[str, str] | None

    @property
    def store(self) -> SmdpStore:
        return self.service.store


def _start(app, config_kwargs: dict, pki_set: pki.PkiSet, client_cert: bool) -> tuple[uvicorn.Server, threading.Thread, int]:
    # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every ES9+ reply stalls ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, pki_set, client_cert=client_cert, host="127.0.0.1", port=port, **config_kwargs))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"smdp-{port}", daemon=True)
    thread.start()
    for _ in range(500):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    if not server.started:
        server.should_exit = True
        thread.join(5)
        sock.close()
        raise RuntimeError("SM-DP+ did not start")
    return server, thread, port


@contextlib.contextmanager
def run_in_thread(
    pki_dir: str | Path | None,
    db: str | Path,
    *,
    es2: bool = False,
    preload: str | Path | None = None,
    address: str | None = None,
    ppk: tuple[bytes, bytes, bytes] | None = None,
) -> Iterator[RunningSmdp]:
    """Start the SM-DP+ on 127.0.0.1 with ephemeral ports (ES2+ too when ``es2``); stop it on exit."""
    service = _service(pki_dir, db, preload, address=address, ppk=ppk)
    es9_app, es2_app = build_apps(service)
    started: list[tuple[uvicorn.Server, threading.Thread]] = []
    try:
        server, thread, port = _start(es9_app, {}, service.pki, False)
        started.append((server, thread))
        es2_url = None
        if es2:
            server2, thread2, port2 = _start(es2_app, {}, service.pki, True)
            started.append((server2, thread2))
            es2_url = f"https://127.0.0.1:{port2}"
        op = service.pki.operator_tls()
        client = None
        if op is not None and "operator_chain_NIST" in service.pki.tls_files:
            files = service.pki.tls_files
            client = (str(files["operator_chain_NIST"]), str(files["operator_key_NIST"]))
        yield RunningSmdp(
            service=service,
            es9_url=f"https://127.0.0.1:{port}",
            es2_url=es2_url,
            ca_file=service.pki.tls_files["trust_bundle"],
            client_cert=client,
        )
    finally:
        for server, _ in started:
            server.should_exit = True
        for _, thread in started:
            thread.join(10)
        service.store.close()
