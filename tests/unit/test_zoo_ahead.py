"""The zoo's runs started ahead of their tests (workbench.assess.zoo.Ahead): results by run,
a deadline that names the run, children at a low CPU priority, and a stop that kills them."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from workbench.assess import zoo


def test_results_come_back_by_run_at_most_jobs_at_a_time(monkeypatch, tmp_path):
    running, most, lock = [], [0], threading.Lock()

    def fake_run(family, flavour, folder, *, data_path, nice, profile, env, children):
        with lock:
            running.append(family)
            most[0] = max(most[0], len(running))
        time.sleep(0.2)
        with lock:
            running.remove(family)
        return (family, flavour, nice, env["WORKBENCH_ZOO_MARK"])

    monkeypatch.setattr(zoo, "run_family", fake_run)
    monkeypatch.setenv("WORKBENCH_ZOO_MARK", "as at the start")
    runs = [("A", zoo.KERAS3), ("B", zoo.KERAS3), ("C", zoo.TF_KERAS)]
    ahead = zoo.Ahead(runs, tmp_path, data_path=tmp_path / "d.npz", jobs=2, nice=7)
    monkeypatch.setenv("WORKBENCH_ZOO_MARK", "changed later by a test")
    try:
        assert ahead.result("C", zoo.TF_KERAS, timeout_s=30) == (
            "C", zoo.TF_KERAS, 7, "as at the start",
        )  # fmt: skip
        assert ahead.result("A", zoo.KERAS3, timeout_s=30)[0] == "A"
        assert most[0] == 2
        with pytest.raises(KeyError):
            ahead.result("D", zoo.KERAS3, timeout_s=1)
    finally:
        ahead.stop()


def test_a_run_not_done_in_time_is_named(monkeypatch, tmp_path):
    gate = threading.Event()
    monkeypatch.setattr(zoo, "run_family", lambda *a, **k: gate.wait(30))
    ahead = zoo.Ahead([("Slow", zoo.KERAS3)], tmp_path, data_path=tmp_path / "d.npz")
    try:
        with pytest.raises(TimeoutError, match="Slow-keras3 was not done after 0 s"):
            ahead.result("Slow", zoo.KERAS3, timeout_s=0.1)
    finally:
        gate.set()
        ahead.stop()


def test_children_run_at_the_priority_given():
    code, out, _ = zoo._child(
        [sys.executable, "-c", "import os; print(os.nice(0))"], timeout_s=60, env=None, nice=5
    )
    assert code == 0 and int(out) >= 5


def test_stop_kills_its_own_children_only_and_starts_no_more(monkeypatch, tmp_path):
    sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
    outcomes, others = [], []

    def fake_run(*args, children, **kwargs):
        outcomes.append(zoo._child(sleep, timeout_s=300, env=None, nice=0, children=children)[0])
        try:
            zoo._child([sys.executable, "-c", "pass"], timeout_s=60, env=None, nice=0,
                       children=children)  # fmt: skip
            outcomes.append("started")
        except RuntimeError as err:
            outcomes.append(str(err))

    # another pool's child (a session's zoo, while this unit test runs): left alone
    other = zoo.Children()
    bystander = threading.Thread(
        target=lambda: others.append(
            ("other", zoo._child(sleep[:2] + ["import time; time.sleep(3)"], timeout_s=60,
                                 env=None, nice=0, children=other)[0])
        )
    )  # fmt: skip
    bystander.start()
    monkeypatch.setattr(zoo, "run_family", fake_run)
    ahead = zoo.Ahead([("A", zoo.KERAS3)], tmp_path, data_path=tmp_path / "d.npz")
    deadline = time.monotonic() + 30
    while not ahead.children.running and time.monotonic() < deadline:
        time.sleep(0.05)
    ahead.stop()
    assert outcomes[0] != 0, outcomes  # killed, not finished
    assert "stopped" in outcomes[1], outcomes
    bystander.join(30)
    assert others == [("other", 0)], others  # the other pool's child ran to its end
    assert zoo._child([sys.executable, "-c", "pass"], timeout_s=60, env=None, nice=0)[0] == 0
