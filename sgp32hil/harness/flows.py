"""The four SGP.32 scenarios as reusable steps (DESIGN.md "Data flows"): bootstrap attach, profile download,
enable/switch, fallback recovery.

Each flow takes the objects the pytest fixtures give (the :class:`~.bench.Bench`, a
:class:`~sgp32hil.drivers.at.driver.Modem`, an IPAd with ``poll()``, the running eIM and SM-DP+, an
``open_es10`` callable giving a fresh :class:`~sgp32hil.drivers.es10.client.Es10Client` context, the
simulated network's control client), runs the steps in order, and returns a result dataclass with the
KPIs (seconds, APDU counts). Every step is an Allure step (:func:`.report.step`) timed against the
bench's budget; what crossed the interfaces (AT transcript, decoded ES10 trace, ESipa / ES9+ messages,
KPIs) is attached. A broken chain raises :class:`FlowError` (an ``AssertionError``) whose message says
which flow, which step, what was expected and what the device last reported, e.g.
``enable_switch: registered on no network within 30 s after REFRESH: +CEREG: 3 (denied, reject cause 15)
— ICCID 8900102000000000018 IMSI 001020000000001``.

Specification references: SGP.32 v1.2 §3.1 (eIM package retrieval, ESipa), §3.2 (profile download,
direct §3.2.3.1 / indirect §3.2.3.2), §3.3 (PSMO enable with rollback), §3.5 (fallback mechanism,
§5.9.11 ExecuteFallbackMechanism, §5.9.12 ReturnFromFallback), 3GPP TS 27.007 (CFUN, CPIN, CEREG, CGACT),
ETSI TS 102 223 §6.4.7 (REFRESH UICC reset).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import report
from .report import Kpis

# --- errors, budgets, steps --------------------------------------------------------------------------


class FlowError(AssertionError):
    """Where a scenario broke: ``flow``, ``step`` and the message (what was expected, what was seen)."""

    def __init__(self, flow: str, step: str, message: str):
        self.flow = flow
        self.step = step
        super().__init__(f"{flow}: {message}")


class BudgetExceeded(FlowError):
    """A step took longer than its time budget from the bench's ``budgets``."""


@dataclass
class FlowResult:
    """Outcome of one flow: KPIs, the steps run (name, seconds) and flow-specific details."""

    flow: str
    kpis: Kpis = field(default_factory=Kpis)
    steps: list[tuple[str, float]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"flow": self.flow, "kpis": self.kpis.to_dict(), "steps": [list(s) for s in self.steps],
                "details": self.details}


class Chain:
    """Runs the steps of one flow: Allure steps, per-step budgets, KPI recording, failure messages."""

    def __init__(self, flow: str, budgets: Any, kpis: Kpis | None = None):
        self.result = FlowResult(flow, kpis if kpis is not None else Kpis())
        self.flow = flow
        self.budgets = budgets
        self.current = ""

    @property
    def kpis(self) -> Kpis:
        return self.result.kpis

    def budget(self, name: str) -> float:
        """The bench's budget ``name`` (attach, download, switch, fallback, eim_contact) in seconds."""
        return float(getattr(self.budgets, name))

    @contextlib.contextmanager
    def step(self, name: str, budget: str | None = None, **params: Any) -> Iterator[None]:
        """One step; with ``budget`` it fails when it takes longer than the bench allows."""
        limit = self.budget(budget) if budget else None
        if limit is not None:
            params = {**params, "budget": f"{budget} {limit:g} s"}
        self.current = name
        start = time.monotonic()
        with report.step(f"{self.flow}: {name}", **params):
            yield
            took = time.monotonic() - start
            if limit is not None and took > limit:
                raise BudgetExceeded(self.flow, name, f"step '{name}' took {took:.1f} s, over its budget of "
                                     f"{limit:g} s (bench budgets.{budget})")
        self.result.steps.append((name, round(time.monotonic() - start, 4)))

    def fail(self, message: str) -> FlowError:
        return FlowError(self.flow, self.current, message)

    def attach_kpis(self, modem: Any = None) -> None:
        """Attach the KPIs and, with a modem, the AT transcript so far (the test's own result carries them)."""
        report.attach_json(f"{self.flow} KPIs", self.result.to_dict())
        transcript = getattr(getattr(modem, "channel", None), "transcript", None)
        if transcript is not None:
            report.attach_text(f"{self.flow}: AT transcript", render_transcript(transcript))


# --- the IPA's data path -------------------------------------------------------------------------------

NO_DATA_CONNECTION = "no data connection"


