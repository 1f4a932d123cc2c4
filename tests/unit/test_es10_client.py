"""ES10 client, typed results, decoded traces and ``euicc info`` against a scripted eUICC in process.

The scripted eUICC sits behind the real ISD-R APDU layer (:class:`EuiccCard`): the client's APDUs go
through MANAGE CHANNEL, SELECT, STORE DATA chaining and GET RESPONSE exactly as over PC/SC.
"""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from sgp32hil.drivers.apdu.base import ApduError
from sgp32hil.drivers.apdu.inprocess import InProcessTransport
from sgp32hil.drivers.es10.client import Es10Client, Es10Error
from sgp32hil.drivers.es10.decode import (
    BY_TAG,
    FUNCTIONS,
    decode_exchange,
    make_bitstring,
    render_trace,
    set_bits,
)
from sgp32hil.drivers.es10.info import collect_info, format_info
from sgp32hil.drivers.es10.session import Es10Exchange
from sgp32hil.drivers.es10.types import EimConfiguration, iccid_from_bcd, iccid_to_bcd
from sgp32hil.drivers.virtual.euicc.card import CardStatus, EuiccCard
from sgp32hil.harness.asn1 import decode, encode, type_names
from sgp32hil.harness.pki import make_eid
from tests.der_vectors import self_signed_certificate

EID = make_eid("89049032", 4242)
ICCID_BOOT = "8944476500001224158"  # 19 digits: 'F' padded
ICCID_OP = "89882280000012345678"  # 20 digits
AID_BOOT = bytes.fromhex("A0000005591010FFFFFFFF8900001000")
AID_OP = bytes.fromhex("A0000005591010FFFFFFFF8900001100")
CI_PKID = bytes.fromhex("F54172BDF98A95D65CBEB88A38A1C11D800A85C3")


EUM_CERT = self_signed_certificate("EUM")
EUICC_CERT = self_signed_certificate("eUICC")
EIM_CERT = self_signed_certificate("eIM")


def _other_notification(seq: int, event_bit: int, iccid: str) -> dict:
    return {
        "tbsOtherNotification": {"seqNumber": seq, "profileManagementOperation": make_bitstring([event_bit]),
                                 "notificationAddress": "smdp.example.com", "iccid": iccid_to_bcd(iccid)},
        "euiccNotificationSignature": b"\x01" * 64,
        "euiccCertificate": decode("Certificate", EUICC_CERT),
        "eumCertificate": decode("Certificate", EUM_CERT),
    }


