"""Flows against scripted fakes: step budgets, failure messages that name the step and the module's view,
PLMN decoding, infrastructure classification for reruns, the shared card of the virtual bench."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from sgp32hil.drivers.at.errors import AtTimeout, PortGone
from sgp32hil.drivers.at.parsers import OperatorSelection, Registration
from sgp32hil.drivers.virtual.modem.service import SharedCard
from sgp32hil.harness import flows, plugin
from sgp32hil.harness.bench import Budgets
from sgp32hil.harness.report import Kpis, NoAnswer, ReaderGone


class FakeModem:
    """Answers like the driver: a registration that never becomes registered, ICCID/IMSI, COPS."""

    def __init__(self, stat=3, cause=15, plmn=None, iccid="8900102000000000018", imsi="001020000000001"):
        self.reg = Registration(domain="+CEREG", stat=stat, n=5, reject_cause=cause, cause_type=0 if cause else None)
        self.plmn, self._iccid, self.imsi = plmn, iccid, imsi
        self.commands = []

    def wait_registered(self, predicate=None, timeout=300.0, domain="+CEREG", poll_s=10.0):
        if self.reg.registered:
            return self.reg
        raise AtTimeout("wait_registered(+CEREG)", timeout, reason="last state denied")

    def registration(self, domain="+CEREG"):
        return self.reg

    def at(self, cmd, **kw):
        self.commands.append(cmd)
        if cmd == "AT+CIMI":
            return SimpleNamespace(lines=[self.imsi])
        return SimpleNamespace(lines=[])

    def operator(self):
        return OperatorSelection(mode=0, format=2, operator=self.plmn, act=9 if self.plmn else None)

    def iccid(self):
        return self._iccid


def test_registration_failure_names_flow_step_state_iccid_imsi():
    chain = flows.Chain("enable_switch", Budgets(attach=0.2))
    with pytest.raises(flows.FlowError) as err:
        flows.wait_registered(chain, FakeModem(), 0.2, "00102", "after REFRESH")
    msg = str(err.value)
    assert msg.startswith("enable_switch: registered on no network within 0.2 s after REFRESH (expected PLMN 00102)")
    assert "+CEREG: 3 (registration denied, reject cause 15)" in msg
    assert "ICCID 8900102000000000018 IMSI 001020000000001" in msg
    assert isinstance(err.value, AssertionError)


def test_registered_on_the_wrong_plmn_is_a_failure():
    modem = FakeModem(stat=1, cause=None, plmn="00101")
    chain = flows.Chain("enable_switch", Budgets())
    with pytest.raises(flows.FlowError, match="registered on 00101, not on 00102"):
        flows.wait_registered(chain, modem, 0.3, "00102", "after REFRESH")
    reg, plmn = flows.wait_registered(chain, modem, 0.3, "00101", "after CFUN=1")
    assert reg.registered and plmn == "00101"


def test_step_over_budget_fails_with_step_and_budget():
    chain = flows.Chain("download (direct)", Budgets(download=0.05))
    with pytest.raises(flows.BudgetExceeded) as err:
        with chain.step("IPA poll executes the download", budget="download"):
            time.sleep(0.1)
    assert "step 'IPA poll executes the download'" in str(err.value)
    assert "over its budget of 0.05 s (bench budgets.download)" in str(err.value)
    with chain.step("quick", budget="download"):
        pass
    assert chain.result.steps[-1][0] == "quick"


def test_kpis_shared_with_the_test():
    kp = Kpis()
    chain = flows.Chain("bootstrap_attach", Budgets(), kp)
    chain.kpis.record("time_to_register_s", 0.5, "s")
    assert kp["time_to_register_s"].value == 0.5


@pytest.mark.parametrize("value, digits", [("00F110", "00101"), ("00F120", "00102"), (bytes.fromhex("130062"), "310260"),
                                           ("130062", "310260"),
                                           ("00101", "00101"), (None, None)])
def test_plmn_digits(value, digits):
    assert flows.plmn_digits(value) == digits


def test_network_plmns_from_the_bench_file(tmp_path):
    f = tmp_path / "n.yaml"
    f.write_text("networks:\n  - {name: bootstrap, plmn: '00101'}\n  - {name: operational, plmn: '00102'}\n")
    bench = SimpleNamespace(networks=f)
    assert flows.network_plmns(bench) == {"bootstrap": "00101", "operational": "00102"}
    assert flows.expected_plmn(bench, "operational") == "00102"
    assert flows.expected_plmn(SimpleNamespace(networks=None), "operational") is None
    f.write_text("networks: [{plmn: x}]\n")
    with pytest.raises(ValueError, match="n.yaml"):
        flows.network_plmns(bench)


def test_poll_without_eim_is_infrastructure_and_other_errors_are_failures():
    chain = flows.Chain("bootstrap_attach", Budgets())
    down = SimpleNamespace(poll=lambda **kw: SimpleNamespace(error="eIM unreachable", infrastructure=True,
                                                             esipa=[], es10=[], to_dict=lambda: {}))
    with pytest.raises(NoAnswer, match="eIM unreachable"):
        flows.run_poll(chain, down, "bootstrap poll")
    bad = SimpleNamespace(poll=lambda **kw: SimpleNamespace(error="invalid package", infrastructure=False,
                                                            esipa=[], es10=[], to_dict=lambda: {}))
    with pytest.raises(flows.FlowError, match="bootstrap poll stopped: invalid package"):
        flows.run_poll(chain, bad, "bootstrap poll")


def test_only_classified_infrastructure_errors_are_rerun():
    from sgp32hil.drivers.apdu.base import TransportError

    assert plugin.infrastructure_failure(PortGone("port gone: EIO"))
    assert plugin.infrastructure_failure(ReaderGone("reader unplugged"))
    assert plugin.infrastructure_failure(TransportError("no PC/SC reader matches 'x'; readers: "))
    wrapped = RuntimeError("step failed")
    wrapped.__cause__ = PortGone("gone")
    assert plugin.infrastructure_failure(wrapped)
    assert not plugin.infrastructure_failure(flows.FlowError("f", "s", "registered on no network"))
    assert not plugin.infrastructure_failure(TransportError("transmit of 80E29100 failed: 6F00"))
    assert not plugin.infrastructure_failure(ValueError("bad"))
    product = AssertionError("ICCID unchanged")
    product.__context__ = PortGone("earlier, handled")
    assert not plugin.infrastructure_failure(product)


class CountingCard:
    def __init__(self):
        self.powered = False
        self.events = []
        self.atr = b"\x3b\x00"

    def power_on(self):
        self.powered = True
        self.events.append("on")

    def power_off(self):
        self.powered = False
        self.events.append("off")

    def reset(self):
        self.events.append("reset")

    def process_apdu(self, capdu):
        self.events.append(capdu.hex())
        return b"\x90\x00"


def test_shared_card_mt_owns_power_reader_cannot_pull_it():
    card = CountingCard()
    shared = SharedCard(card)
    shared.guest.power_on()            # the reader may power a card the MT left off
    assert card.events == ["on"]
    shared.owner.power_on()
    shared.guest.power_off()
    shared.guest.reset()                # pcscd housekeeping does not reset the MT's channels
    shared.guest.power_on()            # already powered: no second cold reset
    assert card.events == ["on", "on"]
    shared.owner.reset()
    shared.owner.power_off()
    assert card.events == ["on", "on", "reset", "off"]
    assert shared.guest.process_apdu(b"\x00\x70\x00\x00\x01") == b"\x90\x00"
    assert shared.guest.atr == card.atr


def test_shared_card_serialises_apdus():
    import threading

    inside = []
    overlap = []

    class Slow(CountingCard):
        def process_apdu(self, capdu):
            inside.append(1)
            if len(inside) > 1:
                overlap.append(True)
            time.sleep(0.005)
            inside.pop()
            return b"\x90\x00"

    shared = SharedCard(Slow())
    threads = [threading.Thread(target=lambda t=t: [t.process_apdu(b"\x00\xa4\x04\x00") for _ in range(20)])
               for t in (shared.owner, shared.guest)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap


def test_pdn_gate_waits_for_service_fails_without_it_and_setup_bypasses():
    import httpx

    sent = []

    class Inner(httpx.BaseTransport):
        def handle_request(self, request):
            sent.append(request.url.path)
            return httpx.Response(204)

    link = {"up": False}
    gate = flows.PdnGate(Inner(), lambda: link["up"], wait_s=0.2)
    client = httpx.Client(transport=gate, base_url="https://eim.example")
    start = time.monotonic()
    with pytest.raises(httpx.ConnectError, match=flows.NO_DATA_CONNECTION):
        client.post("/gsma/rsp2/asn1")
    assert time.monotonic() - start >= 0.2 and sent == []
    ipa = SimpleNamespace(http_transport=gate)
    with flows.setup_path(ipa):
        assert client.post("/setup").status_code == 204
    with pytest.raises(httpx.ConnectError):
        client.post("/after")
    threading_timer = __import__("threading").Timer(0.1, lambda: link.update(up=True))
    threading_timer.start()
    assert client.post("/late").status_code == 204
    assert sent == ["/setup", "/late"]
    # a module that errors while refreshing counts as no service, not as a crash
    flaky = flows.PdnGate(Inner(), lambda: 1 / 0, wait_s=0.1)
    with pytest.raises(httpx.ConnectError):
        httpx.Client(transport=flaky, base_url="https://e").post("/x")
    assert isinstance(flows.setup_path(SimpleNamespace()), type(__import__("contextlib").nullcontext()))


def test_no_data_connection_is_a_product_outcome_not_infrastructure():
    chain = flows.Chain("enable_switch", Budgets())
    stranded = SimpleNamespace(poll=lambda **kw: SimpleNamespace(
        error="ESipa GetEimPackage: ConnectError: no data connection: the device has no registration",
        infrastructure=True, esipa=[], es10=[], to_dict=lambda: {}))
    with pytest.raises(flows.FlowError, match="no data connection"):
        flows.run_poll(chain, stranded, "result poll")
