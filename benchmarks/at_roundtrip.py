"""AT round trip (AT -> OK) and ES10 GetEID over +CGLA through the simulated modem on a pty.

The host side is the project's own AtChannel/Modem and ES10 client over pyserial; the module is the
simulated quectel-bg95 with the software eUICC in process.  Ends with one ``key=value`` line.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from sgp32hil.drivers.apdu.modem import ModemApduTransport
from sgp32hil.drivers.at import Modem
from sgp32hil.drivers.virtual.modem.machine import Timing
from sgp32hil.drivers.virtual.modem.service import DEFAULT_NETWORKS, open_soft_euicc_modem
from sgp32hil.harness import pki


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vendor", default="quectel-bg95")
    parser.add_argument("--at", type=int, default=2000, help="AT round trips")
    parser.add_argument("--geteid", type=int, default=300, help="GetEID calls over +CGLA")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        modem, euicc = open_soft_euicc_modem(Path(tmp) / "state", pki.generate(), args.vendor, DEFAULT_NETWORKS,
                                             Path(tmp) / "modem0", timing=Timing(sim_init_s=0.05))
        modem.start()
        try:
            with Modem.open(modem.link, args.vendor) as m:
                if m.cfun() != 1:
                    m.set_cfun(1)
                m.wait_sim_ready(5)
                at_ms = []
                for _ in range(args.at):
                    t0 = time.perf_counter()
                    m.at("AT")
                    at_ms.append((time.perf_counter() - t0) * 1000)
                transport = ModemApduTransport(m, path="cgla")
                eid_ms = []
                with transport.client() as client:
                    for _ in range(args.geteid):
                        t0 = time.perf_counter()
                        client.get_eid()
                        eid_ms.append((time.perf_counter() - t0) * 1000)
                transport.close()
        finally:
            modem.stop()
            euicc.close()
    print(f"AT round trip: {len(at_ms)} samples; GetEID over +CGLA: {len(eid_ms)} samples ({args.vendor})")
    print(f"at_median_ms={statistics.median(at_ms):.3f} at_p99_ms={percentile(at_ms, 99):.3f} "
          f"geteid_cgla_median_ms={statistics.median(eid_ms):.3f} geteid_cgla_p99_ms={percentile(eid_ms, 99):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
