"""Profile download through the eIM (SGP.33 "profile download" family; SGP.32 v1.2 §3.2.1
profileDownloadTrigger, §3.2.3.1 direct and §3.2.3.2 indirect download, SGP.22 §3.1.3 ES9+/ES10b): the
profile ends up on the card disabled, the notifications reach the SM-DP+, the eIM holds the result."""

from __future__ import annotations

import pytest

from sgp32hil.harness import flows


@pytest.mark.parametrize("indirect", [False, True], ids=["direct", "indirect"])
@pytest.mark.testcase("HIL-DL-001", "Profile download triggered by the eIM: installed disabled, notified",
                      family="SGP.33 profile download", story="Download without confirmation code")
def test_download(bench, without_operational, new_order, ipa, eim, open_es10, eid, kpis, indirect, smdp):
    res = flows.download(bench, ipa, eim, open_es10, eid=eid, activation_code=new_order(),
                         iccid=without_operational.iccid, indirect=indirect, kpis=kpis)
    assert "download_s" in res.kpis and res.kpis["apdu_count"].value > 10
    from sgp32hil.harness.smdp import ProfileState

    assert smdp.store.profile_state(without_operational.iccid) == ProfileState.INSTALLED


@pytest.mark.testcase("HIL-DL-002", "Download order cancelled at the eIM before the poll: nothing reaches the card",
                      family="SGP.33 profile download", story="Download cancelled by the operator")
def test_download_cancelled_at_eim(bench, without_operational, new_order, ipa, eim, open_es10, eid):
    oid = flows.order_id(eim.service.create_order(eid, "download", activation_code=new_order(), indirect=False))
    assert eim.service.cancel_order(oid).status == "cancelled"
    poll = ipa.poll()
    assert not poll.error, poll.error
    assert not flows.poll_packages(poll, "download"), f"a cancelled order reached the IPA: {poll.to_dict()['packages']}"
    assert without_operational.iccid not in flows.profiles(open_es10)
    assert eim.service.get_order(oid).status == "cancelled"


def _ipa_takes_confirmation_code(ipa) -> None:
    if not hasattr(ipa, "confirmation_code"):
        pytest.skip("the host IPAd takes no Confirmation Code (no Ipa.confirmation_code): SGP.32 leaves its entry to "
                    "the device; a bench with such an IPA runs this case")


@pytest.mark.parametrize("indirect", [False, True], ids=["direct", "indirect"])
@pytest.mark.testcase("HIL-DL-003", "Confirmation code required and given: the profile is installed",
                      family="SGP.33 profile download", story="Download with confirmation code")
def test_download_with_confirmation_code(bench, without_operational, new_order, ipa, eim, open_es10, eid, kpis,
                                         indirect):
    _ipa_takes_confirmation_code(ipa)
    ipa.confirmation_code = "7531"
    flows.download(bench, ipa, eim, open_es10, eid=eid, activation_code=new_order(confirmation_code="7531"),
                   iccid=without_operational.iccid, indirect=indirect, kpis=kpis)


@pytest.mark.parametrize("indirect", [False, True], ids=["direct", "indirect"])
@pytest.mark.testcase("HIL-DL-005", "Wrong confirmation code: refused by the SM-DP+, session cancelled, no profile",
                      family="SGP.33 profile download", story="Download with confirmation code (refused)")
def test_download_wrong_confirmation_code(bench, without_operational, new_order, ipa, eim, open_es10, eid, kpis,
                                          indirect):
    _ipa_takes_confirmation_code(ipa)
    ipa.confirmation_code = "0000"
    res = flows.download(bench, ipa, eim, open_es10, eid=eid, activation_code=new_order(confirmation_code="7531"),
                         iccid=without_operational.iccid, indirect=indirect, expect_success=False, kpis=kpis)
    error = str(flows.field_of(flows.poll_packages(res.poll)[0], "error"))
    assert "8.2.7" in error and "3.8" in error, f"expected the SM-DP+'s refusal 8.2.7/3.8 (confirmation code), got {error}"


@pytest.mark.parametrize("indirect", [False, True], ids=["direct", "indirect"])
@pytest.mark.testcase("HIL-DL-004", "Unknown MatchingID: the SM-DP+ refuses, the session is cancelled, no profile",
                      family="SGP.33 profile download", story="Download cancelled")
def test_download_cancelled_unknown_matching_id(bench, bench_services, without_operational, smdp, ipa, eim,
                                                open_es10, eid, kpis, indirect):
    code = f"LPA:1${smdp.service.address}$HIL-NO-SUCH-ORDER"
    res = flows.download(bench, ipa, eim, open_es10, eid=eid, activation_code=code, iccid=without_operational.iccid,
                         indirect=indirect, expect_success=False, kpis=kpis)
    order = eim.service.get_order(res.order)
    assert order.status in ("done", "failed"), order.status
    assert not flows.poll_packages(res.poll)[0].ok
