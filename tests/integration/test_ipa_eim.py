"""The host IPAd against the bundled eIM and SM-DP+ (HTTPS on 127.0.0.1, verified with the PKI's trust
bundle) and the software eUICC behind pcscd/vpcd (SGP.32 v1.2 §3.1.1.1, §3.2.3.2, §2.11):

(a) indirect download via the eIM; (b) enable with the eUICC-signed result verified at the eIM, across
the REFRESH the switch causes; (c) fallback attribute, ExecuteFallbackMechanism / ReturnFromFallback with
the eIM told notifyStateChange + stateChangeCause fallback; (d) eCO addEim / deleteEim; (e) replayed and
tampered packages rejected by the card, the eIM's side showing the error; (f) eIM restart between
handing out a package and receiving its result.

Run under ``flock /tmp/sgp32hil-vpcd.lock`` (the vpcd readers are shared).
"""

from __future__ import annotations

import contextlib
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from sgp32hil.drivers.apdu.pcsc import PcscTransport
from sgp32hil.drivers.es10.client import Es10Client
from sgp32hil.drivers.es10.types import iccid_to_bcd
from sgp32hil.drivers.virtual.euicc.service import SoftEuicc
from sgp32hil.harness import pki
from sgp32hil.harness.asn1 import parse_single
from sgp32hil.harness.eim import run_in_thread as run_eim
from sgp32hil.harness.ipa import Ipa
from sgp32hil.harness.saip import make_profile
from sgp32hil.harness.smdp import ProfileState
from sgp32hil.harness.smdp import run_in_thread as run_smdp

pytestmark = pytest.mark.pcsc

ICCID = "8949001234567890136"
IMSI = "001010123456780"
PACKAGE = make_profile(ICCID, IMSI, apn="internet", name="IPA eIM One")


@pytest.fixture(scope="module")
def pkiset(tmp_path_factory):
    return pki.generate(tmp_path_factory.mktemp("pki"), curves=("nist",))


@pytest.fixture
def smdp(pkiset, tmp_path):
    with run_smdp(pkiset.root, tmp_path / "smdp.db") as running:
        running.service.address = f"127.0.0.1:{urlparse(running.es9_url).port}"
        yield running


class RefreshingCard:
    """The eUICC card as a terminal sees it: after a REFRESH request (profile switch) the card is reset
    once the current response has been read completely, as a modem does on REFRESH "UICC reset"."""

    def __init__(self, euicc: SoftEuicc):
        self.inner = euicc.card
        self.pending = False
        self.resets = 0
        euicc.isdr.refresh_listeners.append(self._on_refresh)

    def _on_refresh(self, request) -> None:
        self.pending = True

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def power_on(self) -> None:
        self.inner.power_on()

    def power_off(self) -> None:
        self.inner.power_off()

    def reset(self) -> None:
        self.inner.reset()

    def process_apdu(self, capdu: bytes) -> bytes:
        rapdu = self.inner.process_apdu(capdu)
        if self.pending and rapdu[-2:] == b"\x90\x00":
            self.pending = False
            self.resets += 1
            self.inner.reset()
        return rapdu


@dataclass
class Bench:
    euicc: SoftEuicc
    card: RefreshingCard
    reader: str
    eim: object
    smdp: object
    restart: object

    def restart_eim(self):
        """Stop the eIM and start it again on the same DB and port."""
        self.eim = self.restart(urlparse(self.eim.url).port)
        return self.eim

    def ipa(self, **kwargs) -> Ipa:
        return Ipa(lambda: PcscTransport(self.reader), ca=self.eim.ca_file, **kwargs)

    @property
    def svc(self):
        return self.eim.service

    def order(self, kind: str, **params):
        return self.svc.create_order(self.euicc.eid, kind, **params)

    def states(self) -> dict[str, str]:
        return {p.iccid: p.state for p in self.euicc.state.profiles}

    def es10(self):
        transport = PcscTransport(self.reader)
        stack = contextlib.ExitStack()
        stack.callback(transport.close)
        return stack, stack.enter_context(Es10Client(transport))


@pytest.fixture
def bench(pkiset, tmp_path, smdp, vpcd_card):
    db = tmp_path / "eim.db"
    current = []

    def start(port: int = 0):
        if current:
            current.pop().__exit__(None, None, None)
        ctx = run_eim(pkiset.root, db, port=port, smdp_ca=smdp.ca_file)
        running = ctx.__enter__()
        current.append(ctx)
        return running

    eim = start()
    euicc = SoftEuicc.open(tmp_path / "euicc", pkiset, eim_fqdn=eim.address)
    try:
        card = RefreshingCard(euicc)
        _, reader = vpcd_card(card)
        eim.service.register_euicc(euicc.eid, euicc_certificate=euicc.state.euicc_cert, result_policy="verify")
        yield Bench(euicc, card, reader, eim, smdp, start)
    finally:
        euicc.close()
        if current:
            current.pop().__exit__(None, None, None)


