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
