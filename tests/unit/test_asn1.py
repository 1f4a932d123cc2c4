"""ASN.1 modules and codec: tags (SGP.22 v2.5 / SGP.32 v1.2), vectors, raw signed parts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgp32hil.harness import asn1
from sgp32hil.harness.asn1 import Asn1Error, decode, encode, tag_of

EID = bytes.fromhex("89049032123451234512345678901235")
ICCID = bytes.fromhex("98001032547698103214")
SKI = bytes.fromhex("f54172bdf98a95d65cbeb88a38a1c11d800a85c3")


def tlv(tag: str, *parts: bytes | str) -> bytes:
    value = b"".join(bytes.fromhex(p) if isinstance(p, str) else p for p in parts)
    n = len(value)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes.fromhex(tag) + length + value


TAGS = [
    # ES10a
    ("EuiccConfiguredAddressesRequest", "BF3C"), ("EuiccConfiguredAddressesResponse", "BF3C"),
    ("SetDefaultDpAddressRequest", "BF3F"), ("SetDefaultDpAddressResponse", "BF3F"),
    # ES10b
    ("GetEuiccInfo1Request", "BF20"), ("EUICCInfo1", "BF20"),
    ("GetEuiccInfo2Request", "BF22"), ("EUICCInfo2", "BF22"), ("SGP32-EUICCInfo2", "BF22"),
    ("PrepareDownloadRequest", "BF21"), ("PrepareDownloadResponse", "BF21"),
    ("SGP32-PrepareDownloadResponse", "BF21"),
    ("GetEuiccChallengeRequest", "BF2E"), ("GetEuiccChallengeResponse", "BF2E"),
    ("AuthenticateServerRequest", "BF38"), ("AuthenticateServerResponse", "BF38"),
    ("SGP32-AuthenticateServerResponse", "BF38"),
    ("BoundProfilePackage", "BF36"), ("ProfileInstallationResult", "BF37"),
    ("SGP32-ProfileInstallationResult", "BF37"), ("ProfileInstallationResultData", "BF27"),
    ("InitialiseSecureChannelRequest", "BF23"), ("ConfigureISDPRequest", "BF24"),
    ("StoreMetadataRequest", "BF25"), ("SGP32-StoreMetadataRequest", "BF25"),
    ("ReplaceSessionKeysRequest", "BF26"), ("UpdateMetadataRequest", "BF2A"),
    ("ListNotificationRequest", "BF28"), ("ListNotificationResponse", "BF28"),
    ("NotificationMetadata", "BF2F"),
    ("RetrieveNotificationsListRequest", "BF2B"), ("RetrieveNotificationsListResponse", "BF2B"),
    ("SGP32-RetrieveNotificationsListRequest", "BF2B"),
    ("SGP32-RetrieveNotificationsListResponse", "BF2B"),
    ("NotificationSentRequest", "BF30"), ("NotificationSentResponse", "BF30"),
    ("LoadCRLRequest", "BF35"), ("LoadCRLResponse", "BF35"),
    ("GetRatRequest", "BF43"), ("GetRatResponse", "BF43"),
    ("CancelSessionRequest", "BF41"), ("CancelSessionResponse", "BF41"),
    ("SGP32-CancelSessionResponse", "BF41"),
    # ES10c
    ("ProfileInfoListRequest", "BF2D"), ("ProfileInfoListResponse", "BF2D"),
    ("SGP32-ProfileInfoListResponse", "BF2D"), ("ProfileInfo", "E3"), ("SGP32-ProfileInfo", "E3"),
    ("EnableProfileRequest", "BF31"), ("EnableProfileResponse", "BF31"),
    ("DisableProfileRequest", "BF32"), ("DisableProfileResponse", "BF32"),
    ("DeleteProfileRequest", "BF33"), ("DeleteProfileResponse", "BF33"),
    ("EuiccMemoryResetRequest", "BF34"), ("EuiccMemoryResetResponse", "BF34"),
    ("GetEuiccDataRequest", "BF3E"), ("GetEuiccDataResponse", "BF3E"),
    ("SetNicknameRequest", "BF29"), ("SetNicknameResponse", "BF29"),
    ("ISDRProprietaryApplicationTemplate", "E0"), ("LpaeActivationRequest", "BF42"),
    # SGP.32 ES10 additions
    ("ISDRProprietaryApplicationTemplateIoT", "E1"),
    ("IpaeActivationRequest", "BF42"), ("IpaeActivationResponse", "BF42"),
    ("EuiccPackageRequest", "BF51"), ("EuiccPackageResult", "BF51"),
    ("IpaEuiccDataRequest", "BF52"), ("IpaEuiccDataResponse", "BF52"),
    ("EimAcknowledgements", "BF53"),
    ("ProfileDownloadTriggerRequest", "BF54"), ("ProfileDownloadTriggerResult", "BF54"),
    ("GetEimConfigurationDataRequest", "BF55"), ("GetEimConfigurationDataResponse", "BF55"),
    ("GetCertsRequest", "BF56"), ("GetCertsResponse", "BF56"),
    ("AddInitialEimRequest", "BF57"), ("AddInitialEimResponse", "BF57"),
    ("ProfileRollbackRequest", "BF58"), ("ProfileRollbackResponse", "BF58"),
    ("ConfigureImmediateProfileEnablingRequest", "BF59"),
    ("ConfigureImmediateProfileEnablingResponse", "BF59"),
    ("ImmediateEnableRequest", "BF5A"), ("ImmediateEnableResponse", "BF5A"),
    ("EnableEmergencyProfileRequest", "BF5B"), ("EnableEmergencyProfileResponse", "BF5B"),
    ("DisableEmergencyProfileRequest", "BF5C"), ("DisableEmergencyProfileResponse", "BF5C"),
    ("ExecuteFallbackMechanismRequest", "BF5D"), ("ExecuteFallbackMechanismResponse", "BF5D"),
    ("ReturnFromFallbackRequest", "BF5E"), ("ReturnFromFallbackResponse", "BF5E"),
    ("GetConnectivityParametersRequest", "BF5F"), ("GetConnectivityParametersResponse", "BF5F"),
    ("SGP32-EuiccMemoryResetRequest", "BF64"), ("SGP32-EuiccMemoryResetResponse", "BF64"),
    ("SGP32-SetDefaultDpAddressRequest", "BF65"), ("SGP32-SetDefaultDpAddressResponse", "BF65"),
    # ESipa
    ("InitiateAuthenticationRequestEsipa", "BF39"), ("InitiateAuthenticationResponseEsipa", "BF39"),
    ("AuthenticateClientRequestEsipa", "BF3B"), ("AuthenticateClientResponseEsipa", "BF3B"),
    ("GetBoundProfilePackageRequestEsipa", "BF3A"), ("GetBoundProfilePackageResponseEsipa", "BF3A"),
    ("CancelSessionRequestEsipa", "BF41"), ("CancelSessionResponseEsipa", "BF41"),
    ("HandleNotificationEsipa", "BF3D"),
    ("GetEimPackageRequest", "BF4F"), ("GetEimPackageResponse", "BF4F"),
    ("ProvideEimPackageResult", "BF50"), ("ProvideEimPackageResultResponse", "BF50"),
    ("TransferEimPackageRequest", "BF4E"), ("TransferEimPackageResponse", "BF4E"),
    # ES9+ / ES11 ASN.1 binding
    ("InitiateAuthenticationRequest", "BF39"), ("InitiateAuthenticationResponse", "BF39"),
    ("AuthenticateClientRequest", "BF3B"), ("AuthenticateClientResponseEs9", "BF3B"),
    ("GetBoundProfilePackageRequest", "BF3A"), ("GetBoundProfilePackageResponse", "BF3A"),
    ("CancelSessionRequestEs9", "BF41"), ("CancelSessionResponseEs9", "BF41"),
    ("HandleNotification", "BF3D"), ("AuthenticateClientResponseEs11", "BF40"),
    ("RemoteProfileProvisioningRequest", "A2"), ("RemoteProfileProvisioningResponse", "A2"),
]


@pytest.mark.parametrize("type_name,expected", TAGS, ids=[t for t, _ in TAGS])
def test_top_level_tag(type_name, expected):
    assert tag_of(type_name) == bytes.fromhex(expected)


def test_untagged_choice_has_no_tag():
    with pytest.raises(Asn1Error, match="EsipaMessageFromIpaToEim"):
        tag_of("EsipaMessageFromIpaToEim")


def test_unknown_type_is_named():
    with pytest.raises(Asn1Error, match="'NoSuchType'"):
        decode("NoSuchType", b"\x30\x00")


# Hand-assembled vectors ------------------------------------------------------

def test_get_euicc_data_request_vector():
    der = bytes.fromhex("BF3E035C015A")
    assert decode("GetEuiccDataRequest", der) == {"tagList": b"\x5a"}
    assert encode("GetEuiccDataRequest", {"tagList": b"\x5a"}) == der


def test_no_eim_package_vector():
    der = bytes.fromhex("BF4F03020101")
    assert decode("GetEimPackageResponse", der) == ("eimPackageError", 1)
    assert decode("EsipaMessageFromEimToIpa", der) == ("getEimPackageResponse", ("eimPackageError", 1))
    assert encode("EsipaMessageFromEimToIpa", ("getEimPackageResponse", ("eimPackageError", 1))) == der


def test_get_eim_package_request_vector():
    der = bytes.fromhex("BF4F125A10") + EID
    assert decode("GetEimPackageRequest", der) == {"eidValue": EID}
    assert decode("EsipaMessageFromIpaToEim", der) == ("getEimPackageRequest", {"eidValue": EID})
    full = tlv("BF4F", "5A10", EID, "8000", "810101", "8203", "62F210")
    assert decode("GetEimPackageRequest", full) == {
        "eidValue": EID, "notifyStateChange": None, "stateChangeCause": 1, "rPLMN": b"\x62\xf2\x10"}
    assert encode("GetEimPackageRequest", decode("GetEimPackageRequest", full)) == full


@pytest.mark.parametrize("type_name,der", [
    ("ProfileInfoListRequest", "BF2D00"),
    ("GetEuiccInfo2Request", "BF2200"),
    ("GetEuiccInfo1Request", "BF2000"),
    ("GetEuiccChallengeRequest", "BF2E00"),
    ("GetRatRequest", "BF4300"),
    ("GetConnectivityParametersRequest", "BF5F00"),
])
def test_empty_requests(type_name, der):
    assert decode(type_name, bytes.fromhex(der)) == {}
    assert encode(type_name, {}) == bytes.fromhex(der)


def test_retrieve_notifications_list_search_criteria_is_wrapped():
    assert encode("RetrieveNotificationsListRequest",
                  {"searchCriteria": ("seqNumber", 5)}).hex().upper() == "BF2B05A003800105"
    assert encode("SGP32-RetrieveNotificationsListRequest",
                  {"searchCriteria": ("euiccPackageResults", None)}).hex().upper() == "BF2B04A0028200"


def sgp32_euicc_info2() -> bytes:
    return tlv(
        "BF22",
        "8103020301", "8203020500", "8303010203", "8403810100",
        "8505020076DE00",  # uiccCapability: 2 unused bits
        "8803020780",
        tlv("A9", tlv("04", SKI)), tlv("AA", tlv("04", SKI)),
        "0403010000",  # ppVersion
        "0C00",  # sasAcreditationNumber
        "900100",  # ipaMode ipad
        tlv("B4", tlv("A0", "0403010200"), "8100", "8200"),  # iotSpecificInfo
    )


def test_sgp32_euicc_info2_with_ipa_mode():
    der = sgp32_euicc_info2()
    info = decode("SGP32-EUICCInfo2", der)
    assert info["ipaMode"] == 0
    assert info["iotSpecificInfo"] == {
        "iotVersion": [b"\x01\x02\x00"], "ecallSupported": None, "fallbackSupported": None}
    assert info["euiccCiPKIdListForSigning"] == [SKI]
    assert info["svn"] == b"\x02\x05\x00"
    assert encode("SGP32-EUICCInfo2", info) == der
    plain = decode("EUICCInfo2", der)
    assert plain["svn"] == b"\x02\x05\x00" and "ipaMode" not in plain


def test_euicc_package_request_vector():
    signed = tlv("30", tlv("80", b"eIM"), "5A10", EID, "810105",
                 tlv("A0", tlv("A3", "5A0A", ICCID, "0500")))
    sig = bytes(range(64))
    der = tlv("BF51", signed, tlv("5F37", sig))
    value = decode("EuiccPackageRequest", der)
    assert value == {
        "euiccPackageSigned": {
            "eimId": "eIM", "eidValue": EID, "counterValue": 5,
            "euiccPackage": ("psmoList", [("enable", {"iccid": ICCID, "rollbackFlag": None})]),
        },
        "eimSignature": sig,
    }
    assert encode("EuiccPackageRequest", value) == der
    part = asn1.euicc_package_signed(der)
    assert part.data == signed and part.signature == sig


# Round trips -----------------------------------------------------------------

ROUND_TRIPS = [
    ("EuiccPackageResult", ("euiccPackageResultSigned", {
        "euiccPackageResultDataSigned": {
            "eimId": "eim.example", "counterValue": 7, "eimTransactionId": b"\x01\x02", "seqNumber": 3,
            "euiccResult": [("enableResult", 0), ("setFallbackAttributeResult", 2),
                            ("processingTerminated", 3),
                            ("setDefaultDpAddressResult", {"setDefaultDpAddressResult": 0})]},
        "euiccSignEPR": bytes(64)})),
    ("EuiccPackageResult", ("euiccPackageErrorUnsigned", {"eimId": "e", "associationToken": 4})),
    ("AddInitialEimRequest", {"eimConfigurationDataList": [{
        "eimId": "eIM", "eimFqdn": "eim.example.com", "eimIdType": 2, "counterValue": 1,
        "associationToken": 1, "eimSupportedProtocol": (b"\x80", 1), "euiccCiPKId": SKI,
        "indirectProfileDownload": None}]}),
    ("AddInitialEimResponse", ("addInitialEimOk", [("associationToken", 1), ("addOk", None)])),
    ("ProfileRollbackResponse", {"cmdResult": 0, "eUICCPackageResult": (
        "euiccPackageErrorUnsigned", {"eimId": "x"})}),
    ("ProvideEimPackageResult", {"eidValue": EID, "eimPackageResult": (
        "ePRAndNotifications", {
            "euiccPackageResult": ("euiccPackageErrorUnsigned", {"eimId": "x"}),
            "notificationList": [("compactOtherSignedNotification", {
                "tbsOtherNotification": {"seqNumber": 9, "profileManagementOperation": (b"\x40", 2),
                                         "notificationAddress": "smdp.example", "iccid": ICCID},
                "euiccNotificationSignature": bytes(64)})]})}),
    ("ProvideEimPackageResultResponse", ("eimAcknowledgements", [1, 2, 300])),
    ("ProvideEimPackageResultResponse", ("emptyResponse", {})),
    ("IpaEuiccDataRequest", {"tagList": b"\x80\xbf\x20\xbf\x22", "eimTransactionId": b"\x11"}),
    ("ProfileDownloadTriggerRequest", {"profileDownloadData": (
        "activationCode", "1$smdp.example.com$MATCHING-ID"), "eimTransactionId": b"\x01"}),
    ("SGP32-EuiccMemoryResetRequest", {"resetOptions": (b"\x84", 6)}),
    ("ExecuteFallbackMechanismRequest", {"refreshFlag": True}),
    ("ExecuteFallbackMechanismResponse", {"executeFallbackMechanismResult": 104}),
    ("SGP32-ProfileInfoListResponse", ("profileInfoListOk", [{
        "iccid": ICCID, "profileState": 1, "profileClass": 2, "fallbackAttribute": True,
        "fallbackAllowed": True}])),
    ("EnableProfileRequest", {"profileIdentifier": ("iccid", ICCID), "refreshFlag": True}),
    ("DeleteProfileRequest", ("isdpAid", bytes.fromhex("A0000005591010FFFFFFFF8900001100"))),
    ("StoreMetadataRequest", {"iccid": ICCID, "serviceProviderName": "SP", "profileName": "P",
                              "profileClass": 1, "serviceSpecificDataStoredInEuicc": [
                                  {"vendorOid": "2.999.10", "vendorSpecificData": b"\x04\x01\xaa"}]}),
    ("CancelSessionRequestEsipa", {"transactionId": b"\x01", "cancelSessionResponse": (
        "cancelSessionResponseError", 5)}),
    ("EsipaMessageFromEimToIpa", ("initiateAuthenticationResponseEsipa", (
        "initiateAuthenticationErrorEsipa", 52))),
    ("ProfileInstallationResult", {
        "profileInstallationResultData": {
            "transactionId": b"\x01" * 16,
            "notificationMetadata": {"seqNumber": 1, "profileManagementOperation": (b"\x80", 1),
                                     "notificationAddress": "smdp.example", "iccid": ICCID},
            "smdpOid": "2.999.10",
            "finalResult": ("successResult", {"aid": bytes(16), "simaResponse": b"\x30\x00"})},
        "euiccSignPIR": bytes(64)}),
]


@pytest.mark.parametrize("type_name,value", ROUND_TRIPS, ids=[t for t, _ in ROUND_TRIPS])
def test_round_trip(type_name, value):
    der = encode(type_name, value)
    if not type_name.startswith("Esipa"):
        assert der.startswith(tag_of(type_name))
    assert decode(type_name, der) == value
    assert encode(type_name, decode(type_name, der)) == der


ESIPA_WRAPPED = [
    ("EsipaMessageFromEimToIpa", "getEimPackageResponse", "GetEimPackageResponse",
     ("eimPackageError", 1)),
    ("EsipaMessageFromEimToIpa", "provideEimPackageResultResponse", "ProvideEimPackageResultResponse",
     ("eimAcknowledgements", [1])),
    ("EsipaMessageFromEimToIpa", "cancelSessionResponseEsipa", "CancelSessionResponseEsipa",
     ("cancelSessionOk", {})),
    ("EsipaMessageFromEimToIpa", "transferEimPackageRequest", "TransferEimPackageRequest",
     ("eimAcknowledgements", [2])),
    ("EsipaMessageFromIpaToEim", "handleNotificationEsipa", "HandleNotificationEsipa",
     ("provideEimPackageResult", {"eimPackageResult": (
         "eimPackageResultResponseError", {"eimPackageResultErrorCode": 1})})),
    ("EsipaMessageFromIpaToEim", "transferEimPackageResponse", "TransferEimPackageResponse",
     ("eimPackageReceived", None)),
    ("EsipaMessageFromIpaToEim", "provideEimPackageResult", "ProvideEimPackageResult",
     {"eimPackageResult": ("euiccPackageResult", ("euiccPackageErrorUnsigned", {"eimId": "a"}))}),
]


@pytest.mark.parametrize("outer,alt,inner,value", ESIPA_WRAPPED, ids=[a for _, a, _, _ in ESIPA_WRAPPED])
def test_esipa_wrapper_adds_no_second_tag(outer, alt, inner, value):
    """X.680 31.2.7: '[n] T' with T a tagged CHOICE is implicit, so the ESipa CHOICE
    encodes exactly like the bare message."""
    assert encode(outer, (alt, value)) == encode(inner, value)


def test_authenticate_client_request_single_bf38():
    resp = ("authenticateResponseError", {"transactionId": b"\x01", "authenticateErrorCode": 7})
    der = encode("AuthenticateClientRequest", {"transactionId": b"\x01", "authenticateServerResponse": resp})
    assert der == tlv("BF3B", "800101", encode("AuthenticateServerResponse", resp))
    assert der.hex().upper() == "BF3B0E800101BF3808A106800101020107"


def test_bound_profile_package_layout():
    bpp = {
        "initialiseSecureChannelRequest": {
            "remoteOpId": 1, "transactionId": b"\x01" * 16,
            "controlRefTemplate": {"keyType": b"\x88", "keyLen": b"\x10", "hostId": b"host"},
            "smdpOtpk": b"\x04" + bytes(64), "smdpSign": bytes(64)},
        "firstSequenceOf87": [b"\x01\x02"],
        "sequenceOf88": [b"\x03"],
        "sequenceOf86": [b"\x05", b"\x06"],
    }
    der = encode("BoundProfilePackage", bpp)
    top = asn1.parse_single(der)
    assert [c.tag.hex().upper() for c in top.children()] == ["BF23", "A0", "A1", "A3"]
    isc = top.children()[0]
    assert [c.tag.hex().upper() for c in isc.children()] == ["82", "80", "A6", "5F49", "5F37"]
    assert asn1.raw_field(der, ["BF36", "A3", 1]) == bytes.fromhex("860106")
    part = asn1.initialise_secure_channel_signed(isc.raw)
    assert part.data == b"".join(c.raw for c in isc.children()[:4])
    assert part.signature == bytes(64)


def test_oid_with_large_second_arc():
    der = encode("DpProprietaryData", {"dpOid": "2.999.10"})
    assert der == bytes.fromhex("3005800388370A")
    assert decode("DpProprietaryData", der) == {"dpOid": "2.999.10"}


def test_profile_elements_round_trip():
    header = ("header", {
        "major-version": 2, "minor-version": 3, "profileType": "sgp32-hil test", "iccid": ICCID,
        "eUICC-Mandatory-services": {"usim": None, "milenage": None},
        "eUICC-Mandatory-GFSTEList": ["2.23.143.1.2.1", "2.23.143.1.2.4"]})
    usim = ("usim", {
        "usim-header": {"mandated": None, "identification": 4},
        "templateID": "2.23.143.1.2.4",
        "adf-usim": [("fileDescriptor", {"dfName": bytes.fromhex("A0000000871002FF33FF018900000100")})],
        "ef-imsi": [("fillFileContent", bytes.fromhex("082999010000000010"))],
        "ef-arr": [], "ef-ust": [], "ef-spn": [], "ef-est": [], "ef-acc": [], "ef-ecc": []})
    end = ("end", {"end-header": {"mandated": None, "identification": 99}})
    for pe, tag in ((header, "A0"), (usim, "B3"), (end, "AA")):
        der = encode("ProfileElement", pe)
        assert der[:1].hex().upper() == tag
        assert encode("ProfileElement", decode("ProfileElement", der)) == der
    value = decode("ProfileElement", encode("ProfileElement", usim))[1]
    assert value["ef-imsi"] == [("fillFileContent", bytes.fromhex("082999010000000010"))]
    assert value["adf-usim"][0][1]["lcsi"] == b"\x05"  # TCA default, omitted in DER


def test_x509_certificate_round_trip():
    """RFC 5280 modules: a P-256 certificate with RSP-style extensions re-encodes identically."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CI")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(datetime.datetime(2024, 1, 1)).not_valid_after(datetime.datetime(2060, 1, 1))
        .add_extension(ski, False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .add_extension(x509.CertificatePolicies(
            [x509.PolicyInformation(x509.ObjectIdentifier("2.23.146.1.2.1.0"), None)]), True)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    value = decode("Certificate", der)
    assert encode("Certificate", value) == der
    ext = {e["extnID"]: e["extnValue"] for e in value["tbsCertificate"]["extensions"]}
    assert decode("SubjectKeyIdentifier", ext["2.5.29.14"]) == ski.digest
    assert decode("AuthorityKeyIdentifier", ext["2.5.29.35"]) == {"keyIdentifier": ski.digest}
    assert decode("CertificatePolicies", ext["2.5.29.32"]) == [{"policyIdentifier": "2.23.146.1.2.1.0"}]


# Raw signed parts --------------------------------------------------------------

def _euicc_info2_min() -> bytes:
    return sgp32_euicc_info2()


def test_euicc_signed1_is_exact_bytes_with_noncanonical_siblings():
    signed1 = tlv("30", "800101", tlv("83", b"smdp.example"), tlv("84", bytes(16)),
                  _euicc_info2_min(),
                  tlv("A0", tlv("A1", tlv("80", b"AC"), tlv("A1", "800435290611", "A100"))))
    sig = bytes(range(1, 65))
    # Signature and certificates use long-form lengths that DER forbids.
    sig_tlv = bytes.fromhex("5F378140") + sig
    cert = bytes.fromhex("30820003") + b"\x02\x01\x01"
    der = tlv("BF38", tlv("A0", signed1, sig_tlv, cert, cert))
    part = asn1.euicc_signed1(der)
    assert part.data == signed1
    assert part.signature == sig and part.signature_tlv == sig_tlv
    assert asn1.raw_field(der, ["BF38", "A0", "30"]) == signed1
    assert asn1.raw_field(der, ["BF38", 0, 0, "BF22", "90"]) == bytes.fromhex("900100")


def test_signed_part_keeps_noncanonical_encoding():
    # BOOLEAN TRUE as 01 is valid BER but not DER: a re-encoding would differ.
    signed2 = bytes.fromhex("30 0B 80 01 07 01 01 01 5F 49 02 04 00".replace(" ", ""))
    sig = bytes(64)
    der = tlv("BF21", signed2, tlv("5F37", sig), tlv("30", "020101"))
    part = asn1.smdp_signed2(der)
    assert part.data == signed2
    reencoded = encode("SmdpSigned2", decode("SmdpSigned2", signed2))
    assert reencoded != signed2


def test_other_signed_extractors():
    euicc_signed2 = tlv("30", "800101", tlv("5F49", b"\x04" + bytes(64)))
    der = tlv("BF21", tlv("A0", euicc_signed2, tlv("5F37", bytes(64))))
    assert asn1.euicc_signed2(der).data == euicc_signed2

    server_signed = tlv("30", "800101", tlv("81", bytes(16)), tlv("83", b"a"), tlv("84", bytes(16)))
    auth_req = tlv("BF38", server_signed, tlv("5F37", b"\x01" * 64), "0414" + SKI.hex())
    assert asn1.server_signed1(auth_req).data == server_signed
    init_resp = tlv("BF39", tlv("A0", "800101", server_signed, tlv("5F37", b"\x02" * 64)))
    assert asn1.server_signed1(init_resp).signature == b"\x02" * 64

    data = tlv("30", "800101", "810101", "830101", tlv("30"))
    result = tlv("BF51", tlv("A0", data, tlv("5F37", b"\x03" * 64)))
    assert asn1.euicc_package_result_signed(result).data == data
    with pytest.raises(Asn1Error, match="A2"):
        asn1.euicc_package_result_signed(tlv("BF51", tlv("A2", tlv("80", b"e"))))

    pir_data = tlv("BF27", "800101")
    pir = tlv("BF37", pir_data, tlv("5F37", b"\x04" * 64))
    assert asn1.profile_installation_result_data(pir).data == pir_data

    meta = tlv("BF2F", "800101", "81020780", tlv("0C", b"x"))
    osn = tlv("30", meta, tlv("5F37", b"\x05" * 64), tlv("30"), tlv("30"))
    assert asn1.notification_metadata(osn).data == meta

    cs_signed = tlv("30", "800101", "8103883701", "820100")
    cs = tlv("BF41", tlv("A0", cs_signed, tlv("5F37", b"\x06" * 64)))
    assert asn1.euicc_cancel_session_signed(cs).data == cs_signed


# Bad input -----------------------------------------------------------------------

@pytest.mark.parametrize("der,fragment", [
    (b"", "no data"),
    (bytes.fromhex("BF"), "GetEimPackageResponse"),
    (bytes.fromhex("BF4F05020101"), "GetEimPackageResponse"),
    (bytes.fromhex("BF4F03020101FF"), "1 unexpected byte"),
    (bytes.fromhex("3000"), "bf4f"),
])
def test_bad_der_raises_readable_error(der, fragment):
    with pytest.raises(Asn1Error) as info:
        decode("GetEimPackageResponse", der)
    message = str(info.value)
    assert "GetEimPackageResponse" in message and fragment in message
    assert "Traceback" not in message


def test_bad_values_raise_asn1error():
    with pytest.raises(Asn1Error, match="GetEimPackageRequest.*eidValue"):
        encode("GetEimPackageRequest", {"eidValue": b"\x89"})
    with pytest.raises(Asn1Error, match="EuiccPackageRequest"):
        encode("EuiccPackageRequest", {"euiccPackageSigned": 5})
    with pytest.raises(Asn1Error, match="expected bytes"):
        decode("GetEimPackageRequest", "BF4F00")


@pytest.mark.parametrize("der,fragment", [
    (bytes.fromhex("BF38"), "missing length"),
    (bytes.fromhex("BF3805A003"), "declares 5 bytes"),
    (bytes.fromhex("BF3880"), "indefinite"),
    (bytes.fromhex("BF38850000000000"), "5 octets"),
    (bytes.fromhex("BF380230000000"), "unexpected"),
])
def test_tlv_walker_is_strict(der, fragment):
    with pytest.raises(asn1.TlvError, match=fragment):
        asn1.euicc_signed1(der)


def test_raw_field_missing_path_names_what_exists():
    with pytest.raises(asn1.TlvError, match=r"no tag A1 \(found A0\)"):
        asn1.raw_field(bytes.fromhex("BF3804A0023000"), ["BF38", "A1"])


FUZZ_TYPES = ["EsipaMessageFromIpaToEim", "EsipaMessageFromEimToIpa", "EuiccPackageRequest",
              "SGP32-EUICCInfo2", "AuthenticateServerResponse", "ProfileElement", "Certificate"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FUZZ_TYPES), st.binary(max_size=64))