class ScriptedEuicc:
    """ES10 backend answering from a small in-memory model; ``override[tag]`` replaces an answer with raw
    bytes, a :class:`CardStatus` or a callable.  Every decoded request is kept in ``requests``."""

    def __init__(self, *, sgp32: bool = True):
        self.sgp32 = sgp32
        self.override: dict[int, object] = {}
        self.requests: list[tuple[str, object]] = []
        self.profiles = [
            {"iccid": iccid_to_bcd(ICCID_BOOT), "isdpAid": AID_BOOT, "profileState": 1, "profileName": "Bootstrap",
             "serviceProviderName": "IoT Connect", "profileClass": 1, "fallbackAttribute": True,
             "notificationConfigurationInfo": [{"profileManagementOperation": make_bitstring([1, 2]),
                                                "notificationAddress": "smdp.example.com"}]},
            {"iccid": iccid_to_bcd(ICCID_OP), "isdpAid": AID_OP, "profileState": 0, "profileName": "Operational",
             "serviceProviderName": "Carrier", "profileNickname": "field", "profileClass": 2,
             "profileOwner": {"mccMnc": bytes.fromhex("42F001")}},
        ]
        self.notifications = [_other_notification(3, 1, ICCID_BOOT), _other_notification(4, 2, ICCID_OP)]

    def handle(self, channel: int, command: bytes) -> bytes:
        tag = int.from_bytes(command[:2], "big")
        if tag in self.override:
            answer = self.override[tag]
            if isinstance(answer, CardStatus):
                raise answer
            return answer(command) if callable(answer) else answer
        function = BY_TAG.get(tag)
        if function is None or (not self.sgp32 and tag >= 0xBF51 and tag != 0xBF43):
            raise CardStatus(0x6A88)
        request = decode(function.request_type, command)
        self.requests.append((function.name, request))
        value = getattr(self, "do_" + function.name.replace("-", "_"))(request)
        return encode(function.response_type, value)

    def do_GetEID(self, request):
        return {"eidValue": bytes.fromhex(EID)}

    def do_GetEUICCInfo1(self, request):
        return {"svn": b"\x02\x05\x00", "euiccCiPKIdListForVerification": [CI_PKID],
                "euiccCiPKIdListForSigning": [CI_PKID]}

    def do_GetEUICCInfo2(self, request):
        value = {
            "profileVersion": b"\x02\x03\x01", "svn": b"\x02\x05\x00", "euiccFirmwareVer": b"\x01\x02\x03",
            "extCardResource": bytes.fromhex("810100820300C350830207D0"),
            "uiccCapability": make_bitstring([1, 2, 4]), "rspCapability": make_bitstring([0, 1, 3]),
            "euiccCiPKIdListForVerification": [CI_PKID], "euiccCiPKIdListForSigning": [CI_PKID],
            "euiccCategory": 1, "ppVersion": b"\x01\x00\x00", "sasAcreditationNumber": "SGP32HIL-SAS-0001",
        }
        if self.sgp32:
            value["ipaMode"] = 0
            value["iotSpecificInfo"] = {"iotVersion": [b"\x01\x02\x00"], "fallbackSupported": None}
        return value

    def do_GetEUICCChallenge(self, request):
        return {"euiccChallenge": bytes(range(16))}

    def do_GetProfilesInfo(self, request):
        criteria = request.get("searchCriteria")
        profiles = self.profiles
        if criteria:
            key = {"iccid": "iccid", "isdpAid": "isdpAid", "profileClass": "profileClass"}[criteria[0]]
            profiles = [p for p in profiles if p.get(key) == criteria[1]]
        return ("profileInfoListOk", profiles)

    def _find(self, ident):
        kind, value = ident
        return next((p for p in self.profiles if p["iccid" if kind == "iccid" else "isdpAid"] == value), None)

    def do_EnableProfile(self, request):
        p = self._find(request["profileIdentifier"])
        if p is None:
            return {"enableResult": 1}
        if p["profileState"] == 1:
            return {"enableResult": 2}
        for other in self.profiles:
            other["profileState"] = 0
        p["profileState"] = 1
        return {"enableResult": 0}

    def do_DisableProfile(self, request):
        p = self._find(request["profileIdentifier"])
        if p is None:
            return {"disableResult": 1}
        p["profileState"] = 0
        return {"disableResult": 0}

    def do_DeleteProfile(self, request):
        p = self._find(request)
        if p is None:
            return {"deleteResult": 1}
        if p["profileState"] == 1:
            return {"deleteResult": 2}
        self.profiles.remove(p)
        return {"deleteResult": 0}

    def do_SetNickname(self, request):
        p = self._find(("iccid", request["iccid"]))
        if p is None:
            return {"setNicknameResult": 1}
        p["profileNickname"] = request["profileNickname"]
        return {"setNicknameResult": 0}

    def do_ListNotification(self, request):
        return ("notificationMetadataList", [n["tbsOtherNotification"] for n in self.notifications])

    def do_RetrieveNotificationsList(self, request):
        criteria = request.get("searchCriteria")
        items = self.notifications
        if criteria and criteria[0] == "seqNumber":
            items = [n for n in items if n["tbsOtherNotification"]["seqNumber"] == criteria[1]]
        return ("notificationList", [("otherSignedNotification", n) for n in items])

    def do_RemoveNotificationFromList(self, request):
        before = len(self.notifications)
        self.notifications = [n for n in self.notifications
                              if n["tbsOtherNotification"]["seqNumber"] != request["seqNumber"]]
        return {"deleteNotificationStatus": 0 if len(self.notifications) < before else 1}

    def do_GetEuiccConfiguredAddresses(self, request):
        return {"defaultDpAddress": "smdp.example.com", "rootDsAddress": "lpa.ds.gsma.com"}

    def do_SetDefaultDpAddress(self, request):
        return {"setDefaultDpAddressResult": 0}

    do_SGP32_SetDefaultDpAddress = do_SetDefaultDpAddress

    def do_GetRAT(self, request):
        return {"rat": [{"pprIds": make_bitstring([1]), "allowedOperators": [{"mccMnc": bytes.fromhex("42F001")}],
                         "pprFlags": make_bitstring([0])}]}

    def do_SGP32_eUICCMemoryReset(self, request):
        return {"resetResult": 1, "resetEimResult": 0}

    def do_eUICCMemoryReset(self, request):
        return {"resetResult": 0}

    def do_GetEimConfigurationData(self, request):
        return {"eimConfigurationDataList": [{
            "eimId": "eim-1", "eimFqdn": "127.0.0.1:8444", "eimIdType": 2, "counterValue": 5,
            "associationToken": 1, "eimPublicKeyData": ("eimCertificate", decode("Certificate", EIM_CERT)),
            "eimSupportedProtocol": make_bitstring([0]), "euiccCiPKId": CI_PKID,
        }]}

    def do_AddInitialEim(self, request):
        return ("addInitialEimOk", [("associationToken", 9) for _ in request["eimConfigurationDataList"]])

    def do_GetCerts(self, request):
        if request.get("euiccCiPKId", CI_PKID) != CI_PKID:
            return ("getCertsError", 1)
        return ("certs", {"eumCertificate": decode("Certificate", EUM_CERT),
                          "euiccCertificate": decode("Certificate", EUICC_CERT)})

    def do_ExecuteFallbackMechanism(self, request):
        return {"executeFallbackMechanismResult": 6}


