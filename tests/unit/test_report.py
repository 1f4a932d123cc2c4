"""Report writers: files parse back, HTML is well-formed and escaped, categories sort the harness's exceptions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from allure_commons.utils import format_exception

from sgp32hil.drivers.apdu.base import ApduError, TransportError
from sgp32hil.drivers.at.errors import AtResponse, AtTimeout, CmeError, FinalKind, PortGone
from sgp32hil.drivers.es10.client import Es10Error
from sgp32hil.harness import report
from sgp32hil.harness.bench import default_bench_path, load_bench
from sgp32hil.harness.report import (
    AttachTimeout,
    EsipaError,
    InfrastructureError,
    Kpis,
    NoAnswer,
    PortVanished,
    ReaderGone,
)
from sgp32hil.harness.services import ServiceError

ROWS = [
    {"id": "HIL-EUICC-001", "title": "EID is valid", "family": "SGP.33 eUICC initial state", "verdict": "PASS",
     "duration_s": 0.42, "message": "", "nodeid": "testplans/test_a.py::test_eid",
     "kpis": {"apdu_count": {"value": 12, "unit": ""}, "es10_latency": {"value": 0.0123, "unit": "s"}}},
    {"id": "HIL-DL-001", "title": "Download <script>alert(1)</script> & enable", "family": "SGP.23 download",
     "verdict": "FAIL", "duration_s": 3.5, "message": "AssertionError: expected | got <b>x</b>\nsecond line",
     "nodeid": "testplans/test_b.py::test_dl", "kpis": {"download_time": 3.2}},
    {"id": "HIL-FB-001", "title": "Fallback", "family": "SGP.23 download", "verdict": "SKIP", "duration_s": 0,
     "message": "bench lacks fallback", "link": "javascript:alert(1)"},
    {"id": "HIL-X-001", "title": "Linked", "family": "", "verdict": "ERROR", "duration_s": 1,
     "link": "https://allure.example/#/testresult/abc"},
]
META = {"bench": "virtual <lab>", "plan": "nightly", "sgp32_version": "1.2"}


# --- Java properties ---------------------------------------------------------------------------------


def test_properties_round_trip_and_ascii():
    props = {"bench": "virtual", "key with spaces": "value", "a=b:c": "x=y:z#!", "multi": "line1\nline2\ttab",
             "leading": "  two spaces", "back\\slash": "c:\\path", "unicode": "Zürich ✓ 🛰", "empty": ""}
    text = report.format_properties(props)
    assert text.isascii()
    assert "key\\ with\\ spaces=value" in text
    assert "multi=line1\\nline2\\ttab" in text
    assert "\\u00FC" in text and "\\uD83D\\uDEF0" in text
    assert report.parse_properties(text) == props


def test_parse_properties_java_syntax():
    text = textwrap.dedent("""\
        # comment
        ! also a comment
        plain = value
        colon:value
        spaced value with spaces
        cont = first \\
               second
        escaped\\=key = v
        """)
    assert report.parse_properties(text) == {
        "plain": "value", "colon": "value", "spaced": "value with spaces", "cont": "first second", "escaped=key": "v",
    }


# --- Allure metadata ---------------------------------------------------------------------------------


def test_write_allure_metadata(tmp_path):
    results = tmp_path / "allure-results"
    paths = report.write_allure_metadata(results, {"bench": "virtual", "EID": "8904"}, {"name": "CI", "type": "x"})
    assert set(paths) == {"environment", "categories", "executor"}
    env = report.parse_properties((results / "environment.properties").read_text(encoding="latin-1"))
    assert env == {"bench": "virtual", "EID": "8904"}
    cats = json.loads((results / "categories.json").read_text())
    assert [c["name"] for c in cats][:2] == ["Infrastructure problems", "Network attach timeout"]
    assert all(set(c["matchedStatuses"]) <= {"failed", "broken", "skipped", "passed", "unknown"} for c in cats)
    assert json.loads((results / "executor.json").read_text()) == {"name": "CI", "type": "x"}
    report.write_allure_metadata(results, {"slot.b.bench": "lab", "bench": "virtual2"})
    env = report.parse_properties((results / "environment.properties").read_text(encoding="latin-1"))
    assert env == {"bench": "virtual2", "EID": "8904", "slot.b.bench": "lab"}
    assert json.loads((results / "executor.json").read_text())["type"] == "local"
    assert not list(results.glob(".*.tmp"))


def test_detect_executor():
    gh = report.detect_executor({"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://git.example",
                                 "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "99", "GITHUB_RUN_NUMBER": "7",
                                 "GITHUB_WORKFLOW": "nightly"})
    assert gh["buildUrl"] == "https://git.example/o/r/actions/runs/99" and gh["buildOrder"] == 7
    assert gh["buildName"] == "nightly #7"
    gl = report.detect_executor({"GITLAB_CI": "true", "CI_JOB_URL": "https://gl/j/1", "CI_PIPELINE_IID": "5"})
    assert gl["type"] == "gitlab" and gl["buildUrl"] == "https://gl/j/1" and gl["buildOrder"] == 5
    jk = report.detect_executor({"JENKINS_URL": "https://ci/", "BUILD_URL": "https://ci/job/1", "BUILD_NUMBER": "1"})
    assert jk["type"] == "jenkins" and jk["buildUrl"] == "https://ci/job/1"
    assert report.detect_executor({})["type"] == "local"


def _message(exc: BaseException) -> str:
    return format_exception(type(exc), exc)


class ModemHung(InfrastructureError):
    """Defined after report.py: categories are built from the subclasses present when written."""


@pytest.mark.parametrize("exc,status,category", [
    (PortGone("/dev/serial/by-path/x vanished"), "broken", "Infrastructure problems"),
    (AtTimeout("AT+CPIN?", 5.0), "broken", "Infrastructure problems"),
    (TransportError("reader 'vpcd 0' gone"), "broken", "Infrastructure problems"),
    (ServiceError("pcscd did not start"), "broken", "Infrastructure problems"),
    (PortVanished("gone"), "broken", "Infrastructure problems"),
    (ReaderGone("gone"), "broken", "Infrastructure problems"),
    (NoAnswer("no answer"), "broken", "Infrastructure problems"),
    (ModemHung("stuck"), "broken", "Infrastructure problems"),
    (AttachTimeout("operational", 180, "+CEREG: 2"), "broken", "Network attach timeout"),
    (Es10Error("EnableProfile", 1, "iccidOrAidNotFound"), "broken", "eUICC / ES10 errors"),
    (ApduError(0x6A88), "broken", "eUICC / ES10 errors"),
    (EsipaError("GetEimPackage", "8.1.1/3.8"), "broken", "ESipa / ES9+ server errors"),
    (report.Es9PlusError("AuthenticateClient", "8.1/3.1"), "failed", "ESipa / ES9+ server errors"),
    (CmeError(AtResponse("AT+CGLA=1,10,\"00\"", (), "+CME ERROR: 4", 4, kind=FinalKind.CME_ERROR)), "broken",
     "Modem errors"),
    (AssertionError("enabled ICCID differs; PortGone mentioned in text"), "failed", "Product defects"),
    (KeyError("iccid"), "broken", "Test defects"),
    (ValueError("PortGoneLike"), "broken", "Test defects"),
])
def test_categories_sort_harness_exceptions(exc, status, category):
    assert report.categorize(status, _message(exc)) == category, _message(exc)


def test_attach_timeout_message():
    assert str(AttachTimeout("operational", 30, "+CEREG: 3")) == \
        "no attach on operational within 30 s; last state: +CEREG: 3"


# --- KPIs and metrics --------------------------------------------------------------------------------


def test_kpis_recorder():
    k = Kpis()
    k.record("attach_time", 1.5, "s")
    k.add("apdu_count")
    k.add("apdu_count", 2)
    with k.timer("switch_time"):
        pass
    assert k["apdu_count"].value == 3 and len(k) == 3 and list(k) == ["attach_time", "apdu_count", "switch_time"]
    assert k["switch_time"].unit == "s" and k["switch_time"].value >= 0
    assert k.to_dict()["attach_time"] == {"value": 1.5, "unit": "s"}
    for bad in (float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError):
            k.record("x", bad)
    with pytest.raises(ValueError):
        k.record("", 1)


def test_write_metrics(tmp_path):
    k = Kpis()
    k.record("attach_time", 2.25, "s")
    rows = ROWS + [{"id": "HIL-K-001", "verdict": "pass", "duration": 2, "kpis": k}]
    path = report.write_metrics(tmp_path / "out" / "metrics.json", rows, META)
    doc = json.loads(path.read_text())
    assert doc["schema"] == report.METRICS_SCHEMA
    assert doc["run"]["bench"] == "virtual <lab>" and "written" in doc["run"]
    assert doc["summary"]["total"] == 5 and doc["summary"]["PASS"] == 2 and doc["summary"]["FAIL"] == 1
    tests = {t["id"]: t for t in doc["tests"]}
    assert tests["HIL-DL-001"]["kpis"] == {"download_time": {"value": 3.2, "unit": ""}}
    assert tests["HIL-K-001"]["kpis"] == {"attach_time": {"value": 2.25, "unit": "s"}}
    assert tests["HIL-K-001"]["duration_s"] == 2.0 and tests["HIL-K-001"]["verdict"] == "PASS"
    assert tests["HIL-EUICC-001"]["nodeid"].endswith("test_eid")


def test_summary_table():
    lines = report.summary_table(ROWS)
    assert lines[0].split()[:3] == ["ID", "VERDICT", "TIME"]
    assert "HIL-DL-001" in lines[2] and "FAIL" in lines[2]
    assert lines[-1].startswith("4 tests: 1 PASS, 1 FAIL, 1 ERROR, 1 SKIP")
    assert report.summary_table([]) == ["no tests ran"]


# --- conformance matrix ------------------------------------------------------------------------------

VOID = {"meta", "br", "hr", "img", "input", "link"}


class TreeCheck(HTMLParser):
    """Checks nesting and collects the table rows' cell text and every start tag."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.starts: list[tuple[str, dict]] = []
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.starts.append((tag, dict(attrs)))
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def test_matrix_html_is_well_formed_and_escaped(tmp_path):
    md_path, html_path = report.write_matrix(tmp_path, ROWS, META)
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    parser = TreeCheck()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    tags = [t for t, _ in parser.starts]
    assert "script" not in tags and "b" not in tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not [t for t, a in parser.starts if t in ("link", "img") or "src" in a], "page must be self-contained"
    header = ["Test ID", "Title", "Family", "Verdict", "KPIs", "Duration", "Details"]
    i = parser.rows.index(header)
    body = parser.rows[i + 1:i + 1 + len(ROWS)]
    assert body[0] == ["HIL-EUICC-001", "EID is valid", "SGP.33 eUICC initial state", "PASS",
                       "apdu_count 12; es10_latency 0.012 s", "0.42 s", "details"]
    assert body[1][1] == "Download <script>alert(1)</script> & enable" and body[1][3] == "FAIL"
    assert body[1][4] == "download_time 3.2"
    hrefs = [a.get("href") for t, a in parser.starts if t == "a"]
    assert "javascript:alert(1)" not in hrefs
    anchors = {a["id"] for t, a in parser.starts if "id" in a}
    internal = [h[1:] for h in hrefs if h.startswith("#")]
    assert internal and set(internal) <= anchors
    assert "https://allure.example/#/testresult/abc" in hrefs
    verdict_spans = [a["class"] for t, a in parser.starts if t == "span" and "verdict" in a.get("class", "")]
    assert {"verdict v-pass", "verdict v-fail", "verdict v-skip", "verdict v-error"} <= set(verdict_spans)
    families = parser.rows[parser.rows.index(["Family", "Total", "PASS", "FAIL", "ERROR", "SKIP"]) + 1:][:3]
    assert families == [["SGP.33 eUICC initial state", "1", "1", "0", "0", "0"],
                        ["SGP.23 download", "2", "0", "1", "0", "1"],
                        ["(no family)", "1", "0", "0", "1", "0"]]
    assert "@media print" in page and "virtual &lt;lab&gt;" in page


