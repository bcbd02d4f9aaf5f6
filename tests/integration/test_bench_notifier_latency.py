"""Smoke test of ``bench.notifier_latency``: its ``--quick`` run (20 incidents/s for 3 s through
the real notifier on its own local stack, and the same through the receivers directly)
delivers every incident exactly once and writes a results file with every figure."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_delivers_every_incident_once_and_writes_its_figures(tmp_path):
    results = tmp_path / "notifier_latency.json"
    run = subprocess.run([sys.executable, "-m", "bench.notifier_latency", "--quick", "--results", str(results)],
                         check=False, cwd=REPO, capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(results.read_text())

    setup = figures["setup"]
    assert (setup["rate_per_s"], setup["seconds"], setup["incidents"]) == (20, 3, 60)
    assert setup["slack_channel_interval_s"] == 0
    assert {"cpu_count", "cpu_model", "python", "platform"} <= figures["machine"].keys()
    assert figures["measured_at"] and figures["code"]["commit"]
    for path in ("notifier", "direct"):
        assert figures[path]["incidents_sent"] == 60
        assert figures[path]["achieved_rate_per_s"] > 15
        for channel, expected in (("slack", 60), ("email", 30)):  # every other incident is critical
            delivered = figures[path][channel]
            assert (delivered["expected"], delivered["delivered"]) == (expected, expected), (path, channel, delivered)
            assert delivered["duplicates"] == delivered["unexpected"] == delivered["missing"] == 0
            assert delivered["exactly_once"]
            assert 0 < delivered["p50_ms"] <= delivered["p95_ms"] <= delivered["p99_ms"] <= delivered["max_ms"]
    assert set(figures["notifier_vs_direct"]) == {"slack_p50", "slack_p99", "email_p50", "email_p99"}
    assert all(ratio > 0 for ratio in figures["notifier_vs_direct"].values())
    assert figures["target"]["p99_ms_below"] == 250
    where = figures["notifier"]["where_the_time_went"]
    assert where["attempt_records"] == {"slack/delivered": 60, "email/delivered": 30}
    assert where["segments_ms"]["publish_to_admitted"]["p50"] >= 0
    assert where["mongo_round_trips_per_incident"]["total"] > 0
    assert where["rates"]["incidents_admitted"] == 60
    assert {"notifier", "nx-27017", "tansu"} <= where["cpu_ms_per_incident"].keys()
    assert "everything else on the machine" in where["cpu_seconds_while_measured"]
