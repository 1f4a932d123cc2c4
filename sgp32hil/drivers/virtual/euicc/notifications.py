"""Profile management notifications of the software eUICC (SGP.22 §2.6.7, §3.5).

Every successful enable / disable / delete creates one ``OtherSignedNotification`` per notification
address configured for that event in the profile metadata (NotificationConfigurationInformation). The
eUICC signs the exact DER of ``tbsOtherNotification`` (NotificationMetadata, tag BF2F) with SK.EUICC.ECDSA
and stores the complete signed structure, so the bytes an IPA retrieves are the bytes that were signed.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from ....harness.pki import sign_plain
from . import der
from .state import EuiccState, Notification, Profile

EVENT_BITS: dict[str, int] = {"install": 0, "enable": 1, "disable": 2, "delete": 3}
BIT_EVENTS = {bit: name for name, bit in EVENT_BITS.items()}

TAG_NOTIFICATION_METADATA = 0xBF2F


def event_bit_string(events: set[str] | list[str]) -> bytes:
    """NotificationEvent BIT STRING contents for event names (``enable`` ...)."""
    return der.bit_string(EVENT_BITS[e] for e in events)


def notification_metadata(seq_number: int, event: str, address: str, iccid: str | None) -> bytes:
    """NotificationMetadata (BF2F): seqNumber [0], profileManagementOperation [1] (one bit),
    notificationAddress UTF8String, iccid (5A)."""
    body = (
        der.tlv(0x80, der.integer(seq_number))
        + der.tlv(0x81, event_bit_string([event]))
        + der.tlv(0x0C, address.encode())
    )
    if iccid:
        body += der.tlv(0x5A, der.encode_iccid(iccid))
    return der.tlv(TAG_NOTIFICATION_METADATA, body)


def other_signed_notification(
    tbs: bytes, key: ec.EllipticCurvePrivateKey, euicc_cert: bytes, eum_cert: bytes
) -> bytes:
    """OtherSignedNotification: tbsOtherNotification, euiccNotificationSignature (5F37, TR-03111 r||s
    over the exact tbs DER), euiccCertificate, eumCertificate."""
    signature = sign_plain(key, tbs)
    return der.tlv(0x30, tbs + der.tlv(0x5F37, signature) + euicc_cert + eum_cert)


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
        tbs = notification_metadata(seq, event, address, profile.iccid)
        signed = other_signed_notification(tbs, key, state.euicc_cert, state.eum_cert)
        note = Notification(seq_number=seq, event=event, address=address, iccid=profile.iccid, der=signed)
        state.notifications.append(note)
        made.append(note)
    return made


def metadata_of(note: Notification) -> bytes:
    """The NotificationMetadata (BF2F) inside a stored notification, exactly as signed."""
    outer = der.parse_one(note.der)
    if outer.tag == 0x30:
        return outer.children()[0].raw
    if outer.tag == 0xBF37:
        for child in outer.children():
            if child.tag == 0xBF27:
                for inner in child.children():
                    if inner.tag == TAG_NOTIFICATION_METADATA:
                        return inner.raw
    raise der.DerError("stored notification has no NotificationMetadata")


def matches(note: Notification, events: set[str]) -> bool:
    return note.event in events
