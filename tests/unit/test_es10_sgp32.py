"""ES10 client, SGP.32 v1.2 functions: EuiccPackageOutcome, the refresh-style calls, traces."""

from __future__ import annotations

import dataclasses

import pytest

from sgp32hil.drivers.es10.client import Es10Client, Es10Error
from sgp32hil.drivers.es10.decode import decode_trace
from sgp32hil.drivers.es10.types import EuiccPackageOutcome
from sgp32hil.drivers.virtual.euicc.service import in_process
from sgp32hil.harness import asn1, pki
from sgp32hil.harness.asn1 import signed as signed_parts


@pytest.fixture(scope="module")
def pkiset():
    return pki.generate()


@pytest.fixture
def card(tmp_path, pkiset):
    euicc, transport = in_process(tmp_path / "state", pkiset)
    client = Es10Client(transport).open()
    yield euicc, client
    client.close()
    euicc.close()


def test_outcome_unsigned_error():
    der = asn1.encode("EuiccPackageResult", ("euiccPackageErrorUnsigned",
                                             {"eimId": "e", "eimTransactionId": b"\x01", "associationToken": 7}))
    outcome = EuiccPackageOutcome.from_der(der)
    assert (outcome.kind, outcome.eim_id, outcome.eim_transaction_id, outcome.association_token) == (
        "error_unsigned", "e", b"\x01", 7)
    assert outcome.signature == b"" and outcome.der == der and not outcome.ok
    assert outcome.to_dict()["eim_transaction_id"] == "01"


def test_outcome_signed_error_and_result():
    data = {"eimId": "e", "counterValue": 3, "euiccPackageErrorCode": 15}
    der = asn1.encode("EuiccPackageResult", ("euiccPackageErrorSigned", {"euiccPackageErrorDataSigned": data,
                                                                         "euiccSignEPE": bytes(64)}))
    outcome = EuiccPackageOutcome.from_der(der)
    assert (outcome.kind, outcome.error, outcome.error_code, outcome.counter_value) == (
        "error_signed", "sizeOverflow", 15, 3)
    assert outcome.signed_data == asn1.encode("EuiccPackageErrorDataSigned", data)
    results = [("enableResult", 0), ("deleteEimResult", 2), ("addEimResult", ("associationToken", 4)),
               ("setFallbackAttributeResult", 3)]
    data = {"eimId": "e", "counterValue": 4, "seqNumber": 9, "euiccResult": results}
    der = asn1.encode("EuiccPackageResult", ("euiccPackageResultSigned", {"euiccPackageResultDataSigned": data,
                                                                          "euiccSignEPR": bytes(64)}))
    outcome = EuiccPackageOutcome.from_der(der)
    assert outcome.seq_number == 9 and not outcome.ok
    assert outcome.named_results() == [("enableResult", "ok"), ("deleteEimResult", "lastEimDeleted"),
                                       ("addEimResult", ("associationToken", 4)),
                                       ("setFallbackAttributeResult", "fallbackProfileEnabled")]


def test_load_euicc_package_traced_and_forwarded_unchanged(card, pkiset):
    euicc, client = card
    signed = {"eimId": "sgp32hil-eim", "eidValue": bytes.fromhex(euicc.eid), "counterValue": 1,
              "euiccPackage": ("psmoList", [("getRAT", {})])}
    signed_der = asn1.encode("EuiccPackageSigned", signed)
    request = asn1.encode("EuiccPackageRequest", {
        "euiccPackageSigned": signed,
        "eimSignature": pki.sign_plain(pkiset.eim("nist").private_key,
                                       signed_parts.eim_signature_input(signed_der, None))})
    outcome = client.load_euicc_package(request)
    assert outcome.kind == "result" and outcome.der == client.exchanges[-1].response
    assert client.exchanges[-1].request == request
    trace = decode_trace(client.exchanges)[-1]
    assert (trace.function, trace.decode_errors) == ("LoadEuiccPackage", ())
    assert "euiccPackageResultSigned" in str(trace.response)


def test_refresh_calls_raise_named_errors(card):
    _, client = card
    with pytest.raises(Es10Error) as err:
        client.profile_rollback()
    assert (err.value.function, err.value.name) == ("ProfileRollback", "rollbackNotAllowed")
    with pytest.raises(Es10Error) as err:
        client.immediate_enable(refresh=False)
    assert err.value.name == "immediateEnableNotAvailable"
    with pytest.raises(Es10Error) as err:
        client.return_from_fallback()
    assert err.value.name == "fallbackNotAvailable"
    with pytest.raises(Es10Error) as err:
        client.configure_immediate_profile_enabling(True, smdp_oid="2.999.10", smdp_address="smdp.example.com")
    assert err.value.name == "associatedEimAlreadyExists"
    assert client.retrieve_euicc_package_results() == []


def test_configure_immediate_without_eim(card):
    euicc, client = card
    client.euicc_memory_reset(["resetEimConfigData"])
    client.configure_immediate_profile_enabling(True, smdp_oid="2.999.10", smdp_address="smdp.example.com")
    state = euicc.state
    assert (state.immediate_enable, state.immediate_enable_smdp_oid, state.default_smdp_for_immediate) == (
        True, "2.999.10", "smdp.example.com")
    client.configure_immediate_profile_enabling(False)
    assert not euicc.state.immediate_enable


@pytest.mark.parametrize("answer", [b"", b"\xbf\x51\x00", b"\xbf\x22\x00", b"\x01\x02"])
def test_malformed_package_result_raises(card, answer):
    euicc, client = card
    fn = euicc.isdr.functions[b"\xbf\x51"]
    euicc.isdr.functions[b"\xbf\x51"] = dataclasses.replace(fn, handler=lambda command: answer)
    with pytest.raises(Es10Error) as err:
        client.load_euicc_package(bytes.fromhex("BF5103800165"))
    assert err.value.name in ("emptyResponse", "malformedResponse")