@pytest.fixture
def euicc() -> ScriptedEuicc:
    return ScriptedEuicc()


@pytest.fixture
def client(euicc):
    transport = InProcessTransport(EuiccCard(euicc))
    with Es10Client(transport) as c:
        yield c
    transport.close()


# --- codings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("iccid, coded", [
    (ICCID_BOOT, "984474560000214251F8"),
    (ICCID_OP, "98882208000021436587"),
    ("8988228", "988822F8FFFFFFFFFFFF"),
])
def test_iccid_bcd_nibble_swap_and_f_padding(iccid, coded):
    assert iccid_to_bcd(iccid).hex().upper() == coded
    assert iccid_from_bcd(bytes.fromhex(coded)) == iccid


def test_iccid_rejects_bad_input():
    with pytest.raises(ValueError):
        iccid_to_bcd("89" * 11)
    with pytest.raises(ValueError):
        iccid_to_bcd("89-44")


def test_bitstring_helpers_round_trip():
    value = make_bitstring([0, 3, 9])
    assert value == (bytes.fromhex("9040"), 10)
    assert set_bits(value) == [0, 3, 9]
    assert make_bitstring([]) == (b"", 0)


def test_function_table_covers_sgp22_and_sgp32_and_names_real_types():
    expected = {0xBF20, 0xBF22, 0xBF2E, 0xBF38, 0xBF21, 0xBF36, 0xBF41, 0xBF28, 0xBF2B, 0xBF30, 0xBF35,
                0xBF43, 0xBF3C, 0xBF3F, 0xBF2D, 0xBF31, 0xBF32, 0xBF33, 0xBF34, 0xBF3E, 0xBF29, 0xBF51,
                0xBF55, 0xBF56, 0xBF57, 0xBF58, 0xBF59, 0xBF5A, 0xBF5B, 0xBF5C, 0xBF5D, 0xBF5E, 0xBF5F,
                0xBF64, 0xBF65, 0xBF42}
    assert expected <= set(BY_TAG)
    known = set(type_names())
    for f in FUNCTIONS:
        assert f.request_type in known and f.response_type in known, f