def _download(b: Bench, matching_id: str, *, indirect: bool):
    b.smdp.store.add_order(matching_id, package=PACKAGE, imsi=IMSI, name="IPA eIM One")
    code = f"LPA:1${b.smdp.service.address}${matching_id}"
    order = b.order("download", activation_code=code, indirect=indirect)
    result = b.ipa(download_mode="indirect" if indirect else "direct").poll()
    return order, result


def _ok(result):
    assert result.ok, (result.error, [p.to_dict() for p in result.packages])
    return result


def test_a_indirect_download_via_eim(bench):
    order, result = _download(bench, "IPA-IND-1", indirect=True)
    _ok(result)
    (pkg,) = [p for p in result.packages if p.kind == "profileDownloadTriggerRequest"]
    assert pkg.result["mode"] == "indirect" and pkg.eim_transaction_id == order.eim_transaction_id
    functions = [e.function for e in result.esipa]
    assert functions[:1] == ["GetEimPackage"]
    for f in ("InitiateAuthentication", "AuthenticateClient", "GetBoundProfilePackage", "ProvideEimPackageResult"):
        assert f in functions
    assert bench.states()[ICCID] == "disabled"
    assert bench.smdp.store.profile_state(ICCID) == ProfileState.INSTALLED
    done = bench.svc.wait_order(order.id, 10)
    assert done.status == "done", (done.status, done.error, done.result)
    assert all(e.status_code in (200, 204) for e in result.esipa)


def test_b_enable_result_verified_at_eim_across_refresh(bench):
    _ok(_download(bench, "IPA-EN-1", indirect=True)[1])
    order = bench.order("psmo", psmos=[{"enable": {"iccid": ICCID, "rollback": True}}])
    result = _ok(bench.ipa().poll())
    assert bench.card.resets == 1 and result.refreshes == 1
    assert bench.states()[ICCID] == "enabled"
    done = bench.svc.wait_order(order.id, 10)
    assert done.status == "done", (done.error, done.result)
    assert done.result.get("verified") is True
    (pkg,) = [p for p in result.packages if p.kind == "euiccPackageRequest"]
    assert pkg.result["results"] == [{"enableResult": "ok"}]
    stack, client = bench.es10()
    with stack:  # the enable/disable notifications went with the result and were acknowledged
        assert [n for n in client.retrieve_notifications_list() if n.kind != "euiccPackageResult"] == []
    # ... and the eIM passed the enable notification on to the SM-DP+ that installed the profile
    bcd = iccid_to_bcd(ICCID).hex().upper()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = [n for n in bench.smdp.store.notifications() if n["kind"] == "enable" and n["iccid"] == bcd]
        if got:
            break
        time.sleep(0.05)
    assert [n["result"] for n in got] == ["verified"], bench.svc.store.notifications(bench.euicc.eid)
    forwarded = [n for n in bench.svc.store.notifications(bench.euicc.eid) if n["kind"] == "otherSignedNotification"]
    assert forwarded and all(n["forwarded_to"] == bench.smdp.service.address for n in forwarded
                             if n["forward_address"] == bench.smdp.service.address)


def test_notification_for_an_unreachable_smdp_is_kept_and_retried(bench):
    """An acknowledged notification whose SM-DP+ cannot be reached stays in the eIM's database (a
    restart keeps it) and is forwarded once the SM-DP+ answers."""
    _ok(_download(bench, "IPA-FW-1", indirect=True)[1])
    order = bench.order("psmo", psmos=[{"enable": {"iccid": ICCID}}])
    real = bench.smdp.service.address
    bench.svc.relay.forward_notification = lambda address, raw: "ConnectError: refused (test)"
    _ok(bench.ipa().poll())
    assert bench.svc.wait_order(order.id, 10).status == "done"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pending = [n for n in bench.svc.store.notifications(bench.euicc.eid)
                   if n["kind"] == "otherSignedNotification" and n["forward_attempts"]]
        if pending:
            break
        time.sleep(0.05)
    assert pending and all(n["forwarded_to"] is None and "refused" in n["forward_error"] for n in pending)
    eim = bench.restart_eim()  # a fresh service object with the real relay; its forwarder retries
    bcd = iccid_to_bcd(ICCID).hex().upper()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if [n for n in bench.smdp.store.notifications() if n["kind"] == "enable" and n["iccid"] == bcd]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the enable notification never reached the SM-DP+: "
                             f"{eim.service.store.notifications(bench.euicc.eid)}")
    assert all(n["forwarded_to"] == real for n in eim.service.store.notifications(bench.euicc.eid)
               if n["forward_address"] == real and n["kind"] == "otherSignedNotification")


