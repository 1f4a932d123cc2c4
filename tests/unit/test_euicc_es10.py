"""ES10a/b/c functions of the software eUICC, in process: raw STORE DATA with hand-assembled DER.

Every response is also decoded with the project's ASN.1 modules and re-encoded, which must give the
same bytes (the eUICC emits exact DER of the SGP.22 v2.5 / SGP.32 v1.2 types).
"""

from __future__ import annotations

import textwrap

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgp32hil.drivers.apdu.base import transceive
from sgp32hil.drivers.virtual.euicc.card import ISD_R_AID
from sgp32hil.drivers.virtual.euicc.factory import BootstrapSpec, factory_state, luhn_valid, make_iccid
from sgp32hil.drivers.virtual.euicc.provisioning import ProvisioningError, load_profiles
from sgp32hil.drivers.virtual.euicc.service import SoftEuicc, in_process
from sgp32hil.drivers.virtual.euicc.state import StateError, StateStore, dumps
from sgp32hil.harness import asn1, pki
from tests import der_vectors as der
from tests.der_vectors import tlv

ICCID2 = make_iccid("890010100000000002")
ICCID3 = make_iccid("890010100000000003")
ICCID4 = make_iccid("890010100000000004")
BOOT = BootstrapSpec().iccid

PROVISION = f"""
profiles:
  - iccid: "{ICCID2}"
    imsi: "001010000000002"
    name: Second
    spn: ACME
    apn: internet
  - iccid: "{ICCID3}"
    imsi: "001010000000003"
    name: Undeletable
    spn: ACME
    class: test
    policy_rules: [ppr2]
  - iccid: "{ICCID4}"
    imsi: "001010000000004"
    name: Sticky
    spn: ACME
    policy_rules: [ppr1]
"""


@pytest.fixture(scope="module")
def pkiset():
    return pki.generate()


