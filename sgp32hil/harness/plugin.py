"""pytest plugin (entry point ``pytest11``): bench options, fixtures, markers, progress and reports.

Fixtures: ``bench`` (the validated bench), ``bench_services`` (what the bench needs, started once per
session: pcscd, software eUICC), ``bench_pki`` (the PKI the bench trusts), ``euicc`` (an ES10 client on
the bench's eUICC path, opened per test, its decoded trace attached to the report).

Markers: ``testcase(id, title, family=…, story=…)`` gives a test its stable plan ID (Allure testcase
link, matrix row); ``requires(*capabilities)`` skips with a reason when the bench lacks a tag.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

RESULTS_KEY = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("sgp32hil", "sgp32-hil bench")
    group.addoption("--bench", default=None, help="bench YAML file (default: the embedded virtual bench)")
    group.addoption("--rack", default=None, help="rack YAML file listing benches (use with --slot)")
    group.addoption("--slot", default=None, help="slot of the rack to run on")
    group.addoption("--plan", default=None, help="plan name (smoke, nightly, certification) or plan YAML file")
    group.addoption("--sgp32-version", default=None, choices=["1.0", "1.2"], help="override the bench's SGP.32 version")
    group.addoption("--keep-state", action="store_true", help="keep the virtual eUICC state between runs")
    group.addoption("--hil-report-dir", default=None, help="write metrics, matrix and Allure metadata here")
    group.addoption("--hil-progress", action="store_true", help="one line per test and a summary table")


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(*capabilities): skip unless the bench has these capability tags")
    config.addinivalue_line("markers", "testcase(id, title, family='', story=''): stable plan ID of a test")
    config.stash[RESULTS_KEY] = []
    _STATE.clear()
    _STATE["config"] = config


# --- bench and plan --------------------------------------------------------------------------------


def _load_bench(config):
    from . import bench as benchmod

    if config.getoption("--rack"):
        rack = benchmod.load_rack(config.getoption("--rack"))
        slot = config.getoption("--slot")
        if not slot:
            raise pytest.UsageError(f"--rack {config.getoption('--rack')}: choose a slot with --slot")
        b = rack.slot(slot)
    else:
        b = benchmod.load_bench(config.getoption("--bench") or benchmod.default_bench_path())
    version = config.getoption("--sgp32-version")
    return b.with_version(version) if version else b


@pytest.fixture(scope="session")
def bench(request):
    from . import bench as benchmod

    try:
        return _load_bench(request.config)
    except benchmod.BenchError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(session, config, items):
    plan_name = config.getoption("--plan")
    if plan_name:
        from .plans import load_plan

        plan = load_plan(plan_name)
        selected, deselected = [], []
        for item in items:
            (selected if plan.selects(testcase_id(item)) else deselected).append(item)
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected


def testcase_id(item) -> str:
    marker = item.get_closest_marker("testcase")
    return marker.args[0] if marker and marker.args else item.nodeid


@pytest.fixture(autouse=True)
def _hil_markers(request):
    """Apply ``requires`` (skip with the missing tags) and ``testcase`` (report labels) markers; each test
    starts with an empty step trace."""
    from . import report as reports

    reports.TRACE.clear()
    marker = request.node.get_closest_marker("requires")
    if marker:
        b = request.getfixturevalue("bench")
        missing = [c for c in marker.args if not b.has(c)]
        if missing:
            pytest.skip(f"bench {b.name!r} lacks capabilities: {', '.join(missing)}")
    marker = request.node.get_closest_marker("testcase")
    if marker:
        kw = marker.kwargs
        reports.label_test(epic=kw.get("family", ""), feature=kw.get("feature", ""), story=kw.get("story", ""),
                           testcase_id=marker.args[0], title=marker.args[1] if len(marker.args) > 1 else "")


# --- services and device fixtures ------------------------------------------------------------------


class BenchServices:
    """What the bench needs, started for the session and stopped (by PID) at its end."""

    def __init__(self, bench, keep_state: bool):
        self.bench = bench
        self.keep_state = keep_state
        self.pcscd = None
        self.soft_euicc = None
        self._tmp = None
        self.reader = None

    def start(self) -> "BenchServices":
        from .services import Pcscd, SoftEuiccProcess

        eu = self.bench.euicc
        if eu.via in ("pcsc", "virtual"):
            self.pcscd = Pcscd.ensure()
        if eu.via == "virtual":
            if self.keep_state and eu.state:
                state = Path(eu.state)
            else:
                self._tmp = tempfile.TemporaryDirectory(prefix="sgp32hil-euicc-")
                state = Path(self._tmp.name)
            self.soft_euicc = SoftEuiccProcess.start(
                state, port=eu.vpcd_port, pki_dir=self.bench.pki_dir, eim_fqdn=self.bench.eim_address or None,
            )
            self.reader = self.soft_euicc.reader
        elif eu.via == "pcsc":
            self.reader = eu.reader
        return self

    def stop(self) -> None:
        if self.soft_euicc:
            self.soft_euicc.stop()
            self.soft_euicc = None
        if self.pcscd:
            self.pcscd.stop()
            self.pcscd = None
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None


@pytest.fixture(scope="session")
def bench_pki(bench):
    from . import pki

    return pki.ensure(bench.pki_dir, quiet=True)


@pytest.fixture(scope="session")
def bench_services(request, bench, bench_pki):
    services = BenchServices(bench, request.config.getoption("--keep-state"))
    try:
        services.start()
        yield services
    finally:
        services.stop()


@pytest.fixture
def euicc(bench, bench_services):
    """An ES10 client on the bench's eUICC (PC/SC reader or through the modem), channel closed after the test."""
    from ..drivers.apdu.pcsc import PcscTransport
    from ..drivers.es10.client import Es10Client
    from ..drivers.es10.decode import render_trace
    from . import report as reports

    if bench.euicc.via == "modem":
        pytest.skip("eUICC through the modem needs the modem fixture (not available yet)")
    transport = PcscTransport(bench_services.reader)
    client = Es10Client(transport)
    try:
        with client:
            yield client
    finally:
        transport.close()
        if client.exchanges:
            reports.attach_text("ES10 trace", render_trace(client.trace()))


