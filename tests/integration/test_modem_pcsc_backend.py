"""The simulated modem with a PC/SC eUICC (here the software eUICC behind vpcd), both as CLI processes.

This is the lab shape "module simulator + real card in a reader": the modem opens logical channels on the
card through pcscd, learns the enabled profile over ES10, registers on that profile's network, and
notices a profile switch made through its own +CGLA (REFRESH, re-registration on the other network).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sgp32hil.drivers.apdu.modem import ModemApduTransport
from sgp32hil.drivers.at import Modem
from sgp32hil.drivers.es10.client import Es10Client
from sgp32hil.harness.services import SoftEuiccProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]
OP_ICCID = "8900102000000000018"


@pytest.fixture
def card_in_reader(pcscd, tmp_path):
    provision = tmp_path / "profiles.yaml"
    provision.write_text(f'profiles:\n  - {{iccid: "{OP_ICCID}", imsi: "001020000000001", apn: internet, name: Op}}\n')
    svc = SoftEuiccProcess.start(tmp_path / "euicc", port=35964, pki_dir=tmp_path / "pki", provision=provision)
    yield svc
    svc.stop()


@pytest.fixture
def modem_process(card_in_reader, tmp_path):
    link = tmp_path / "bg95"
    argv = [sys.executable, "-m", "sgp32hil.harness.cli", "--log-level", "info", "virtual", "modem", "--vendor", "quectel-bg95",
            "--pcsc-reader", card_in_reader.reader, "--networks", str(ROOT / "fixtures/networks/default.yaml"),
            "--link", str(link), "--sim-init", "0.1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: link.exists() or proc.poll() is not None, 20, f"the modem pty at {link}")
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
        yield link
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        print(out.decode(errors="replace")[-3000:])


def test_modem_reaches_a_pcsc_euicc_and_follows_its_profile_switch(modem_process):
    with Modem.open(os.fspath(modem_process), "quectel-bg95") as m:
        m.init()
        m.wait_sim_ready(10)
        reg = m.wait_registered(timeout=15)
        assert (reg.stat, m.operator().operator) == (1, "00101"), "bootstrap profile's network"
        assert m.iccid() == "8900101000000000019"

        transport = ModemApduTransport(m, path="cgla")
        with Es10Client(transport) as es10:
            eid = es10.get_eid()
            assert len(eid) == 32
            since = m.channel.urc_mark()
            es10.enable_profile(OP_ICCID, refresh=True)
        m.wait_for_urc("+CPIN: NOT READY", timeout=10, since=since)
        m.wait_for_urc("+CPIN: READY", timeout=10, since=since)
        deadline = time.monotonic() + 15
        while m.iccid() != OP_ICCID and time.monotonic() < deadline:
            time.sleep(0.2)
        assert m.iccid() == OP_ICCID
        reg = m.wait_registered(lambda r: r.registered and r.act == 9, timeout=15)
        assert m.operator().operator == "00102", "operational profile's network"