@pytest.fixture
def provision_file(tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text(PROVISION)
    return path


@pytest.fixture
def card(tmp_path, pkiset, provision_file):
    euicc, transport = in_process(tmp_path / "state", pkiset, provision=provision_file)
    assert transceive(transport, bytes.fromhex("00A4040010") + ISD_R_AID).sw == 0x9000
    yield euicc, transport
    euicc.close()


def store_data(transport, command: bytes, channel: int = 0):
    blocks = [command[i:i + 255] for i in range(0, len(command), 255)]
    for n, block in enumerate(blocks[:-1]):
        assert transport.transmit(bytes([0x80 | channel, 0xE2, 0x11, n, len(block)]) + block) == b"\x90\x00"
    n = len(blocks) - 1
    return transceive(transport, bytes([0x80 | channel, 0xE2, 0x91, n, len(blocks[-1])]) + blocks[-1])


def es10(transport, command: bytes | str, type_name: str | None = None) -> bytes:
    if isinstance(command, str):
        command = bytes.fromhex(command)
    response = store_data(transport, command)
    assert response.sw == 0x9000, f"{command.hex()} -> {response.sw:04X}"
    if type_name is not None:
        value = asn1.decode(type_name, response.data)
        assert asn1.encode(type_name, value) == response.data, f"{type_name} is not canonical DER"
    return response.data


def on_disk(euicc: SoftEuicc) -> bytes:
    return euicc.store.path.read_bytes()


def assert_persisted(euicc: SoftEuicc) -> None:
    assert on_disk(euicc) == dumps(euicc.state)
    assert dumps(StateStore(euicc.store.directory).load()) == dumps(euicc.state)


def iccid_tlv(iccid: str) -> bytes:
    return tlv(0x5A, der.encode_iccid(iccid))


def switch(tag: int, iccid: str, refresh: bool = True) -> bytes:
    return tlv(tag, tlv(0xA0, iccid_tlv(iccid)) + tlv(0x81, der.boolean(refresh)))


def result(data: bytes, tag: int) -> int:
    outer = der.parse_one(data)
    assert outer.tag == tag
    return der.to_int(outer.children()[0].value)


def profiles(transport) -> dict[str, dict]:
    kind, items = asn1.decode("SGP32-ProfileInfoListResponse", es10(transport, "BF2D00"))
    assert kind == "profileInfoListOk"
    return {der.decode_iccid(p["iccid"]): p for p in items}


def pending(transport, criteria: bytes = b"") -> list[bytes]:
    data = es10(transport, tlv(0xBF2B, criteria), "SGP32-RetrieveNotificationsListResponse")
    outer = der.parse_one(data)
    return [n.raw for n in outer.children()[0].children()]


# ------------------------------------------------------------------------------------------------
# information functions


def test_get_eid(card, pkiset):
    euicc, transport = card
    data = es10(transport, "BF3E035C015A", "GetEuiccDataResponse")
    assert data[:5] == bytes.fromhex("BF3E125A10")
    eid = data[5:].hex().upper()
    assert eid == euicc.eid and pki.eid_is_valid(eid)
    assert eid.startswith(pkiset.eum_eins[0])


def test_get_eid_wrong_tag_list_is_6a80(card):
    _, transport = card
    assert store_data(transport, bytes.fromhex("BF3E035C014F")).sw == 0x6A80
    assert store_data(transport, bytes.fromhex("BF3E00")).sw == 0x6A80


def test_euicc_info1_and_info2(card, pkiset):
    euicc, transport = card
    info1 = asn1.decode("EUICCInfo1", es10(transport, "BF2000", "EUICCInfo1"))
    assert info1["svn"] == b"\x02\x05\x00"
    assert info1["euiccCiPKIdListForVerification"] == pkiset.ci_pkids
    assert info1["euiccCiPKIdListForSigning"] == [pki.ci_pkid(pkiset.ci("nist").certificate)]
    info2 = asn1.decode("SGP32-EUICCInfo2", es10(transport, "BF2200", "SGP32-EUICCInfo2"))
    assert info2["profileVersion"] == b"\x02\x03\x01"
    assert info2["svn"] == b"\x02\x05\x00"
    assert info2["ipaMode"] == 0
    assert info2["iotSpecificInfo"] == {"iotVersion": [b"\x01\x02\x00"], "fallbackSupported": None}
    assert info2["euiccCiPKIdListForVerification"] == pkiset.ci_pkids
    resources = {t.tag: int.from_bytes(t.value, "big") for t in der.parse_all(info2["extCardResource"])}
    assert resources[0x81] == len(euicc.state.profiles) and resources[0x82] > 0 and resources[0x83] > 0
    assert isinstance(info2["sasAcreditationNumber"], str) and info2["ppVersion"]


def test_configured_addresses_rat_and_certs(card, pkiset):
    euicc, transport = card
    addresses = asn1.decode("EuiccConfiguredAddressesResponse", es10(transport, "BF3C00", "EuiccConfiguredAddressesResponse"))
    assert addresses == {"rootDsAddress": "lpa.ds.gsma.com"}
    rat = asn1.decode("GetRatResponse", es10(transport, "BF4300", "GetRatResponse"))["rat"]
    assert rat[0]["allowedOperators"] == [{"mccMnc": b"\xEE\xEE\xEE"}]
    kind, certs = asn1.decode("GetCertsResponse", es10(transport, "BF5600", "GetCertsResponse"))
    assert kind == "certs"
    raw = der.parse_one(der.parse_one(es10(transport, "BF5600")).children()[0].raw).children()
    euicc_cert = x509.load_der_x509_certificate(tlv(0x30, raw[1].value))
    eum_cert = x509.load_der_x509_certificate(tlv(0x30, raw[0].value))
    assert pki.eid_of(euicc_cert) == euicc.eid
    chain = pkiset.verify(euicc_cert, [eum_cert])
    pkid = chain.ci_pkid
    assert es10(transport, tlv(0xBF56, tlv(0x80, pkid)), "GetCertsResponse") == es10(transport, "BF5600")
    assert es10(transport, tlv(0xBF56, tlv(0x80, bytes(20))), "GetCertsResponse") == bytes.fromhex("BF5603810101")


def test_challenge_is_random_and_dropped_on_reset(card):
    euicc, transport = card
    first = es10(transport, "BF2E00", "GetEuiccChallengeResponse")
    assert first[:5] == bytes.fromhex("BF2E128010") and len(first) == 21
    second = es10(transport, "BF2E00")
    assert first != second
    assert euicc.isdr.session.euicc_challenge == second[5:]
    transport.reset()
    assert euicc.isdr.session.euicc_challenge is None


def test_eim_configuration_data(card, pkiset):
    _, transport = card
    data = es10(transport, "BF5500", "GetEimConfigurationDataResponse")
    (eim,) = asn1.decode("GetEimConfigurationDataResponse", data)["eimConfigurationDataList"]
    assert eim["eimId"] == "sgp32hil-eim" and eim["eimFqdn"] == "127.0.0.1:8444" and eim["counterValue"] == 0
    kind, spki = eim["eimPublicKeyData"]
    assert kind == "eimPublicKey"
    key_der = der.parse_one(data).children()[0].children()[0].children()
    spki_tlv = next(t for t in key_der if t.tag == 0xA5).children()[0]
    stored_key = serialization.load_der_public_key(tlv(0x30, spki_tlv.value))
    assert pki.public_key_bytes(pkiset.eim("nist").certificate) == pki.public_key_bytes(stored_key)
    found = es10(transport, tlv(0xBF55, tlv(0xA0, tlv(0x80, b"sgp32hil-eim"))))
    assert found == data
    assert es10(transport, tlv(0xBF55, tlv(0xA0, tlv(0x80, b"other")))) == bytes.fromhex("BF5502A000")


# ------------------------------------------------------------------------------------------------
# GetProfilesInfo


def test_profiles_info_default(card):
    _, transport = card
    infos = profiles(transport)
    assert set(infos) == {BOOT, ICCID2, ICCID3, ICCID4}
    boot = infos[BOOT]
    assert boot["profileState"] == 1 and boot["profileClass"] == 2 and boot["fallbackAttribute"] is True
    assert boot["serviceProviderName"] == "sgp32-hil bootstrap"
    assert luhn_valid(BOOT)
    assert infos[ICCID2]["profileState"] == 0 and infos[ICCID2]["fallbackAttribute"] is False
    assert infos[ICCID3]["profileClass"] == 0
    assert infos[ICCID3]["profilePolicyRules"] == (b"\x20", 3)


def test_profiles_info_search_and_tag_list(card):
    euicc, transport = card
    by_iccid = es10(transport, tlv(0xBF2D, tlv(0xA0, iccid_tlv(ICCID2))), "SGP32-ProfileInfoListResponse")
    assert [der.decode_iccid(p["iccid"]) for p in asn1.decode("SGP32-ProfileInfoListResponse", by_iccid)[1]] == [ICCID2]
    aid = euicc.state.profile(ICCID3).isdp_aid
    by_aid = es10(transport, tlv(0xBF2D, tlv(0xA0, tlv(0x4F, aid))))
    assert [der.decode_iccid(p["iccid"]) for p in asn1.decode("SGP32-ProfileInfoListResponse", by_aid)[1]] == [ICCID3]
    tests = es10(transport, tlv(0xBF2D, tlv(0xA0, tlv(0x95, b"\x00"))))
    assert [der.decode_iccid(p["iccid"]) for p in asn1.decode("SGP32-ProfileInfoListResponse", tests)[1]] == [ICCID3]
    none = es10(transport, tlv(0xBF2D, tlv(0xA0, iccid_tlv(make_iccid("890010100000000099")))))
    assert none == bytes.fromhex("BF2D02A000")
    only = es10(transport, tlv(0xBF2D, tlv(0xA0, iccid_tlv(BOOT)) + tlv(0x5C, bytes.fromhex("5A9F70"))),
                "SGP32-ProfileInfoListResponse")
    assert only == tlv(0xBF2D, tlv(0xA0, tlv(0xE3, iccid_tlv(BOOT) + bytes.fromhex("9F700101"))))
    bad_class = es10(transport, tlv(0xBF2D, tlv(0xA0, tlv(0x95, b"\x07"))))
    assert bad_class == bytes.fromhex("BF2D03810101")


# ------------------------------------------------------------------------------------------------
# Enable / Disable / Delete and their notifications


def verify_notification(raw: bytes, euicc: SoftEuicc, *, event_bit: int, iccid: str, seq: int) -> None:
    outer = der.parse_one(raw)
    tbs, signature, euicc_cert, eum_cert = outer.children()
    assert tbs.tag == 0xBF2F and signature.tag == 0x5F37
    cert = x509.load_der_x509_certificate(euicc_cert.raw)
    assert euicc_cert.raw == euicc.state.euicc_cert and eum_cert.raw == euicc.state.eum_cert
    assert pki.verify_plain(cert, tbs.raw, signature.value)
    assert not pki.verify_plain(cert, tbs.raw + b"\x00", signature.value)
    meta = asn1.decode("NotificationMetadata", tbs.raw)
    assert meta["seqNumber"] == seq
    assert meta["profileManagementOperation"][1] == event_bit + 1
    assert der.decode_iccid(meta["iccid"]) == iccid
    asn1.decode("OtherSignedNotification", raw)


def test_enable_switches_profiles_notifies_refreshes_and_persists(card):
    euicc, transport = card
    refreshes = []
    euicc.isdr.refresh_listeners.append(refreshes.append)
    assert result(es10(transport, switch(0xBF31, ICCID2), "EnableProfileResponse"), 0xBF31) == 0
    assert_persisted(euicc)
    infos = profiles(transport)
    assert infos[ICCID2]["profileState"] == 1 and infos[BOOT]["profileState"] == 0
    assert euicc.isdr.pending_refresh
    assert [(r.reason, r.enabled_iccid, r.disabled_iccid) for r in refreshes] == [("enable", ICCID2, BOOT)]
    notes = pending(transport)
    assert len(notes) == 2
    verify_notification(notes[0], euicc, event_bit=2, iccid=BOOT, seq=1)
    verify_notification(notes[1], euicc, event_bit=1, iccid=ICCID2, seq=2)
    listed = asn1.decode("ListNotificationResponse", es10(transport, "BF2800", "ListNotificationResponse"))
    assert [m["seqNumber"] for m in listed[1]] == [1, 2]
    only_enable = es10(transport, tlv(0xBF28, tlv(0x81, der.bit_string([1]))), "ListNotificationResponse")
    assert [m["seqNumber"] for m in asn1.decode("ListNotificationResponse", only_enable)[1]] == [2]
    # the profile just disabled cannot come back before the REFRESH is processed
    assert result(es10(transport, switch(0xBF31, BOOT)), 0xBF31) == 4
    transport.reset()
    assert not euicc.isdr.pending_refresh
    assert transceive(transport, bytes.fromhex("00A4040010") + ISD_R_AID).sw == 0x9000
    assert result(es10(transport, switch(0xBF31, BOOT, refresh=False)), 0xBF31) == 0
    assert len(refreshes) == 1 and not euicc.isdr.pending_refresh
    assert_persisted(euicc)


def test_enable_errors(card):
    euicc, transport = card
    before = on_disk(euicc)
    assert result(es10(transport, switch(0xBF31, BOOT)), 0xBF31) == 2
    assert result(es10(transport, switch(0xBF31, make_iccid("890010100000000099"))), 0xBF31) == 1
    aid = tlv(0xBF31, tlv(0xA0, tlv(0x4F, bytes(16))) + tlv(0x81, b"\xFF"))
    assert result(es10(transport, aid), 0xBF31) == 1
    euicc.isdr.cat_busy = True
    assert result(es10(transport, switch(0xBF31, ICCID2)), 0xBF31) == 5
    assert result(es10(transport, switch(0xBF31, ICCID2, refresh=False)), 0xBF31) == 0
    euicc.isdr.cat_busy = False
    assert result(es10(transport, switch(0xBF31, ICCID4, refresh=False)), 0xBF31) == 0
    assert result(es10(transport, switch(0xBF31, ICCID2)), 0xBF31) == 3
    assert result(es10(transport, switch(0xBF32, ICCID4)), 0xBF32) == 3
    assert on_disk(euicc) != before


def test_enable_by_isdp_aid(card):
    euicc, transport = card
    aid = euicc.state.profile(ICCID2).isdp_aid
    command = tlv(0xBF31, tlv(0xA0, tlv(0x4F, aid)) + tlv(0x81, b"\x00"))
    assert result(es10(transport, command), 0xBF31) == 0
    assert euicc.state.enabled_profile().iccid == ICCID2


def test_disable_and_delete(card):
    euicc, transport = card
    assert result(es10(transport, switch(0xBF32, ICCID2), "DisableProfileResponse"), 0xBF32) == 2
    assert result(es10(transport, switch(0xBF32, BOOT), "DisableProfileResponse"), 0xBF32) == 0
    assert_persisted(euicc)
    assert euicc.state.enabled_profile() is None
    assert result(es10(transport, tlv(0xBF33, iccid_tlv(BOOT)), "DeleteProfileResponse"), 0xBF33) == 3
    assert result(es10(transport, tlv(0xBF33, iccid_tlv(ICCID3))), 0xBF33) == 3
    es10(transport, switch(0xBF31, ICCID2, refresh=False))
    assert result(es10(transport, tlv(0xBF33, iccid_tlv(ICCID2))), 0xBF33) == 2
    es10(transport, switch(0xBF32, ICCID2, refresh=False))
    assert result(es10(transport, tlv(0xBF33, iccid_tlv(ICCID2))), 0xBF33) == 0
    assert_persisted(euicc)
    assert euicc.state.profile(ICCID2) is None
    assert result(es10(transport, tlv(0xBF33, iccid_tlv(ICCID2))), 0xBF33) == 1
    notes = pending(transport)
    events = [asn1.decode("NotificationMetadata", der.parse_one(n).children()[0].raw)["profileManagementOperation"]
              for n in notes]
    assert events == [(b"\x20", 3), (b"\x40", 2), (b"\x20", 3), (b"\x10", 4)]
    seqs = [n.seq_number for n in euicc.state.notifications]
    verify_notification(notes[-1], euicc, event_bit=3, iccid=ICCID2, seq=seqs[-1])


def test_retrieve_search_and_remove_notifications(card):
    euicc, transport = card
    es10(transport, switch(0xBF31, ICCID2, refresh=False))
    es10(transport, switch(0xBF32, ICCID2, refresh=False))
    assert len(pending(transport)) == 3
    assert len(pending(transport, tlv(0xA0, tlv(0x80, der.integer(2))))) == 1
    disables = pending(transport, tlv(0xA0, tlv(0x81, der.bit_string([2]))))
    assert len(disables) == 2
    assert pending(transport, tlv(0xA0, tlv(0x80, der.integer(99)))) == []
    results = es10(transport, tlv(0xBF2B, tlv(0xA0, tlv(0x82))), "SGP32-RetrieveNotificationsListResponse")
    assert results == bytes.fromhex("BF2B02A200")
    assert result(es10(transport, tlv(0xBF30, tlv(0x80, der.integer(2))), "NotificationSentResponse"), 0xBF30) == 0
    assert_persisted(euicc)
    assert [n.seq_number for n in euicc.state.notifications] == [1, 3]
    assert result(es10(transport, tlv(0xBF30, tlv(0x80, der.integer(2)))), 0xBF30) == 1


# ------------------------------------------------------------------------------------------------
# addresses, memory reset, eIM configuration


def test_set_default_dp_address(card):
    euicc, transport = card
    command = tlv(0xBF3F, tlv(0x80, b"smdp.example.com"))
    assert es10(transport, command, "SetDefaultDpAddressResponse") == bytes.fromhex("BF3F03800100")
    assert_persisted(euicc)
    addresses = asn1.decode("EuiccConfiguredAddressesResponse", es10(transport, "BF3C00"))
    assert addresses["defaultDpAddress"] == "smdp.example.com"
    command = tlv(0xBF65, tlv(0x80, b"dp2.example.com"))
    assert es10(transport, command, "SGP32-SetDefaultDpAddressResponse") == bytes.fromhex("BF6503800100")
    assert euicc.state.default_dp_address == "dp2.example.com"
    assert StateStore(euicc.store.directory).load().default_dp_address == "dp2.example.com"


def memory_reset(bits: list[int], tag: int = 0xBF34) -> bytes:
    return tlv(tag, tlv(0x82, der.bit_string(bits)))


def test_memory_reset_sgp22(card):
    euicc, transport = card
    refreshes = []
    euicc.isdr.refresh_listeners.append(refreshes.append)
    es10(transport, tlv(0xBF3F, tlv(0x80, b"smdp.example.com")))
    data = es10(transport, memory_reset([0, 2]), "EuiccMemoryResetResponse")
    assert data == bytes.fromhex("BF3403800100")
    assert_persisted(euicc)
    assert [p.iccid for p in euicc.state.profiles] == [ICCID3]
    assert euicc.state.default_dp_address == ""
    assert [r.reason for r in refreshes] == ["memory-reset"] and euicc.isdr.pending_refresh
    assert es10(transport, memory_reset([0, 2])) == bytes.fromhex("BF3403800101")
    assert es10(transport, memory_reset([1])) == bytes.fromhex("BF3403800101")
    assert es10(transport, memory_reset([3, 5])) == bytes.fromhex("BF3403800101")
    assert euicc.state.eims and euicc.state.profiles


def test_memory_reset_sgp32_options(card):
    euicc, transport = card
    data = es10(transport, memory_reset([3, 5, 6], 0xBF64), "SGP32-EuiccMemoryResetResponse")
    assert asn1.decode("SGP32-EuiccMemoryResetResponse", data) == {
        "resetResult": 0, "resetEimResult": 0, "resetImmediateEnableConfigResult": 0}
    assert_persisted(euicc)
    assert euicc.state.eims == [] and euicc.state.profile(ICCID3) is None
    assert es10(transport, "BF5500") == bytes.fromhex("BF5502A000")
    data = es10(transport, memory_reset([5], 0xBF64))
    assert asn1.decode("SGP32-EuiccMemoryResetResponse", data) == {"resetResult": 1, "resetEimResult": 1}
    euicc.isdr.cat_busy = True
    assert es10(transport, memory_reset([0], 0xBF64)) == bytes.fromhex("BF6403800105")
    assert euicc.state.enabled_profile() is not None


def eim_config(pkiset, *, eim_id: bytes = b"eim-2", counter: int | None = 5, key: bool = True,
               pkid: bytes | None = None, token: bool = False, cert: bool = False) -> bytes:
    body = tlv(0x80, eim_id) + tlv(0x81, b"eim2.example.com:443")
    if counter is not None:
        body += tlv(0x83, der.integer(counter))
    if token:
        body += tlv(0x84, der.integer(0))
    if key:
        eim = pkiset.eim("nist")
        source = eim.der if cert else eim.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        body += tlv(0xA5, tlv(0xA1 if cert else 0xA0, der.parse_one(source).value))
    body += tlv(0x87, der.bit_string([0]))
    if pkid is not None:
        body += tlv(0x88, pkid)
    return tlv(0x30, body)


def add_initial_eim(*configs: bytes) -> bytes:
    return tlv(0xBF57, tlv(0xA0, b"".join(configs)))


def test_add_initial_eim(card, pkiset):
    euicc, transport = card
    request = add_initial_eim(eim_config(pkiset, token=True, pkid=pkiset.ci_pkids[0], cert=True))
    asn1.decode("AddInitialEimRequest", request)
    assert es10(transport, request, "AddInitialEimResponse") == bytes.fromhex("BF5703810102")
    es10(transport, memory_reset([5], 0xBF64))
    before = on_disk(euicc)
    assert es10(transport, add_initial_eim(eim_config(pkiset, counter=-1))) == bytes.fromhex("BF5703810106")
    assert es10(transport, add_initial_eim(eim_config(pkiset, counter=1 << 24))) == bytes.fromhex("BF5703810106")
    assert es10(transport, add_initial_eim(eim_config(pkiset, pkid=bytes(20)))) == bytes.fromhex("BF5703810103")
    assert es10(transport, add_initial_eim(eim_config(pkiset, key=False))) == bytes.fromhex("BF5703810107")
    assert es10(transport, add_initial_eim(eim_config(pkiset), eim_config(pkiset))) == bytes.fromhex("BF5703810107")
    many = [eim_config(pkiset, eim_id=f"e{i}".encode()) for i in range(5)]
    assert es10(transport, add_initial_eim(*many)) == bytes.fromhex("BF5703810101")
    assert on_disk(euicc) == before
    assert len(request) > 255
    data = es10(transport, request, "AddInitialEimResponse")
    assert asn1.decode("AddInitialEimResponse", data) == ("addInitialEimOk", [("associationToken", 1)])
    assert_persisted(euicc)
    (eim,) = euicc.state.eims
    assert (eim.eim_id, eim.counter_value, eim.association_token) == ("eim-2", 5, 1)
    data = es10(transport, "BF5500", "GetEimConfigurationDataResponse")
    (listed,) = asn1.decode("GetEimConfigurationDataResponse", data)["eimConfigurationDataList"]
    assert listed["eimId"] == "eim-2" and listed["eimFqdn"] == "eim2.example.com:443" and listed["counterValue"] == 5
    assert es10(transport, add_initial_eim(eim_config(pkiset, eim_id=b"x"))) == bytes.fromhex("BF5703810102")


def test_add_initial_eim_with_certificate_and_add_ok(card, pkiset):
    euicc, transport = card
    es10(transport, memory_reset([5], 0xBF64))
    data = es10(transport, add_initial_eim(eim_config(pkiset, cert=True)), "AddInitialEimResponse")
    assert data == bytes.fromhex("BF5704A0020500")
    assert euicc.state.eims[0].eim_certificate == pkiset.eim("nist").der
    listed = asn1.decode("GetEimConfigurationDataResponse", es10(transport, "BF5500"))["eimConfigurationDataList"]
    assert listed[0]["eimPublicKeyData"][0] == "eimCertificate"


# ------------------------------------------------------------------------------------------------
# malformed input


@pytest.mark.parametrize("command, expected", [
    ("BF2D03A00100", "BF2D0381017F"),
    ("BF2D02A005", "BF2D0381017F"),
    ("BF3103A00101", "BF310380017F"),
    ("BF3106A0045A0100", "BF310380017F"),
    ("BF32038101FF", "BF320380017F"),
    ("BF3300", "BF330380017F"),
    ("BF300480020001", "BF300380017F"),
    ("BF3003800200", "BF300380017F"),
    ("BF2B03A00183", "BF2B0381017F"),
    ("BF28038101", "BF280381017F"),
    ("BF3F03800180", "BF3F0380017F"),
    ("BF340482020781", "BF340380017F"),
    ("BF5702A000", "BF5703810102"),
    ("BF5703A00130", "BF570381017F"),
    ("BF56038001", "BF560381017F"),
    ("BF4103800101", "BF410381017F"),
])
def test_malformed_gets_error_result(card, command, expected):
    euicc, transport = card
    before = on_disk(euicc)
    response = store_data(transport, bytes.fromhex(command))
    assert (response.sw, response.data.hex().upper()) == (0x9000, expected)
    assert on_disk(euicc) == before


@pytest.mark.parametrize("command, sw", [
    ("BF9900", 0x6A88),
    ("BF3800", 0x6A80),  # AuthenticateServer exists; its error result needs a transactionId the request lacks
    ("BF3600", 0x6A88),
    ("BF5100", 0x6A80),  # LoadEuiccPackage without an eimId: no EuiccPackageResult can name the eIM
    ("BF3500", 0x6A88),
    ("BF22", 0x6A80),
    ("BF220100", 0x6A80),
    ("BF2200FF", 0x6A80),
    ("BF3E8100", 0x6A80),
    ("BF3E80", 0x6A80),
    ("BF4301", 0x6A80),
    ("BF5503A00100", 0x6A80),
    ("FF", 0x6A80),
])
def test_malformed_without_error_result_gets_sw(card, command, sw):
    _, transport = card
    assert store_data(transport, bytes.fromhex(command)).sw == sw
    assert es10(transport, "BF3E035C015A")[:2] == b"\xBF\x3E"


def test_download_functions_without_session(card):
    _, transport = card
    smdp_signed2 = tlv(0x30, tlv(0x80, b"\x01\x02") + tlv(0x01, b"\x00"))
    prepare = tlv(0xBF21, smdp_signed2 + tlv(0x5F37, bytes(64)) + tlv(0x30, b""))
    data = es10(transport, prepare, "PrepareDownloadResponse")
    assert asn1.decode("PrepareDownloadResponse", data) == (
        "downloadResponseError", {"transactionId": b"\x01\x02", "downloadErrorCode": 4})
    cancel = tlv(0xBF41, tlv(0x80, b"\x01\x02") + tlv(0x81, der.integer(0)))
    assert es10(transport, cancel, "CancelSessionResponse") == bytes.fromhex("BF4103810105")


def test_set_nickname(card):
    euicc, transport = card
    command = tlv(0xBF29, iccid_tlv(ICCID2) + tlv(0x90, b"Zweit"))
    assert es10(transport, command, "SetNicknameResponse") == bytes.fromhex("BF2903800100")
    assert profiles(transport)[ICCID2]["profileNickname"] == "Zweit"
    assert_persisted(euicc)


READ_ONLY = [0xBF3E, 0xBF20, 0xBF22, 0xBF2E, 0xBF2D, 0xBF28, 0xBF2B, 0xBF3C, 0xBF43, 0xBF55, 0xBF56, 0xBF21, 0xBF41]
MUTATING = [0xBF31, 0xBF32, 0xBF33, 0xBF29, 0xBF30, 0xBF3F, 0xBF65, 0xBF34, 0xBF64, 0xBF57]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=st.sampled_from(READ_ONLY + MUTATING), body=st.binary(max_size=300), wrap=st.booleans())
def test_random_der_after_valid_tag_never_crashes(card, tag, body, wrap):
    euicc, transport = card
    before = on_disk(euicc)
    command = tlv(tag, body) if wrap else der.tag_bytes(tag) + body
    response = store_data(transport, command)
    assert response.sw in (0x9000, 0x6A80, 0x6A88), f"{command.hex()} -> {response.sw:04X}"
    if tag in READ_ONLY:
        assert on_disk(euicc) == before
    assert on_disk(euicc) == dumps(euicc.state)
    if response.sw == 0x9000 and response.data:
        der.parse_one(response.data)


