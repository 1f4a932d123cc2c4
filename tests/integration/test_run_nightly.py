"""``sgp32-hil run`` on the embedded virtual bench from a clean reports folder: the four scenarios and the
negative cases pass, every report is written (Allure results with run metadata, JUnit with suite
properties, metrics, matrix), the wall time stays within the 60 s target, and ``sgp32-hil report``
explains how to get the Allure command line when it is missing.

Needs pcscd/vpcd (reader 0): run under ``flock /tmp/sgp32hil-vpcd.lock``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("HIL-BOOT-001", "HIL-DL-001[direct]", "HIL-DL-001[indirect]", "HIL-SW-001", "HIL-FB-001", "HIL-FB-002")

pytestmark = pytest.mark.pcsc


def test_nightly_plan_on_the_virtual_bench(tmp_path):
    reports = tmp_path / "reports"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sgp32hil.harness.cli", "run", "--plan", "nightly",
                           "--reports", str(reports)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert wall < 60, f"nightly plan took {wall:.1f} s (target 60 s)"
    run = reports / "latest"
    metrics = json.loads((run / "metrics.json").read_text())
    verdicts = {t["id"]: t["verdict"] for t in metrics["tests"]}
    for tid in SCENARIOS:
        assert verdicts.get(tid) == "PASS", (tid, verdicts.get(tid))
    assert all(v in ("PASS", "SKIP") for v in verdicts.values()), verdicts
    negatives = [t for t in verdicts if t.startswith("HIL-NEG-")]
    assert len(negatives) >= 5 and all(verdicts[t] == "PASS" for t in negatives)
    kpis = {t["id"]: t["kpis"] for t in metrics["tests"]}
    assert {"time_to_register_s", "time_to_pdp_s", "time_to_first_eim_contact_s"} <= set(kpis["HIL-BOOT-001"])
    assert {"switch_s", "time_to_iccid_change_s", "apdu_count"} <= set(kpis["HIL-SW-001"])
    assert {"download_s", "apdu_count"} <= set(kpis["HIL-DL-001[direct]"])
    assert {"fallback_s", "return_s"} <= set(kpis["HIL-FB-001"])
    # one progress line per test, then the summary table
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[") and "/" in line[:10]]
    assert len(progress) == len(verdicts)
    assert "sgp32-hil summary" in proc.stdout and "wall time" in proc.stdout
    # matrix, JUnit with suite properties, Allure metadata
    assert "HIL-SW-001" in (run / "matrix.md").read_text() and "switch_s" in (run / "matrix.html").read_text()
    suite = ET.parse(run / "junit-virtual.xml").getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["bench"] == "virtual" and props["sgp32_version"] == "1.2" and props["slot"] == "virtual"
    assert len(props["eid"]) == 32 and props["modem"].startswith("Quectel") and props["eim_address"].startswith("127.")
    results = run / "allure-results"
    for name in ("environment.properties", "categories.json", "executor.json"):
        assert (results / name).is_file(), name
    labels = [json.loads(f.read_text())["labels"] for f in results.glob("*-result.json")]
    assert any({"name": "testcase_id", "value": "HIL-SW-001"} in ls and any(lab["name"] == "feature" for lab in ls)
               for ls in labels)


def test_report_command_without_allure_says_how_to_install(tmp_path):
    results = tmp_path / "run" / "allure-results"
    results.mkdir(parents=True)
    (results / "0-result.json").write_text("{}")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + "/usr/bin:/bin"}
    if any((Path(d) / "allure").exists() for d in env["PATH"].split(os.pathsep)):
        pytest.skip("the allure command is installed here")
    proc = subprocess.run([sys.executable, "-m", "sgp32hil.harness.cli", "report", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "npm install -g allure" in proc.stderr and "allure generate" in proc.stderr
    missing = subprocess.run([sys.executable, "-m", "sgp32hil.harness.cli", "report", str(tmp_path / "nothing")],
                             capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode == 2 and "no such run folder" in missing.stderr


def test_report_command_builds_the_allure_html(tmp_path):
    """With the Allure command line on PATH (npm package ``allure``; set SGP32HIL_ALLURE_BIN to its folder),
    ``sgp32-hil report`` turns a run's results into the HTML report, with every test of the run in it."""
    import shutil

    extra = os.environ.get("SGP32HIL_ALLURE_BIN", "")
    env = {**os.environ, "PATH": extra + os.pathsep + os.environ["PATH"]} if extra else dict(os.environ)
    if shutil.which("allure", path=env["PATH"]) is None:
        pytest.skip("the allure command line is not installed (npm install -g allure)")
    plan = tmp_path / "p.yaml"
    plan.write_text("name: p\ninclude: [HIL-EUICC-00*]\n")
    reports = tmp_path / "reports"
    run = subprocess.run([sys.executable, "-m", "sgp32hil.harness.cli", "run", "--plan", str(plan),
                          "--reports", str(reports)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    proc = subprocess.run([sys.executable, "-m", "sgp32hil.harness.cli", "report", str(reports / "latest")],
                          capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    html = reports / "latest" / "allure-report" / "index.html"
    assert html.is_file() and "Allure report:" in proc.stdout
    summary = reports / "latest" / "allure-report" / "summary.json"
    if summary.is_file():  # Allure 3
        stats = json.loads(summary.read_text())["stats"]
        assert stats["total"] == 7 and stats.get("passed") == 7, stats
