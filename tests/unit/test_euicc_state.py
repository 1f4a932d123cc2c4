"""The software eUICC's NVM survives kill -9 at any moment and rejects foreign files clearly."""

import os
import signal
import subprocess
import sys
import time

import pytest

from sgp32hil.drivers.virtual.euicc.state import (
    EimConfig,
    EuiccState,
    Notification,
    Profile,
    StateError,
    StateStore,
    dumps,
    loads,
)


def _state(n: int = 0) -> EuiccState:
    st = EuiccState(
        eid="89049032123451234512345678901235",
        euicc_key_pem=b"-----BEGIN PRIVATE KEY-----\n...",
        euicc_cert=b"\x30\x82\x01\x00",
        eum_cert=b"\x30\x82\x01\x01",
        ci_certs=[b"\x30\x03\x02\x01\x01"],
    )
    st.profiles.append(Profile(iccid="8944000000000000001", isdp_aid=st.allocate_isdp_aid(), state="enabled"))
    st.eims.append(EimConfig(eim_id="eim-1", eim_fqdn="127.0.0.1:8444", counter_value=n))
    st.notifications.append(Notification(seq_number=n, event="enable", address="x", iccid="1", der=b"\xbf\x2f"))
    return st


def test_round_trip_keeps_every_field(tmp_path):
    store = StateStore(tmp_path)
    st = _state(7)
    store.save(st)
    assert store.load() == st
    assert st.profiles[0].isdp_aid.hex().upper() == "A0000005591010FFFFFFFF8900001000"


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"\x00\xff garbage", "not JSON"),
        (b'{"format": "other"}', "not a software eUICC state file"),
        (b'{"format": "sgp32hil-euicc-state", "version": 99, "state": {}}', "version 99"),
        (b'{"format": "sgp32hil-euicc-state", "version": 1, "state": {"eid": 5}}', "expected str"),
        (b'{"format": "sgp32hil-euicc-state", "version": 1, "state": {"eid": "8904"}}', "missing key"),
    ],
)
def test_foreign_or_damaged_files_are_named(data, fragment):
    with pytest.raises(StateError, match=fragment):
        loads(data, "/x/euicc.json")


def test_missing_state_names_the_path(tmp_path):
    with pytest.raises(StateError, match="no eUICC state"):
        StateStore(tmp_path / "none").load()


WRITER = """
import sys
from sgp32hil.drivers.virtual.euicc.state import StateStore
from tests.unit.test_euicc_state import _state
store = StateStore(sys.argv[1])
n = 0
while True:
    n += 1
    store.save(_state(n))
    if n == 5:
        print("ready", flush=True)
"""


def test_kill_9_during_saves_leaves_a_loadable_state(tmp_path):
    """Kill a process that rewrites the state in a tight loop: what remains always loads."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=root, stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.02 * (attempt + 1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        st = StateStore(tmp_path).load()
        assert st.eims[0].counter_value >= 5
        assert st.eims[0].counter_value == st.notifications[0].seq_number
    with StateStore(tmp_path).lock():
        assert sorted(os.listdir(tmp_path)) == [".lock", "euicc.json"]


def test_a_state_directory_has_one_owner(tmp_path):
    store = StateStore(tmp_path)
    with store.lock():
        with pytest.raises(StateError, match="in use by another process"):
            with StateStore(tmp_path).lock():
                pass


def test_dumps_is_deterministic():
    assert dumps(_state(3)) == dumps(_state(3))