class PdnGate:
    """ESipa through the DUT's data connection (an httpx transport for the host IPAd).

    A device's IPA reaches its eIM over the cellular PDN, so without service it cannot deliver a result,
    and that is what makes ProfileRollback (SGP.32 v1.2 §3.3) and the fallback mechanism meaningful. Each
    request waits up to ``wait_s`` for ``link_up()`` (registered, default bearer active) and then goes out
    through ``inner``; otherwise it fails with ``httpx.ConnectError("no data connection ...")`` as on a
    device without service.
    """

    def __init__(self, inner: Any, link_up: Callable[[], bool], wait_s: float):
        self.inner = inner
        self.link_up = link_up
        self.wait_s = wait_s
        self.bypassed = False

    @contextlib.contextmanager
    def bypass(self) -> Iterator[None]:
        """Requests go out whatever the DUT's service (test set-up over the lab host's own network)."""
        self.bypassed, before = True, self.bypassed
        try:
            yield
        finally:
            self.bypassed = before

    def handle_request(self, request: Any) -> Any:
        import httpx

        deadline = time.monotonic() + self.wait_s
        while not self.bypassed and not self._up():
            if time.monotonic() >= deadline:
                raise httpx.ConnectError(f"{NO_DATA_CONNECTION}: the device has no registration with an active "
                                         f"PDP context (waited {self.wait_s:g} s)", request=request)
            time.sleep(0.1)
        return self.inner.handle_request(request)

    def _up(self) -> bool:
        try:
            return bool(self.link_up())
        except Exception:  # noqa: BLE001 - a module busy with REFRESH answers errors: no link yet
            return False

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> "PdnGate":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def setup_path(ipa: Any) -> contextlib.AbstractContextManager:
    """Within it the IPA reaches the eIM even when the DUT has no service: set-up only (returning a DUT
    stranded on a failing profile to a known state), never for what a test judges."""
    gate = getattr(ipa, "http_transport", None)
    return gate.bypass() if isinstance(gate, PdnGate) else contextlib.nullcontext()


def modem_link_up(modem: Any, cid: int = 1) -> Callable[[], bool]:
    """``link_up`` for :class:`PdnGate`: +CEREG registered and context ``cid`` active (27.007 §10.1.22/§10.1.10)."""
    def up() -> bool:
        return modem.registration().registered and bool(modem.pdp_states().get(cid))

    return up


# --- bench data the flows need -------------------------------------------------------------------------


def network_plmns(bench: Any) -> dict[str, str]:
    """Network name -> PLMN from the bench's networks file (empty for lab benches, which have none)."""
    path = getattr(bench, "networks", None)
    if not path:
        return {}
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return {str(n["name"]): str(n["plmn"]) for n in doc.get("networks", [])}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: cannot read network names and PLMNs ({exc})") from None


def expected_plmn(bench: Any, network: str | None) -> str | None:
    return network_plmns(bench).get(network) if network else None


# --- modem helpers -------------------------------------------------------------------------------------


def render_transcript(transcript: Any) -> str:
    """An AT transcript as text: ``HH:MM:SS.mmm >> AT+CPIN?`` (sent) / ``<<`` (received) / ``--`` (event)."""
    from ..drivers.at.transcript import escape_bytes

    lines = []
    for rec in transcript.records():
        stamp = time.strftime("%H:%M:%S", time.localtime(rec.t)) + f".{int(rec.t * 1000) % 1000:03d}"
        arrow = {"tx": ">>", "rx": "<<"}.get(rec.dir, "--")
        text = escape_bytes(rec.data) if rec.dir != "event" else rec.data.decode("utf-8", "replace")
        lines.append(f"{stamp} {arrow} {text}")
    return "\n".join(lines)


def imsi_of(modem: Any) -> str:
    try:
        for line in modem.at("AT+CIMI").lines:
            digits = line.strip().removeprefix("+CIMI:").strip()
            if digits.isdigit():
                return digits
    except Exception:  # noqa: BLE001 - a diagnostic only; the message says it is unknown
        pass
    return "?"


def iccid_of(modem: Any) -> str:
    try:
        return modem.iccid()
    except Exception as exc:  # noqa: BLE001 - a diagnostic only
        return f"? ({type(exc).__name__}: {exc})"


def serving_plmn(modem: Any) -> str | None:
    """Numeric PLMN from +COPS? (after +COPS=3,2), None when not registered."""
    modem.at("AT+COPS=3,2")
    op = modem.operator()
    return op.operator if op.operator and op.operator.isdigit() else None


def registration_text(modem: Any) -> str:
    """``+CEREG: 3 (denied, reject cause 15) on 00102 — ICCID ... IMSI ...``: the device's own view."""
    try:
        reg = modem.registration()
        text = f"+CEREG: {reg.stat} ({reg.stat_text}"
        if reg.reject_cause is not None:
            text += f", reject cause {reg.reject_cause}"
        text += ")"
        try:
            plmn = serving_plmn(modem)
        except Exception:  # noqa: BLE001
            plmn = None
        if plmn:
            text += f" on {plmn}"
    except Exception as exc:  # noqa: BLE001
        text = f"registration unknown ({type(exc).__name__}: {exc})"
    return f"{text} — ICCID {iccid_of(modem)} IMSI {imsi_of(modem)}"


def wait_registered(chain: Chain, modem: Any, timeout: float, plmn: str | None, after: str) -> tuple[Any, str | None]:
    """Wait for +CEREG 1/5 (on ``plmn`` when given); a clear failure names ``after`` and the last state."""
    from ..drivers.at.errors import AtTimeout

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            reg = modem.wait_registered(timeout=max(0.05, remaining), poll_s=min(1.0, max(0.1, timeout / 10)))
        except AtTimeout:
            want = f" (expected PLMN {plmn})" if plmn else ""
            raise chain.fail(f"registered on no network within {timeout:g} s {after}{want}: "
                             f"{registration_text(modem)}") from None
        seen = serving_plmn(modem)
        if plmn is None or seen == plmn:
            return reg, seen
        if time.monotonic() >= deadline:
            raise chain.fail(f"registered on {seen}, not on {plmn}, within {timeout:g} s {after}: "
                             f"{registration_text(modem)}")
        time.sleep(0.1)