def test_c_fallback_execute_and_return(bench):
    _ok(_download(bench, "IPA-FB-1", indirect=True)[1])
    bootstrap = next(i for i in bench.states() if i != ICCID)
    order = bench.order("psmo", psmos=[{"enable": {"iccid": ICCID}}])
    _ok(bench.ipa().poll())
    assert bench.svc.wait_order(order.id, 10).status == "done"
    order = bench.order("psmo", psmos=[{"setFallbackAttribute": {"iccid": bootstrap}}])
    result = _ok(bench.ipa().poll())
    done = bench.svc.wait_order(order.id, 10)
    assert done.status == "done", (done.error, done.result)
    assert result.packages[-1].result["results"] == [{"setFallbackAttributeResult": "ok"}]
    stack, client = bench.es10()
    with stack:
        client.execute_fallback_mechanism()
    assert bench.states()[bootstrap] == "enabled"
    result = _ok(bench.ipa().poll(notify_state_change=True, state_change_cause="fallback"))
    changes = [e.detail for e in bench.svc.events(bench.euicc.eid) if e.kind == "state_change"]
    assert changes and changes[-1]["notify_state_change"] and changes[-1]["state_change_cause"] == "fallback"
    stack, client = bench.es10()
    with stack:
        client.return_from_fallback()
    assert bench.states()[ICCID] == "enabled"
    _ok(bench.ipa().poll(notify_state_change=True, state_change_cause="fallback"))


def test_d_eco_add_and_delete_eim(bench, pkiset):
    pem = pkiset.eim("nist").public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    order = bench.order("eco", ecos=[{"addEim": {"eim_id": "second-eim", "fqdn": "127.0.0.1:9",
                                                 "counter_value": 0, "public_key_pem": pem}}])
    result = _ok(bench.ipa().poll())
    assert bench.svc.wait_order(order.id, 10).status == "done"
    assert [e.eim_id for e in bench.euicc.state.eims] == ["sgp32hil-eim", "second-eim"]
    assert result.packages[-1].result["results"][0]["addEimResult"]
    order = bench.order("eco", ecos=[{"deleteEim": {"eim_id": "second-eim"}}])
    _ok(bench.ipa().poll())
    assert bench.svc.wait_order(order.id, 10).status == "done"
    assert [e.eim_id for e in bench.euicc.state.eims] == ["sgp32hil-eim"]


class Tamper(httpx.BaseTransport):
    """ESipa transport that can alter the eIM's GetEimPackage replies (a man in the middle)."""

    def __init__(self, ca_file, mutate):
        self.inner = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(ca_file)))
        self.mutate = mutate

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        if request.content[:2] != b"\xbf\x4f":
            return response
        body = response.read()
        return httpx.Response(response.status_code, headers=response.headers, content=self.mutate(body))

    def close(self):
        self.inner.close()


def _is_euicc_package(body: bytes) -> bool:
    return parse_single(body).children()[0].tag == b"\xbf\x51"


def test_e_bad_signature_and_replay_rejected(bench):
    def flip(body: bytes) -> bytes:
        if not _is_euicc_package(body):
            return body
        return body[:-1] + bytes([body[-1] ^ 0x01])  # last byte of eimSignature

    order = bench.order("psmo", psmos=[{"listProfileInfo": {}}])
    result = bench.ipa(http_transport=Tamper(bench.eim.ca_file, flip)).poll()
    (pkg,) = [p for p in result.packages if p.kind == "euiccPackageRequest"]
    assert not pkg.ok and pkg.result["type"].startswith("euiccPackageError")
    done = bench.svc.wait_order(order.id, 10)
    assert done.status == "failed", (done.status, done.result)

    captured = []

    def keep_then_replay(body: bytes) -> bytes:
        if not _is_euicc_package(body):
            return body
        if not captured:
            captured.append(body)
            return body
        return captured[0]

    ipa = bench.ipa(http_transport=Tamper(bench.eim.ca_file, keep_then_replay))
    first = bench.order("psmo", psmos=[{"listProfileInfo": {}}])
    _ok(ipa.poll())
    assert bench.svc.wait_order(first.id, 10).status == "done"
    second = bench.order("psmo", psmos=[{"getRAT": {}}])
    result = ipa.poll()
    replays = [p for p in result.packages if p.kind == "euiccPackageRequest"]
    assert replays and all(not p.ok and "replayError" in p.error for p in replays)
    assert bench.svc.get_order(second.id).status != "done"


def test_f_eim_restart_between_package_and_result(bench):
    """The eIM hands out a package, goes down and comes back on the same DB and port before the IPA
    delivers the result: the IPA reconnects, the result reaches the restarted eIM, the order completes."""
    restarted = []

    class Restart(httpx.BaseTransport):
        def __init__(self):
            self.inner = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(bench.eim.ca_file)))

        def handle_request(self, request):
            if request.content[:2] == b"\xbf\x50" and not restarted:
                restarted.append(bench.restart_eim())
            return self.inner.handle_request(request)

    order = bench.order("psmo", psmos=[{"listProfileInfo": {}}])
    result = bench.ipa(http_transport=Restart()).poll()
    assert restarted
    assert result.ok, (result.error, [p.to_dict() for p in result.packages])
    done = bench.svc.wait_order(order.id, 10)
    assert done.status == "done", (done.status, done.error)
    assert done.result.get("verified") is True
