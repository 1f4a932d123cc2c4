"""eIM configuration through eCOs (SGP.33 "eIM configuration" family; SGP.32 v1.2 §2.11.1.1 eCO
addEim/deleteEim/listEim, §5.9.18 GetEimConfigurationData)."""

from __future__ import annotations

import pytest

from sgp32hil.harness import flows

SECOND_EIM = {"eim_id": "sgp32hil-second-eim", "fqdn": "127.0.0.1:9444", "counter_value": 1,
              "supported_protocols": ["retrieveHttps"]}


def _eco(bench, ipa, eim, eid, ecos):
    oid = flows.order_id(eim.service.create_order(eid, "eco", ecos=ecos))
    poll = ipa.poll()
    assert not poll.error, poll.error
    return eim.service.wait_order(oid, bench.budgets.eim_contact), poll


@pytest.mark.testcase("HIL-ECO-001", "eCO addEim then deleteEim: the card's eIM list follows, listEim reports it",
                      family="SGP.33 eIM configuration", story="eCO add / list / delete")
def test_eco_add_list_delete(bench, bench_pki, bootstrapped, ipa, eim, open_es10, eid):
    from cryptography.hazmat.primitives import serialization

    second = {**SECOND_EIM, "public_key_pem": bench_pki.require("EIM").public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()}
    ids = lambda: [c.eim_id for c in flows.es10_read(open_es10, lambda c: c.get_eim_configuration_data(),  # noqa: E731
                                                       "GetEimConfigurationData")]
    if SECOND_EIM["eim_id"] in ids():
        _eco(bench, ipa, eim, eid, [{"deleteEim": {"eim_id": SECOND_EIM["eim_id"]}}])
    order, _ = _eco(bench, ipa, eim, eid, [{"addEim": second}])
    assert order.status == "done", f"addEim order {order.status}: {order.error}"
    assert SECOND_EIM["eim_id"] in ids()
    order, _ = _eco(bench, ipa, eim, eid, [{"listEim": {}}])
    assert order.status == "done" and SECOND_EIM["eim_id"] in str(order.result), order.result
    order, _ = _eco(bench, ipa, eim, eid, [{"deleteEim": {"eim_id": SECOND_EIM["eim_id"]}}])
    assert order.status == "done", f"deleteEim order {order.status}: {order.error}"
    assert SECOND_EIM["eim_id"] not in ids()
