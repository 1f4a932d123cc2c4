"""pytest plugin (entry point ``pytest11``): bench options, fixtures and markers.

Thin for now: registers the options every later fixture reads.
"""

from __future__ import annotations


def pytest_addoption(parser):
    group = parser.getgroup("sgp32hil", "sgp32-hil bench")
    group.addoption("--bench", default=None, help="bench YAML file (default: the embedded virtual bench)")
    group.addoption("--rack", default=None, help="rack YAML file listing benches")
    group.addoption("--slot", default=None, help="slot of the rack to run on")
    group.addoption("--plan", default=None, help="plan name or YAML file (smoke, nightly, certification)")
    group.addoption("--sgp32-version", default="1.2", choices=["1.0", "1.2"], help="SGP.32 version of the DUT")
    group.addoption("--keep-state", action="store_true", help="keep virtual eUICC state between runs")


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(*capabilities): skip unless the bench has these capability tags")