# ------------------------------------------------------------------------------------------------
# factory state, provisioning, service


def test_factory_state(pkiset):
    state = factory_state(pkiset, eim_fqdn="eim.example.com:8444")
    assert pki.eid_is_valid(state.eid) and state.eid.startswith(pkiset.eum_eins[0])
    cert = x509.load_der_x509_certificate(state.euicc_cert)
    chain = pkiset.verify(cert, [x509.load_der_x509_certificate(state.eum_cert)])
    assert chain.eid == state.eid
    (boot,) = state.profiles
    assert (boot.state, boot.profile_class, boot.fallback_attribute, boot.imsi) == \
        ("enabled", "operational", True, "001010000000001")
    assert luhn_valid(boot.iccid) and boot.service_provider_name == "sgp32-hil bootstrap"
    (eim,) = state.eims
    assert (eim.eim_fqdn, eim.counter_value) == ("eim.example.com:8444", 0)
    assert factory_state(pkiset).eid != state.eid
    with pytest.raises(ValueError, match="EID"):
        factory_state(pkiset, eid="1" * 32)


@pytest.mark.parametrize("text, message", [
    ("- {imsi: '001010000000002'}", r"profiles\[0\]\.iccid: missing"),
    (f"- {{iccid: '{ICCID2[:-1]}0', imsi: '001010000000002'}}", r"profiles\[0\]\.iccid: .*Luhn"),
    (f"- {{iccid: '{ICCID2}', imsi: '001010000000002', class: gold}}", r"profiles\[0\]\.class"),
    (f"- {{iccid: '{ICCID2}', imsi: '001010000000002', colour: red}}", r"profiles\[0\]: unknown keys \['colour'\]"),
    (f"- {{iccid: '{ICCID2}', imsi: '001010000000002', fallback: maybe}}", r"profiles\[0\]\.fallback"),
    ("profiles: 3", "expected a list"),
    ("[", "not valid YAML"),
])
def test_provisioning_errors_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ProvisioningError, match=message) as info:
        load_profiles(path)
    assert "bad.yaml" in str(info.value)