def pdp_up(chain: Chain, modem: Any, cid: int = 1) -> str:
    """The default bearer (``cid``) active with an address; activated with +CGACT when it is not (27.007 §10.1.10)."""
    from ..drivers.at.errors import AtError

    states = modem.pdp_states()
    if not states.get(cid):
        try:
            modem.activate_pdp(cid)
        except AtError as exc:
            raise chain.fail(f"PDP context {cid} did not come up: {exc} — {registration_text(modem)}") from None
    addresses = modem.pdp_address(cid)
    if not addresses or all(a in ("", "0.0.0.0") for a in addresses):
        raise chain.fail(f"PDP context {cid} is active without an address — {registration_text(modem)}")
    return addresses[0]


def wait_iccid(chain: Chain, modem: Any, want: str, timeout: float, after: str) -> str:
    """Poll the ICCID (vendor command, e.g. AT+QCCID) until it is ``want``; SIM busy/not ready is retried."""
    from ..drivers.at.errors import AtChannelError

    deadline = time.monotonic() + timeout
    last = "?"
    while time.monotonic() < deadline:
        try:
            last = modem.iccid()
            if last == want:
                return last
        except AtChannelError as exc:
            last = f"({exc})"
        time.sleep(0.1)
    raise chain.fail(f"ICCID is {last}, expected {want}, {timeout:g} s {after}")


# --- eIM / IPA result accessors (objects or dicts) -----------------------------------------------------


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def exchange_steps(interface: str, exchanges: Any) -> None:
    """One Allure step per exchange (ES10 call, ESipa or ES9+ request) with its decoded messages attached."""
    for ex in exchanges or []:
        function = field_of(ex, "function") or field_of(ex, "name") or type(ex).__name__
        params = {k: field_of(ex, k) for k in ("sw", "status_code", "status", "seconds", "error")
                  if field_of(ex, k) not in (None, "")}
        with report.step(f"{interface} {function}", **params):
            decoded = getattr(ex, "decoded", None)
            body = decoded() if callable(decoded) else _jsonable(ex)
            report.attach_json(f"{interface} {function}", body)


def attach_poll(name: str, poll: Any) -> None:
    """Attach an IPA poll's decoded ESipa exchanges, ES10 trace and summary; one step per exchange."""
    if poll is None:
        return
    exchange_steps("ESipa/ES9+", field_of(poll, "esipa") or field_of(poll, "exchanges"))
    exchange_steps("ES10", field_of(poll, "es10"))
    exchanges = field_of(poll, "esipa") or field_of(poll, "exchanges")
    render = getattr(poll, "render_esipa", None) or getattr(poll, "render", None)
    if callable(render):
        try:
            report.attach_text(f"{name}: ESipa / ES9+ messages", render())
        except Exception as exc:  # noqa: BLE001 - an attachment must not hide the verdict
            report.attach_text(f"{name}: ESipa / ES9+ messages", f"cannot render: {exc}")
    elif exchanges:
        report.attach_text(f"{name}: ESipa / ES9+ messages", "\n".join(map(str, exchanges)))
    trace = field_of(poll, "es10")
    if trace:
        try:
            from ..drivers.es10.decode import render_trace

            report.attach_text(f"{name}: ES10 trace", render_trace(trace))
        except Exception:  # noqa: BLE001
            report.attach_text(f"{name}: ES10 trace", "\n".join(map(str, trace)))
    to_dict = getattr(poll, "to_dict", None)
    if callable(to_dict):
        report.attach_json(f"{name}: poll result", to_dict())


def poll_packages(poll: Any, kind: str | None = None) -> list:
    pkgs = list(field_of(poll, "packages", []) or [])
    return [p for p in pkgs if kind is None or str(field_of(p, "kind", "")).lower().startswith(kind)]


def apdu_count(poll: Any) -> int:
    """APDUs the poll exchanged with the card (every STORE DATA block and GET RESPONSE counted)."""
    return sum(max(1, len(field_of(ex, "apdus", ()) or ())) for ex in field_of(poll, "es10", []) or [])


def run_poll(chain: Chain, ipa: Any, name: str, **kwargs: Any) -> Any:
    """One IPA poll, attached; an eIM or card the IPA could not reach at all is an infrastructure error."""
    poll = ipa.poll(**kwargs)
    attach_poll(name, poll)
    error = field_of(poll, "error")
    if error and field_of(poll, "infrastructure") and NO_DATA_CONNECTION not in str(error):
        raise report.NoAnswer(f"{chain.flow}: {name}: {error}")
    if error:
        raise chain.fail(f"{name} stopped: {error}")
    return poll


def plmn_digits(value: Any) -> str | None:
    """MCC+MNC digits of a PLMN given as 3 bytes of BCD (3GPP TS 24.008 §10.5.1.13), as that BCD in hex
    text (what the eIM stores, e.g. ``00F110``; six characters are always read as BCD), or as five digits."""
    if value is None:
        return None
    text = value.hex().upper() if isinstance(value, bytes) else str(value).upper()
    if len(text) == 5 and text.isdigit():
        return text
    if len(text) != 6:
        return text
    mcc = text[1] + text[0] + text[3]
    mnc = text[5] + text[4] + ("" if text[2] == "F" else text[2])
    return mcc + mnc


def set_rplmn(ipa: Any, plmn: str | None) -> None:
    """Tell the IPA the registered PLMN it reports to the eIM (SGP.32 §5.14.x rPLMN, 3 BCD bytes)."""
    if not plmn or not hasattr(ipa, "rplmn"):
        return
    try:
        from .ipa.poll import encode_plmn

        ipa.rplmn = encode_plmn(plmn)
    except ImportError:
        ipa.rplmn = plmn


