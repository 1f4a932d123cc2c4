"""Shared fixtures: a pcscd for the PC/SC integration tests and software cards behind vpcd readers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from typing import Callable, Iterator

import pytest

PCSCD = "/usr/sbin/pcscd"
PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
VPCD_READERS = {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01"}


def pcscd_answering(path: str = PCSCD_SOCKET) -> bool:
    """True when something accepts connections on pcscd's client socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def pcscd() -> Iterator[str]:
    """A pcscd with the vpcd readers: the one already running, or our own stopped by PID at the end."""
    if pcscd_answering():
        yield PCSCD_SOCKET
        return
    if not shutil.which(PCSCD):
        pytest.skip(f"{PCSCD} not installed (Debian packages pcscd and vsmartcard-vpcd)")
    proc = subprocess.Popen([PCSCD, "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: pcscd_answering() or proc.poll() is not None, 10.0, "pcscd to start")
        if proc.poll() is not None:
            pytest.fail(f"pcscd exited with {proc.returncode}: {proc.stderr.read().decode(errors='replace')}")
        yield PCSCD_SOCKET
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def card_present(reader: str) -> bool:
    from sgp32hil.drivers.apdu.pcsc import list_readers

    return any(r.name == reader and r.card_present for r in list_readers())


@pytest.fixture
def vpcd_card(pcscd):
    """Factory ``vpcd_card(card, port=35963) -> (bridge, reader_name)``: the card inserted in a vpcd
    reader and seen present by PC/SC (bounded wait); every bridge is stopped at teardown."""
    bridges = []

    def insert(card, port: int = 35963, timeout: float = 10.0):
        from sgp32hil.drivers.virtual.vpcd import VpcdBridge

        reader = VPCD_READERS[port]
        bridge = VpcdBridge(card, port=port).start()
        bridges.append(bridge)
        wait_until(lambda: card_present(reader), timeout, f"a card in {reader!r}")
        return bridge, reader

    yield insert
    for bridge in bridges:
        bridge.stop()
    for bridge in bridges:
        reader = VPCD_READERS[bridge.port]
        wait_until(lambda: not card_present(reader), 10.0, f"{reader!r} to see the card removed")
