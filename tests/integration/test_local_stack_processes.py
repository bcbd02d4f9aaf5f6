"""The local stack's process handling: a run whose parent died is cleaned up by the next."""

import os

import pytest

from services.localstack.stack import LocalStack, still_running

pytestmark = pytest.mark.integration


def test_next_start_stops_what_a_killed_run_left_behind(tmp_path):
    first = LocalStack(tmp_path, preferred_ports=False)
    first.start_broker()
    first.start_mongo()
    pids = {c.name: c.process.pid for c in first.children}
    try:
        # The parent of `first` is gone (SIGKILL): its children still run, its record remains.
        second = LocalStack(tmp_path, preferred_ports=False)
        assert sorted(second.stop_leftovers()) == ["nx-27017", "tansu"]
        for child in first.children:
            child.process.wait(15)  # reap, so the pids are really gone
        assert not any(still_running(pid, name) for name, pid in pids.items())
        assert not (tmp_path / "stack" / "processes.json").exists()
        assert second.stop_leftovers() == []
    finally:
        first.stop()


def test_still_running_checks_the_program_not_just_the_pid():
    assert not still_running(os.getpid(), "tansu")
    assert not still_running(2**22 + 1, "tansu")