def test_random_bytes_only_raise_asn1error(type_name, data):
    try:
        decode(type_name, data)
    except Asn1Error:
        pass
    try:
        asn1.raw_field(data, [0, 0])
    except Asn1Error:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_random_bytes_behind_a_valid_tag(data):
    der = b"\xbf\x4f" + bytes([len(data)]) + data
    for type_name in ("GetEimPackageResponse", "EsipaMessageFromEimToIpa"):
        try:
            decode(type_name, der)
        except Asn1Error:
            pass


HANG_PROBE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))
from sgp32hil.harness import asn1
try:
    asn1.decode("AddInitialEimRequest", bytes.fromhex("BF5704A0020400"))
except asn1.Asn1Error as exc:
    print("rejected:", exc)
"""


def test_sequence_of_with_a_foreign_element_is_rejected_not_looped():
    """asn1tools issue #180: a SEQUENCE OF element with the wrong tag must not loop allocating memory."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", HANG_PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.startswith("rejected:")


@pytest.mark.parametrize("n, octets", [(0, "00"), (127, "7F"), (128, "8180"), (255, "81FF"), (256, "820100"),
                                       (65536, "83010000")])
def test_encode_length_and_tlv_round_trip(n, octets):
    from sgp32hil.harness.asn1 import encode_length, parse_single, tlv

    assert encode_length(n).hex().upper() == octets
    der = tlv(b"\xbf\x51", b"\xaa" * n)
    assert parse_single(der).value == b"\xaa" * n and parse_single(der).tag == b"\xbf\x51"
