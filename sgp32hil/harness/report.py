"""Reports: Allure run metadata and runtime helpers, KPI metrics, the conformance matrix, JUnit helpers.

The writers need only the standard library. The runtime helpers (:func:`step`, :func:`attach_text`,
:func:`label_test`, ...) wrap allure so the rest of the code never imports it; they are no-ops for Allure
when it is not recording, and :func:`step` always leaves an entry in the step trace.

Result rows (what the plugin collects per test) are dicts with ``id``, ``title``, ``family``, ``verdict``
(PASS, FAIL, ERROR, SKIP, XFAIL, XPASS), ``duration_s``, ``message``, ``nodeid``, ``kpis`` and optionally
``link`` (a details URL, e.g. the Allure page of the test).
"""

from __future__ import annotations

import contextvars
import html
import json
import math
import os
import re
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VERDICTS = ("PASS", "FAIL", "ERROR", "SKIP", "XFAIL", "XPASS")
METRICS_SCHEMA = "sgp32-hil/metrics/1"


# --- exceptions the harness raises, and the Allure categories that sort them ---------------------------


class InfrastructureError(Exception):
    """The bench failed before the DUT could be judged (port vanished, reader gone, no answer at all)."""


class PortVanished(InfrastructureError):
    """The modem's port disappeared and did not come back within the budget."""


class ReaderGone(InfrastructureError):
    """The PC/SC reader (or the card in it) disappeared."""


class NoAnswer(InfrastructureError):
    """A timeout before the DUT answered anything (no final result, no response APDU, no HTTP request)."""


class AttachTimeout(Exception):
    """The device did not register (and bring up its PDN) on the expected network within the attach budget."""

    def __init__(self, network: str, budget_s: float, last_state: str = ""):
        self.network = network
        self.budget_s = budget_s
        self.last_state = last_state
        tail = f"; last state: {last_state}" if last_state else ""
        super().__init__(f"no attach on {network or 'any network'} within {budget_s:g} s{tail}")


class ServerError(Exception):
    """The eIM or SM-DP+ answered a function with an error (``code``: the specification's status/reason)."""

    interface = "server"

    def __init__(self, function: str, code: str, detail: str = ""):
        self.function = function
        self.code = code
        self.detail = detail
        super().__init__(f"{self.interface} {function}: {code}" + (f" ({detail})" if detail else ""))


class EsipaError(ServerError):
    """ESipa (IPA <-> eIM) function failed."""

    interface = "ESipa"


class Es9PlusError(ServerError):
    """ES9+ (IPA <-> SM-DP+) function failed (subjectCode/reasonCode in ``code``)."""

    interface = "ES9+"


# Driver-layer exceptions sorted by name: drivers must not import the harness.
DRIVER_INFRASTRUCTURE = ("PortGone", "AtTimeout", "TransportError", "ServiceError")
DRIVER_EUICC = ("Es10Error", "ApduError")
DRIVER_MODEM = ("AtError", "CmeError", "CmsError")


def _names(cls: type) -> list[str]:
    out = [cls.__name__]
    for sub in cls.__subclasses__():
        out += [n for n in _names(sub) if n not in out]
    return out


def _type_regex(names: Iterable[str]) -> str:
    """Matches an Allure status message (``module.Type: text``) whose exception type is one of ``names``."""
    alternatives = "|".join(sorted(set(names)))
    return rf"(?s)(?:[\w.]*\.)?(?:{alternatives})\b.*"


def categories() -> list[dict]:
    """Allure categories, first match wins; built from the exception classes defined at call time."""
    return [
        {"name": "Infrastructure problems",
         "description": "The bench failed before the DUT answered: port vanished, reader gone, service down, "
                        "timeout with no answer at all. Rerun candidates, not product defects.",
         "matchedStatuses": ["broken", "failed"],
         "messageRegex": _type_regex(_names(InfrastructureError) + list(DRIVER_INFRASTRUCTURE))},
        {"name": "Network attach timeout",
         "description": "No registration/PDN on the expected network within the attach budget.",
         "matchedStatuses": ["broken", "failed"],
         "messageRegex": _type_regex(_names(AttachTimeout))},
        {"name": "eUICC / ES10 errors",
         "description": "The eUICC answered an ES10 function with an error code or malformed data, or an "
                        "unexpected status word.",
         "matchedStatuses": ["broken", "failed"],
         "messageRegex": _type_regex(DRIVER_EUICC)},
        {"name": "ESipa / ES9+ server errors",
         "description": "The eIM or SM-DP+ answered with an error status.",
         "matchedStatuses": ["broken", "failed"],
         "messageRegex": _type_regex(_names(ServerError))},
        {"name": "Modem errors",
         "description": "The modem answered ERROR, +CME ERROR or +CMS ERROR.",
         "matchedStatuses": ["broken", "failed"],
         "messageRegex": _type_regex(DRIVER_MODEM)},
        {"name": "Product defects",
         "description": "A check on the DUT's behaviour failed.",
         "matchedStatuses": ["failed"]},
        {"name": "Test defects",
         "description": "The test or the harness raised an unexpected exception.",
         "matchedStatuses": ["broken"]},
    ]


