"""Order parameters and the ESipa packages built from them (SGP.32 v1.2 §2.11, §5.14.3).

``validate(kind, params)`` checks an order's parameters (``OrderError`` names the offending field) and
returns them normalised (JSON-able, stored with the order). ``euicc_package_request`` builds and signs
EuiccPackageRequest 'BF51': eimSignature is ECDSA-SHA256 (TR-03111 r||s) over DER(euiccPackageSigned)
followed by the associationToken DO '84' when the eIM holds one (§2.11.1.1). ``describe_result`` turns a
decoded EuiccPackageResult into the order's stored outcome ({"enableResult": "ok", ...}).
"""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .. import asn1
from ..asn1 import tlv
from ..asn1.signed import eim_signature_input
from ..pki import Credential

__all__ = ["KINDS", "OrderError", "describe_result", "euicc_package_request", "ipa_euicc_data_request",
           "profile_download_trigger", "validate"]

KINDS = ("download", "psmo", "eco", "euicc_data")

PSMO_NAMES = ("enable", "disable", "delete", "listProfileInfo", "getRAT", "configureImmediateEnable",
              "setFallbackAttribute", "unsetFallbackAttribute", "setDefaultDpAddress")
ECO_NAMES = ("addEim", "deleteEim", "updateEim", "listEim")
_ICCID_RE = re.compile(r"[0-9]{18,19}[0-9F]?")
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_PROTOCOLS = {"retrieveHttps": 0, "retrieveCoaps": 1, "injectHttps": 2, "injectCoaps": 3, "proprietary": 4}
_ID_TYPES = {"oid": 1, "fqdn": 2, "proprietary": 3}