def test_matrix_markdown_is_escaped(tmp_path):
    md_path, _ = report.write_matrix(tmp_path, ROWS, META)
    text = md_path.read_text()
    assert "<script>" not in text and "<b>" not in text
    table = [line for line in text.splitlines() if line.startswith("| HIL-")]
    assert len(table) == len(ROWS)
    for line in table:
        cells = [c for c in line.replace("\\|", "").split("|")][1:-1]
        assert len(cells) == 7, line
    assert "(matrix.html#t1-HIL-EUICC-001)" in table[0]
    assert "javascript" not in text
    assert "expected \\| got &lt;b&gt;x&lt;/b&gt; second line" in text


# --- JUnit -------------------------------------------------------------------------------------------


def test_junit_suite_properties():
    props = report.junit_suite_properties(load_bench(default_bench_path()))
    assert props["bench"] == "virtual" and props["sgp32_version"] == "1.2"
    assert props["modem.vendor"] == "quectel-bg95" and props["modem.port"] == "virtual"
    assert props["eim"] == "bundled 127.0.0.1 (a free port picked at start)" and props["euicc.via"] == "virtual"
    lab = report.junit_suite_properties(load_bench(default_bench_path().parent / "lab-bg95-euicc-via-modem.yaml",
                                                   check_files=False))
    assert lab["eim"] == "bundled 127.0.0.1:8444" and lab["modem.port"].startswith("/dev/serial/by-path/")
    assert "ipa=host" in props["capabilities"].split(",")
    assert all(isinstance(v, str) for v in props.values())