# --- functions ------------------------------------------------------------------------------------


def test_get_eid_sends_the_lpa_command(client, euicc):
    assert client.get_eid() == EID
    assert client.exchanges[-1].request.hex().upper() == "BF3E035C015A"


def test_euicc_info1_and_challenge(client):
    info = client.get_euicc_info1()
    assert info.svn == "2.5.0"
    assert info.ci_pkids_signing == (CI_PKID.hex().upper(),)
    assert client.get_euicc_challenge() == bytes(range(16))
    assert client.exchanges[-1].request.hex().upper() == "BF2E00"


def test_euicc_info2_sgp32_fields(client):
    info = client.get_euicc_info2()
    assert (info.svn, info.profile_version, info.firmware_version, info.pp_version) == \
        ("2.5.0", "2.3.1", "1.2.3", "1.0.0")
    assert info.free_nvm == 50000
    assert info.ext_card_resource.installed_applications == 0
    assert info.ext_card_resource.free_volatile == 2000
    assert info.rsp_capability == ("additionalProfile", "crlSupport", "testProfileSupport")
    assert info.uicc_capability == ("usimSupport", "isimSupport", "akaMilenage")
    assert info.euicc_category == "basicEuicc"
    assert info.sas_accreditation_number == "SGP32HIL-SAS-0001"
    assert info.ipa_mode == "ipad"
    assert info.is_sgp32
    assert info.iot_specific_info.iot_versions == ("1.2.0",)
    assert info.iot_specific_info.fallback_supported and not info.iot_specific_info.ecall_supported
    assert info.raw == client.exchanges[-1].response
    json.dumps(info.to_dict())


def test_euicc_info2_of_a_consumer_euicc_has_no_iot_info():
    transport = InProcessTransport(EuiccCard(ScriptedEuicc(sgp32=False)))
    with Es10Client(transport) as client:
        info = client.get_euicc_info2()
    assert info.iot_specific_info is None and info.ipa_mode is None and not info.is_sgp32


def test_profiles_info_decodes_iccid_state_class_fallback(client):
    boot, op = client.get_profiles_info()
    assert boot.iccid == ICCID_BOOT and op.iccid == ICCID_OP
    assert boot.isdp_aid == AID_BOOT.hex().upper()
    assert (boot.state, boot.profile_class, boot.fallback_attribute, boot.enabled) == \
        ("enabled", "provisioning", True, True)
    assert (op.state, op.profile_class, op.fallback_attribute, op.nickname) == \
        ("disabled", "operational", False, "field")
    assert boot.notification_config[0].events == ("notificationEnable", "notificationDisable")
    assert op.profile_owner.plmn == "240-10"
    json.dumps([boot.to_dict(), op.to_dict()])


def test_profiles_info_search_criteria_and_tag_list(client, euicc):
    (p,) = client.get_profiles_info(iccid=ICCID_OP)
    assert p.iccid == ICCID_OP
    request = client.exchanges[-1].request
    assert request.hex().upper() == "BF2D0EA00C5A0A" + iccid_to_bcd(ICCID_OP).hex().upper()
    assert [x.iccid for x in client.get_profiles_info(isdp_aid=AID_BOOT)] == [ICCID_BOOT]
    assert [x.iccid for x in client.get_profiles_info(profile_class="operational")] == [ICCID_OP]
    client.get_profiles_info(tags=[0x5A, 0x9F70])
    assert euicc.requests[-1][1]["tagList"] == bytes.fromhex("5A9F70")
    with pytest.raises(ValueError):
        client.get_profiles_info(iccid=ICCID_OP, profile_class="test")


