"""Conformance plans use the sgp32-hil pytest plugin (registered through its pytest11 entry point).

Shared set-up for the plan modules: the bench's operational profile, fresh SM-DP+ orders for it, and the
state helpers that let every test start from the state it needs (tests never depend on their order).
"""

from __future__ import annotations

import pytest

from sgp32hil.harness import flows


@pytest.fixture(autouse=True)
def _no_open_orders(request):
    """Tests that use the eIM start with no queued or sent order for the DUT (a failed test may leave one);
    what is still open when the test ends is cancelled too."""
    if "eim" not in request.fixturenames:
        yield
        return
    eim, eid = request.getfixturevalue("eim"), request.getfixturevalue("eid")

    def cancel_open() -> None:
        for status in ("queued", "sent"):
            for order in eim.service.orders(eid, status):
                eim.service.cancel_order(order.id)

    cancel_open()
    yield
    cancel_open()


@pytest.fixture
def operational(bench):
    """The bench's first operational profile (the one the plans download and enable)."""
    if not bench.profiles.operational:
        pytest.skip(f"bench {bench.name!r} names no operational profile")
    profile = bench.profiles.operational[0]
    if not profile.iccid:
        pytest.skip(f"operational profile {profile.name!r} has no iccid: the plans cannot check the switch")
    return profile


@pytest.fixture
def new_order(bench_services, smdp, operational, eid):
    """``new_order(confirmation_code=None)`` -> activation code of a fresh SM-DP+ order for the profile."""

    def make(confirmation_code: str | None = None, **kwargs) -> str:
        return bench_services.smdp_order(operational, confirmation_code=confirmation_code, eid=eid, **kwargs)

    return make


@pytest.fixture
def bootstrapped(bench, request, ipa, eim, open_es10, eid):
    """The bootstrap profile enabled (and registered when the bench has a modem)."""
    boot = bench.profiles.bootstrap
    if boot is None:
        pytest.skip(f"bench {bench.name!r} names no bootstrap profile")
    modem = request.getfixturevalue("modem") if bench.modem else None
    flows.ensure_enabled(bench, modem, ipa, eim, open_es10, eid=eid, iccid=boot.iccid, network=boot.network)
    return boot


@pytest.fixture
def without_operational(bench, request, bootstrapped, ipa, eim, open_es10, eid, operational):
    """The operational profile absent from the card (a download test starts here)."""
    modem = request.getfixturevalue("modem") if bench.modem else None
    flows.ensure_absent(bench, modem, ipa, eim, open_es10, eid=eid, iccid=operational.iccid)
    return operational


@pytest.fixture
def with_operational(bench, bootstrapped, ipa, eim, open_es10, eid, operational, new_order):
    """The operational profile installed and disabled, the bootstrap profile enabled."""
    flows.ensure_installed(bench, ipa, eim, open_es10, eid=eid, activation_code=new_order, iccid=operational.iccid)
    return operational