def _junit(path: Path, name: str, tests: int, failures: int, time_s: float) -> Path:
    cases = "".join(f'<testcase classname="t" name="c{i}" time="0.1"/>' for i in range(tests - failures))
    cases += "".join(f'<testcase classname="t" name="f{i}"><failure message="x">boom</failure></testcase>'
                     for i in range(failures))
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="{name}" errors="0" '
                    f'failures="{failures}" skipped="0" tests="{tests}" time="{time_s}">{cases}</testsuite>'
                    "</testsuites>")
    return path


def test_merge_junit(tmp_path):
    a = _junit(tmp_path / "junit-a.xml", "slot-a", 3, 1, 1.5)
    b = _junit(tmp_path / "junit-b.xml", "slot-b", 2, 0, 0.25)
    totals = report.merge_junit([a, b, tmp_path / "junit-c.xml"], tmp_path / "merged" / "junit.xml", name="rack")
    assert totals == {"tests": 6, "failures": 1, "errors": 1, "skipped": 0, "time": 1.75}
    root = ET.parse(tmp_path / "merged" / "junit.xml").getroot()
    assert root.tag == "testsuites" and root.get("name") == "rack" and root.get("tests") == "6"
    assert [s.get("name") for s in root.findall("testsuite")] == ["slot-a", "slot-b", "junit-c"]
    err = root.find("testsuite[@name='junit-c']/testcase/error")
    assert "junit-c.xml" in err.get("message")