def test_profiles_info_error_result(client, euicc):
    euicc.override[0xBF2D] = encode("SGP32-ProfileInfoListResponse", ("profileInfoListError", 11))
    with pytest.raises(Es10Error) as err:
        client.get_profiles_info()
    assert (err.value.function, err.value.code, err.value.name) == ("GetProfilesInfo", 11, "profileChangeOngoing")


def test_enable_disable_delete_and_their_errors(client, euicc):
    client.enable_profile(ICCID_OP, refresh=False)
    assert euicc.requests[-1] == ("EnableProfile", {"profileIdentifier": ("iccid", iccid_to_bcd(ICCID_OP)),
                                                    "refreshFlag": False})
    assert [p.state for p in client.get_profiles_info()] == ["disabled", "enabled"]
    with pytest.raises(Es10Error) as err:
        client.enable_profile(ICCID_OP)
    assert (err.value.code, err.value.name) == (2, "profileNotInDisabledState")
    with pytest.raises(Es10Error) as err:
        client.enable_profile("8900000000000000000")
    assert (err.value.function, err.value.code, err.value.name) == ("EnableProfile", 1, "iccidOrAidNotFound")
    assert "iccidOrAidNotFound (1)" in str(err.value)
    client.disable_profile(isdp_aid=AID_OP)
    assert euicc.requests[-1][1]["profileIdentifier"] == ("isdpAid", AID_OP)
    client.delete_profile(ICCID_OP)
    with pytest.raises(Es10Error) as err:
        client.delete_profile(isdp_aid=AID_OP.hex())
    assert err.value.name == "iccidOrAidNotFound"
    with pytest.raises(ValueError):
        client.enable_profile()
    with pytest.raises(ValueError):
        client.enable_profile(ICCID_OP, isdp_aid=AID_OP)


def test_set_nickname(client):
    client.set_nickname(ICCID_BOOT, "bench 3")
    assert client.get_profiles_info(iccid=ICCID_BOOT)[0].nickname == "bench 3"
    with pytest.raises(Es10Error) as err:
        client.set_nickname("8900000000000000000", "x")
    assert err.value.name == "iccidNotFound"


def test_notifications_list_retrieve_remove(client, euicc):
    meta = client.list_notification(events=["enable"])
    assert euicc.requests[-1][1] == {"profileManagementOperation": (b"\x40", 2)}
    assert [(m.seq_number, m.event, m.iccid) for m in meta] == \
        [(3, "notificationEnable", ICCID_BOOT), (4, "notificationDisable", ICCID_OP)]
    pending = client.retrieve_notifications_list()
    assert [(n.kind, n.seq_number, n.address) for n in pending] == \
        [("otherSignedNotification", 3, "smdp.example.com"), ("otherSignedNotification", 4, "smdp.example.com")]
    # the exact DER of each entry, as the eUICC signed it
    assert pending[0].der == encode("SGP32-PendingNotification", ("otherSignedNotification", euicc.notifications[0]))
    (only,) = client.retrieve_notifications_list(seq=4)
    assert only.iccid == ICCID_OP
    assert euicc.requests[-1][1] == {"searchCriteria": ("seqNumber", 4)}
    client.remove_notification_from_list(3)
    with pytest.raises(Es10Error) as err:
        client.remove_notification_from_list(3)
    assert (err.value.code, err.value.name) == (1, "nothingToDelete")
    with pytest.raises(ValueError):
        client.list_notification(events=["reboot"])


def test_retrieve_notifications_request_uses_explicit_choice_wrapper(client):
    client.retrieve_notifications_list(seq=3)
    # searchCriteria is an untagged CHOICE in an AUTOMATIC TAGS SEQUENCE: wrapped in 'A0'.
    assert client.exchanges[-1].request.hex().upper() == "BF2B05A003800103"


