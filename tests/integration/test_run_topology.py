"""The virtual bench's topology as ``sgp32-hil run`` starts it: one software eUICC inside the simulated
modem process and, at the same time, in vpcd reader 0. Both terminals reach the same card, concurrently,
without corrupting each other's exchanges; a REFRESH reset from the MT closes the reader side's channels
(as a UICC reset does) while the MT reports +CPIN NOT READY -> READY.

Needs pcscd/vpcd (reader 0): run under ``flock /tmp/sgp32hil-vpcd.lock``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sgp32hil.drivers.apdu.base import ApduError, TransportError
from sgp32hil.drivers.apdu.modem import ModemApduTransport
from sgp32hil.drivers.apdu.pcsc import PcscTransport
from sgp32hil.drivers.at.driver import Modem
from sgp32hil.drivers.es10.client import Es10Client, Es10Error
from sgp32hil.harness.services import Pcscd, VirtualModemProcess, card_present

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.pcsc


@pytest.fixture
def topology(tmp_path):
    pcscd = Pcscd.ensure()
    proc = VirtualModemProcess.start(tmp_path / "run", tmp_path / "state", vpcd_port=35963,
                                     networks=ROOT / "fixtures" / "networks" / "default.yaml",
                                     pki_dir=ROOT / "fixtures" / "pki" / "generated", eim_fqdn="127.0.0.1:1")
    try:
        yield proc
    finally:
        proc.stop()
        pcscd.stop()


def test_one_card_two_terminals(topology):
    assert card_present(topology.reader)
    info = topology.call("euicc_info")
    with Modem.open(str(topology.link), "quectel-bg95") as modem:
        modem.wait_sim_ready(5, poll_s=0.1)
        assert modem.iccid() == info["enabled_iccid"]
        errors: list[str] = []

        def loop(name, open_transport, n=15):
            try:
                for _ in range(n):
                    transport = open_transport()
                    try:
                        with Es10Client(transport) as c:
                            if c.get_eid() != info["eid"]:
                                errors.append(f"{name}: wrong EID")
                            if [p.iccid for p in c.get_profiles_info()] != [info["enabled_iccid"]]:
                                errors.append(f"{name}: wrong profiles")
                    finally:
                        transport.close()
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(f"{name}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=loop, args=("pcsc", lambda: PcscTransport(topology.reader))),
                   threading.Thread(target=loop, args=("modem", lambda: ModemApduTransport(modem)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors

        # REFRESH (UICC reset) from the MT: the reader's open channel is gone, the MT re-reads the card
        transport = PcscTransport(topology.reader)
        try:
            with Es10Client(transport) as client:
                client.get_eid()
                mark = modem.channel.urc_mark()
                topology.call("refresh")
                modem.wait_for_urc("+CPIN: NOT READY", 5, since=mark)
                modem.wait_for_urc("+CPIN: READY", 5, since=mark)
                with pytest.raises((Es10Error, ApduError, TransportError)):
                    client.get_eid()
        finally:
            transport.close()
        assert topology.call("status")["refresh_count"] == 1
        with PcscTransport(topology.reader) as fresh, Es10Client(fresh) as again:
            assert again.get_eid() == info["eid"]
