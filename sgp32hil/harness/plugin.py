"""pytest plugin (entry point ``pytest11``): bench options, fixtures, markers, progress and reports.

Fixtures: ``bench`` (the validated bench), ``bench_services`` (what the bench needs, started once per
session: pcscd, the bundled SM-DP+ and eIM, the simulated modem hosting the software eUICC),
``bench_pki`` (the PKI the bench trusts), ``eid`` (read once, registered at the eIM), ``modem`` (the
27.007 driver on the bench's AT port, AT transcript attached), ``euicc`` / ``open_es10`` (ES10 on the
bench's eUICC path: PC/SC reader, or +CCHO/+CGLA/+CSIM through the modem), ``ipa`` (the host IPAd; on
modem benches its ESipa goes through the DUT's data connection), ``eim``, ``smdp``, ``network`` (the
simulated network's control client; virtual benches only, changes undone after the test), ``kpis``.

Markers: ``testcase(id, title, family=…, story=…)`` gives a test its stable plan ID (Allure testcase
link, matrix row); ``requires(*capabilities)`` skips with a reason when the bench lacks a tag.

Reruns: a test that failed on a classified infrastructure error (port vanished, reader or pcscd gone, a
service that did not start) runs again (``--hil-reruns``, default 1), reported as RERUN with the reason;
assertions and product errors never rerun. Reports: progress lines and summary (``--hil-progress``),
metrics.json and the conformance matrix (``--hil-report-dir``), Allure run metadata every run, JUnit suite
properties (bench, slot, SGP.32 version, module identity, EID).
"""

from __future__ import annotations

import os
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
    group.addoption("--hil-reruns", type=int, default=1,
                    help="reruns of a test that failed on an infrastructure error (port vanished, reader gone)")


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


def _feature(item) -> str:
    """The procedure a test module covers: its docstring's opening words before the first parenthesis."""
    doc = (getattr(getattr(item, "module", None), "__doc__", None) or "").strip()
    return doc.split("(", 1)[0].split(":", 1)[0].strip().rstrip(".")[:60]


def testcase_id(item) -> str:
    marker = item.get_closest_marker("testcase")
    return marker.args[0] if marker and marker.args else item.nodeid


@pytest.fixture(autouse=True)
def _hil_markers(request):
    """Apply ``requires`` (skip with the missing tags) and ``testcase`` (report labels) markers; each test
    starts with an empty step trace."""
    from . import report as reports

    reports.TRACE.clear()
    reasons = _STATE.get("reruns", {}).get(request.node.nodeid)
    if reasons:
        reports.label("tag", "rerun-infrastructure")
        reports.attach_text("Rerun after infrastructure errors", "\n".join(reasons))
    marker = request.node.get_closest_marker("requires")
    if marker:
        b = request.getfixturevalue("bench")
        missing = [c for c in marker.args if not b.has(c)]
        if missing:
            pytest.skip(f"bench {b.name!r} lacks capabilities: {', '.join(missing)}")
    marker = request.node.get_closest_marker("testcase")
    if marker:
        kw = marker.kwargs
        reports.label_test(epic=kw.get("family", ""), feature=kw.get("feature", "") or _feature(request.node),
                           story=kw.get("story", ""),
                           testcase_id=marker.args[0], title=marker.args[1] if len(marker.args) > 1 else "")
        # the device under test, as runtime labels; the slot as a parameter kept out of the history ID so
        # trends aggregate across slots running the same plan
        try:
            b = request.getfixturevalue("bench")
        except pytest.UsageError:
            return
        reports.parameter("slot", request.config.getoption("--slot") or b.name, excluded=True)
        reports.label("ipa_mode", b.ipa.mode)
        reports.label("sgp32_version", b.sgp32_version)
        for key in ("eid", "modem"):
            if _STATE.get("identity", {}).get(key):
                reports.label(key, _STATE["identity"][key])


# --- services and device fixtures ------------------------------------------------------------------