def order_id(order: Any) -> Any:
    return order if isinstance(order, int | str) else field_of(order, "id", field_of(order, "order_id"))


def wait_order(chain: Chain, eim: Any, oid: Any, timeout: float, what: str) -> Any:
    """The eIM order once done/failed/cancelled; a clear failure when it never completes."""
    service = eim.service
    deadline = time.monotonic() + timeout
    order = None
    while time.monotonic() < deadline:
        order = service.get_order(oid)
        if field_of(order, "status") in ("done", "failed", "cancelled"):
            return order
        time.sleep(0.05)
    raise chain.fail(f"eIM order {oid} ({what}) still {field_of(order, 'status')!r} after {timeout:g} s: "
                     "the IPA never returned its result")


def eim_record(eim: Any, eid: str) -> Any:
    return eim.service.euicc(eid)


# --- ES10 helpers --------------------------------------------------------------------------------------


def es10_read(open_es10: Callable, fn: Callable[[Any], Any], name: str) -> Any:
    """Run ``fn(client)`` on a fresh ES10 session and attach its decoded trace as ``name``."""
    from ..drivers.es10.decode import render_trace

    with open_es10() as client:
        try:
            return fn(client)
        finally:
            if client.exchanges:
                trace = client.trace()
                exchange_steps("ES10", trace)
                report.attach_text(f"ES10 {name}", render_trace(trace))


def profiles(open_es10: Callable) -> dict[str, Any]:
    """ICCID -> ProfileInfo on the card."""
    return {p.iccid: p for p in es10_read(open_es10, lambda c: c.get_profiles_info(), "GetProfilesInfo")}


def enabled_iccid(open_es10: Callable) -> str | None:
    return next((i for i, p in profiles(open_es10).items() if p.state == "enabled"), None)


# --- 1. bootstrap attach -------------------------------------------------------------------------------


@dataclass
class AttachResult(FlowResult):
    iccid: str = ""
    plmn: str | None = None
    address: str = ""
    eid: str = ""


def bootstrap_attach(bench: Any, modem: Any, ipa: Any, eim: Any, open_es10: Callable, *, eid: str,
                     eim_id: str | None = None, eim_address: str | None = None, kpis: Kpis | None = None,
                     power_cycle: bool = True) -> AttachResult:
    """Power on (CFUN=0 -> 1) -> +CPIN READY -> +CEREG 1/5 on the bootstrap network -> PDP up -> the IPA
    reaches the eIM (first contact and rPLMN recorded there, SGP.32 §3.1.1) -> the card's eIM
    configuration (ES10b GetEimConfigurationData, §5.9.18) names the bench's eIM."""
    chain = Chain("bootstrap_attach", bench.budgets, kpis)
    res = AttachResult("bootstrap_attach", chain.kpis, eid=eid)
    chain.result = res
    boot = bench.profiles.bootstrap
    plmn_want = expected_plmn(bench, boot.network if boot else None)
    try:
        with chain.step("AT+CFUN=1 (radio and UICC on)", budget="attach"):
            if power_cycle:
                modem.set_cfun(0)
            t0 = time.monotonic()
            modem.set_cfun(1)
        with chain.step("+CPIN: READY", budget="attach"):
            try:
                modem.wait_sim_ready(chain.budget("attach"), poll_s=0.2)
            except Exception as exc:  # noqa: BLE001 - AtTimeout / AtError, reported with the state
                raise chain.fail(f"SIM not ready within {chain.budget('attach'):g} s after CFUN=1: {exc}") from None
            chain.kpis.record("time_to_sim_ready_s", round(time.monotonic() - t0, 3), "s")
            res.iccid = modem.iccid()
            if boot and boot.iccid and res.iccid != boot.iccid:
                raise chain.fail(f"enabled ICCID {res.iccid}, bench expects the bootstrap profile {boot.iccid}")
        with chain.step("+CEREG: 1/5 on the bootstrap network", budget="attach", plmn=plmn_want or "any"):
            _, res.plmn = wait_registered(chain, modem, chain.budget("attach"), plmn_want, "after CFUN=1")
            chain.kpis.record("time_to_register_s", round(time.monotonic() - t0, 3), "s")
        with chain.step("PDP context up", budget="attach"):
            res.address = pdp_up(chain, modem)
            chain.kpis.record("time_to_pdp_s", round(time.monotonic() - t0, 3), "s")
        with chain.step("IPA poll reaches the eIM (first contact)", budget="eim_contact"):
            set_rplmn(ipa, res.plmn)
            run_poll(chain, ipa, "bootstrap poll")
            chain.kpis.record("time_to_first_eim_contact_s", round(time.monotonic() - t0, 3), "s")
            record = eim_record(eim, eid)
            if record is None or field_of(record, "last_contact") is None:
                raise chain.fail(f"the eIM has no contact from EID {eid} after the IPA poll")
            reported = plmn_digits(field_of(record, "last_rplmn"))
            if res.plmn and reported != res.plmn:
                raise chain.fail(f"the eIM recorded rPLMN {field_of(record, 'last_rplmn')} ({reported}), the device "
                                 f"is registered on {res.plmn}")
            res.details["eim_record"] = {k: str(field_of(record, k)) for k in
                                         ("first_contact", "last_contact", "polls", "last_rplmn")}
        with chain.step("ES10b GetEimConfigurationData names the bench's eIM"):
            configs = es10_read(open_es10, lambda c: c.get_eim_configuration_data(), "GetEimConfigurationData")
            mine = [c for c in configs if (eim_id is None or c.eim_id == eim_id)]
            if not mine:
                raise chain.fail(f"no eIM configuration with eimId {eim_id!r} on the card: "
                                 f"{[c.eim_id for c in configs]}")
            if eim_address and not any(c.eim_fqdn == eim_address for c in mine):
                raise chain.fail(f"eimFqdn on the card {[c.eim_fqdn for c in mine]}, bundled eIM at {eim_address}")
    finally:
        chain.attach_kpis(modem)
    return res


