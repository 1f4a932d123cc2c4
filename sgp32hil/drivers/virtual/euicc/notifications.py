"""Profile management notifications of the software eUICC (SGP.22 §2.6.7, §3.5).

Every successful enable / disable / delete creates one ``OtherSignedNotification`` per notification
address configured for that event in the profile metadata (NotificationConfigurationInformation). The
eUICC encodes ``tbsOtherNotification`` (NotificationMetadata, tag BF2F) with the ASN.1 codec, signs
exactly those bytes with SK.EUICC.ECDSA and stores the OtherSignedNotification the codec encodes around
the same value, so the bytes an IPA retrieves are the bytes that were signed.
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ....harness import asn1
from ....harness.pki import sign_plain
from .factory import bit_numbers, encode_iccid, named_bits
from .state import EuiccState, Notification, Profile

EVENT_BITS: dict[str, int] = {"install": 0, "enable": 1, "disable": 2, "delete": 3}
BIT_EVENTS = {bit: name for name, bit in EVENT_BITS.items()}


def event_bits(events: set[str] | list[str]) -> tuple[bytes, int]:
    """NotificationEvent value for event names (``enable`` ...)."""
    return named_bits(EVENT_BITS[e] for e in events)


def events_of(value: tuple[bytes, int]) -> set[str]:
    """Event names set in a NotificationEvent value (bits without a name are ignored)."""
    return {BIT_EVENTS[b] for b in bit_numbers(value) if b in BIT_EVENTS}


def decode_exact(type_name: str, der: bytes) -> Any:
    """Decode stored DER that must re-encode to the very same bytes (signatures cover them);
    :class:`~sgp32hil.harness.asn1.Asn1Error` otherwise."""
    value = asn1.decode(type_name, der)
    if asn1.encode(type_name, value, check_constraints=False) != der:
        raise asn1.Asn1Error(f"{type_name} does not re-encode to the stored bytes")
    return value


@functools.lru_cache(maxsize=16)
def certificate(der: bytes) -> dict:
    """Decoded value of a stored certificate (shared, never modify it)."""
    return decode_exact("Certificate", der)


def signed_notification(metadata: dict, key: ec.EllipticCurvePrivateKey, euicc_cert: bytes,
                        eum_cert: bytes) -> bytes:
    """OtherSignedNotification: tbsOtherNotification, euiccNotificationSignature (5F37, TR-03111 r||s
    over the DER of ``metadata``), euiccCertificate, eumCertificate."""
    tbs = asn1.encode("NotificationMetadata", metadata)
    return asn1.encode("OtherSignedNotification", {
        "tbsOtherNotification": metadata,
        "euiccNotificationSignature": sign_plain(key, tbs),
        "euiccCertificate": certificate(euicc_cert),
        "eumCertificate": certificate(eum_cert),
    })


def addresses_for(profile: Profile, event: str) -> list[str]:
    """Notification addresses the profile metadata configures for ``event``, in order, without repeats."""
    out: list[str] = []
    for config in profile.notification_config:
        if event in config.events and config.address not in out:
            out.append(config.address)
    return out


def create(state: EuiccState, key: ec.EllipticCurvePrivateKey, profile: Profile, event: str) -> list[Notification]:
    """Append the notifications ``event`` on ``profile`` produces to ``state`` (SGP.22 §3.2.1 / §3.2.2 /
    §3.2.3 step "generate notification"); each gets the next sequence number."""
    made = []
    for address in addresses_for(profile, event):
        seq = state.next_notification_seq
        state.next_notification_seq += 1
        metadata = {"seqNumber": seq, "profileManagementOperation": event_bits([event]),
                    "notificationAddress": address}
        if profile.iccid:
            metadata["iccid"] = encode_iccid(profile.iccid)
        signed = signed_notification(metadata, key, state.euicc_cert, state.eum_cert)
        note = Notification(seq_number=seq, event=event, address=address, iccid=profile.iccid, der=signed)
        state.notifications.append(note)
        made.append(note)
    return made


def pending(note: Notification) -> tuple[str, Any]:
    """The stored notification as an SGP32-PendingNotification value (re-encodes to the signed bytes)."""
    return decode_exact("SGP32-PendingNotification", note.der)


def metadata_of(note: Notification) -> dict:
    """The NotificationMetadata value inside a stored notification."""
    kind, value = pending(note)
    if kind == "otherSignedNotification":
        return value["tbsOtherNotification"]
    if kind == "profileInstallationResult":
        return value["profileInstallationResultData"]["notificationMetadata"]
    raise asn1.Asn1Error(f"stored notification {note.seq_number} ({kind}) has no NotificationMetadata")


def matches(note: Notification, events: set[str]) -> bool:
    return note.event in events