class BenchServices:
    """What the bench needs, started for the session and stopped (by PID / handle) at its end.

    Virtual bench: pcscd, the bundled SM-DP+ and eIM (threads on 127.0.0.1), then the simulated modem
    process hosting the software eUICC (its factory eIM address is the running eIM's), the same card in a
    vpcd reader; the eUICC's EID is registered at the eIM and the bench's operational profiles are
    ordered on the SM-DP+ on demand (:meth:`smdp_order`). Lab bench: the reader or the modem port is the
    lab's; the bundled servers are started the same way.
    """

    def __init__(self, bench, keep_state: bool):
        self.bench = bench
        self.keep_state = keep_state
        self.pcscd = None
        self.soft_euicc = None
        self.modem_process = None
        self.smdp = None
        self.eim = None
        self.eim_error = ""
        self.reader = None
        self.modem_port = None
        self._tmp = None
        self._stack = None
        self._orders = 0

    @property
    def run_dir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sgp32hil-bench-")
        return Path(self._tmp.name)

    @property
    def eim_address(self) -> str:
        """The eIM address the eUICC must be configured with (the running bundled eIM's, else the bench's)."""
        if self.eim is not None:
            return self.eim.address
        return self.bench.eim_address

    def start(self) -> "BenchServices":
        import contextlib

        from .services import Pcscd, SoftEuiccProcess, VirtualModemProcess

        self._stack = contextlib.ExitStack()
        b = self.bench
        eu = b.euicc
        if eu.via in ("pcsc", "virtual"):
            self.pcscd = Pcscd.ensure()
        state = Path(eu.state) if (eu.via == "virtual" and self.keep_state and eu.state) else self.run_dir / "euicc"
        self._start_servers(state if state != self.run_dir / "euicc" else None)
        if eu.via in ("virtual", "modem") and b.modem and b.modem.port.virtual:
            # the software eUICC inside the simulated module; with via: virtual also in a vpcd reader
            self.modem_process = VirtualModemProcess.start(
                self.run_dir / "modem", state, vpcd_port=eu.vpcd_port if eu.via == "virtual" else None,
                vendor=b.modem.vendor if b.modem.vendor != "auto" else "quectel-bg95",
                networks=b.networks, pki_dir=b.pki_dir, eim_fqdn=self.eim_address or None,
                # the MT fetches the REFRESH right after the STORE DATA that asked for it (TS 102 223 §6.4.7),
                # before the IPA can act on the new profile
                refresh_delay_s=0.0,
            )
            self.reader = self.modem_process.reader
            self.modem_port = str(self.modem_process.link)
        elif eu.via == "virtual":
            self.soft_euicc = SoftEuiccProcess.start(
                state, port=eu.vpcd_port, pki_dir=b.pki_dir, eim_fqdn=self.eim_address or None,
            )
            self.reader = self.soft_euicc.reader
        elif eu.via == "pcsc":
            self.reader = eu.reader
        if b.modem and not b.modem.port.virtual:
            self.modem_port = b.modem.port.spec
        return self

    def _start_servers(self, kept_state: Path | None) -> None:
        """SM-DP+ and eIM threads. With a kept eUICC state and ``port: 0`` the eIM gets the port it had last
        time (remembered beside the state), so the eimFqdn stored on the card still names it."""
        from urllib.parse import urlsplit

        b = self.bench
        if b.smdp and b.smdp.bundled:
            from .smdp.server import run_in_thread as smdp_thread

            self.smdp = self._stack.enter_context(smdp_thread(b.smdp.pki, self.run_dir / "smdp.db"))
            self.smdp.service.address = f"127.0.0.1:{urlsplit(self.smdp.es9_url).port}"
        if b.eim and b.eim.bundled:
            try:
                from .eim import run_in_thread as eim_thread
            except ImportError as exc:
                self.eim_error = f"the bundled eIM is not available in this checkout ({exc})"
                return
            port = b.eim.port
            remembered = kept_state.parent / f".{kept_state.name}.eim-port" if kept_state else None
            if not port and remembered and remembered.is_file():
                port = int(remembered.read_text().strip() or 0)
            self.eim = self._stack.enter_context(eim_thread(
                b.eim.pki, self.run_dir / "eim.db", host=b.eim.host or "127.0.0.1", port=port or 0,
                smdp_ca=self.smdp.ca_file if self.smdp else None))
            if remembered:
                remembered.parent.mkdir(parents=True, exist_ok=True)
                remembered.write_text(self.eim.address.rsplit(":", 1)[1] + "\n")

    def smdp_order(self, profile, *, confirmation_code: str | None = None, eid: str | None = None,
                   prefix: str = "HIL") -> str:
        """Put ``profile`` (a bench operational profile) on the bundled SM-DP+ under a new MatchingID;
        returns the activation code (SGP.22 §4.1, ``$1`` when a confirmation code is required)."""
        from . import saip

        if self.smdp is None:
            raise RuntimeError("the bench's SM-DP+ is not bundled: orders must be made on the lab's SM-DP+")
        if profile.package:
            package = Path(profile.package).read_bytes()
        else:
            if not profile.iccid:
                raise ValueError(f"operational profile {profile.name!r} has neither package nor iccid")
            package = saip.make_profile(profile.iccid, profile.imsi, apn=profile.apn, name=profile.name)
        self._orders += 1
        matching_id = f"{prefix}-{os.getpid()}-{self._orders}"
        kwargs = {"confirmation_code": confirmation_code} if confirmation_code else {}
        if eid:
            kwargs["eid"] = eid
        self.smdp.store.add_order(matching_id, package=package, imsi=profile.imsi, name=profile.name, **kwargs)
        code = f"LPA:1${self.smdp.service.address}${matching_id}"
        return code + "$$1" if confirmation_code else code

    def stop(self) -> None:
        for attr in ("modem_process", "soft_euicc"):
            proc = getattr(self, attr)
            if proc:
                proc.stop()
                setattr(self, attr, None)
        if self._stack is not None:
            self._stack.close()
            self._stack = None
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
        running = {}
        if services.eim is not None:
            running["eim_address"] = services.eim.address
        if services.smdp is not None:
            running["smdp_address"] = services.smdp.service.address
        if running:
            _identity(request, **running)
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="session")
def _session_modem(request, bench, bench_services):
    """The Modem driver on the bench's AT port for the whole session (tests get it with a fresh transcript)."""

    if bench.modem is None:
        yield None
        return
    vendor = bench.modem.vendor_file and str(bench.modem.vendor_file)
    if vendor:
        from ..drivers.at.profiles import load_profile

        profile = load_profile(vendor)
    else:
        profile = None if bench.modem.vendor == "auto" else bench.modem.vendor
    driver = _open_modem(bench_services.modem_port, profile, bench.modem.baudrate)
    try:
        ident = driver.identity()
        _identity(request, modem=f"{ident.manufacturer} {ident.model} {ident.revision}", modem_imei=ident.imei or "")
    except Exception:  # noqa: BLE001 - identity is report metadata; the tests judge the module
        pass
    try:
        yield driver
    finally:
        driver.close()