# --- 2. download ---------------------------------------------------------------------------------------


@dataclass
class DownloadOutcome(FlowResult):
    iccid: str = ""
    order: Any = None
    poll: Any = None
    activation_code: str = ""


def download(bench: Any, ipa: Any, eim: Any, open_es10: Callable, *, eid: str, activation_code: str, iccid: str,
             indirect: bool = False, confirmation_code: str | None = None, expect_success: bool = True,
             kpis: Kpis | None = None) -> DownloadOutcome:
    """eIM profileDownloadTrigger (SGP.32 §3.2.1) -> IPA poll -> direct (§3.2.3.1) or indirect (§3.2.3.2)
    download -> the profile is on the card, disabled -> notifications delivered -> the eIM holds the
    ProfileDownloadTriggerResult. With ``expect_success=False`` the download must fail and leave no profile."""
    name = "download (indirect)" if indirect else "download (direct)"
    chain = Chain(name, bench.budgets, kpis)
    res = DownloadOutcome(name, chain.kpis, iccid=iccid, activation_code=activation_code)
    chain.result = res
    try:
        with chain.step("eIM order: profileDownloadTrigger", activation_code=activation_code, indirect=indirect):
            extra = {"confirmation_code": confirmation_code} if confirmation_code else {}
            res.order = order_id(eim.service.create_order(eid, "download", activation_code=activation_code,
                                                          indirect=indirect, **extra))
        with chain.step("IPA poll executes the download", budget="download"):
            t0 = time.monotonic()
            res.poll = run_poll(chain, ipa, "download poll")
            chain.kpis.record("download_s", round(time.monotonic() - t0, 3), "s")
            chain.kpis.record("apdu_count", apdu_count(res.poll))
            pkgs = poll_packages(res.poll, "download") or poll_packages(res.poll, "profile")
            if not pkgs:
                raise chain.fail(f"the IPA poll carried no download package (packages: "
                                 f"{[field_of(p, 'kind') for p in poll_packages(res.poll)]})")
            ok = bool(field_of(pkgs[0], "ok"))
            if ok != expect_success:
                raise chain.fail(f"download {'failed' if expect_success else 'succeeded'} in the IPA: "
                                 f"{field_of(pkgs[0], 'error') or field_of(pkgs[0], 'result')}")
        with chain.step("profile on the card" if expect_success else "no profile left on the card"):
            on_card = profiles(open_es10)
            if expect_success:
                if iccid not in on_card:
                    raise chain.fail(f"ICCID {iccid} is not on the card after the download (card has "
                                     f"{sorted(on_card)})")
                if on_card[iccid].state != "disabled":
                    raise chain.fail(f"downloaded profile {iccid} is {on_card[iccid].state}, expected disabled")
            elif iccid in on_card:
                raise chain.fail(f"ICCID {iccid} is on the card although the download was to fail")
        with chain.step("eIM holds the ProfileDownloadTriggerResult", budget="eim_contact"):
            order = wait_order(chain, eim, res.order, chain.budget("eim_contact"), "download")
            res.details["order"] = {"status": field_of(order, "status"), "error": field_of(order, "error")}
            report.attach_json("eIM order (download)", _jsonable(order))
            if expect_success and field_of(order, "status") != "done":
                raise chain.fail(f"eIM order {res.order} is {field_of(order, 'status')}: {field_of(order, 'error')}")
        if expect_success:
            with chain.step("notifications delivered"):
                delivered = field_of(res.poll, "notifications_delivered", 0)
                chain.kpis.record("notifications_delivered", int(delivered or 0))
                if not delivered:
                    raise chain.fail("the IPA delivered no notification (the install notification is due)")
    finally:
        chain.attach_kpis()
    return res


def _jsonable(obj: Any) -> Any:
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.hex().upper()
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return _jsonable(to_dict())
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    return str(obj)


# --- 3. enable / switch --------------------------------------------------------------------------------


@dataclass
class SwitchResult(FlowResult):
    iccid_before: str = ""
    iccid_after: str = ""
    plmn: str | None = None
    order: Any = None