class OrderError(ValueError):
    """Invalid order parameters; ``field`` names the offending one (dotted path)."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


# --- validation ---------------------------------------------------------------------------------------


def _str(obj: dict, key: str, where: str, *, optional: bool = False, max_len: int = 255) -> str | None:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise OrderError("is required", f"{where}.{key}")
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise OrderError(f"expected a non-empty string of at most {max_len} characters", f"{where}.{key}")
    return value


def _bool(obj: dict, key: str, where: str, default: bool = False) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise OrderError("expected true or false", f"{where}.{key}")
    return value


def _iccid(obj: dict, where: str) -> str:
    value = obj.get("iccid")
    if not isinstance(value, str) or not _ICCID_RE.fullmatch(value.upper()):
        raise OrderError("expected an ICCID of 18 to 20 digits", f"{where}.iccid")
    return value.upper()


def _only(obj: Any, allowed: tuple[str, ...], where: str) -> dict:
    if not isinstance(obj, dict):
        raise OrderError("expected an object", where)
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise OrderError(f"unknown field {unknown[0]!r} (allowed: {', '.join(allowed) or 'none'})",
                         f"{where}.{unknown[0]}")
    return obj


def _one_op(item: Any, names: tuple[str, ...], where: str) -> tuple[str, dict]:
    if not isinstance(item, dict) or len(item) != 1:
        raise OrderError(f"expected an object with exactly one operation ({', '.join(names)})", where)
    (name, body), = item.items()
    if name not in names:
        raise OrderError(f"unknown operation {name!r} (known: {', '.join(names)})", where)
    return name, body if body is not None else {}


def _psmo(name: str, body: Any, where: str) -> dict:
    w = f"{where}.{name}"
    if name == "enable":
        _only(body, ("iccid", "rollback"), w)
        return {"iccid": _iccid(body, w), "rollback": _bool(body, "rollback", w)}
    if name in ("disable", "delete", "setFallbackAttribute"):
        _only(body, ("iccid",), w)
        return {"iccid": _iccid(body, w)}
    if name in ("listProfileInfo", "getRAT", "unsetFallbackAttribute"):
        _only(body, (), w)
        return {}
    if name == "configureImmediateEnable":
        _only(body, ("enable", "smdp_address", "smdp_oid"), w)
        out: dict[str, Any] = {"enable": _bool(body, "enable", w)}
        if (address := _str(body, "smdp_address", w, optional=True)) is not None:
            out["smdp_address"] = address
        if (oid := _str(body, "smdp_oid", w, optional=True)) is not None:
            if not re.fullmatch(r"[0-2](\.[0-9]+)+", oid):
                raise OrderError("expected a dotted OID", f"{w}.smdp_oid")
            out["smdp_oid"] = oid
        return out
    if name == "setDefaultDpAddress":
        _only(body, ("address",), w)
        return {"address": _str(body, "address", w)}
    raise OrderError(f"unknown PSMO {name!r}", where)  # pragma: no cover - _one_op checked the name


def _eim_config(body: Any, w: str, *, update: bool) -> dict:
    _only(body, ("eim_id", "fqdn", "public_key_pem", "certificate_pem", "counter_value", "association_token",
                 "eim_id_type", "supported_protocols", "euicc_ci_pkid", "indirect_profile_download"), w)
    out: dict[str, Any] = {"eim_id": _str(body, "eim_id", w, max_len=128)}
    if (fqdn := _str(body, "fqdn", w, optional=True)) is not None:
        out["fqdn"] = fqdn
    if "public_key_pem" in body and "certificate_pem" in body:
        raise OrderError("give public_key_pem or certificate_pem, not both", f"{w}.certificate_pem")
    if "public_key_pem" in body:
        try:
            key = serialization.load_pem_public_key(_str(body, "public_key_pem", w, max_len=10000).encode())
            key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        except (ValueError, TypeError) as exc:
            raise OrderError(f"not a PEM public key ({exc})", f"{w}.public_key_pem") from None
        out["public_key_pem"] = body["public_key_pem"]
    if "certificate_pem" in body:
        try:
            x509.load_pem_x509_certificate(_str(body, "certificate_pem", w, max_len=20000).encode())
        except ValueError as exc:
            raise OrderError(f"not a PEM certificate ({exc})", f"{w}.certificate_pem") from None
        out["certificate_pem"] = body["certificate_pem"]
    if not update and "public_key_pem" not in out and "certificate_pem" not in out:
        raise OrderError("addEim needs public_key_pem or certificate_pem", f"{w}.public_key_pem")
    if "counter_value" in body:
        value = body["counter_value"]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
            raise OrderError("expected an integer 0..2^31-1", f"{w}.counter_value")
        out["counter_value"] = value
    if "association_token" in body:
        value = body["association_token"]
        if isinstance(value, bool):
            if value:
                out["association_token"] = True
        elif isinstance(value, int) and 0 <= value < 2**31:
            out["association_token"] = value
        else:
            raise OrderError("expected true (ask the eUICC for one) or an integer", f"{w}.association_token")
    if "eim_id_type" in body:
        if body["eim_id_type"] not in _ID_TYPES:
            raise OrderError(f"expected one of {', '.join(_ID_TYPES)}", f"{w}.eim_id_type")
        out["eim_id_type"] = body["eim_id_type"]
    if "supported_protocols" in body:
        protos = body["supported_protocols"]
        if not isinstance(protos, list) or not protos or any(p not in _PROTOCOLS for p in protos):
            raise OrderError(f"expected a list of {', '.join(_PROTOCOLS)}", f"{w}.supported_protocols")
        out["supported_protocols"] = list(protos)
    if "euicc_ci_pkid" in body:
        value = body["euicc_ci_pkid"]
        if not isinstance(value, str) or not _HEX_RE.fullmatch(value):
            raise OrderError("expected hex", f"{w}.euicc_ci_pkid")
        out["euicc_ci_pkid"] = value.upper()
    if _bool(body, "indirect_profile_download", w):
        out["indirect_profile_download"] = True
    return out


def _eco(name: str, body: Any, where: str) -> dict:
    w = f"{where}.{name}"
    if name in ("addEim", "updateEim"):
        return _eim_config(body, w, update=name == "updateEim")
    if name == "deleteEim":
        _only(body, ("eim_id",), w)
        return {"eim_id": _str(body, "eim_id", w, max_len=128)}
    _only(body, (), w)
    return {}


def _activation_code(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise OrderError("is required (LPA:1$<SM-DP+ address>$<MatchingID>)", "activation_code")
    code = value[4:] if value.startswith("LPA:") else value
    parts = code.split("$")
    if len(parts) < 3 or parts[0] != "1" or not parts[1] or len(code) > 255:
        raise OrderError("expected 1$<SM-DP+ address>$<MatchingID>[...] (SGP.22 §4.1), at most 255 characters",
                         "activation_code")
    return value


def smdp_address_of(activation_code: str) -> str:
    code = activation_code[4:] if activation_code.startswith("LPA:") else activation_code
    return code.split("$")[1]


def validate(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check an order's parameters; return them normalised. Raises :class:`OrderError`."""
    if kind not in KINDS:
        raise OrderError(f"unknown order kind {kind!r} (known: {', '.join(KINDS)})", "kind")
    if kind == "download":
        _only(params, ("activation_code", "indirect"), "params")
        return {"activation_code": _activation_code(params.get("activation_code")),
                "indirect": _bool(params, "indirect", "params")}
    if kind == "euicc_data":
        _only(params, ("tags",), "params")
        tags = params.get("tags")
        if not isinstance(tags, list) or not tags:
            raise OrderError("expected a non-empty list of hex tags, e.g. [\"80\", \"A0\"]", "tags")
        out = []
        for i, tag in enumerate(tags):
            if not isinstance(tag, str) or not _HEX_RE.fullmatch(tag) or len(tag) > 4:
                raise OrderError("expected a one- or two-byte hex tag", f"tags[{i}]")
            out.append(tag.upper())
        return {"tags": out}
    key, names, check = ("psmos", PSMO_NAMES, _psmo) if kind == "psmo" else ("ecos", ECO_NAMES, _eco)
    _only(params, (key,), "params")
    items = params.get(key)
    if not isinstance(items, list) or not items:
        raise OrderError(f"expected a non-empty list of operations ({', '.join(names)})", key)
    out_items = []
    for i, item in enumerate(items):
        name, body = _one_op(item, names, f"{key}[{i}]")
        out_items.append({name: check(name, body, f"{key}[{i}]")})
    return {key: out_items}