def categorize(status: str, message: str, cats: list[dict] | None = None) -> str | None:
    """The category Allure would give a result (first match; the regex must match the whole message)."""
    for cat in cats if cats is not None else categories():
        if status not in cat.get("matchedStatuses", ()):
            continue
        regex = cat.get("messageRegex")
        if regex is None or re.fullmatch(regex, message or ""):
            return cat["name"]
    return None


# --- Allure run metadata -----------------------------------------------------------------------------


def _escape_property(text: str, key: bool) -> str:
    out = []
    for i, ch in enumerate(text):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        elif ch in "=:#!":
            out.append("\\" + ch)
        elif ch == " " and (key or i == 0):
            out.append("\\ ")
        elif code < 0x20 or code > 0x7E:
            if code > 0xFFFF:
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}")
            else:
                out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    return "".join(out)


def format_properties(props: Mapping[str, Any]) -> str:
    """Java ``.properties`` text (ISO-8859-1 safe: everything else as ``\\uXXXX``), keys sorted."""
    lines = [f"{_escape_property(str(k), True)}={_escape_property(_text(v), False)}" for k, v in sorted(props.items())]
    return "\n".join(lines) + ("\n" if lines else "")


def parse_properties(text: str) -> dict[str, str]:
    """Read Java ``.properties`` text (comments, continuations, ``=``/``:``/space separators, escapes)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip(" \t\f")
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    props = {}
    for line in logical:
        key, i = _unescape_until(line, 0, stop=True)
        while i < len(line) and line[i] in " \t\f":
            i += 1
        if i < len(line) and line[i] in "=:":
            i += 1
            while i < len(line) and line[i] in " \t\f":
                i += 1
        value, _ = _unescape_until(line, i, stop=False)
        props[key] = value
    return props


def _unescape_until(line: str, i: int, stop: bool) -> tuple[str, int]:
    out: list[str] = []
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", line[i + 2:i + 6]):
                out.append(chr(int(line[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
            i += 2
            continue
        if stop and ch in "=: \t\f":
            break
        out.append(ch)
        i += 1
    text = "".join(out)
    return text.encode("utf-16", "surrogatepass").decode("utf-16"), i


def detect_executor(env: Mapping[str, str] | None = None) -> dict:
    """``executor.json`` for the CI this runs on (GitHub Actions, GitLab CI, Jenkins) or the local host."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true":
        repo_url = f"{env.get('GITHUB_SERVER_URL', '')}/{env.get('GITHUB_REPOSITORY', '')}"
        number = env.get("GITHUB_RUN_NUMBER", "")
        return _executor("GitHub Actions", "github", repo_url, f"{env.get('GITHUB_WORKFLOW', 'workflow')} #{number}",
                         f"{repo_url}/actions/runs/{env.get('GITHUB_RUN_ID', '')}", number)
    if env.get("GITLAB_CI") == "true":
        return _executor("GitLab CI", "gitlab", env.get("CI_PROJECT_URL", ""),
                         f"{env.get('CI_JOB_NAME', 'job')} #{env.get('CI_PIPELINE_IID', '')}",
                         env.get("CI_JOB_URL") or env.get("CI_PIPELINE_URL", ""), env.get("CI_PIPELINE_IID", ""))
    if env.get("JENKINS_URL"):
        return _executor("Jenkins", "jenkins", env["JENKINS_URL"],
                         f"{env.get('JOB_NAME', 'job')} #{env.get('BUILD_NUMBER', '')}",
                         env.get("BUILD_URL", ""), env.get("BUILD_NUMBER", ""))
    host = socket.gethostname()
    return {"name": host, "type": "local", "buildName": f"sgp32-hil on {host} {time.strftime('%Y-%m-%d %H:%M:%S')}"}