def test_addresses_rat_memory_reset(client, euicc):
    addresses = client.get_euicc_configured_addresses()
    assert (addresses.default_dp_address, addresses.root_ds_address) == ("smdp.example.com", "lpa.ds.gsma.com")
    client.set_default_dp_address("smdp2.example.com")
    assert client.exchanges[-1].request[:2] == b"\xBF\x3F"
    client.set_default_dp_address("smdp3.example.com", sgp32=True)
    assert client.exchanges[-1].request[:2] == b"\xBF\x65"
    (rule,) = client.get_rat()
    assert rule.ppr_ids == ("ppr1",) and rule.consent_required and rule.allowed_operators[0].plmn == "240-10"
    result = client.euicc_memory_reset(["deleteOperationalProfiles", "resetEimConfigData"])
    assert client.exchanges[-1].request.hex().upper() == "BF640482020284"
    assert (result.reset_result, result.reset_eim_result, result.ok) == ("nothingToDelete", "ok", True)
    result = client.euicc_memory_reset(["deleteOperationalProfiles"], sgp32=False)
    assert client.exchanges[-1].request[:2] == b"\xBF\x34" and result.reset_result == "ok"
    with pytest.raises(ValueError):
        client.euicc_memory_reset(["resetEimConfigData"], sgp32=False)


def test_memory_reset_failure_raises(client, euicc):
    euicc.override[0xBF64] = encode("SGP32-EuiccMemoryResetResponse", {"resetResult": 104})
    with pytest.raises(Es10Error) as err:
        client.euicc_memory_reset(["deleteOperationalProfiles"])
    assert err.value.name == "ecallActive"


def test_eim_configuration_add_initial_eim_and_certs(client, euicc):
    (eim,) = client.get_eim_configuration_data()
    assert (eim.eim_id, eim.eim_fqdn, eim.eim_id_type, eim.counter_value, eim.association_token) == \
        ("eim-1", "127.0.0.1:8444", "eimIdTypeFqdn", 5, 1)
    assert eim.supported_protocols == ("eimRetrieveHttps",)
    assert eim.eim_public_key_kind == "eimCertificate" and eim.eim_public_key_data == EIM_CERT
    assert eim.euicc_ci_pkid == CI_PKID.hex().upper()
    client.get_eim_configuration_data("eim-1")
    assert euicc.requests[-1][1] == {"searchCriteria": ("eimId", "eim-1")}
    # a 600+ byte AddInitialEim goes out in several STORE DATA blocks
    results = client.add_initial_eim([eim])
    assert [(r.ok, r.association_token) for r in results] == [(True, 9)]
    assert len([a for a in client.exchanges[-1].apdus if a.command[1] == 0xE2]) > 1
    sent = euicc.requests[-1][1]["eimConfigurationDataList"][0]
    assert sent["eimFqdn"] == "127.0.0.1:8444" and sent["eimIdType"] == 2
    assert encode("Certificate", sent["eimPublicKeyData"][1]) == EIM_CERT
    certs = client.get_certs()
    assert (certs.eum_certificate, certs.euicc_certificate) == (EUM_CERT, EUICC_CERT)
    x509.load_der_x509_certificate(certs.euicc_certificate)
    with pytest.raises(Es10Error) as err:
        client.get_certs(ci_pkid=b"\x00" * 20)
    assert err.value.name == "invalidCiPKId"


def test_add_initial_eim_error(client, euicc):
    euicc.override[0xBF57] = encode("AddInitialEimResponse", ("addInitialEimError", 2))
    with pytest.raises(Es10Error) as err:
        client.add_initial_eim([EimConfiguration("eim-2", "eim.example.com", None, 0, None, (), None, False)])
    assert err.value.name == "associatedEimAlreadyExists"


def test_fallback_result_code_named(client):
    with pytest.raises(Es10Error) as err:
        client.execute_fallback_mechanism()
    assert (err.value.function, err.value.name) == ("ExecuteFallbackMechanism", "fallbackNotAvailable")


