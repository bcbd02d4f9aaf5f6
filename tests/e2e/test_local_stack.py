"""README's first command, as a user runs it: `steward up --demo`, then Ctrl-C."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.localstack.processes import pid_alive
from services.moderation.model.bundle import ensure_serving_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]
READY = "Ctrl-C stops everything"


def test_up_runs_the_demo_and_ctrl_c_leaves_no_process_behind(tmp_path, model_cache):
    env = {**os.environ, "STEWARD_MODEL_DIR": str(ensure_serving_bundle(model_cache)), "COLUMNS": "160"}
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--demo", "--home", str(tmp_path)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in up.stdout], daemon=True).start()
    output = []
    deadline = time.monotonic() + 300
    try:
        while not any(READY in line for line in output):
            assert up.poll() is None, "steward up exited early:\n" + "".join(output)
            assert time.monotonic() < deadline, "steward up was not ready in time:\n" + "".join(output)
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        text = "".join(output)
        assert "Steward is up" in text
        assert "Incidents raised (" in text
        raised = int(text.split("Incidents raised (")[1].split(")")[0])
        assert raised >= 3, text  # the demo week holds five harmful messages
        assert "find where you live" in text
        assert "KPIs of demo-community" in text
        started = json.loads((tmp_path / "stack" / "processes.json").read_text())
        pids = {name: entry["pid"] for name, entry in started.items()}
        assert set(pids) >= {"tansu", "nx-27017", "smtp-sink", "ingest", "moderation", "metrics", "notifier"}
        assert all(pid_alive(pid) for pid in pids.values())
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(90)
    assert up.returncode == 0
    time.sleep(0.5)
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
