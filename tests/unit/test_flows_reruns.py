"""The plugin reruns a test only when it failed on a classified infrastructure error, says so in the progress
lines and the results, and never reruns (or hides) a product failure. Runs pytest in a subprocess on a
scratch test module that uses the sgp32-hil markers but no bench services."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_infrastructure_error_reruns_product_failure_does_not(tmp_path):
    counter = tmp_path / "attempts"
    (tmp_path / "test_scratch.py").write_text(textwrap.dedent(f'''
        import pathlib
        import pytest
        from sgp32hil.drivers.at.errors import PortGone

        COUNTER = pathlib.Path({str(counter)!r})

        @pytest.mark.testcase("HIL-X-001", "flaky port", family="scratch")
        def test_port_vanishes_once():
            n = int(COUNTER.read_text()) if COUNTER.exists() else 0
            COUNTER.write_text(str(n + 1))
            if n == 0:
                raise PortGone("port gone: read failed: [Errno 5] Input/output error")

        @pytest.mark.testcase("HIL-X-002", "product failure", family="scratch")
        def test_product_failure():
            assert False, "ICCID did not change"

        @pytest.mark.testcase("HIL-X-003", "port always gone", family="scratch")
        def test_port_always_gone():
            raise PortGone("port gone for good")
    '''))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path), "-p", "no:cacheprovider", "-q", "--hil-progress",
         f"--hil-report-dir={out}", "--rootdir", str(tmp_path), "-c", "/dev/null"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert counter.read_text() == "2", "the flaky test ran once more after the infrastructure error"
    lines = proc.stdout.splitlines()
    assert any("RERUN HIL-X-001" in line and "PortGone" in line for line in lines), proc.stdout
    assert not any("RERUN HIL-X-002" in line for line in lines), "a product failure was rerun"
    rows = {t["id"]: t for t in json.loads((out / "metrics.json").read_text())["tests"]}
    assert rows["HIL-X-001"]["verdict"] == "PASS" and "rerun" in rows["HIL-X-001"]["message"]
    assert rows["HIL-X-001"]["reruns"] and "PortGone" in rows["HIL-X-001"]["reruns"][0]
    assert rows["HIL-X-002"]["verdict"] == "FAIL" and "reruns" not in rows["HIL-X-002"]
    assert rows["HIL-X-003"]["verdict"] == "FAIL" and rows["HIL-X-003"]["message"].startswith("infrastructure:")
    assert len(rows["HIL-X-003"]["reruns"]) == 1
