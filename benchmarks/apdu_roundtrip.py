"""APDU round trip through pyscard -> pcscd -> vpcd -> software card, against an echo card baseline.

Measures, interleaved in one run:

- ``select``: SELECT ISD-R (P2=04) on the basic channel and its GET RESPONSE (2 exchanges);
- ``geteid``: the GetEID STORE DATA ``81 E2 91 00 06 BF3E035C015A`` on channel 1 and its GET RESPONSE
  (2 exchanges);
- ``echo``: the same SELECT command, then a command carrying as many data bytes as the FCI, sent to
  the echo card on the second vpcd reader (2 exchanges of the same sizes: the transport floor).

Uses a running pcscd or starts one (stopped by PID at the end).  Prints per-operation figures and ends
with one line of key=value figures; ``ratio`` is select median / echo median (target <= 2.0).

    python benchmarks/apdu_roundtrip.py [--iterations 2000] [--backend soft|fixed|module:factory]

``soft`` (default) is the real software eUICC (factory state in a temporary folder, in-memory test PKI);
``fixed`` answers GetEID with a constant, to separate the ISD-R APDU layer from the ES10 backend.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgp32hil.drivers.apdu.base import transceive  # noqa: E402
from sgp32hil.drivers.apdu.pcsc import PcscTransport  # noqa: E402
from sgp32hil.drivers.virtual.echo import EchoCard  # noqa: E402
from sgp32hil.drivers.virtual.euicc.card import ISD_R_AID, CardStatus, Es10Backend, EuiccCard  # noqa: E402
from sgp32hil.drivers.virtual.vpcd import VpcdBridge  # noqa: E402
from sgp32hil.harness.services import Pcscd, card_present, wait_until  # noqa: E402

EUICC_PORT, EUICC_READER = 35963, "Virtual PCD 00 00"
ECHO_PORT, ECHO_READER = 35964, "Virtual PCD 00 01"

SELECT_ISDR = bytes.fromhex("00A4040410") + ISD_R_AID
GET_EID = bytes.fromhex("81E2910006BF3E035C015A")
EID = bytes.fromhex("89049032123451234512345678901235")


class FixedBackend:
    """Answers GetEID (BF3E035C015A) with BF3E 12 5A 10 <EID>; every other command with 6A88."""

    def handle(self, channel: int, command: bytes) -> bytes:
        if command == GET_EID[5:]:
            return bytes.fromhex("BF3E125A10") + EID
        raise CardStatus(0x6A88, "not supported by the benchmark backend")


def load_card(spec: str, stack: contextlib.ExitStack) -> EuiccCard:
    """``soft``, ``fixed`` or ``package.module:factory`` (a class or callable taking no arguments)."""
    if spec == "soft":
        from sgp32hil.drivers.virtual.euicc.service import SoftEuicc
        from sgp32hil.harness import pki

        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-euicc-"))
        return stack.enter_context(SoftEuicc.open(folder, pki.generate())).card
    if spec == "fixed":
        return EuiccCard(FixedBackend())
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"--backend {spec!r}: expected 'soft', 'fixed' or 'package.module:factory'")
    backend = getattr(importlib.import_module(module_name), attr)()
    if not isinstance(backend, Es10Backend):
        raise SystemExit(f"--backend {spec!r}: {type(backend).__name__} has no handle(channel, command)")
    return EuiccCard(backend)


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--backend", default="soft", help="'soft' (default), 'fixed' or package.module:factory")
    args = parser.parse_args(argv)

    pcscd = Pcscd.ensure()
    bridges: list[VpcdBridge] = []
    stack = contextlib.ExitStack()
    try:
        for reader in (EUICC_READER, ECHO_READER):
            if card_present(reader):
                raise SystemExit(f"{reader!r} already holds a card: is another vpcd bridge running?")
        bridges.append(VpcdBridge(load_card(args.backend, stack), port=EUICC_PORT).start())
        bridges.append(VpcdBridge(EchoCard(), port=ECHO_PORT).start())
        wait_until(lambda: card_present(EUICC_READER) and card_present(ECHO_READER), 10, "both vpcd cards")

        with PcscTransport(EUICC_READER) as euicc, PcscTransport(ECHO_READER) as echo:
            fci = transceive(euicc, SELECT_ISDR)
            if fci.sw != 0x9000:
                raise SystemExit(f"SELECT ISD-R failed: {fci.sw:04X}")
            if euicc.transmit(bytes.fromhex("0070000100")) != b"\x90\x00":
                raise SystemExit("MANAGE CHANNEL open 1 failed")
            transceive(euicc, bytes.fromhex("01A4040C10") + ISD_R_AID)
            eid = transceive(euicc, GET_EID)
            if eid.sw != 0x9000:
                raise SystemExit(f"GetEID failed: {eid.sw:04X}")
            echo_data = bytes([0x80, 0x12, 0x00, 0x00, len(fci.data)]) + fci.data

            def op_select() -> None:
                transceive(euicc, SELECT_ISDR)

            def op_geteid() -> None:
                transceive(euicc, GET_EID)

            def op_echo() -> None:
                echo.transmit(SELECT_ISDR)
                echo.transmit(echo_data)

            ops = {"select": op_select, "geteid": op_geteid, "echo": op_echo}
            samples: dict[str, list[float]] = {name: [] for name in ops}
            clock = time.perf_counter
            for i in range(args.warmup + args.iterations):
                for name, op in ops.items():
                    start = clock()
                    op()
                    elapsed = clock() - start
                    if i >= args.warmup:
                        samples[name].append(elapsed)
            euicc.transmit(bytes.fromhex("0070800100"))
    finally:
        for bridge in bridges:
            bridge.stop()
        stack.close()
        own_pcscd = pcscd.started_here
        pcscd.stop()

    figures = {name: summary(values) for name, values in samples.items()}
    print(f"backend={args.backend} iterations={args.iterations} pcscd={'own' if own_pcscd else 'running'}")
    print(f"GetEID response: {len(eid.data)} bytes {eid.data.hex().upper()}")
    for name, (median, p99) in figures.items():
        print(f"{name:7s} median {median:.3f} ms  p99 {p99:.3f} ms  (2 exchanges)")
    echo_median = figures["echo"][0]
    print(" ".join([
        f"select_median_ms={figures['select'][0]:.3f}", f"select_p99_ms={figures['select'][1]:.3f}",
        f"geteid_median_ms={figures['geteid'][0]:.3f}", f"geteid_p99_ms={figures['geteid'][1]:.3f}",
        f"echo_median_ms={echo_median:.3f}", f"echo_p99_ms={figures['echo'][1]:.3f}",
        f"ratio={figures['select'][0] / echo_median:.2f}",
        f"geteid_ratio={figures['geteid'][0] / echo_median:.2f}",
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