def _executor(name: str, kind: str, url: str, build_name: str, build_url: str, order: str) -> dict:
    out: dict[str, Any] = {"name": name, "type": kind, "url": url, "buildName": build_name, "buildUrl": build_url,
                           "reportName": "sgp32-hil"}
    if order.isdigit():
        out["buildOrder"] = int(order)
    return out


def write_allure_metadata(results_dir: str | Path, environment: Mapping[str, Any],
                          executor: Mapping[str, Any] | None = None, merge: bool = True) -> dict[str, Path]:
    """Write ``environment.properties``, ``categories.json`` and ``executor.json`` into the Allure results.

    Call every run (``--clean-alluredir`` deletes them). With ``merge`` the environment keeps keys already
    written by other slots sharing the folder; this run's keys win.
    """
    results = Path(results_dir)
    results.mkdir(parents=True, exist_ok=True)
    env_path = results / "environment.properties"
    props: dict[str, Any] = {}
    if merge and env_path.is_file():
        props.update(parse_properties(env_path.read_text(encoding="latin-1")))
    props.update({str(k): _text(v) for k, v in environment.items()})
    written = {
        "environment": _atomic_write(env_path, format_properties(props), encoding="latin-1"),
        "categories": _atomic_write(results / "categories.json", json.dumps(categories(), indent=2) + "\n"),
        "executor": _atomic_write(results / "executor.json",
                                  json.dumps(dict(executor) if executor else detect_executor(), indent=2) + "\n"),
    }
    return written


# --- KPIs and the metrics file -------------------------------------------------------------------------


@dataclass(frozen=True)
class Kpi:
    name: str
    value: float
    unit: str = ""

    def to_dict(self) -> dict:
        return {"value": self.value, "unit": self.unit}