# --- progress, results and reports -----------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
        marker = item.get_closest_marker("testcase")
        rep.hil_testcase = {
            "id": testcase_id(item),
            "title": marker.args[1] if marker and len(marker.args) > 1 else item.name,
            "family": marker.kwargs.get("family", "") if marker else "",
        }
    return rep


def pytest_runtest_logreport(report):
    info = getattr(report, "hil_testcase", None)
    config = _STATE.get("config")
    if info is None or config is None:
        return
    rep = report
    verdict = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[rep.outcome]
    if rep.when == "setup" and rep.outcome == "failed":
        verdict = "ERROR"
    message = ""
    if rep.outcome == "skipped" and isinstance(rep.longrepr, tuple):
        message = rep.longrepr[2]
    elif rep.outcome == "failed" and rep.longreprtext:
        message = rep.longreprtext.strip().splitlines()[-1]
    row = {**info, "verdict": verdict, "duration_s": round(rep.duration, 3), "message": message,
           "nodeid": rep.nodeid, "kpis": dict(getattr(rep, "hil_kpis", {}))}
    rows = config.stash[RESULTS_KEY]
    rows.append(row)
    if config.getoption("--hil-progress"):
        total = _STATE.get("total") or len(rows)
        line = f"[{len(rows):>3}/{total}] {verdict:<5} {info['id']:<14} {info['title']} ({rep.duration:.2f} s)"
        if message and verdict != "PASS":
            line += f"\n{'':>14}{message}"
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr:
            tr.write_line(line)


_STATE: dict = {}


def pytest_collection_finish(session):
    _STATE["total"] = len(session.items)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = config.stash.get(RESULTS_KEY, [])
    if config.getoption("--hil-progress") and rows:
        from . import report as reports

        terminalreporter.section("sgp32-hil summary")
        for line in reports.summary_table(rows):
            terminalreporter.write_line(line)
    out = config.getoption("--hil-report-dir")
    if out and rows:
        _write_reports(config, Path(out), rows)


def _write_reports(config, out: Path, rows: list[dict]) -> None:
    from . import report as reports

    out.mkdir(parents=True, exist_ok=True)
    try:
        b = _load_bench(config)
        meta = {"bench": b.name, "sgp32_version": b.sgp32_version, "plan": config.getoption("--plan") or "all"}
    except Exception as exc:  # noqa: BLE001 - the reports must still be written when the bench is the problem
        meta = {"bench": f"unloadable: {exc}", "plan": config.getoption("--plan") or "all"}
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    reports.write_metrics(out / "metrics.json", rows, meta)
    reports.write_matrix(out, rows, meta)
    alluredir = getattr(config.option, "allure_report_dir", None)
    if alluredir:
        reports.write_allure_metadata(Path(alluredir), environment=meta, executor=None)


def pytest_report_teststatus(report, config):
    """With --hil-progress the progress lines replace pytest's dots."""
    if config.getoption("--hil-progress") and report.when == "call":
        return report.outcome, "", report.outcome.upper()
    return None