# --- bad answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [
    bytes.fromhex("BF3E125A10") + bytes(8),  # truncated
    bytes.fromhex("BF22035A0100"),  # another function's tag
    bytes.fromhex("BF3E035A0101FF"),  # trailing garbage after a wrong-size EID
    b"\x00\x01\x02",
])
def test_malformed_card_der_raises_es10_error(client, euicc, answer):
    euicc.override[0xBF3E] = answer
    with pytest.raises(Es10Error) as err:
        client.get_eid()
    assert err.value.function == "GetEID" and err.value.code is None
    assert err.value.name == "malformedResponse"
    assert answer[:8].hex().upper() in str(err.value)
    assert err.value.der == answer


def test_empty_response_raises_es10_error(client, euicc):
    euicc.override[0xBF22] = b""
    with pytest.raises(Es10Error, match="GetEUICCInfo2: emptyResponse"):
        client.get_euicc_info2()


def test_status_word_error_is_apdu_error(client, euicc):
    euicc.override[0xBF55] = CardStatus(0x6A88)
    with pytest.raises(ApduError) as err:
        client.get_eim_configuration_data()
    assert err.value.sw == 0x6A88


def test_bad_request_value_is_value_error(client):
    with pytest.raises(ValueError, match="SetNickname"):
        client.set_nickname(ICCID_BOOT, "x" * 65)


# --- decoded trace ----------------------------------------------------------------------------------


def test_decoded_trace_names_functions_and_decodes_both_directions(client):
    client.get_eid()
    client.get_profiles_info(iccid=ICCID_BOOT)
    trace = client.trace()
    eid, profiles = trace[-2:]
    assert (eid.function, eid.tag, eid.sw) == ("GetEID", "BF3E", "9000")
    assert eid.request == {"tagList": "5A"} and eid.response == {"eidValue": EID}
    assert eid.apdus[0].command.startswith("81E29100") or eid.apdus[0].command[2:4] == "E2"
    assert profiles.response["profileInfoListOk"][0]["iccid"] == iccid_to_bcd(ICCID_BOOT).hex().upper()
    assert profiles.response["profileInfoListOk"][0]["profileState"] == 1
    json.dumps([d.to_dict() for d in trace])
    text = render_trace(trace)
    assert "GetEID [BF3E] SW 9000" in text and EID in text and "SGP.22 §5.7.20" in text
    assert "> 81E2" in text or "> 80E2" in text


def test_decoded_trace_survives_bad_data_and_bpp_segments():
    bad = Es10Exchange("GetEID", bytes.fromhex("BF3E035C015A"), bytes.fromhex("BF3E025A"), sw=0x9000)
    d = decode_exchange(bad)
    assert d.function == "GetEID" and d.decode_errors and "GetEuiccDataResponse" in d.decode_errors[0]
    assert d.response == "BF3E025A"
    segment = Es10Exchange("", bytes.fromhex("A0058703010203"), b"", sw=0x9000)
    d = decode_exchange(segment)
    assert d.function.startswith("LoadBoundProfilePackage") and d.request == [{"A0": [{"87": "010203"}]}]
    unknown = decode_exchange(Es10Exchange("", bytes.fromhex("BF7F00"), b"", sw=0x6A88, error="SW 6A88"))
    assert unknown.tag == "BF7F" and "error: SW 6A88" in render_trace([unknown])


# --- euicc info -----------------------------------------------------------------------------------


def test_collect_info_on_an_sgp32_euicc(client):
    info = collect_info(client)
    json.dumps(info)
    assert info["eid"] == EID and info["eid_valid"]
    assert info["euicc_info2"]["svn"] == "2.5.0" and info["euicc_info2"]["fallback_supported"]
    assert info["euicc_info2"]["iot_specific_info"]["iot_versions"] == ["1.2.0"]
    assert info["euicc_info2"]["free_nvm"] == 50000
    assert [(p["iccid"], p["state"], p["fallback_attribute"]) for p in info["profiles"]] == \
        [(ICCID_BOOT, "enabled", True), (ICCID_OP, "disabled", False)]
    assert info["eim_configuration"][0]["eim_fqdn"] == "127.0.0.1:8444"
    assert info["configured_addresses"]["root_ds_address"] == "lpa.ds.gsma.com"
    assert info["not_supported"] == {}
    text = format_info(info)
    assert EID in text and "check digits ok" in text
    assert "eim-1" in text and "127.0.0.1:8444" in text and ICCID_BOOT in text and "1.2.0" in text


