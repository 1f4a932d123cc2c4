"""Direct profile download end to end (SGP.32 §3.2.3.1, SGP.22 §3.1.3): the IPA procedure against the
bundled SM-DP+ (HTTPS on 127.0.0.1 in a thread, verified with the PKI's trust bundle) and the software
eUICC, in process and behind pcscd/vpcd."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from sgp32hil.drivers.apdu.pcsc import PcscTransport
from sgp32hil.drivers.es10.client import Es10Client
from sgp32hil.drivers.virtual.euicc.service import SoftEuicc, in_process
from sgp32hil.harness import pki
from sgp32hil.harness.ipa import PHASES, download_profile
from sgp32hil.harness.saip import make_profile
from sgp32hil.harness.smdp import ProfileState, run_in_thread

ICCID = "8949001234567890128"
IMSI = "001010123456789"
PACKAGE = make_profile(ICCID, IMSI, apn="internet", name="E2E One")


@pytest.fixture(scope="module")
def pkiset(tmp_path_factory):
    return pki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def smdp(pkiset, tmp_path):
    with run_in_thread(pkiset.root, tmp_path / "smdp.db") as running:
        running.service.address = f"127.0.0.1:{urlparse(running.es9_url).port}"
        yield running


def _order(smdp, matching_id: str, **kwargs) -> str:
    smdp.store.add_order(matching_id, package=PACKAGE, imsi=IMSI, name="E2E One", **kwargs)
    return f"LPA:1${smdp.service.address}${matching_id}"


def _installed_and_notified(client: Es10Client, smdp, result) -> None:
    assert result.success, result.error
    assert result.iccid == ICCID and result.cancel is None
    assert [p.state for p in client.get_profiles_info(iccid=ICCID)] == ["disabled"]
    assert result.notification.delivered and result.notification.removed
    assert all(n.seq_number != result.installation.seq_number for n in client.retrieve_notifications_list())
    assert smdp.store.profile_state(ICCID) == ProfileState.INSTALLED
    assert smdp.store.notifications()[-1]["result"] == "success"


def test_direct_download_in_process(pkiset, smdp, tmp_path):
    code = _order(smdp, "E2E-INPROC-1")
    euicc, transport = in_process(tmp_path / "euicc", pkiset)
    try:
        with Es10Client(transport) as client:
            events = []
            result = download_profile(client, code, ca=smdp.ca_file, progress=events.append)
            _installed_and_notified(client, smdp, result)
            assert [e.phase for e in events] == list(PHASES)
            assert [e.function for e in result.es9_exchanges] == [
                "initiateAuthentication", "authenticateClient", "getBoundProfilePackage", "handleNotification"]
            assert result.apdu_count > len(result.es10_trace) > 10
    finally:
        euicc.close()


def test_confirmation_code_refused_then_accepted(pkiset, smdp, tmp_path):
    code = _order(smdp, "E2E-CC-1", confirmation_code="7531", max_cc_attempts=3)
    euicc, transport = in_process(tmp_path / "euicc", pkiset)
    try:
        with Es10Client(transport) as client:
            wrong = download_profile(client, code + "$$1", confirmation_code="0000", ca=smdp.ca_file)
            assert not wrong.success
            assert (wrong.error.phase, wrong.error.kind) == ("GetBoundProfilePackage", "es9")
            assert wrong.cancel is not None and wrong.cancel.es10 is not None and wrong.cancel.es10.ok
            assert client.get_profiles_info(iccid=ICCID) == []
            right = download_profile(client, code + "$$1", confirmation_code="7531", ca=smdp.ca_file)
            _installed_and_notified(client, smdp, right)
    finally:
        euicc.close()


def test_unknown_matching_id_fails_at_authenticate_client_and_cancels(pkiset, smdp, tmp_path):
    euicc, transport = in_process(tmp_path / "euicc", pkiset)
    try:
        with Es10Client(transport) as client:
            result = download_profile(client, f"LPA:1${smdp.service.address}$NO-SUCH-ORDER", ca=smdp.ca_file)
            assert not result.success and result.error.phase == "AuthenticateClient"
            assert result.error.kind == "es9" and result.error.subject_code is not None
            assert result.cancel is not None and result.cancel.es10 is not None
    finally:
        euicc.close()


@pytest.mark.pcsc
def test_direct_download_through_vpcd(pkiset, smdp, tmp_path, vpcd_card):
    code = _order(smdp, "E2E-VPCD-1")
    euicc = SoftEuicc.open(tmp_path / "euicc", pkiset)
    try:
        _, reader = vpcd_card(euicc.card, port=35964)
        with PcscTransport(reader) as transport, Es10Client(transport) as client:
            result = download_profile(client, code, ca=smdp.ca_file)
            _installed_and_notified(client, smdp, result)
    finally:
        euicc.close()
