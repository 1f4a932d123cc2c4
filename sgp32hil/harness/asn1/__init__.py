"""ASN.1 modules and DER codec for SGP.22 / SGP.32.

Modules (this directory, each transcribed from the named specification):
``PKIX1Explicit88``/``PKIX1Implicit88`` (RFC 5280 Appendix A, subset),
``PEDefinitions`` (TCA eUICC Profile Package v2.3.1, subset), ``RSPDefinitions``
(SGP.22 v2.5 Annex H) and ``SGP32Definitions`` (SGP.32 v1.2). Type names are
those of the specifications; SGP.32 types that redefine an SGP.22 type carry
the prefix ``SGP32-`` (``SGP32-EUICCInfo2``, ``SGP32-ProfileInfo``,
``SGP32-PendingNotification``, ``SGP32-RetrieveNotificationsListResponse`` ...),
because asn1tools drops a name defined in two modules.

Codec (asn1tools, DER), compiled once and cached under
``$XDG_CACHE_HOME/sgp32hil`` (else ``~/.cache/sgp32hil``):

``encode(type_name, value, *, check_constraints=True) -> bytes``
``decode(type_name, der, *, check_constraints=False)`` -> asn1tools Python value;
    exactly one value, trailing bytes rejected.
``tag_of(type_name) -> bytes``: outermost tag, e.g. ``b"\\xbf\\x4f"``.
``type_names() -> list[str]``.
All failures raise :class:`Asn1Error` (a ``ValueError``) naming the type.

Values follow asn1tools: SEQUENCE -> dict, CHOICE -> ``(alternative, value)``,
BIT STRING -> ``(bytes, number_of_bits)``, OCTET STRING -> bytes,
OBJECT IDENTIFIER -> dotted str, NULL -> None, ANY -> raw DER bytes.

The compile step corrects one asn1tools tagging error (X.680 31.2.7): a tag in
front of a reference to an already tagged CHOICE, e.g.
``authenticateServerResponse [56] AuthenticateServerResponse``, is implicit;
asn1tools would emit the tag twice.

Raw bytes of signed parts (signatures cover the bytes as received, never a
re-encoding) come from a strict BER-TLV walker, :mod:`.tlv`:
``parse_tlv``, ``iter_tlvs``, ``parse_single``, ``find(der, path) -> Tlv`` and
``raw_field(der, path) -> bytes``, where ``path`` starts at the top-level
element and each step is a tag (bytes or hex text, first match) or a position
(``int``): ``raw_field(resp, ["BF38", "A0", "30"])`` is euiccSigned1.
:mod:`.signed` returns ``SignedPart(data, signature, signature_tlv)`` for
``euicc_signed1``, ``euicc_signed2``, ``server_signed1``, ``smdp_signed2``,
``euicc_package_signed``, ``euicc_package_result_signed``,
``profile_installation_result_data``, ``notification_metadata``,
``euicc_cancel_session_signed`` and ``initialise_secure_channel_signed``.
"""

from .codec import Asn1Error, decode, encode, parsed_modules, specification, tag_of, type_names
from .signed import (
    SignedPart,
    euicc_cancel_session_signed,
    euicc_package_result_signed,
    euicc_package_signed,
    euicc_signed1,
    euicc_signed2,
    initialise_secure_channel_signed,
    notification_metadata,
    profile_installation_result_data,
    server_signed1,
    smdp_signed2,
)
from .tlv import Tlv, TlvError, encode_length, find, iter_tlvs, parse_single, parse_tlv, raw_field, tlv

__all__ = [
    "parsed_modules",
    "Asn1Error",
    "SignedPart",
    "Tlv",
    "TlvError",
    "decode",
    "encode",
    "encode_length",
    "euicc_cancel_session_signed",
    "euicc_package_result_signed",
    "euicc_package_signed",
    "euicc_signed1",
    "euicc_signed2",
    "find",
    "initialise_secure_channel_signed",
    "iter_tlvs",
    "notification_metadata",
    "parse_single",
    "parse_tlv",
    "profile_installation_result_data",
    "raw_field",
    "tlv",
    "server_signed1",
    "smdp_signed2",
    "specification",
    "tag_of",
    "type_names",
]