def test_collect_info_on_a_consumer_euicc_reports_not_supported():
    euicc = ScriptedEuicc(sgp32=False)
    euicc.override[0xBF3C] = bytes.fromhex("BF3C00")  # rootDsAddress missing: malformed
    transport = InProcessTransport(EuiccCard(euicc))
    with Es10Client(transport) as client:
        info = collect_info(client)
    assert info["eim_configuration"] is None and "6A88" in info["not_supported"]["eim_configuration"]
    assert info["configured_addresses"] is None
    assert "malformedResponse" in info["not_supported"]["configured_addresses"]
    assert info["euicc_info2"]["iot_specific_info"] is None and not info["euicc_info2"]["fallback_supported"]
    text = format_info(info)
    assert "not supported" in text and "not an IoT eUICC" in text


# --- against the software eUICC (ES10 backend of sgp32hil.drivers.virtual.euicc) -------------------------


@pytest.fixture(scope="module")
def pkiset(tmp_path_factory):
    from sgp32hil.harness import pki

    return pki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def soft(tmp_path, pkiset):
    from sgp32hil.drivers.virtual.euicc.service import in_process

    euicc, transport = in_process(tmp_path / "state", pkiset)
    with Es10Client(transport) as c:
        yield euicc, c
    transport.close()
    euicc.close()


def test_software_euicc_identity_info_and_certs(soft):
    euicc, client = soft
    assert client.get_eid() == euicc.eid
    info2 = client.get_euicc_info2()
    assert info2.is_sgp32 and info2.ipa_mode is not None
    assert client.get_euicc_info1().ci_pkids_signing == info2.ci_pkids_signing
    certs = client.get_certs()
    assert certs.euicc_certificate == euicc.state.euicc_cert and certs.eum_certificate == euicc.state.eum_cert
    (eim,) = client.get_eim_configuration_data()
    assert eim.eim_fqdn and eim.eim_id
    info = collect_info(client)
    assert info["eid_valid"] and info["not_supported"] == {}


def test_software_euicc_profile_and_notification_round_trip(soft):
    euicc, client = soft
    (boot,) = [p for p in client.get_profiles_info() if p.enabled]
    assert boot.iccid == euicc.state.enabled_profile().iccid
    client.set_nickname(boot.iccid, "bench 7")
    assert client.get_profiles_info(iccid=boot.iccid)[0].nickname == "bench 7"
    with pytest.raises(Es10Error) as err:
        client.enable_profile(boot.iccid)
    assert err.value.name == "profileNotInDisabledState"
    client.disable_profile(boot.iccid, refresh=False)
    assert client.get_profiles_info(iccid=boot.iccid)[0].state == "disabled"
    pending = client.retrieve_notifications_list(events=["disable"])
    assert [(n.event, n.iccid) for n in pending][-1] == ("notificationDisable", boot.iccid)
    assert decode("SGP32-PendingNotification", pending[-1].der)[0] == pending[-1].kind
    client.remove_notification_from_list(pending[-1].seq_number)
    assert pending[-1].seq_number not in [m.seq_number for m in client.list_notification()]
    trace = render_trace(client.trace())
    assert "DisableProfile [BF32] SW 9000" in trace and "RemoveNotificationFromList [BF30]" in trace


def test_typed_results_serialise_every_field(client):
    certs = client.get_certs()
    assert certs.to_dict() == {"eum_certificate": EUM_CERT.hex().upper(), "euicc_certificate": EUICC_CERT.hex().upper()}
    (pending, _) = client.retrieve_notifications_list()
    assert bytes.fromhex(pending.to_dict()["der"]) == pending.der