def test_provisioning_enabled_profile_takes_over(tmp_path, pkiset):
    path = tmp_path / "p.yaml"
    path.write_text(f"- {{iccid: '{ICCID2}', imsi: '001010000000002', state: enabled, fallback: true}}\n")
    with SoftEuicc.open(tmp_path / "s", pkiset, provision=path) as euicc:
        assert euicc.state.enabled_profile().iccid == ICCID2
        assert euicc.state.fallback_profile().iccid == ICCID2
        assert euicc.state.profile(BOOT).state == "disabled"


def test_soft_euicc_reopens_same_state_and_locks(tmp_path, pkiset):
    euicc = SoftEuicc.open(tmp_path / "s", pkiset)
    eid = euicc.eid
    assert euicc.created
    with pytest.raises(StateError, match="in use"):
        SoftEuicc.open(tmp_path / "s", pkiset)
    euicc.close()
    again, transport = in_process(tmp_path / "s", pkiset)
    try:
        assert not again.created and again.eid == eid
        assert transceive(transport, bytes.fromhex("00A4040010") + ISD_R_AID).sw == 0x9000
        assert es10(transport, "BF3E035C015A")[5:].hex().upper() == eid
    finally:
        again.close()


def test_failed_persist_keeps_old_state(card, monkeypatch):
    euicc, transport = card
    before = dumps(euicc.state)

    def broken(state):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(euicc.store, "save", broken)
    assert store_data(transport, switch(0xBF31, ICCID2)).sw == 0x6581
    assert dumps(euicc.state) == before
