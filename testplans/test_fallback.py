"""Fallback recovery (SGP.33 "fallback" family; SGP.32 v1.2 §3.5 fallback mechanism, §5.9.11
ExecuteFallbackMechanism, §5.9.12 ReturnFromFallback): the operational profile loses service, the device
falls back to the bootstrap profile, reaches the eIM again and reports the state change, then returns."""

from __future__ import annotations

import pytest

from sgp32hil.harness import flows


@pytest.fixture
def operational_enabled(bench, request, with_operational, modem, ipa, eim, open_es10, eid):
    flows.ensure_enabled(bench, modem, ipa, eim, open_es10, eid=eid, iccid=with_operational.iccid,
                         network=with_operational.network)
    return with_operational


@pytest.mark.requires("modem", "fallback")
@pytest.mark.testcase("HIL-FB-001", "Operational network rejects: ExecuteFallbackMechanism, bootstrap re-attach, eIM "
                      "sees the state change, ReturnFromFallback", family="SGP.33 fallback", story="Reject (EMM #15)")
def test_fallback_on_reject(bench, operational_enabled, modem, ipa, eim, open_es10, eid, network, kpis):
    res = flows.fallback_recover(bench, modem, ipa, eim, open_es10, eid=eid,
                                 operational_iccid=operational_enabled.iccid,
                                 operational_network=operational_enabled.network, network=network, loss="reject",
                                 cause=15, kpis=kpis)
    assert "fallback_s" in res.kpis and "return_s" in res.kpis
    assert "15" in res.details["lost_state"], res.details["lost_state"]


@pytest.mark.requires("modem", "fallback")
@pytest.mark.testcase("HIL-FB-002", "Operational coverage lost: fallback to the bootstrap network and back",
                      family="SGP.33 fallback", story="Coverage loss")
def test_fallback_on_coverage_loss(bench, operational_enabled, modem, ipa, eim, open_es10, eid, network, kpis):
    res = flows.fallback_recover(bench, modem, ipa, eim, open_es10, eid=eid,
                                 operational_iccid=operational_enabled.iccid,
                                 operational_network=operational_enabled.network, network=network, loss="coverage",
                                 kpis=kpis)
    assert "fallback_s" in res.kpis


@pytest.mark.requires("fallback")
@pytest.mark.testcase("HIL-FB-003", "ExecuteFallbackMechanism with the fallback profile already enabled is refused",
                      family="SGP.33 fallback", story="Fallback (negative)")
def test_fallback_refused_on_bootstrap(bench, bootstrapped, open_es10):
    from sgp32hil.drivers.es10.client import Es10Error

    with pytest.raises(Es10Error) as err:
        flows.es10_read(open_es10, lambda c: c.execute_fallback_mechanism(refresh=True), "ExecuteFallbackMechanism")
    assert err.value.code != 0
    assert flows.enabled_iccid(open_es10) == bootstrapped.iccid



@pytest.mark.requires("modem", "fallback")
@pytest.mark.testcase("HIL-FB-004", "Enable with rollbackFlag onto a rejecting network: ProfileRollback restores the "
                      "bootstrap profile, the eIM gets the rollbackResult", family="SGP.33 fallback",
                      story="Profile rollback")
def test_rollback_on_reject(bench, with_operational, modem, ipa, eim, open_es10, eid, network, kpis):
    network.call("set_reject", network=with_operational.network, cause=15)
    res = flows.rollback_recover(bench, modem, ipa, eim, open_es10, eid=eid, iccid=with_operational.iccid, kpis=kpis)
    assert res.iccid_before == bench.profiles.bootstrap.iccid
    assert "rollbackResult" in res.details["rollback_result"]
    assert flows.enabled_iccid(open_es10) == bench.profiles.bootstrap.iccid
