"""A deliberately broken virtual bench (its operational network rejects every IMSI, EMM cause #15) run
through ``sgp32-hil run``: exactly the tests that need operational registration fail, their messages name
the broken step, and their Allure results carry the AT transcript showing the reject and the traces.

Needs pcscd/vpcd (reader 0): run under ``flock /tmp/sgp32hil-vpcd.lock``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEEDS_OPERATIONAL_REGISTRATION = {"HIL-SW-001", "HIL-FB-001", "HIL-FB-002"}

pytestmark = pytest.mark.pcsc


def _run(bench: str, plan: Path | str, reports: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sgp32hil.harness.cli", "run", "--bench", str(ROOT / "fixtures" / "benches" / bench),
         "--plan", str(plan), "--reports", str(reports)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )


def _collect(node: dict, results: Path, atts: dict[str, str]) -> None:
    for a in node.get("attachments", []):
        atts[a["name"]] = (results / a["source"]).read_text(errors="replace")
    for step in node.get("steps", []):
        _collect(step, results, atts)


def _allure(results: Path) -> dict[str, dict]:
    """testcase_id -> {status, message, attachments (name -> text)}; attachments of fixtures included."""
    by_uuid, out = {}, {}
    for f in results.glob("*-result.json"):
        r = json.loads(f.read_text())
        tid = next((lab["value"] for lab in r["labels"] if lab["name"] == "testcase_id"), None)
        if tid is None:
            continue
        atts: dict[str, str] = {}
        _collect(r, results, atts)
        by_uuid[r["uuid"]] = tid
        out[tid] = {"status": r["status"], "message": r.get("statusDetails", {}).get("message", ""), "attachments": atts}
    for f in results.glob("*-container.json"):
        c = json.loads(f.read_text())
        for child in c.get("children", []):
            if child in by_uuid:
                for fixture in c.get("befores", []) + c.get("afters", []):
                    for a in fixture.get("attachments", []):
                        out[by_uuid[child]]["attachments"].setdefault(
                            a["name"], (results / a["source"]).read_text(errors="replace"))
    return out


def test_broken_operational_network_fails_exactly_the_registration_tests(tmp_path):
    """The whole nightly plan: the three tests that need the operational network fail, nothing else does
    (the set-up brings the stranded DUT back, so later tests are not collateral damage)."""
    proc = _run("virtual-broken.yaml", "nightly", tmp_path / "reports")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "reports" / "latest"
    metrics = json.loads((run / "metrics.json").read_text())
    verdicts = {t["id"]: t for t in metrics["tests"]}
    failed = {t["id"] for t in metrics["tests"] if t["verdict"] in ("FAIL", "ERROR")}
    assert failed == NEEDS_OPERATIONAL_REGISTRATION, {k: (v["verdict"], v["message"]) for k, v in verdicts.items()}
    for tid in verdicts:
        if tid not in NEEDS_OPERATIONAL_REGISTRATION:
            assert verdicts[tid]["verdict"] in ("PASS", "SKIP"), (tid, verdicts[tid])
    # the message names the broken step and what the module reported
    sw = verdicts["HIL-SW-001"]["message"]
    assert "enable_switch: registered on no network" in sw and "after REFRESH" in sw, sw
    assert "reject cause 15" in sw and "8900102000000000018" in sw and "001020000000001" in sw, sw
    for tid in ("HIL-FB-001", "HIL-FB-002"):
        assert "registered on no network" in verdicts[tid]["message"] and "reject cause 15" in verdicts[tid]["message"]
    # the progress lines and summary were printed
    assert "FAIL  HIL-SW-001" in proc.stdout and "sgp32-hil summary" in proc.stdout
    # Allure: the failing tests carry the AT transcript with the reject, and the decoded traces
    allure = _allure(run / "allure-results")
    assert allure["HIL-SW-001"]["status"] == "failed"
    for tid in NEEDS_OPERATIONAL_REGISTRATION:
        atts = allure[tid]["attachments"]
        transcripts = [text for name, text in atts.items() if "AT transcript" in name]
        assert any("+CEREG: 3" in t and ",15" in t for t in transcripts), (tid, sorted(atts))
    sw_atts = allure["HIL-SW-001"]["attachments"]
    assert any("ES10 trace" in n for n in sw_atts) and any("ESipa" in n for n in sw_atts), sorted(sw_atts)
    assert "LoadEuiccPackage" in "".join(v for n, v in sw_atts.items() if "ES10" in n)
    assert (run / "allure-results" / "categories.json").is_file()
    assert (run / "allure-results" / "environment.properties").is_file()
    junit = (run / "junit-virtual-broken.xml").read_text()
    assert 'name="bench" value="virtual-broken"' in junit and 'name="eid"' in junit


def test_healthy_bench_passes_the_same_tests(tmp_path):
    """The control: on the healthy virtual bench the same selection passes (so the failures above are the
    broken network's, not the tests')."""
    plan = tmp_path / "same.yaml"
    plan.write_text("name: same\ninclude: [HIL-EUICC-004, HIL-BOOT-001, HIL-DL-001, HIL-SW-*, HIL-FB-*]\n")
    proc = _run("virtual.yaml", plan, tmp_path / "reports")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "reports" / "latest" / "metrics.json").read_text())
    assert {t["id"] for t in metrics["tests"] if t["verdict"] == "PASS"} >= NEEDS_OPERATIONAL_REGISTRATION