# An ES10 response through +CGLA comes back as one hex line: RetrieveNotificationsList with a few pending
# notifications is several KB, so the channel takes lines up to a full 64 KB response in hex.
CGLA_MAX_LINE = 2 * 65536 + 64


def _open_modem(port: str, profile, baudrate: int):
    """``Modem.open`` with a line limit that fits ES10 responses over +CGLA (the driver's default is 4 KB)."""
    from ..drivers.at.channel import AtChannel
    from ..drivers.at.driver import Modem
    from ..drivers.at.profiles import load_profile

    channel = AtChannel(port, baudrate=baudrate, max_line=CGLA_MAX_LINE).open()
    try:
        driver = Modem(channel, load_profile(profile) if isinstance(profile, str) else profile)
        driver.init()
        if profile is None:
            driver.use_profile(driver.detect_profile())
            driver.init()
    except Exception:
        channel.close()
        raise
    return driver


@pytest.fixture
def modem(request, bench, _session_modem):
    """The DUT's modem (:class:`~sgp32hil.drivers.at.driver.Modem`); its AT transcript is attached on teardown."""
    from ..drivers.at.transcript import Transcript
    from . import flows
    from . import report as reports

    if _session_modem is None:
        pytest.skip(f"bench {bench.name!r} has no modem")
    transcript = Transcript()
    _session_modem.channel.transcript = transcript
    if getattr(_session_modem.channel, "gone", False):
        _session_modem.channel.reopen(10.0)
        _session_modem.init()
    try:
        yield _session_modem
    finally:
        reports.attach_text("AT transcript", flows.render_transcript(transcript))


@pytest.fixture
def open_es10(request, bench, bench_services):
    """A callable giving a fresh ES10 client context on the bench's eUICC path (PC/SC reader, or the modem's
    +CCHO/+CGLA or +CSIM when ``euicc.via: modem``)."""
    return _es10_opener(request, bench, bench_services)


def _transport_factory(request, bench, bench_services):
    if bench.euicc.via == "modem":
        from ..drivers.apdu.modem import ModemApduTransport

        driver = request.getfixturevalue("modem")
        return lambda: ModemApduTransport(driver, path=bench.euicc.apdu_path)
    from ..drivers.apdu.pcsc import PcscTransport

    return lambda: PcscTransport(bench_services.reader)