# --- building -----------------------------------------------------------------------------------------


def _iccid_bcd(iccid: str) -> bytes:
    padded = iccid.ljust(20, "F")
    return bytes(int(padded[i + 1] + padded[i], 16) for i in range(0, 20, 2))


def _psmo_value(name: str, p: dict) -> tuple[str, Any]:
    if name == "enable":
        body: dict[str, Any] = {"iccid": _iccid_bcd(p["iccid"])}
        if p.get("rollback"):
            body["rollbackFlag"] = None
        return "enable", body
    if name in ("disable", "delete", "setFallbackAttribute"):
        return name, {"iccid": _iccid_bcd(p["iccid"])}
    if name == "configureImmediateEnable":
        body = {}
        if p.get("enable"):
            body["immediateEnableFlag"] = None
        if "smdp_oid" in p:
            body["defaultSmdpOid"] = p["smdp_oid"]
        if "smdp_address" in p:
            body["defaultSmdpAddress"] = p["smdp_address"]
        return name, body
    if name == "setDefaultDpAddress":
        return name, {"defaultDpAddress": p["address"]}
    return name, {}


def _spki_value(pem: str) -> Any:
    key = serialization.load_pem_public_key(pem.encode())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return asn1.decode("SubjectPublicKeyInfo", der)


