"""The server's run registry: runs found again by id, watched by sessions, dropped after they end."""

from __future__ import annotations

import threading

import pytest

from vae_core.registry import RunRegistry, new_run_id


class FakeRun:
    def __init__(self) -> None:
        self.ended = False


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ids_are_fresh_and_url_safe() -> None:
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 12 and all(c.isalnum() or c in "-_" for c in i) for i in ids)


def test_a_reloaded_tab_reattaches_and_keeps_the_run_wanted() -> None:
    registry, run = RunRegistry(), FakeRun()
    old_tab = [True]
    registry.add("r1", run, label="run 1", watcher_key="s1", watcher=lambda: old_tab[0])
    found = registry.attach("r1", watcher_key="s2", watcher=lambda: True)
    assert found is not None and found.run is run and found.label == "run 1"
    old_tab[0] = False  # the old session is gone for good
    assert registry.wanted("r1")  # the new tab still watches it
    assert registry.attach("nope", watcher_key="s2", watcher=lambda: True) is None
    with pytest.raises(ValueError, match="already registered"):
        registry.add("r1", FakeRun(), label="", watcher_key="s3", watcher=lambda: True)


def test_a_run_nobody_watches_is_unwanted_and_dropped_once_it_ends() -> None:
    registry, run = RunRegistry(), FakeRun()
    registry.add("r1", run, label="", watcher_key="s1", watcher=lambda: False)
    assert not registry.wanted("r1")
    assert not registry.wanted("unknown")
    assert registry.get("r1") is not None  # still running: kept until it stops
    run.ended = True
    assert registry.prune() == ["r1"]  # abandoned: dropped at once, its autosave becomes an unsaved run
    assert registry.get("r1") is None


def test_an_ended_run_is_kept_for_an_hour_then_dropped() -> None:
    clock, run = Clock(), FakeRun()
    registry = RunRegistry(keep_ended_s=3600, clock=clock)
    registry.add("r1", run, label="", watcher_key="s1", watcher=lambda: True)
    clock.now = 100.0
    run.ended = True
    assert registry.prune() == []  # its end is noted now (t = 100)
    clock.now = 100.0 + 3599
    assert registry.attach("r1", watcher_key="s2", watcher=lambda: False) is not None
    clock.now = 100.0 + 3601
    assert registry.get("r1") is None


def test_only_the_newest_ended_runs_are_kept() -> None:
    clock = Clock()
    registry = RunRegistry(max_ended=2, clock=clock)
    runs = {f"r{i}": FakeRun() for i in range(4)}
    for i, (run_id, run) in enumerate(runs.items()):
        registry.add(run_id, run, label="", watcher_key="s", watcher=lambda: True)
        run.ended = True
        clock.now = float(i)
        registry.prune()
    assert [registry.get(f"r{i}") is not None for i in range(4)] == [False, False, True, True]
    live = FakeRun()
    registry.add("live", live, label="", watcher_key="s", watcher=lambda: True)
    assert registry.get("live") is not None and len(registry) == 3  # a running run is never dropped


def test_a_session_that_attaches_again_replaces_its_watcher_and_revives_the_run() -> None:
    registry = RunRegistry()
    registry.add("r1", FakeRun(), label="", watcher_key="s1", watcher=lambda: False)
    registry.attach("r1", watcher_key="s1", watcher=lambda: True)
    assert registry.wanted("r1")


def test_forget_drops_a_run_that_never_started() -> None:
    registry = RunRegistry()
    registry.add("r1", FakeRun(), label="", watcher_key="s1", watcher=lambda: True)
    registry.forget("r1")
    registry.forget("r1")
    assert registry.get("r1") is None and len(registry) == 0


def test_threads_may_register_attach_and_ask_at_once() -> None:
    registry = RunRegistry()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                run_id = f"{n}-{i}"
                registry.add(run_id, FakeRun(), label="", watcher_key=str(n), watcher=lambda: True)
                assert registry.attach(run_id, watcher_key="x", watcher=lambda: True) is not None
                assert registry.wanted(run_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(registry) == 800