def _es10_opener(request, bench, bench_services):
    import contextlib

    from ..drivers.es10.client import Es10Client

    open_transport = _transport_factory(request, bench, bench_services)

    @contextlib.contextmanager
    def opener():
        transport = open_transport()
        try:
            with Es10Client(transport) as client:
                yield client
        finally:
            transport.close()

    return opener


@pytest.fixture
def euicc(request, bench, bench_services):
    """An ES10 client on the bench's eUICC (PC/SC reader or through the modem), channel closed after the test."""
    from ..drivers.es10.client import Es10Client
    from ..drivers.es10.decode import render_trace
    from . import report as reports

    transport = _transport_factory(request, bench, bench_services)()
    client = Es10Client(transport)
    try:
        with client:
            yield client
    finally:
        transport.close()
        if client.exchanges:
            reports.attach_text("ES10 trace", render_trace(client.trace()))


@pytest.fixture(scope="session")
def eid(request, bench, bench_services):
    """The DUT eUICC's EID (ES10c GetEID, SGP.22 §5.7.20), read once. The bundled eIM is told about the
    card as the card knows it (SGP.32 §2.11.1.2): the counterValue and associationToken of its eIM
    configuration for that eIM, and the eUICC certificate, so a card that already ran packages (a lab
    eUICC, ``--keep-state``) is not answered with replayError."""
    from ..drivers.es10.client import Es10Client

    if bench.euicc.via == "modem":
        from ..drivers.apdu.modem import ModemApduTransport

        driver = request.getfixturevalue("_session_modem")
        driver.wait_sim_ready(bench.budgets.attach, poll_s=0.2)
        transport = ModemApduTransport(driver, path=bench.euicc.apdu_path)
    else:
        from ..drivers.apdu.pcsc import PcscTransport

        transport = PcscTransport(bench_services.reader)
    try:
        with Es10Client(transport) as client:
            value = client.get_eid()
            if bench_services.eim is not None:
                eim_id = bench_services.eim.service.eim_id
                config = next((c for c in client.get_eim_configuration_data() if c.eim_id == eim_id), None)
                cert = client.get_certs().euicc_certificate
    finally:
        transport.close()
    _identity(request, eid=value)
    if bench_services.eim is not None:
        bench_services.eim.service.register_euicc(
            value, counter_value=(config.counter_value or 0) if config else 0,
            association_token=config.association_token if config else None, euicc_certificate=cert)
    return value


def _identity(request, **values: str) -> None:
    """DUT identity (module, IMEI, EID) for environment.properties, metrics and the JUnit suite properties."""
    _STATE.setdefault("identity", {}).update(values)
    try:
        record = request.getfixturevalue("record_testsuite_property")
    except Exception:  # noqa: BLE001 - without JUnit output there is nothing to record into
        return
    for key, value in values.items():
        record(key, value)


@pytest.fixture
def eim(bench, bench_services, eid):
    """The running bundled eIM (``url``, ``address``, ``ca_file``, ``service``) with the DUT's EID registered."""
    if bench_services.eim is None:
        pytest.skip(bench_services.eim_error or f"bench {bench.name!r} has no bundled eIM")
    return bench_services.eim


@pytest.fixture
def smdp(bench, bench_services):
    """The running bundled SM-DP+ (``es9_url``, ``service.address``, ``store``); ``bench_services.smdp_order``
    puts a bench profile on it."""
    if bench_services.smdp is None:
        pytest.skip(f"bench {bench.name!r} has no bundled SM-DP+")
    return bench_services.smdp


@pytest.fixture
def ipa(request, bench, bench_services, eim, bench_pki):
    """Our host IPAd on the bench's eUICC path, polling the bundled eIM (skips on ``ipa.mode`` device/ipae)."""
    if bench.ipa.mode != "host":
        pytest.skip(f"bench {bench.name!r} runs the device's own IPA (ipa.mode {bench.ipa.mode}); no host IPAd")
    try:
        from .ipa import Ipa
    except ImportError as exc:
        pytest.skip(f"the host IPAd is not available in this checkout ({exc})")
    http_transport = None
    if bench.modem is not None:
        # ESipa only while the DUT has service, as for an IPA whose traffic goes over the module's PDN
        import ssl

        import httpx

        from .flows import PdnGate, modem_link_up

        inner = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(eim.ca_file)))
        http_transport = PdnGate(inner, modem_link_up(request.getfixturevalue("modem")),
                                 wait_s=min(bench.budgets.attach / 4, 30.0))
    return Ipa(_transport_factory(request, bench, bench_services), eim_url=eim.url, ca=eim.ca_file,
               pki_dir=bench.pki_dir, http_transport=http_transport)


