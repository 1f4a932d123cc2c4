"""Enable / switch (SGP.33 "profile state management" family; SGP.32 v1.2 §3.3 PSMO enable, §5.9.x
LoadEuiccPackage; ETSI TS 102 223 §6.4.7 REFRESH): the eIM's signed enable reaches the card, the module
re-reads the UICC, the ICCID changes, the device registers on the operational network, the signed result
and the notifications reach the eIM."""

from __future__ import annotations

import pytest

from sgp32hil.harness import flows


@pytest.mark.requires("modem")
@pytest.mark.testcase("HIL-SW-001", "Enable PSMO: REFRESH, ICCID changes, operational registration, signed result at "
                      "the eIM, notifications delivered", family="SGP.33 enable / switch", story="Enable with rollback")
def test_enable_switch(bench, with_operational, modem, ipa, eim, open_es10, eid, kpis):
    res = flows.enable_switch(bench, modem, ipa, eim, open_es10, eid=eid, iccid=with_operational.iccid,
                              network=with_operational.network, kpis=kpis)
    assert res.iccid_before == bench.profiles.bootstrap.iccid
    assert res.iccid_after == with_operational.iccid
    on_card = flows.profiles(open_es10)
    assert on_card[with_operational.iccid].state == "enabled"
    assert on_card[bench.profiles.bootstrap.iccid].state == "disabled"


@pytest.mark.testcase("HIL-SW-002", "Enable PSMO for an ICCID that is not on the card: error result, nothing changes",
                      family="SGP.33 enable / switch", story="Enable (negative)")
def test_enable_unknown_iccid(bench, bootstrapped, ipa, eim, open_es10, eid):
    before = flows.enabled_iccid(open_es10)
    oid = flows.order_id(eim.service.create_order(eid, "psmo", psmos=[{"enable": {"iccid": "8900199999999999990"}}]))
    poll = ipa.poll()
    assert not poll.error, poll.error
    order = eim.service.wait_order(oid, bench.budgets.eim_contact)
    result = order.result or {}
    assert order.status == "failed" and result.get("enableResult") == "iccidOrAidNotFound", (order.status, result,
                                                                                         order.error)
    assert result.get("verified") is True, "the eIM did not verify the eUICC's signed error result"
    assert flows.enabled_iccid(open_es10) == before
