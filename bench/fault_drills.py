"""The fault drills' report: runs ``tests/e2e/test_fault_drills.py`` on the real local stack
and writes its table.

Run: ``.venv/bin/python -m bench.fault_drills``. Each drill fails one part of the running
system while events flow (moderation or metrics SIGKILLed mid-batch, MongoDB stopped for
30 s, the broker restarted, Slack answering 500 then 429 with SMTP down, a bad release that
dead-letters events until the fix and the replay) and counts sent / processed / lost /
duplicated, with the day's KPIs checked against the reference computation. The drills
themselves assert 0 lost and 0 duplicated; this command also keeps their counts.

Writes ``bench/results/fault_drills.json`` and ``bench/results/fault_drills.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "fault_drills.json"
MODULE = "tests/e2e/test_fault_drills.py"
COLUMNS = ("drill", "unit", "sent", "processed", "lost", "duplicated", "redelivered", "kpis_equal_reference",
           "seconds", "notes")


def markdown(result: dict) -> str:
    header = (f"Measured {result['measured_at']} on {result['machine']}; pytest exit status "
              f"{result['pytest_exit_status']} ({result['outcome']}).")
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in result["drills"]:
        cells = ["yes" if row[c] is True else "no" if row[c] is False else str(row[c]) for c in COLUMNS]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("-k", dest="select", help="only the drills matching this pytest -k expression")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows_file = Path(scratch) / "drills.json"
        command = [sys.executable, "-m", "pytest", MODULE, "-q", "-p", "no:cacheprovider"]
        if args.select:
            command += ["-k", args.select]
        status = subprocess.run(command, env={**os.environ, "STEWARD_DRILL_REPORT": str(rows_file)},
                                check=False).returncode
        rows = json.loads(rows_file.read_text()) if rows_file.exists() else []
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
                   "broker, store, four services and the drill on the same machine",
        "pytest_exit_status": status,
        "outcome": "every drill passed" if status == 0 else "a drill failed: see its row and the pytest output",
        "drills": rows,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    args.results.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    sys.exit(status)


if __name__ == "__main__":
    main()
