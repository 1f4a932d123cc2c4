"""Shared fixtures: a pcscd for the PC/SC integration tests and software cards behind vpcd readers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sgp32hil.harness.services import VPCD_READERS, Pcscd, ServiceError, card_present, wait_until


@pytest.fixture(scope="session")
def pcscd() -> Iterator[str]:
    """A pcscd with the vpcd readers: the one already running, or our own stopped by PID at the end."""
    try:
        daemon = Pcscd.ensure()
    except ServiceError as exc:
        pytest.fail(str(exc))
    try:
        yield "/run/pcscd/pcscd.comm"
    finally:
        daemon.stop()


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
        wait_until(lambda r=reader: not card_present(r), 10.0, f"{reader!r} to see the card removed")
