"""Activation Codes (SGP.22 v2.5 §4.1) and the SGP.32 ProfileDownloadTrigger's activation code.

An Activation Code is ``AC_Format$SM-DP+ Address$AC_Token[$SM-DP+ OID[$Confirmation Code Required
Flag]]``, at most 255 characters:

- ``AC_Format`` is ``1``;
- the SM-DP+ Address is an FQDN; this harness also accepts an IP literal and a ``:port`` suffix
  (benches run the bundled SM-DP+ on ``127.0.0.1:8443``);
- ``AC_Token`` is the MatchingID: upper case alphanumerics (``0-9``, ``A-Z``) and ``-`` only;
  it may be empty (the SM-DP+ then matches on the EID);
- the SM-DP+ OID, when given, is a dotted object identifier;
- the Confirmation Code Required Flag is ``1`` when a Confirmation Code is required and absent
  otherwise.  An empty optional field counts as absent (``1$host$ID$$1``: no OID, CC required).

In a QR code the Activation Code follows the ``LPA:`` scheme prefix (``LPA:1$...``); :func:`parse`
accepts both forms.  SGP.32 v1.2's ProfileDownloadTriggerRequest carries the bare Activation Code in
``profileDownloadData.activationCode`` (UTF8String, 0..255 characters); :func:`from_profile_download_data`
reads that CHOICE.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ActivationCode",
    "ActivationCodeError",
    "MAX_LENGTH",
    "QR_PREFIX",
    "from_profile_download_data",
    "parse",
]

QR_PREFIX = "LPA:"
MAX_LENGTH = 255
AC_FORMAT = "1"

_MATCHING_ID = re.compile(r"[0-9A-Z-]*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")


class ActivationCodeError(ValueError):
    """An Activation Code that does not follow SGP.22 §4.1; names the input, the field and what was expected."""

    def __init__(self, text: str, field: str, problem: str):
        self.text = text
        self.field = field
        self.problem = problem
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"activation code {shown!r}: {field}: {problem} (SGP.22 §4.1)")


@dataclass(frozen=True)
class ActivationCode:
    """A parsed Activation Code (SGP.22 §4.1).

    ``smdp_address`` is the SM-DP+ Address as written (``host`` or ``host:port``), ``matching_id`` the
    AC_Token (possibly empty), ``oid`` the SM-DP+ OID or None, ``cc_required`` the Confirmation Code
    Required Flag.
    """

    smdp_address: str
    matching_id: str
    oid: str | None = None
    cc_required: bool = False

    @property
    def host(self) -> str:
        """The host part of the SM-DP+ Address (brackets of an IPv6 literal removed)."""
        return _split_address(self.smdp_address)[0]

    @property
    def port(self) -> int | None:
        """The port of the SM-DP+ Address, or None for the HTTPS default."""
        return _split_address(self.smdp_address)[1]

    def to_string(self, *, qr: bool = False) -> str:
        """The canonical Activation Code; with ``qr`` the ``LPA:`` QR code form."""
        fields = [AC_FORMAT, self.smdp_address, self.matching_id]
        if self.oid is not None or self.cc_required:
            fields.append(self.oid or "")
        if self.cc_required:
            fields.append("1")
        text = "$".join(fields)
        return QR_PREFIX + text if qr else text

    def __str__(self) -> str:
        return self.to_string(qr=True)


def _split_address(address: str) -> tuple[str, int | None]:
    if address.startswith("["):
        host, sep, rest = address[1:].partition("]")
        if not sep:
            raise ValueError("unclosed '[' in an IPv6 literal")
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after the IPv6 literal")
        port_text = rest[1:] if rest else None
    elif address.count(":") == 1:
        host, port_text = address.split(":")
    else:
        host, port_text = address, None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number 1..65535")
    return host, int(port_text)


def _check_address(text: str, address: str) -> None:
    if not address:
        raise ActivationCodeError(text, "SM-DP+ Address", "empty; expected an FQDN such as smdp.example.com")
    if "://" in address or "/" in address:
        raise ActivationCodeError(text, "SM-DP+ Address",
                                  f"{address!r} is a URL; expected an FQDN (host[:port]) without scheme or path")
    if any(c.isspace() for c in address):
        raise ActivationCodeError(text, "SM-DP+ Address", f"{address!r} contains white space")
    try:
        host, _ = _split_address(address)
    except ValueError as exc:
        raise ActivationCodeError(text, "SM-DP+ Address", f"{address!r}: {exc}") from None
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        raise ActivationCodeError(text, "SM-DP+ Address", f"{host!r} is not a host name of 1..253 characters")
    for label in name.split("."):
        if not _LABEL.fullmatch(label):
            raise ActivationCodeError(
                text, "SM-DP+ Address",
                f"{host!r} has an invalid label {label!r} (FQDN labels: letters, digits, inner '-', 1..63 characters)")


def _check_matching_id(text: str, matching_id: str) -> None:
    if not _MATCHING_ID.fullmatch(matching_id):
        bad = sorted({c for c in matching_id if not ("0" <= c <= "9" or "A" <= c <= "Z" or c == "-")})
        raise ActivationCodeError(
            text, "MatchingID",
            f"{matching_id!r} contains {', '.join(repr(c) for c in bad)}; allowed are 0-9, A-Z and '-'")


def parse(text: str, *, allow_qr_prefix: bool = True) -> ActivationCode:
    """Parse an Activation Code (``1$...``), or its QR code form (``LPA:1$...``) unless ``allow_qr_prefix``
    is False.  Raises :class:`ActivationCodeError` naming the field at fault."""
    if not isinstance(text, str):
        raise TypeError(f"activation code must be a str, got {type(text).__name__}")
    original = text
    if text != text.strip():
        raise ActivationCodeError(original, "format", "leading or trailing white space")
    if text[:len(QR_PREFIX)].upper() == QR_PREFIX:
        if not allow_qr_prefix:
            raise ActivationCodeError(original, "format",
                                      f"the {QR_PREFIX!r} QR code prefix is not part of an Activation Code here")
        text = text[len(QR_PREFIX):]
    if not text:
        raise ActivationCodeError(original, "format", "empty; expected '1$<SM-DP+ Address>$<MatchingID>'")
    if len(text) > MAX_LENGTH:
        raise ActivationCodeError(original, "format", f"{len(text)} characters; at most {MAX_LENGTH} allowed")
    fields = text.split("$")
    if fields[0] != AC_FORMAT:
        raise ActivationCodeError(original, "AC_Format", f"{fields[0]!r}; the only defined format is '1'")
    if len(fields) < 3:
        raise ActivationCodeError(
            original, "format",
            f"{len(fields)} field(s); expected '1$<SM-DP+ Address>$<MatchingID>[$<SM-DP+ OID>[$<CC Required Flag>]]'")
    if len(fields) > 5:
        raise ActivationCodeError(original, "format",
                                  f"{len(fields)} fields; at most 5 ('$' is only a delimiter)")
    address, matching_id = fields[1], fields[2]
    _check_address(original, address)
    _check_matching_id(original, matching_id)
    oid = fields[3] if len(fields) > 3 and fields[3] else None
    if oid is not None and not _OID.fullmatch(oid):
        raise ActivationCodeError(original, "SM-DP+ OID",
                                  f"{oid!r} is not a dotted object identifier such as 1.3.6.1.4.1.31746")
    flag = fields[4] if len(fields) > 4 else ""
    if flag not in ("", "1"):
        raise ActivationCodeError(original, "Confirmation Code Required Flag",
                                  f"{flag!r}; expected '1' (required) or an absent field")
    return ActivationCode(smdp_address=address, matching_id=matching_id, oid=oid, cc_required=flag == "1")


def from_profile_download_data(value: Any) -> ActivationCode:
    """The Activation Code of an SGP.32 ProfileDownloadData CHOICE as asn1tools decodes it
    (``("activationCode", "1$...")``).  The other alternatives (``contactDefaultSmdp``,
    ``contactSmds``) carry no Activation Code and raise :class:`ValueError`; so does an empty string."""
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)):
        raise TypeError(f"expected a ProfileDownloadData CHOICE (alternative, value), got {value!r}")
    kind, body = value
    if kind != "activationCode":
        raise ValueError(f"ProfileDownloadData is {kind!r}, which carries no activation code "
                         "(SGP.32 ProfileDownloadTriggerRequest)")
    return parse(body, allow_qr_prefix=False)