def enable_switch(bench: Any, modem: Any, ipa: Any, eim: Any, open_es10: Callable, *, eid: str, iccid: str,
                  network: str | None = None, rollback: bool = True, kpis: Kpis | None = None) -> SwitchResult:
    """eIM enable PSMO (SGP.32 §3.3, signed eUICC package) -> IPA poll -> ES10b LoadEuiccPackage -> REFRESH
    (+CPIN NOT READY -> READY) -> the ICCID changes -> registration on ``network`` -> the signed result is
    stored at the eIM (order done) -> notifications delivered."""
    chain = Chain("enable_switch", bench.budgets, kpis)
    res = SwitchResult("enable_switch", chain.kpis)
    chain.result = res
    plmn_want = expected_plmn(bench, network)
    try:
        with chain.step("ICCID before the switch"):
            res.iccid_before = modem.iccid()
            if res.iccid_before == iccid:
                raise chain.fail(f"ICCID {iccid} is already enabled: nothing to switch")
        with chain.step("eIM order: enable PSMO", iccid=iccid, rollback=rollback):
            res.order = order_id(eim.service.create_order(
                eid, "psmo", psmos=[{"enable": {"iccid": iccid, "rollback": rollback}}]))
        mark = modem.channel.urc_mark()
        t0 = time.monotonic()
        with chain.step("IPA poll: ES10b LoadEuiccPackage (enable)", budget="switch"):
            # the result may stay on the card when the new profile has no service yet: delivered by a
            # later poll, checked below
            poll = ipa.poll()
            attach_poll("enable poll", poll)
            res.details["enable_poll_error"] = field_of(poll, "error")
            chain.kpis.record("apdu_count", apdu_count(poll))
            pkgs = poll_packages(poll, "psmo") or poll_packages(poll, "euicc")
            if not pkgs or not field_of(pkgs[0], "ok"):
                detail = field_of(pkgs[0], "error") or field_of(pkgs[0], "result") if pkgs else "no eUICC package"
                raise chain.fail(f"the enable PSMO failed in the IPA: {detail}")
            res.details["refreshes"] = field_of(poll, "refreshes")
        with chain.step("REFRESH: +CPIN NOT READY -> READY, ICCID changes", budget="switch"):
            remaining = max(0.5, chain.budget("switch") - (time.monotonic() - t0))
            try:
                modem.wait_for_urc("+CPIN: READY", remaining, since=mark)
            except Exception:  # noqa: BLE001 - the ICCID check below says what the module reports
                pass
            res.iccid_after = wait_iccid(chain, modem, iccid, max(0.5, chain.budget("switch") - (time.monotonic() - t0)),
                                         "after the enable")
            chain.kpis.record("time_to_iccid_change_s", round(time.monotonic() - t0, 3), "s")
        with chain.step("+CEREG: 1/5 on the operational network", budget="attach", plmn=plmn_want or "any"):
            _, res.plmn = wait_registered(chain, modem, chain.budget("attach"), plmn_want, "after REFRESH")
            chain.kpis.record("time_to_register_s", round(time.monotonic() - t0, 3), "s")
            pdp_up(chain, modem)
            chain.kpis.record("switch_s", round(time.monotonic() - t0, 3), "s")
        with chain.step("eIM stores the signed EuiccPackageResult (enableResult ok)", budget="eim_contact"):
            order = eim.service.get_order(res.order)
            if field_of(order, "status") not in ("done", "failed", "cancelled"):
                poll = run_poll(chain, ipa, "result poll")  # the device's next poll cycle, now with service
            order = wait_order(chain, eim, res.order, chain.budget("eim_contact"), "enable PSMO")
            report.attach_json("eIM order (enable)", _jsonable(order))
            if field_of(order, "status") != "done":
                raise chain.fail(f"eIM order {res.order} is {field_of(order, 'status')}: {field_of(order, 'error')}")
            result = _jsonable(field_of(order, "result")) or {}
            if result.get("enableResult") != "ok":
                raise chain.fail(f"eIM order {res.order}: enableResult {result.get('enableResult')!r}, expected ok "
                                 f"(result {result})")
            if result.get("verified") is False:
                raise chain.fail(f"eIM order {res.order}: the eIM could not verify the eUICC's signature on the "
                                 f"EuiccPackageResult (result {result})")
        with chain.step("notifications delivered"):
            delivered = field_of(poll, "notifications_delivered", 0)
            chain.kpis.record("notifications_delivered", int(delivered or 0))
            left = es10_read(open_es10, lambda c: c.retrieve_notifications_list(), "RetrieveNotificationsList")
            if not delivered or left:
                raise chain.fail(f"after the enable {delivered or 0} notification(s) delivered, {len(left)} still "
                                 "pending on the card (the enable/disable notifications are due)")
    finally:
        chain.attach_kpis(modem)
    return res


# --- 4. fallback recovery ------------------------------------------------------------------------------


@dataclass
class FallbackResult(FlowResult):
    bootstrap_iccid: str = ""
    operational_iccid: str = ""


