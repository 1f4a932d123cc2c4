"""Notifications (SGP.33 "notifications" family; SGP.22 §3.5 / SGP.32 v1.2 §3.6 HandleNotification,
RetrieveNotificationsList, RemoveNotificationFromList): every notification the card produces is
delivered and removed; none stays pending after a poll."""

from __future__ import annotations

import pytest

from sgp32hil.harness import flows


@pytest.mark.testcase("HIL-NTF-001", "After a download and a poll no notification is left pending on the card",
                      family="SGP.33 notifications", story="Delivery and removal")
def test_no_notification_left(bench, without_operational, new_order, ipa, eim, open_es10, eid):
    flows.download(bench, ipa, eim, open_es10, eid=eid, activation_code=new_order(), iccid=without_operational.iccid)
    poll = ipa.poll()
    assert not poll.error, poll.error
    left = flows.es10_read(open_es10, lambda c: c.retrieve_notifications_list(), "RetrieveNotificationsList")
    assert not left, f"{len(left)} notification(s) still pending: {[n.seq_number for n in left]}"


class _NoDelivery:
    """An ES9+ client whose HandleNotification never reaches the SM-DP+ (as without service), so the
    install notification stays pending on the card."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def handle_notification(self, pending_notification: bytes) -> None:
        raise ConnectionError("HandleNotification not delivered (test)")


@pytest.mark.testcase("HIL-EUICC-007", "Pending notifications are signed by the eUICC over the exact signed data",
                      family="SGP.33 notifications", story="RetrieveNotificationsList signatures")
def test_pending_notifications_signed(bench, without_operational, new_order, smdp, ipa, open_es10, eid):
    from sgp32hil.harness import pki
    from sgp32hil.harness.asn1 import signed
    from sgp32hil.harness.ipa import Es9Client, download_profile

    code = new_order()
    with open_es10() as client, Es9Client(code.split("$")[1], ca=smdp.ca_file) as es9:
        result = download_profile(client, code, es9=_NoDelivery(es9))
    assert result.success, result.error
    with open_es10() as client:
        cert = pki.x509.load_der_x509_certificate(client.get_certs().euicc_certificate)
        notes = client.retrieve_notifications_list()
    parts = {"profileInstallationResult": signed.profile_installation_result_data,
             "otherSignedNotification": signed.notification_metadata}
    checked = [n for n in notes if n.kind in parts]
    assert any(n.kind == "profileInstallationResult" and n.iccid in (None, without_operational.iccid)
               for n in checked), f"the undelivered install notification is not pending: {[n.kind for n in notes]}"
    for n in checked:
        part = parts[n.kind](n.der)
        assert pki.verify_plain(cert, part.data, part.signature), \
            f"notification seq {n.seq_number} ({n.kind}): the eUICC signature does not verify"
    # the next poll delivers what was left and the card removes it
    poll = ipa.poll()
    assert not poll.error, poll.error
    left = flows.es10_read(open_es10, lambda c: c.retrieve_notifications_list(), "RetrieveNotificationsList")
    assert not [n for n in left if n.kind == "profileInstallationResult"], "the install notification stayed pending"