class Kpis(Mapping[str, Kpi]):
    """KPIs of one test by name (attach time, download time, APDU count, ...)."""

    def __init__(self) -> None:
        self._items: dict[str, Kpi] = {}

    def record(self, name: str, value: float, unit: str = "") -> Kpi:
        if not isinstance(name, str) or not name:
            raise ValueError(f"KPI name must be a non-empty string, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"KPI {name}: expected a finite number, got {value!r}")
        kpi = Kpi(name, value, unit)
        self._items[name] = kpi
        return kpi

    def add(self, name: str, amount: float = 1, unit: str = "") -> Kpi:
        """Add to a counter KPI (e.g. APDU count), starting from 0."""
        current = self._items.get(name)
        return self.record(name, (current.value if current else 0) + amount, unit or (current.unit if current else ""))

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Record the wall time of the block in seconds (also when it raises)."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.record(name, round(time.monotonic() - start, 6), "s")

    def to_dict(self) -> dict[str, dict]:
        return {k: v.to_dict() for k, v in self._items.items()}

    def __getitem__(self, name: str) -> Kpi:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def _kpi_dict(kpis: Any) -> dict[str, dict]:
    """KPIs as ``{name: {value, unit}}`` from a Kpis, or a mapping of Kpi / {value, unit} / number."""
    out = {}
    for name, v in dict(kpis or {}).items():
        if isinstance(v, Kpi):
            out[str(name)] = v.to_dict()
        elif isinstance(v, Mapping):
            out[str(name)] = {"value": v.get("value"), "unit": str(v.get("unit", ""))}
        else:
            out[str(name)] = {"value": v, "unit": ""}
    return out


def _row(row: Mapping[str, Any]) -> dict[str, Any]:
    r = dict(row)
    r["id"] = _text(r.get("id") or r.get("nodeid") or "?")
    r["title"] = _text(r.get("title", ""))
    r["family"] = _text(r.get("family", ""))
    r["verdict"] = _text(r.get("verdict", "")).upper() or "ERROR"
    duration = r.get("duration_s", r.get("duration", 0.0))
    r["duration_s"] = float(duration) if isinstance(duration, int | float) else 0.0
    r.pop("duration", None)
    r["message"] = _text(r.get("message", ""))
    r["kpis"] = _kpi_dict(r.get("kpis"))
    return r


def verdict_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = {v: 0 for v in VERDICTS}
    for r in rows:
        v = _row(r)["verdict"]
        counts[v] = counts.get(v, 0) + 1
    return counts


def write_metrics(path: str | Path, records: Iterable[Mapping[str, Any]], meta: Mapping[str, Any] | None = None) -> Path:
    """The run's metrics file: ``{schema, run, summary, tests: [{id, verdict, duration_s, kpis, ...}]}``."""
    rows = [_row(r) for r in records]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "schema": METRICS_SCHEMA,
        "run": {**{str(k): v for k, v in (meta or {}).items()}, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "summary": {"total": len(rows), **verdict_counts(rows),
                    "duration_s": round(sum(r["duration_s"] for r in rows), 3)},
        "tests": rows,
    }
    return _atomic_write(Path(path), json.dumps(doc, indent=2, default=str, allow_nan=False) + "\n")


def summary_table(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Terminal summary: one line per test and a totals line."""
    rs = [_row(r) for r in rows]
    if not rs:
        return ["no tests ran"]
    width = max(len(r["id"]) for r in rs)
    lines = [f"{'ID':<{width}}  {'VERDICT':<7}  {'TIME':>8}  TITLE"]
    for r in rs:
        lines.append(f"{r['id']:<{width}}  {r['verdict']:<7}  {r['duration_s']:>7.2f}s  {r['title']}")
    counts = {k: v for k, v in verdict_counts(rs).items() if v}
    total = sum(r["duration_s"] for r in rs)
    lines.append(f"{len(rs)} tests: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + f" in {total:.1f} s")
    return lines


# --- conformance matrix ------------------------------------------------------------------------------

_VERDICT_CLASS = {"PASS": "pass", "FAIL": "fail", "ERROR": "error", "SKIP": "skip", "XFAIL": "xfail", "XPASS": "xpass"}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:2em;color:#1f2328;line-height:1.4}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.5em 0 .5em}
table{border-collapse:collapse;width:100%;margin:.5em 0 1em;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;white-space:nowrap}table.tests td:first-child{white-space:nowrap}
table.meta{width:auto}table.meta th{font-weight:600}
.verdict{display:inline-block;min-width:4.5em;text-align:center;font-weight:700;border:1px solid;border-radius:3px;
padding:0 .3em;-webkit-print-color-adjust:exact;print-color-adjust:exact}
.v-pass{background:#dafbe1;color:#116329;border-color:#116329}
.v-fail{background:#ffebe9;color:#a40e26;border-color:#a40e26}
.v-error{background:#fff1e5;color:#953800;border-color:#953800}
.v-skip{background:#f6f8fa;color:#57606a;border-color:#8c959f}
.v-xfail,.v-xpass{background:#fff8c5;color:#7d4e00;border-color:#7d4e00}
.v-other{background:#fff;color:#1f2328;border-color:#1f2328}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;border:1px solid #d0d7de;padding:.5em;margin:.3em 0}
section.detail{border-top:1px solid #d0d7de;padding:.3em 0 .6em}section.detail h3{font-size:1em;margin:.4em 0}
.muted{color:#57606a}
@media print{body{margin:0;font-size:9pt}a{color:inherit;text-decoration:none}tr,section.detail{break-inside:avoid}
thead{display:table-header-group}}
"""


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _h(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def _md(value: Any) -> str:
    """Text safe inside a Markdown table cell: no HTML, no emphasis/links/code, no row breaks."""
    text = " ".join(_text(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]|#!~])", r"\\\1", text)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _text(value)
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _kpi_text(kpis: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(f"{name} {_number(k.get('value'))}{' ' + k['unit'] if k.get('unit') else ''}"
                     for name, k in kpis.items())


def _anchor(row_id: str, index: int) -> str:
    return f"t{index + 1}-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", row_id).strip("-")


def _safe_link(url: Any) -> str | None:
    """A details link if it is http(s) or relative; anything else (javascript:, data:) is dropped."""
    text = _text(url).strip()
    if not text:
        return None
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", text)
    return text if scheme is None or scheme.group(1).lower() in ("http", "https") else None


def _families(rows: list[dict]) -> list[tuple[str, dict[str, int]]]:
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        counts = out.setdefault(r["family"] or "(no family)", {v: 0 for v in VERDICTS})
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return list(out.items())


def render_matrix_html(rows: Iterable[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    """Self-contained HTML page: run metadata, totals per family, one row per test, details per test."""
    rs = [_row(r) for r in rows]
    title = f"SGP.32 conformance matrix — {_text(meta.get('bench', ''))}".rstrip(" —")
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{_h(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{_h(title)}</h1>"]
    if meta:
        out.append('<table class="meta"><tbody>')
        out += [f"<tr><th>{_h(k)}</th><td>{_h(v)}</td></tr>" for k, v in meta.items()]
        out.append("</tbody></table>")
    counts = verdict_counts(rs)
    out.append("<p>" + _h(f"{len(rs)} tests: ") + ", ".join(
        f'<span class="verdict v-{_VERDICT_CLASS.get(v, "other")}">{_h(v)}</span> {n}'
        for v, n in counts.items() if n) + "</p>")
    shown = [v for v in VERDICTS if counts.get(v)] + [v for v in counts if v not in VERDICTS and counts[v]]
    out.append("<h2>By family</h2>")
    out.append("<table><thead><tr><th>Family</th><th>Total</th>" + "".join(f"<th>{_h(v)}</th>" for v in shown)
               + "</tr></thead><tbody>")
    for family, fc in _families(rs):
        cells = "".join(f'<td class="num">{fc.get(v, 0)}</td>' for v in shown)
        out.append(f'<tr><td>{_h(family)}</td><td class="num">{sum(fc.values())}</td>{cells}</tr>')
    out.append("</tbody></table>")
    out.append("<h2>Tests</h2>")
    out.append("<table class=\"tests\"><thead><tr><th>Test ID</th><th>Title</th><th>Family</th><th>Verdict</th><th>KPIs</th>"
               "<th>Duration</th><th>Details</th></tr></thead><tbody>")
    for i, r in enumerate(rs):
        anchor = _anchor(r["id"], i)
        link = _safe_link(r.get("link")) or f"#{anchor}"
        vclass = _VERDICT_CLASS.get(r["verdict"], "other")
        out.append(
            f'<tr><td>{_h(r["id"])}</td><td>{_h(r["title"])}</td><td>{_h(r["family"])}</td>'
            f'<td><span class="verdict v-{vclass}">{_h(r["verdict"])}</span></td>'
            f'<td>{_h(_kpi_text(r["kpis"]))}</td><td class="num">{r["duration_s"]:.2f} s</td>'
            f'<td><a href="{_h(link)}">details</a></td></tr>')
    out.append("</tbody></table>")
    out.append("<h2>Details</h2>")
    for i, r in enumerate(rs):
        vclass = _VERDICT_CLASS.get(r["verdict"], "other")
        out.append(f'<section class="detail" id="{_anchor(r["id"], i)}">')
        out.append(f'<h3>{_h(r["id"])} {_h(r["title"])} <span class="verdict v-{vclass}">{_h(r["verdict"])}</span></h3>')
        facts = [("Family", r["family"]), ("Test", r.get("nodeid", "")), ("Duration", f"{r['duration_s']:.3f} s")]
        out.append('<table class="meta"><tbody>' + "".join(
            f"<tr><th>{_h(k)}</th><td>{_h(v)}</td></tr>" for k, v in facts if v) + "</tbody></table>")
        if r["kpis"]:
            out.append("<table class=\"meta\"><thead><tr><th>KPI</th><th>Value</th><th>Unit</th></tr></thead><tbody>")
            out += [f'<tr><td>{_h(n)}</td><td class="num">{_h(_number(k.get("value")))}</td><td>{_h(k.get("unit"))}</td></tr>'
                    for n, k in r["kpis"].items()]
            out.append("</tbody></table>")
        if r["message"]:
            out.append(f"<pre>{_h(r['message'])}</pre>")
        link = _safe_link(r.get("link"))
        if link:
            out.append(f'<p><a href="{_h(link)}">{_h(link)}</a></p>')
        out.append("</section>")
    out += ['<p class="muted">Written by sgp32-hil.</p>', "</body>", "</html>"]
    return "\n".join(out) + "\n"


def render_matrix_md(rows: Iterable[Mapping[str, Any]], meta: Mapping[str, Any], html_name: str = "matrix.html") -> str:
    """Markdown matrix; the details links point into the HTML page (or the row's own link)."""
    rs = [_row(r) for r in rows]
    out = ["# SGP.32 conformance matrix", ""]
    if meta:
        out += [f"- **{_md(k)}**: {_md(v)}" for k, v in meta.items()]
        out.append("")
    counts = verdict_counts(rs)
    out += [f"{len(rs)} tests: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n), ""]
    out += ["| Test ID | Title | Family | Verdict | KPIs | Duration | Details |",
            "| --- | --- | --- | --- | --- | ---: | --- |"]
    for i, r in enumerate(rs):
        link = _safe_link(r.get("link")) or f"{html_name}#{_anchor(r['id'], i)}"
        target = link.replace("(", "%28").replace(")", "%29").replace(" ", "%20").replace("|", "%7C")
        out.append(f"| {_md(r['id'])} | {_md(r['title'])} | {_md(r['family'])} | **{_md(r['verdict'])}** | "
                   f"{_md(_kpi_text(r['kpis']))} | {r['duration_s']:.2f} s | [details]({target}) |")
    problems = [r for r in rs if r["message"] and r["verdict"] not in ("PASS", "XFAIL")]
    if problems:
        out += ["", "## Messages", ""]
        out += [f"- **{_md(r['id'])}** ({_md(r['verdict'])}): {_md(r['message'])}" for r in problems]
    return "\n".join(out) + "\n"


def write_matrix(out_dir: str | Path, rows: Iterable[Mapping[str, Any]], meta: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``matrix.md`` and ``matrix.html`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rs = list(rows)
    md = _atomic_write(out / "matrix.md", render_matrix_md(rs, meta))
    page = _atomic_write(out / "matrix.html", render_matrix_html(rs, meta))
    return md, page


# --- JUnit -------------------------------------------------------------------------------------------


def junit_suite_properties(bench: Any) -> dict[str, str]:
    """``record_testsuite_property`` values identifying the bench of a slot (a :class:`bench.Bench`)."""
    props = {"bench": bench.name, "sgp32_version": bench.sgp32_version, "capabilities": ",".join(sorted(bench.tags)),
             "ipa.mode": bench.ipa.mode, "euicc.via": bench.euicc.via}
    if bench.source:
        props["bench.file"] = str(bench.source)
    if bench.euicc.reader is not None:
        props["euicc.reader"] = str(bench.euicc.reader)
    if bench.modem:
        props["modem.vendor"] = bench.modem.vendor
        props["modem.port"] = str(bench.modem.port)
    for server in (bench.eim, bench.smdp):
        if server and server.bundled:
            props[server.role] = (f"bundled {server.address}" if server.port
                                  else f"bundled {server.host} (a free port picked at start)")
        elif server:
            props[server.role] = server.url
    return props


def merge_junit(files: Iterable[str | Path], out_path: str | Path, name: str = "sgp32-hil") -> dict[str, float]:
    """Merge per-slot JUnit files into one ``<testsuites>``; a missing or unreadable file becomes an error suite.

    Returns the totals (tests, failures, errors, skipped, time).
    """
    root = ET.Element("testsuites", {"name": name})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    for f in files:
        path = Path(f)
        try:
            parsed = ET.parse(path).getroot()
            suites = [parsed] if parsed.tag == "testsuite" else parsed.findall("testsuite")
        except (OSError, ET.ParseError) as exc:
            suites = [_broken_suite(path, exc)]
        for suite in suites:
            for key in totals:
                try:
                    totals[key] += float(suite.get(key, 0) or 0)
                except ValueError:
                    pass
            root.append(suite)
    for key, value in totals.items():
        root.set(key, f"{value:.3f}" if key == "time" else str(int(value)))
    ET.indent(root)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
    return {k: (round(v, 3) if k == "time" else int(v)) for k, v in totals.items()}


def _broken_suite(path: Path, exc: Exception) -> ET.Element:
    suite = ET.Element("testsuite", {"name": path.stem, "tests": "1", "failures": "0", "errors": "1",
                                     "skipped": "0", "time": "0"})
    case = ET.SubElement(suite, "testcase", {"classname": "sgp32hil.report", "name": f"junit file {path.name}"})
    err = ET.SubElement(case, "error", {"message": f"missing or unreadable JUnit file {path}: {exc}"})
    err.text = str(exc)
    return suite


# --- Allure runtime helpers --------------------------------------------------------------------------


def _allure():
    try:
        import allure
    except ImportError:
        return None
    return allure


@dataclass
class StepRecord:
    """One :func:`step`: outcome is running, passed, failed (assertion) or broken (other exception)."""

    name: str
    params: dict[str, str] = field(default_factory=dict)
    depth: int = 0
    started: float = 0.0
    duration_s: float = 0.0
    outcome: str = "running"
    error: str = ""


class StepTrace:
    """Steps in the order they started, kept whether or not Allure records."""

    def __init__(self) -> None:
        self.entries: list[StepRecord] = []

    def clear(self) -> None:
        self.entries.clear()

    def to_list(self) -> list[dict]:
        return [asdict(e) for e in self.entries]

    def render(self) -> str:
        lines = []
        for e in self.entries:
            params = ", ".join(f"{k}={v}" for k, v in e.params.items())
            line = f"{'  ' * e.depth}{e.outcome.upper():<7} {e.name}" + (f" ({params})" if params else "")
            line += f" {e.duration_s:.3f} s" + (f": {e.error}" if e.error else "")
            lines.append(line)
        return "\n".join(lines)


TRACE = StepTrace()
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("sgp32hil_step_depth", default=0)


@contextmanager
def step(name: str, **params: Any) -> Iterator[StepRecord]:
    """An Allure step with parameters, also recorded in :data:`TRACE`."""
    record = StepRecord(name=name, params={k: _text(v) for k, v in params.items()}, depth=_depth.get(),
                        started=time.time())
    TRACE.entries.append(record)
    token = _depth.set(record.depth + 1)
    start = time.monotonic()
    allure = _allure()
    ctx = allure.step(name) if allure else None
    if ctx is not None:
        ctx.params = dict(record.params)
    try:
        if ctx is None:
            yield record
        else:
            with ctx:
                yield record
        record.outcome = "passed"
    except BaseException as exc:
        record.outcome = "failed" if isinstance(exc, AssertionError) else "broken"
        record.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        record.duration_s = round(time.monotonic() - start, 6)
        _depth.reset(token)


def attach_text(name: str, text: str) -> None:
    allure = _allure()
    if allure:
        allure.attach(text, name=name, attachment_type=allure.attachment_type.TEXT)


def attach_json(name: str, obj: Any) -> None:
    allure = _allure()
    if allure:
        body = json.dumps(obj, indent=2, default=str, ensure_ascii=False)
        allure.attach(body, name=name, attachment_type=allure.attachment_type.JSON)


def attach_file(name: str, path: str | Path) -> None:
    """Attach a file (pcap, YAML snapshot, log) by path; the type follows the extension."""
    allure = _allure()
    if allure:
        p = Path(path)
        kinds = {t.extension: t for t in allure.attachment_type}
        allure.attach.file(str(p), name=name, attachment_type=kinds.get(p.suffix.lstrip(".").lower()),
                           extension=p.suffix.lstrip(".") or None)


def label_test(epic: str = "", feature: str = "", story: str = "", testcase_id: str = "", *plan_ids: str,
               title: str = "", severity: str = "", tags: Iterable[str] = ()) -> None:
    """Allure labels of the current test: SGP.32 area (epic), procedure (feature), variant (story), stable ID
    (``testcase_id`` label and a test-case link), the specification test IDs it covers (``plan_ids``, as test-case
    links), display title, severity and tags."""
    allure = _allure()
    if not allure:
        return
    dyn = allure.dynamic
    if epic:
        dyn.epic(epic)
    if feature:
        dyn.feature(feature)
    if story:
        dyn.story(story)
    if testcase_id:
        dyn.label("testcase_id", testcase_id)
        dyn.testcase(testcase_id, name=testcase_id)
    for pid in plan_ids:
        dyn.testcase(pid, name=pid)
    if title:
        dyn.title(f"{testcase_id} {title}" if testcase_id else title)
    if severity:
        dyn.severity(severity)
    tags = list(tags)
    if tags:
        dyn.tag(*tags)


def label(name: str, value: Any) -> None:
    """A runtime label of the current test (module model, firmware, EID, IPA mode)."""
    allure = _allure()
    if allure:
        allure.dynamic.label(name, _text(value))


def parameter(name: str, value: Any, excluded: bool = False) -> None:
    """A test parameter; ``excluded`` keeps it out of the history ID (trends across slots)."""
    allure = _allure()
    if allure:
        allure.dynamic.parameter(name, _text(value), excluded=excluded or None)


# --- files -------------------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding=encoding)
    os.replace(tmp, path)
    return path