class NetworkControl:
    """The simulated network's control client; remembers rejects and coverage changes so they are undone."""

    def __init__(self, client):
        self.client = client
        self.changed: dict[tuple[str, str], object] = {}

    def call(self, method: str, **params):
        if method == "set_reject":
            self.changed.setdefault(("reject", params["network"]), None)
        elif method == "set_coverage":
            self.changed.setdefault(("coverage", params["network"]), True)
        elif method == "move":
            for name in self.client.call("status").get("coverage", {}):
                self.changed.setdefault(("coverage", name), True)
        return self.client.call(method, **params)

    def status(self) -> dict:
        return self.client.call("status")

    def restore(self) -> None:
        for (kind, name), value in self.changed.items():
            if kind == "reject":
                self.client.call("set_reject", network=name, cause=None)
            else:
                self.client.call("set_coverage", network=name, on=value)
        self.changed.clear()


@pytest.fixture
def network(request, bench, bench_services):
    """The simulated modem's control client (set_coverage, set_reject, move, status); virtual benches only
    (skips with the reason elsewhere). Rejects and coverage changes are undone after the test."""
    if not bench.has("virtual") or bench_services.modem_process is None:
        pytest.skip(f"bench {bench.name!r} has no simulated network (needs capability 'virtual')")
    control = NetworkControl(bench_services.modem_process.client())
    try:
        yield control
    finally:
        try:
            control.restore()
        finally:
            control.client.close()


@pytest.fixture
def kpis(request):
    """KPIs of this test (flows record into it); they land in metrics.json, the matrix and Allure."""
    from .report import Kpis

    return Kpis()


@pytest.fixture(scope="session", autouse=True)
def _junit_suite_properties(request, record_testsuite_property):
    """Bench identity as JUnit ``<testsuite>`` properties (bench, slot, SGP.32 version, module, reader)."""
    from . import bench as benchmod
    from . import report as reports

    try:
        b = _load_bench(request.config)
    except benchmod.BenchError:
        return
    for key, value in reports.junit_suite_properties(b).items():
        record_testsuite_property(key, value)
    record_testsuite_property("slot", request.config.getoption("--slot") or b.name)