def fallback_recover(bench: Any, modem: Any, ipa: Any, eim: Any, open_es10: Callable, *, eid: str,
                     operational_iccid: str, operational_network: str | None, network: Any = None,
                     loss: str = "reject", cause: int = 15, return_from_fallback: bool = True,
                     kpis: Kpis | None = None) -> FallbackResult:
    """The operational network is lost or rejects -> the device logic runs ES10b ExecuteFallbackMechanism
    (SGP.32 §5.9.11) -> the bootstrap (fallback) profile is enabled -> re-attach -> the IPA polls with
    notifyStateChange / stateChangeCause fallback and the eIM records it -> ES10b ReturnFromFallback
    (§5.9.12) -> back on the operational network.

    ``network`` is the simulated network's control client (set_reject / set_coverage); without it (a lab
    bench) the operational profile is expected to have no service where the device is."""
    chain = Chain("fallback_recover", bench.budgets, kpis)
    res = FallbackResult("fallback_recover", chain.kpis, operational_iccid=operational_iccid)
    chain.result = res
    boot = bench.profiles.bootstrap
    res.bootstrap_iccid = boot.iccid if boot else ""
    boot_plmn = expected_plmn(bench, boot.network if boot else None)
    oper_plmn = expected_plmn(bench, operational_network)
    try:
        with chain.step("operational profile enabled"):
            now = modem.iccid()
            if now != operational_iccid:
                raise chain.fail(f"precondition: ICCID {now} enabled, expected the operational {operational_iccid}")
        with chain.step(f"operational network {'rejects' if loss == 'reject' else 'lost'}", budget="attach"):
            if network is not None and operational_network:
                if loss == "reject":
                    network.call("set_reject", network=operational_network, cause=cause)
                else:
                    network.call("set_coverage", network=operational_network, on=False)
            t0 = time.monotonic()
            deadline = t0 + chain.budget("attach")
            while True:
                reg = modem.registration()
                # a reject shows as +CEREG: 3 with the EMM cause (after stat 2 while it retries); a lost cell
                # as anything not registered
                if (reg.denied if loss == "reject" else not reg.registered):
                    break
                if time.monotonic() > deadline:
                    raise chain.fail(f"no {'reject' if loss == 'reject' else 'loss of service'} seen within "
                                     f"{chain.budget('attach'):g} s after the operational network "
                                     f"was {'made to reject' if loss == 'reject' else 'switched off'}: "
                                     f"{registration_text(modem)}")
                time.sleep(0.1)
            res.details["lost_state"] = registration_text(modem)
        with chain.step("device logic: ES10b ExecuteFallbackMechanism", budget="fallback"):
            t1 = time.monotonic()
            es10_read(open_es10, lambda c: c.execute_fallback_mechanism(refresh=True), "ExecuteFallbackMechanism")
        with chain.step("bootstrap profile enabled (REFRESH, ICCID)", budget="fallback"):
            if res.bootstrap_iccid:
                wait_iccid(chain, modem, res.bootstrap_iccid, chain.budget("fallback"), "after ExecuteFallbackMechanism")
        with chain.step("re-attach on the bootstrap network", budget="attach", plmn=boot_plmn or "any"):
            wait_registered(chain, modem, chain.budget("attach"), boot_plmn, "after the fallback")
            pdp_up(chain, modem)
            chain.kpis.record("fallback_s", round(time.monotonic() - t1, 3), "s")
        with chain.step("IPA poll with notifyStateChange (fallback)", budget="eim_contact"):
            run_poll(chain, ipa, "state change poll", notify_state_change=True, state_change_cause="fallback")
            record = eim_record(eim, eid)
            cause_seen = str(field_of(record, "last_state_change_cause"))
            res.details["eim_state_change_cause"] = cause_seen
            if "fallback" not in cause_seen.lower():
                raise chain.fail(f"the eIM recorded state change cause {cause_seen!r}, expected fallback")
        if network is not None and operational_network:
            with chain.step("operational network restored"):
                if loss == "reject":
                    network.call("set_reject", network=operational_network, cause=None)
                else:
                    network.call("set_coverage", network=operational_network, on=True)
        if return_from_fallback:
            with chain.step("ES10b ReturnFromFallback", budget="fallback"):
                t2 = time.monotonic()
                es10_read(open_es10, lambda c: c.return_from_fallback(refresh=True), "ReturnFromFallback")
                wait_iccid(chain, modem, operational_iccid, chain.budget("fallback"), "after ReturnFromFallback")
            with chain.step("back on the operational network", budget="attach", plmn=oper_plmn or "any"):
                wait_registered(chain, modem, chain.budget("attach"), oper_plmn, "after ReturnFromFallback")
                chain.kpis.record("return_s", round(time.monotonic() - t2, 3), "s")
        chain.kpis.record("total_s", round(time.monotonic() - t0, 3), "s")
    finally:
        chain.attach_kpis(modem)
    return res


# --- state set-up shared by the test plans (each test sets up what it needs) ---------------------------


def psmo(chain: Chain, ipa: Any, eim: Any, eid: str, psmos: list[dict], what: str) -> Any:
    """One PSMO order at the eIM, executed by one IPA poll; returns the finished order."""
    oid = order_id(eim.service.create_order(eid, "psmo", psmos=psmos))
    poll = run_poll(chain, ipa, f"{what} poll")
    order = wait_order(chain, eim, oid, chain.budget("eim_contact"), what)
    if field_of(order, "status") != "done":
        raise chain.fail(f"{what}: eIM order {oid} {field_of(order, 'status')}: {field_of(order, 'error')}")
    return poll


def ensure_enabled(bench: Any, modem: Any, ipa: Any, eim: Any, open_es10: Callable, *, eid: str, iccid: str,
                   network: str | None = None) -> None:
    """Make ``iccid`` the enabled profile (eIM enable PSMO when it is not) and, with a modem, registered.
    Set-up: the PSMO goes over :func:`setup_path`, so a DUT stranded on a profile without service (the
    broken bench) is brought back too."""
    chain = Chain(f"set-up (enable {iccid})", bench.budgets)
    try:
        with chain.step(f"ICCID {iccid} enabled"):
            if enabled_iccid(open_es10) != iccid:
                with setup_path(ipa):
                    psmo(chain, ipa, eim, eid, [{"enable": {"iccid": iccid, "rollback": False}}], f"enable {iccid}")
            if modem is not None:
                wait_iccid(chain, modem, iccid, chain.budget("switch"), "after the set-up enable")
                modem.set_cfun(1)
                wait_registered(chain, modem, chain.budget("attach"), expected_plmn(bench, network), "in the set-up")
                pdp_up(chain, modem)
    except AssertionError:
        chain.attach_kpis(modem)
        raise


