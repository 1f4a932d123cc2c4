"""eIM package -> software eUICC (ES10b.LoadEuiccPackage, in process) -> result back to the eIM: the eIM's
signature verifies on the card and the card's euiccSignEPR verifies at the eIM (SGP.32 v1.2 §2.11)."""

from __future__ import annotations

import pytest

from sgp32hil.drivers.es10.client import Es10Client
from sgp32hil.drivers.virtual.euicc.service import in_process
from sgp32hil.harness import asn1, pki
from sgp32hil.harness.eim import EimService, EimStore, dispatch

FROM_IPA, FROM_EIM = "EsipaMessageFromIpaToEim", "EsipaMessageFromEimToIpa"


@pytest.fixture()
def setup(tmp_path):
    pkiset = pki.ensure(tmp_path / "pki", quiet=True)
    euicc, transport = in_process(tmp_path / "state", pkiset)
    client = Es10Client(transport).open()
    svc = EimService(pkiset, EimStore(tmp_path / "eim.sqlite"))
    yield euicc, client, svc
    svc.close()
    client.close()
    euicc.close()


def test_psmo_round_trip_through_the_software_euicc(setup):
    euicc, client, svc = setup
    svc.register_euicc(euicc.eid, euicc_certificate=euicc.isdr.state.euicc_cert, result_policy="verify")
    for round_ in range(2):  # the second package carries the next counter and is accepted too
        order = svc.create_order(euicc.eid, "psmo", psmos=[{"listProfileInfo": {}}, {"getRAT": {}}])
        ans = dispatch(svc, asn1.encode(FROM_IPA, ("getEimPackageRequest", {"eidValue": bytes.fromhex(euicc.eid)})))
        request = asn1.find(ans.body, ["BF4F", "BF51"]).raw
        outcome = client.load_euicc_package(request)
        assert outcome.kind == "result", outcome
        body = b"\x5a\x10" + bytes.fromhex(euicc.eid) + outcome.der
        n = len(body)
        msg = b"\xbf\x50" + (bytes([n]) if n < 0x80 else (bytes([0x81, n]) if n < 0x100 else
                                                          b"\x82" + n.to_bytes(2, "big"))) + body
        ack = asn1.decode(FROM_EIM, dispatch(svc, msg).body)
        assert ack[1][0] == "eimAcknowledgements"
        done = svc.get_order(order.id)
        assert done.status == "done", done.error
        assert done.result["verified"] is True and done.counter_value == round_ + 1
        assert "listProfileInfoResult" in done.result and "getRATResult" in done.result
