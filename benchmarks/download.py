"""Direct profile download (SGP.22 §3.1.3) end to end: bundled SM-DP+ over HTTPS on 127.0.0.1, the IPA
procedure (:func:`sgp32hil.harness.ipa.download_profile`) and the software eUICC.

Measures two things:

- ``serial``: ITERATIONS downloads of a ~10 kB profile to one software eUICC behind vpcd, reached through
  pcscd and pyscard; each download has a fresh order and the installed profile is deleted (ES10c
  DeleteProfile, plus its notification) before the next one. Median and p99 of the whole procedure and
  the median of each phase (``DownloadResult.timings``). The first download of the process is reported
  on its own (``first_*``): it carries the one-time costs a ``sgp32-hil profile download`` command pays
  every time (lazy imports and parses), and it is never part of the median.
- ``parallel``: PARALLEL software eUICCs on the in-process transport, one thread each (own state folder,
  own ES9+ client, own ICCID), against the same SM-DP+; completed downloads per second over at most
  PARALLEL_DOWNLOADS downloads per eUICC or PARALLEL_SECONDS, whichever ends first.

Each ES9+ client is reused across its eUICC's downloads (HTTP keep-alive, as an IPA would). Uses a running
pcscd or starts one (stopped by PID at the end). Prints per-phase figures and ends with one line of
key=value figures.

    python benchmarks/download.py [--iterations 20] [--parallel 4] [--parallel-downloads 10]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgp32hil.drivers.apdu.pcsc import PcscTransport  # noqa: E402
from sgp32hil.drivers.es10.client import Es10Client  # noqa: E402
from sgp32hil.drivers.virtual.euicc.service import SoftEuicc, in_process  # noqa: E402
from sgp32hil.drivers.virtual.vpcd import VpcdBridge  # noqa: E402
from sgp32hil.harness import pki  # noqa: E402
from sgp32hil.harness.es9p_client import Es9Client  # noqa: E402
from sgp32hil.harness.ipa import PHASES, download_profile  # noqa: E402
from sgp32hil.harness.saip import make_profile  # noqa: E402
from sgp32hil.harness.services import VPCD_READERS, Pcscd, card_present, wait_until  # noqa: E402
from sgp32hil.harness.smdp import run_in_thread  # noqa: E402

PORT = 35963
READER = VPCD_READERS[PORT]
IMSI = "001010123456789"
PROFILE_BYTES = 10_000


def iccid(n: int) -> str:
    """A 19-digit ICCID with a valid Luhn check digit, distinct for each ``n``."""
    body = f"894900{n:012d}"
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def add_profile(smdp, n: int) -> tuple[str, int]:
    package = make_profile(iccid(n), IMSI, apn="internet", name=f"Bench {n}", pad_to=PROFILE_BYTES)
    smdp.store.add_profile(iccid(n), package, imsi=IMSI, name=f"Bench {n}")
    return iccid(n), len(package)


class Downloader:
    """Repeated downloads of one ICCID to one eUICC, each with a fresh order, deleting it afterwards."""

    def __init__(self, smdp, client: Es10Client, es9: Es9Client, profile_iccid: str, tag: str):
        self.smdp, self.client, self.es9, self.iccid, self.tag = smdp, client, es9, profile_iccid, tag
        self.count = 0

    def once(self):
        self.count += 1
        matching_id = f"BENCH-{self.tag}-{self.count}"
        self.smdp.store.add_order(matching_id, iccid=self.iccid)
        result = download_profile(self.client, f"LPA:1${self.smdp.service.address}${matching_id}", es9=self.es9)
        if not result.success:
            raise SystemExit(f"download {matching_id} failed: {result.error}")
        self.client.delete_profile(self.iccid)
        for note in self.client.retrieve_notifications_list():
            self.client.remove_notification_from_list(note.seq_number)
        return result


def serial(smdp, pkiset, folder: Path, iterations: int, warmup: int) -> tuple:
    profile_iccid, size = add_profile(smdp, 1)
    euicc = SoftEuicc.open(folder / "serial", pkiset)
    bridge = None
    try:
        if card_present(READER):
            raise SystemExit(f"{READER!r} already holds a card: is another vpcd bridge running?")
        bridge = VpcdBridge(euicc.card, port=PORT).start()
        wait_until(lambda: card_present(READER), 10, f"a card in {READER!r}")
        with (PcscTransport(READER) as transport, Es10Client(transport) as client,
              Es9Client(smdp.service.address, ca=smdp.ca_file) as es9):
            runner = Downloader(smdp, client, es9, profile_iccid, "S")
            first = runner.once()
            results = [runner.once() for _ in range(warmup + iterations)][warmup:]
    finally:
        if bridge is not None:
            bridge.stop()
            wait_until(lambda: not card_present(READER), 10, f"{READER!r} to see the card removed")
        euicc.close()
    return first, results, size


def parallel(smdp, pkiset, folder: Path, workers: int, per_worker: int, seconds: float) -> tuple[int, float]:
    iccids = [add_profile(smdp, 100 + i)[0] for i in range(workers)]
    done = [0] * workers
    errors: list[BaseException] = []
    ready = threading.Barrier(workers + 1)
    stop = threading.Event()

    def worker(i: int) -> None:
        try:
            soft, transport = in_process(folder / f"parallel-{i}", pkiset)
            try:
                with Es10Client(transport) as client, Es9Client(smdp.service.address, ca=smdp.ca_file) as es9:
                    runner = Downloader(smdp, client, es9, iccids[i], f"P{i}")
                    runner.once()
                    ready.wait(30)
                    while done[i] < per_worker and not stop.is_set():
                        runner.once()
                        done[i] += 1
            finally:
                soft.close()
        except BaseException as exc:
            errors.append(exc)
            ready.abort()

    threads = [threading.Thread(target=worker, args=(i,), name=f"bench-euicc-{i}", daemon=True)
               for i in range(workers)]
    for t in threads:
        t.start()
    try:
        ready.wait(60)
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    deadline = t0 + seconds
    for t in threads:
        t.join(max(0.0, deadline - time.perf_counter()))
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"parallel download failed: {errors[0]!r}")
    return sum(done), elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2, help="downloads after the first one left out")
    parser.add_argument("--parallel", type=int, default=4, help="software eUICCs downloading at once")
    parser.add_argument("--parallel-downloads", type=int, default=10, help="downloads per parallel eUICC")
    parser.add_argument("--parallel-seconds", type=float, default=60.0, help="time bound of the parallel part")
    args = parser.parse_args(argv)

    pcscd = Pcscd.ensure()
    try:
        with contextlib.ExitStack() as stack:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-download-")))
            pkiset = pki.generate(folder / "pki")
            smdp = stack.enter_context(run_in_thread(pkiset.root, folder / "smdp.db"))
            smdp.service.address = f"127.0.0.1:{urlparse(smdp.es9_url).port}"
            first, results, size = serial(smdp, pkiset, folder, args.iterations, args.warmup)
            completed, elapsed = parallel(smdp, pkiset, folder, args.parallel, args.parallel_downloads,
                                          args.parallel_seconds)
    finally:
        own_pcscd = pcscd.started_here
        pcscd.stop()

    totals = [r.total_seconds * 1000 for r in results]
    apdus = statistics.median(r.apdu_count for r in results)
    print(f"profile={size} bytes iterations={args.iterations} pcscd={'own' if own_pcscd else 'running'} "
          f"apdus={apdus:.0f}")
    for phase in PHASES:
        values = [r.timings.get(phase, 0.0) * 1000 for r in results]
        print(f"{phase:24s} median {statistics.median(values):8.2f} ms  p99 {percentile(values, 0.99):8.2f} ms")
    print(f"{'total':24s} median {statistics.median(totals):8.2f} ms  p99 {percentile(totals, 0.99):8.2f} ms")
    slowest = max(first.timings, key=first.timings.get)
    print(f"first download of the process: {first.total_seconds * 1000:.1f} ms "
          f"(slowest phase {slowest} {first.timings[slowest] * 1000:.1f} ms)")
    print(f"parallel: {completed} downloads by {args.parallel} in-process eUICCs in {elapsed:.2f} s")
    load = [r.timings.get("LoadBoundProfilePackage", 0.0) * 1000 for r in results]
    print(" ".join([
        f"median_ms={statistics.median(totals):.1f}", f"p99_ms={percentile(totals, 0.99):.1f}",
        f"load_bpp_median_ms={statistics.median(load):.1f}", f"first_ms={first.total_seconds * 1000:.1f}",
        f"first_load_bpp_ms={first.timings.get('LoadBoundProfilePackage', 0.0) * 1000:.1f}",
        f"profile_bytes={size}",
        f"downloads_per_s={completed / elapsed:.2f}", f"parallel={args.parallel}",
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