def ensure_absent(bench: Any, modem: Any, ipa: Any, eim: Any, open_es10: Callable, *, eid: str, iccid: str) -> None:
    """Delete ``iccid`` from the card (enabling the bootstrap profile first when it is enabled)."""
    chain = Chain("set-up", bench.budgets)
    on_card = profiles(open_es10)
    if iccid not in on_card:
        return
    boot = bench.profiles.bootstrap
    if on_card[iccid].state == "enabled":
        if not boot:
            raise chain.fail(f"set-up: {iccid} is enabled and the bench names no bootstrap profile to enable")
        ensure_enabled(bench, modem, ipa, eim, open_es10, eid=eid, iccid=boot.iccid, network=boot.network)
    with chain.step(f"ICCID {iccid} deleted"):
        psmo(chain, ipa, eim, eid, [{"delete": {"iccid": iccid}}], f"delete {iccid}")
        if iccid in profiles(open_es10):
            raise chain.fail(f"set-up: {iccid} still on the card after the delete PSMO")


def ensure_installed(bench: Any, ipa: Any, eim: Any, open_es10: Callable, *, eid: str, activation_code: Callable[[], str],
                     iccid: str) -> None:
    """Download ``iccid`` (direct) when it is not on the card; ``activation_code`` makes a fresh SM-DP+ order."""
    if iccid in profiles(open_es10):
        return
    download(bench, ipa, eim, open_es10, eid=eid, activation_code=activation_code(), iccid=iccid)



# --- 4b. rollback after an enable that finds no service ------------------------------------------------


@dataclass
class RollbackResult(FlowResult):
    iccid_before: str = ""
    order: Any = None


def rollback_recover(bench: Any, modem: Any, ipa: Any, eim: Any, open_es10: Callable, *, eid: str, iccid: str,
                     kpis: Kpis | None = None) -> RollbackResult:
    """eIM enable PSMO with rollbackFlag (SGP.32 v1.2 §3.3) -> REFRESH -> the new profile gets no service, so
    the IPA cannot deliver the result -> the device logic runs ES10b ProfileRollback (§5.9: cmdResult ok,
    the stored EuiccPackageResult now also carries rollbackResult) -> the previous profile is enabled and
    registers again -> the IPA's next poll delivers the result and the eIM records it against the order.
    Needs an IPA whose ESipa goes over the DUT's data connection (:class:`PdnGate`)."""
    chain = Chain("rollback_recover", bench.budgets, kpis)
    res = RollbackResult("rollback_recover", chain.kpis)
    chain.result = res
    boot = bench.profiles.bootstrap
    try:
        with chain.step("ICCID before the enable"):
            res.iccid_before = modem.iccid()
        with chain.step("eIM order: enable PSMO with rollbackFlag", iccid=iccid):
            res.order = order_id(eim.service.create_order(
                eid, "psmo", psmos=[{"enable": {"iccid": iccid, "rollback": True}}]))
        with chain.step("IPA poll: LoadEuiccPackage; no service to deliver the result", budget="switch"):
            poll = ipa.poll()
            attach_poll("enable poll", poll)
            if not (poll_packages(poll, "psmo") or poll_packages(poll, "euicc")):
                raise chain.fail(f"the IPA poll carried no eUICC package: {field_of(poll, 'error')}")
            wait_iccid(chain, modem, iccid, chain.budget("switch"), "after the enable")
            order = eim.service.get_order(res.order)
            if field_of(order, "status") in ("done", "failed"):
                raise chain.fail(f"the eIM already holds the enable result ({field_of(order, 'status')}): the "
                                 f"IPA reached it on {iccid}, there is nothing to roll back "
                                 f"({registration_text(modem)})")
            res.details["no_service"] = registration_text(modem)
        with chain.step("device logic: ES10b ProfileRollback", budget="fallback"):
            t1 = time.monotonic()
            outcome = es10_read(open_es10, lambda c: c.profile_rollback(refresh=True), "ProfileRollback")
            named = dict(outcome.named_results()) if outcome is not None else {}
            res.details["rollback_result"] = {k: str(v) for k, v in named.items()}
            if "rollbackResult" not in named:
                raise chain.fail(f"ProfileRollback returned no EuiccPackageResult with rollbackResult: {named}")
        with chain.step("previous profile enabled again and registered", budget="attach"):
            wait_iccid(chain, modem, res.iccid_before, chain.budget("fallback"), "after ProfileRollback")
            plmn = expected_plmn(bench, boot.network) if boot and boot.iccid == res.iccid_before else None
            wait_registered(chain, modem, chain.budget("attach"), plmn, "after ProfileRollback")
            pdp_up(chain, modem)
            chain.kpis.record("rollback_s", round(time.monotonic() - t1, 3), "s")
        with chain.step("next IPA poll delivers the result with rollbackResult", budget="eim_contact"):
            run_poll(chain, ipa, "result poll")
            order = wait_order(chain, eim, res.order, chain.budget("eim_contact"), "enable with rollback")
            result = _jsonable(field_of(order, "result")) or {}
            report.attach_json("eIM order (enable with rollback)", _jsonable(order))
            res.details["eim_result"] = result
            if "rollbackResult" not in str(result):
                raise chain.fail(f"the eIM's result for order {res.order} has no rollbackResult: {result}")
    finally:
        chain.attach_kpis(modem)
    return res
