"""ESipa GetEimPackage polling throughput of the bundled eIM (SGP.32 v1.2 §5.14.3, ASN.1 binding §6.1).

Starts ``sgp32-hil eim serve`` as a subprocess on 127.0.0.1 (own process, so the load generator does not
share its GIL), registers EIDS eUICCs through the REST API, then CLIENTS concurrent keep-alive HTTPS
connections send POLLS DER GetEimPackage requests in total (each eUICC's queue is empty, so every answer is
eimPackageError noEimPackageAvailable). The load generator is a minimal asyncio HTTP/1.1 client over
``ssl`` (pre-encoded requests, Content-Length framing) so that it costs less CPU than the server it
measures. Bounded: at most POLLS requests and --max-seconds; the server is stopped by PID at the end.

Where the time goes: the eIM reports its handler time per answer in a ``Server-Timing`` header (decode,
EID lookup, poll bookkeeping, encode); the rest of the client-observed latency is TLS, HTTP parsing,
uvicorn/asyncio scheduling and queueing behind the other connections.

    python benchmarks/eim_polls.py [--eids 100] [--clients 32] [--polls 20000]

Then (``--e2e N``, default 20) the end-to-end time of an enable: order over REST -> one IPA poll through
pcscd + vpcd -> the software eUICC switched -> the signed result verified and stored at the eIM.

Ends with one line: ``polls_per_s=… median_ms=… p99_ms=… clients=… polls=… e2e_enable_median_ms=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgp32hil.harness import asn1, pki  # noqa: E402
from sgp32hil.harness.eim import CONTENT_TYPE, ESIPA_PATH  # noqa: E402

_TIMING = re.compile(rb"server-timing: handler;dur=([0-9.]+)", re.I)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(pki_dir: Path, db: Path, port: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("sgp32-hil")
    cmd = [str(exe), "eim", "serve", "--host", "127.0.0.1", "--port", str(port), "--pki", str(pki_dir),
           "--db", str(db)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if "listening" not in line:
        proc.kill()
        raise SystemExit(f"eIM did not start: {line}{proc.stdout.read()}")
    print(line.strip())
    return proc


def register(url: str, ca: Path, eids: list[str]) -> None:
    import httpx

    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(ca)), timeout=30) as http:
        for eid in eids:
            r = http.post("/api/v1/euiccs", json={"eid": eid})
            r.raise_for_status()


def request_bytes(eid: str, port: int) -> bytes:
    body = asn1.encode("EsipaMessageFromIpaToEim", ("getEimPackageRequest", {"eidValue": bytes.fromhex(eid)}))
    head = (f"POST {ESIPA_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"X-Admin-Protocol: gsma/rsp/v2.1.0\r\nUser-Agent: gsma-rsp-ipad\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return head, body


async def client(port: int, ctx: ssl.SSLContext, requests: list[bytes], counter: list[int], limit: int,
                 deadline: float, lat: list[float], handler: list[float], expected: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    i = 0
    try:
        while counter[0] < limit and time.monotonic() < deadline:
            counter[0] += 1
            req = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            writer.write(req)
            head, body = await read_response(reader)
            lat.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200") or body != expected:
                raise RuntimeError(f"unexpected answer: {head[:40]!r} {body.hex()}")
            m = _TIMING.search(head)
            if m:
                handler.append(float(m.group(1)) / 1000)
    finally:
        writer.close()


async def run_load(port: int, ca: Path, eids: list[str], clients: int, polls: int, max_s: float):
    ctx = ssl.create_default_context(cafile=str(ca))
    reqs = [request_bytes(e, port) for e in eids]
    expected = asn1.encode("EsipaMessageFromEimToIpa", ("getEimPackageResponse", ("eimPackageError", 1)))
    counter, lat, handler = [0], [], []
    deadline = time.monotonic() + max_s
    progress_stop = asyncio.Event()

    async def progress():
        last = 0
        while not progress_stop.is_set():
            await asyncio.sleep(2)
            print(f"  {len(lat)} polls ({(len(lat) - last) / 2:.0f}/s)", flush=True)
            last = len(lat)

    ptask = asyncio.create_task(progress())
    t0 = time.perf_counter()
    per = [reqs[k::clients] or reqs for k in range(clients)]
    await asyncio.gather(*(client(port, ctx, per[k], counter, polls, deadline, lat, handler, expected)
                           for k in range(clients)))
    elapsed = time.perf_counter() - t0
    progress_stop.set()
    ptask.cancel()
    return elapsed, lat, handler


OPERATIONAL = "8900102000000000018"
BOOTSTRAP = "8900101000000000019"
VPCD_PORT = 35963


def end_to_end_enable(url: str, ca: Path, pki_dir: Path, folder: Path, iterations: int, warmup: int = 2) -> dict:
    """Order an enable PSMO over the REST API -> one IPA poll (GetEimPackage, ES10b LoadEuiccPackage through
    pyscard -> pcscd -> vpcd, ProvideEimPackageResult, acknowledgements) -> the eUICC switched -> the signed
    result verified and stored at the eIM. Alternates between the bootstrap and an operational profile.
    Returns the figures to print; ``{}`` (with a message) when the vpcd reader is busy."""
    import httpx

    from sgp32hil.drivers.apdu.pcsc import PcscTransport
    from sgp32hil.drivers.virtual.euicc.service import SoftEuicc
    from sgp32hil.drivers.virtual.vpcd import VpcdBridge
    from sgp32hil.harness.ipa import Ipa
    from sgp32hil.harness.services import VPCD_READERS, Pcscd, card_present, wait_until

    reader = VPCD_READERS[VPCD_PORT]
    daemon = Pcscd.ensure()
    try:
        if card_present(reader):
            print(f"end-to-end enable skipped: {reader!r} already holds a card")
            return {}
        provision = folder / "profiles.yaml"
        provision.write_text(f'- {{iccid: "{OPERATIONAL}", imsi: "001020000000001", apn: internet, name: Operational}}\n')
        port = url.rsplit(":", 1)[1]
        euicc = SoftEuicc.open(folder / "euicc", pki.ensure(pki_dir, quiet=True), provision=provision,
                               eim_fqdn=f"127.0.0.1:{port}")
        bridge = VpcdBridge(euicc.card, port=VPCD_PORT).start()
        samples: list[float] = []
        polls: list[float] = []
        try:
            wait_until(lambda: card_present(reader), 10, f"a card in {reader!r}")
            cert = euicc.isdr.state.euicc_cert.hex()
            eid = euicc.isdr.state.eid
            http = httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(ca)), timeout=30)
            with http:
                http.post("/api/v1/euiccs", json={"eid": eid, "euicc_certificate": cert}).raise_for_status()
                ipa = Ipa(lambda: PcscTransport(reader), eim_url=url, ca=ca)
                for i in range(warmup + iterations):
                    target = OPERATIONAL if i % 2 == 0 else BOOTSTRAP
                    t0 = time.perf_counter()
                    r = http.post("/api/v1/orders", json={"eid": eid, "kind": "psmo",
                                                          "psmos": [{"enable": {"iccid": target}}]})
                    r.raise_for_status()
                    order_id = r.json()["id"]
                    t1 = time.perf_counter()
                    result = ipa.poll()
                    t2 = time.perf_counter()
                    order = http.get(f"/api/v1/orders/{order_id}").json()
                    t3 = time.perf_counter()
                    if order.get("status") != "done" or not (order.get("result") or {}).get("verified"):
                        raise SystemExit(f"enable {target}: order {order_id} ended {order.get('status')}: "
                                         f"{order.get('error')} (poll: {result.error or 'ok'})")
                    if euicc.isdr.state.enabled_profile().iccid != target:
                        raise SystemExit(f"enable {target}: the eUICC did not switch")
                    if i >= warmup:
                        samples.append(t3 - t0)
                        polls.append(t2 - t1)
        finally:
            bridge.stop()
            wait_until(lambda: not card_present(reader), 10, f"{reader!r} to see the card removed")
            euicc.close()
    finally:
        daemon.stop()
    return {
        "e2e_enable_median_ms": f"{statistics.median(samples) * 1000:.1f}",
        "e2e_enable_p99_ms": f"{pct(samples, 0.99) * 1000:.1f}",
        "e2e_poll_median_ms": f"{statistics.median(polls) * 1000:.1f}",
        "e2e_iterations": str(len(samples)),
    }


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eids", type=int, default=100)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--polls", type=int, default=20000)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--e2e", type=int, default=20, help="end-to-end enable iterations through pcscd (0: skip)")
    ap.add_argument("--pki", default=None, help="PKI directory (default: a fresh one in a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="eim-bench-") as tmp:
        pki_dir = Path(args.pki) if args.pki else Path(tmp) / "pki"
        pki_set = pki.ensure(pki_dir, quiet=True)
        ca = pki_set.tls_files["trust_bundle"]
        port = free_port()
        proc = start_server(pki_dir, Path(tmp) / "eim.sqlite", port)
        try:
            url = f"https://127.0.0.1:{port}"
            eids = [pki.make_eid(pki_set.eum_eins[0], 100000 + i) for i in range(args.eids)]
            register(url, ca, eids)
            print(f"registered {len(eids)} EIDs; {args.clients} keep-alive clients, {args.polls} polls")
            # warm-up (TLS handshakes, first-use imports), not measured
            asyncio.run(run_load(port, ca, eids, min(args.clients, 4), 200, 10))
            elapsed, lat, handler = asyncio.run(run_load(port, ca, eids, args.clients, args.polls, args.max_seconds))
            extra = end_to_end_enable(url, ca, pki_dir, Path(tmp), args.e2e) if args.e2e else {}
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    n = len(lat)
    rate = n / elapsed
    med, p99 = statistics.median(lat) * 1000, pct(lat, 0.99) * 1000
    h_med = statistics.median(handler) * 1000 if handler else float("nan")
    h_mean = statistics.fmean(handler) * 1000 if handler else float("nan")
    per_poll_cpu_ms = 1000 / rate
    print(f"where the time goes (per poll): server wall per poll at saturation {per_poll_cpu_ms:.3f} ms; "
          f"eIM handler median {h_med:.3f} ms, mean {h_mean:.3f} ms "
          f"({100 * h_mean / per_poll_cpu_ms:.0f}% of the server's per-poll budget); the rest is TLS, HTTP "
          f"(h11) parsing, uvicorn/asyncio; client latency median {med:.2f} ms includes queueing behind "
          f"{args.clients - 1} other connections")
    tail = "".join(f" {k}={v}" for k, v in extra.items())
    print(f"polls_per_s={rate:.0f} median_ms={med:.2f} p99_ms={p99:.2f} clients={args.clients} polls={n}{tail}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