# --- progress, results and reports -----------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    rep.hil_infra = infrastructure_failure(call.excinfo.value) if call.excinfo is not None else ""
    kp = item.funcargs.get("kpis") if hasattr(item, "funcargs") else None
    if kp is not None and len(kp):
        rep.hil_kpis = kp.to_dict()
    if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
        marker = item.get_closest_marker("testcase")
        callspec = getattr(item, "callspec", None)
        rep.hil_testcase = {
            "id": testcase_id(item) + (f"[{callspec.id}]" if callspec is not None else ""),
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
    tr = config.pluginmanager.get_plugin("terminalreporter")
    reruns = _STATE.setdefault("reruns", {})
    if rep.outcome == "rerun":
        reruns.setdefault(rep.nodeid, []).append(rep.hil_rerun_reason)
        if config.getoption("--hil-progress") and tr:
            tr.write_line(f"[  -/{_STATE.get('total') or '?'}] RERUN {info['id']:<14} infrastructure error, "
                          f"running again: {rep.hil_rerun_reason}")
        return
    verdict = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[rep.outcome]
    if rep.when == "setup" and rep.outcome == "failed":
        verdict = "ERROR"
    message = ""
    if rep.outcome == "skipped" and isinstance(rep.longrepr, tuple):
        message = rep.longrepr[2]
    elif rep.outcome == "failed":
        crash = getattr(rep.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else (rep.longreprtext.strip().splitlines() or [""])[-1]
        if getattr(rep, "hil_infra", ""):
            message = f"infrastructure: {message}"
    row = {**info, "verdict": verdict, "duration_s": round(rep.duration, 3), "message": message,
           "nodeid": rep.nodeid, "kpis": dict(getattr(rep, "hil_kpis", {}))}
    if rep.nodeid in reruns:
        row["reruns"] = list(reruns[rep.nodeid])
        row["message"] = (message + " " if message else "") + f"(after {len(reruns[rep.nodeid])} rerun(s) for " \
            f"infrastructure errors: {'; '.join(reruns[rep.nodeid])})"
    rows = config.stash[RESULTS_KEY]
    rows.append(row)
    if config.getoption("--hil-progress"):
        total = _STATE.get("total") or len(rows)
        line = f"[{len(rows):>3}/{total}] {verdict:<5} {info['id']:<14} {info['title']} ({rep.duration:.2f} s)"
        if row["message"] and verdict != "PASS" or row.get("reruns"):
            line += f"\n{'':>14}{row['message']}"
        if tr:
            tr.write_line(line)


_STATE: dict = {}

# Infrastructure failures that earn a rerun: the bench broke, not the DUT (report.py categories).
_INFRA_TYPES = ("PortGone", "PortVanished", "ReaderGone", "ServiceError", "NoAnswer")
_INFRA_TRANSPORT = ("PC/SC service not available", "no PC/SC reader", "no card in PC/SC reader",
                    "card removed or unpowered", "cannot establish a PC/SC context")


def infrastructure_failure(exc: BaseException | None) -> str:
    """The classified infrastructure problem behind ``exc`` (its chain included), or ``""`` for anything
    else: an assertion, an ES10 error code, a modem ERROR are product outcomes and never rerun."""
    seen = 0
    while exc is not None and seen < 10:
        names = {c.__name__ for c in type(exc).__mro__}
        if names & set(_INFRA_TYPES):
            return f"{type(exc).__name__}: {exc}"
        if "TransportError" in names and any(t in str(exc) for t in _INFRA_TRANSPORT):
            return f"{type(exc).__name__}: {exc}"
        if isinstance(exc, AssertionError):
            return ""
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return ""


def pytest_runtest_protocol(item, nextitem):
    """Run a test; rerun it (``--hil-reruns``, default 1) only when it failed on a classified infrastructure
    error. The discarded attempt is reported as RERUN with its reason, never as a pass."""
    reruns = item.config.getoption("--hil-reruns")
    if reruns <= 0 or item.get_closest_marker("testcase") is None:
        return None
    from _pytest.runner import runtestprotocol

    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for attempt in range(reruns + 1):
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        infra = next((r.hil_infra for r in reports if r.failed and getattr(r, "hil_infra", "")), "")
        if infra and attempt < reruns:
            for r in reports:
                if r.failed:
                    r.outcome = "rerun"
                    r.hil_rerun_reason = infra
                item.ihook.pytest_runtest_logreport(report=r)
            item._initrequest()
            continue
        for r in reports:
            item.ihook.pytest_runtest_logreport(report=r)
        break
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


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
    meta = _run_meta(config)
    if out and rows:
        _write_reports(Path(out), rows, meta)
    alluredir = getattr(config.option, "allure_report_dir", None)
    if alluredir:
        from . import report as reports

        # Every run: --clean-alluredir deletes environment.properties, categories.json and executor.json.
        reports.write_allure_metadata(Path(alluredir), environment=meta, executor=None)


def _run_meta(config) -> dict:
    try:
        b = _load_bench(config)
        meta = {"bench": b.name, "slot": config.getoption("--slot") or b.name, "sgp32_version": b.sgp32_version,
                "plan": config.getoption("--plan") or "all", "ipa_mode": b.ipa.mode, "euicc_via": b.euicc.via}
        if b.modem:
            meta["modem_vendor"] = b.modem.vendor
    except Exception as exc:  # noqa: BLE001 - the reports must still be written when the bench is the problem
        meta = {"bench": f"unloadable: {exc}", "plan": config.getoption("--plan") or "all"}
    meta.update(_STATE.get("identity", {}))
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return meta


def _write_reports(out: Path, rows: list[dict], meta: dict) -> None:
    from . import report as reports

    out.mkdir(parents=True, exist_ok=True)
    reports.write_metrics(out / "metrics.json", rows, meta)
    reports.write_matrix(out, rows, meta)


def pytest_report_teststatus(report, config):
    """With --hil-progress the progress lines replace pytest's dots; a discarded attempt shows as RERUN."""
    if report.outcome == "rerun":
        return "rerun", "R", ("RERUN", {"yellow": True})
    if config.getoption("--hil-progress") and report.when == "call":
        return report.outcome, "", report.outcome.upper()
    if config.getoption("--hil-progress") and report.when in ("setup", "teardown") and report.failed:
        return "error", "", "ERROR"
    return None