# --- runtime helpers ---------------------------------------------------------------------------------


def test_step_trace_without_allure_recording():
    report.TRACE.clear()
    with report.step("ES10b.GetProfilesInfo", channel=1):
        with report.step("STORE DATA", apdus=2) as inner:
            assert inner.depth == 1
    with pytest.raises(AssertionError):
        with report.step("check ICCID"):
            raise AssertionError("wrong ICCID")
    with pytest.raises(TimeoutError):
        with report.step("attach"):
            raise TimeoutError("no +CEREG")
    entries = report.TRACE.to_list()
    assert [(e["name"], e["depth"], e["outcome"]) for e in entries] == [
        ("ES10b.GetProfilesInfo", 0, "passed"), ("STORE DATA", 1, "passed"),
        ("check ICCID", 0, "failed"), ("attach", 0, "broken")]
    assert entries[0]["params"] == {"channel": "1"} and entries[2]["error"] == "AssertionError: wrong ICCID"
    text = report.TRACE.render()
    assert "  PASSED  STORE DATA (apdus=2)" in text and "BROKEN  attach" in text
    report.attach_text("t", "x")
    report.attach_json("j", {"a": 1})
    report.label_test("ES10b", "Profile download", "direct", "HIL-1", "4.2.1", title="t")
    report.TRACE.clear()


def test_runtime_helpers_in_an_allure_run(tmp_path):
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent("""\
        import pytest
        from sgp32hil.harness import report

        def test_download(tmp_path):
            report.label_test("ES10b", "Profile download", "direct", "HIL-DL-001", "SGP.33-4.2.1",
                              title="Download <x>", tags=["virtual"])
            report.label("module", "BG95")
            report.parameter("slot", "virtual", excluded=True)
            with report.step("ES10b.PrepareDownload", iccid="8900"):
                report.attach_text("AT transcript", "AT\\r\\nOK")
                report.attach_json("decoded", {"iccid": "8900"})
            p = tmp_path / "snap.yaml"
            p.write_text("a: 1")
            report.attach_file("snapshot", p)

        def test_attach_timeout():
            with report.step("attach"):
                raise report.AttachTimeout("operational", 1.0)

        def test_assertion():
            assert 1 == 2
        """))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    results = tmp_path / "allure-results"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:sgp32hil", "-p", "no:cacheprovider",
         "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), f"--alluredir={results}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = {}
    for f in results.glob("*-result.json"):
        doc = json.loads(f.read_text())
        found[doc["name"]] = doc
    dl = found["HIL-DL-001 Download <x>"]
    labels = {(lab["name"], lab["value"]) for lab in dl["labels"]}
    assert {("epic", "ES10b"), ("feature", "Profile download"), ("story", "direct"), ("testcase_id", "HIL-DL-001"),
            ("tag", "virtual"), ("module", "BG95")} <= labels
    assert {link["name"] for link in dl["links"]} == {"HIL-DL-001", "SGP.33-4.2.1"}
    assert {"name": "slot", "value": "'virtual'", "excluded": True} in dl["parameters"]
    st = dl["steps"][0]
    assert st["name"] == "ES10b.PrepareDownload" and st["parameters"] == [{"name": "iccid", "value": "8900"}]
    assert [a["name"] for a in st["attachments"]] == ["AT transcript", "decoded"]
    assert dl["attachments"][0]["name"] == "snapshot" and dl["attachments"][0]["source"].endswith(".yaml")
    cats = report.categories()
    timeout = found["test_attach_timeout"]
    assert report.categorize(timeout["status"], timeout["statusDetails"]["message"], cats) == "Network attach timeout"
    failed = found["test_assertion"]
    assert report.categorize(failed["status"], failed["statusDetails"]["message"], cats) == "Product defects"