def _eim_config_value(p: dict) -> dict[str, Any]:
    body: dict[str, Any] = {"eimId": p["eim_id"]}
    if "fqdn" in p:
        body["eimFqdn"] = p["fqdn"]
    if "eim_id_type" in p:
        body["eimIdType"] = _ID_TYPES[p["eim_id_type"]]
    if "counter_value" in p:
        body["counterValue"] = p["counter_value"]
    if "association_token" in p:
        # 'true' asks the eUICC to generate one (AddEimResult returns it); the value sent is then ignored.
        body["associationToken"] = 0 if p["association_token"] is True else p["association_token"]
    if "public_key_pem" in p:
        body["eimPublicKeyData"] = ("eimPublicKey", _spki_value(p["public_key_pem"]))
    elif "certificate_pem" in p:
        der = x509.load_pem_x509_certificate(p["certificate_pem"].encode()).public_bytes(serialization.Encoding.DER)
        body["eimPublicKeyData"] = ("eimCertificate", asn1.decode("Certificate", der))
    if "supported_protocols" in p:
        bits = sorted(_PROTOCOLS[x] for x in p["supported_protocols"])
        data = bytearray((bits[-1] // 8) + 1)
        for b in bits:
            data[b // 8] |= 0x80 >> (b % 8)
        body["eimSupportedProtocol"] = (bytes(data), bits[-1] + 1)
    if "euicc_ci_pkid" in p:
        body["euiccCiPKId"] = bytes.fromhex(p["euicc_ci_pkid"])
    if p.get("indirect_profile_download"):
        body["indirectProfileDownload"] = None
    return body


def _eco_value(name: str, p: dict) -> tuple[str, Any]:
    if name in ("addEim", "updateEim"):
        return name, _eim_config_value(p)
    if name == "deleteEim":
        return name, {"eimId": p["eim_id"]}
    return name, {}


def euicc_package_signed(kind: str, params: dict, *, eim_id: str, eid: str, counter_value: int,
                         eim_transaction_id: bytes) -> bytes:
    """DER of EuiccPackageSigned (SGP.32 v1.2 §2.11.1.1) for a ``psmo`` or ``eco`` order."""
    if kind == "psmo":
        package = ("psmoList", [_psmo_value(*next(iter(item.items()))) for item in params["psmos"]])
    else:
        package = ("ecoList", [_eco_value(*next(iter(item.items()))) for item in params["ecos"]])
    return asn1.encode("EuiccPackageSigned", {
        "eimId": eim_id, "eidValue": bytes.fromhex(eid), "counterValue": counter_value,
        "eimTransactionId": eim_transaction_id, "euiccPackage": package,
    })


def euicc_package_request(kind: str, params: dict, *, eim: Credential, eim_id: str, eid: str, counter_value: int,
                          eim_transaction_id: bytes, association_token: int | None) -> bytes:
    """EuiccPackageRequest 'BF51' signed with the eIM key (SGP.32 v1.2 §2.11.1.1)."""
    signed = euicc_package_signed(kind, params, eim_id=eim_id, eid=eid, counter_value=counter_value,
                                  eim_transaction_id=eim_transaction_id)
    signature = eim.sign(eim_signature_input(signed, association_token))
    body = signed + b"\x5f\x37" + bytes([len(signature)]) + signature
    return tlv(b"\xbf\x51", body)


def ipa_euicc_data_request(params: dict, eim_transaction_id: bytes) -> tuple[str, Any]:
    """IpaEuiccDataRequest 'BF52' (SGP.32 v1.2 §5.14.3): the tag list, and our eimTransactionId."""
    tags = b"".join(bytes.fromhex(t) for t in params["tags"])
    return "ipaEuiccDataRequest", {"tagList": tags, "eimTransactionId": eim_transaction_id}


def profile_download_trigger(params: dict, eim_transaction_id: bytes) -> tuple[str, Any]:
    """ProfileDownloadTriggerRequest 'BF54' (SGP.32 v1.2 §5.14.3) carrying the activation code."""
    code = params["activation_code"]
    code = code[4:] if code.startswith("LPA:") else code
    return "profileDownloadTriggerRequest", {"profileDownloadData": ("activationCode", code),
                                             "eimTransactionId": eim_transaction_id}


# --- results ------------------------------------------------------------------------------------------

_RESULT_TYPES = {
    "enableResult": "EnableProfileResult", "disableResult": "DisableProfileResult",
    "deleteResult": "DeleteProfileResult", "configureImmediateEnableResult": "ConfigureImmediateEnableResult",
    "rollbackResult": "RollbackProfileResult", "setFallbackAttributeResult": "SetFallbackAttributeResult",
    "unsetFallbackAttributeResult": "UnsetFallbackAttributeResult", "deleteEimResult": "DeleteEimResult",
    "updateEimResult": "UpdateEimResult",
}


def _names():
    from ...drivers.es10.decode import asn1_names

    return asn1_names()


def describe_result(name: str, value: Any) -> tuple[Any, bool]:
    """(JSON-able outcome, ok?) of one EuiccResultData alternative."""
    from ...drivers.es10.decode import to_jsonable

    names = _names()
    if name in _RESULT_TYPES:
        text = names.number_name(value, _RESULT_TYPES[name])
        return text, value == 0
    if name == "processingTerminated":
        return names.number_name(value, "EuiccResultData", "processingTerminated"), False
    if name == "addEimResult":
        alt, inner = value
        if alt == "associationToken":
            return {"associationToken": inner}, True
        return names.number_name(inner, "AddEimResult", "addEimResultCode"), inner == 0
    if name == "setDefaultDpAddressResult":
        code = value.get("setDefaultDpAddressResult", 127)
        return ("ok" if code == 0 else names.number_name(code, "SGP32-SetDefaultDpAddressResponse",
                                                         "setDefaultDpAddressResult")), code == 0
    if name == "listProfileInfoResult":
        alt, inner = value
        if alt == "profileInfoListError":
            return {"error": names.number_name(inner, "SGP32-ProfileInfoListError")}, False
        return to_jsonable(inner), True
    if name == "listEimResult":
        alt, inner = value
        if alt == "listEimError":
            return {"error": inner}, False
        return to_jsonable(inner), True
    return to_jsonable(value), True


def error_code_name(code: int) -> str:
    return _names().number_name(code, "EuiccPackageErrorCode")
