"""bench_ingest's diagnosis of a latency tail: which events overlapped a long commit or fsync."""

from __future__ import annotations

import time
from typing import Any

import pytest

from analyzers.demo.loaddiag import (
    FsyncProbe,
    descendants,
    machine_cpu,
    read_commit_logs,
    runqueue_seconds,
    summary_line,
    tail_report,
)


def test_the_slowest_events_are_tied_to_the_stall_they_waited_behind() -> None:
    # 1,000 events due 1 ms apart, 2 ms each; one commit of 60 ms at t = 0.500 s holds up the
    # 20 events due in its last 20 ms: they go in the next commit (handed over at 0.570 s, answered
    # 1.1 ms later) and get their answer 1 ms after that (latency 13-32 ms); every other commit takes 1 ms
    dues = [i / 1000 for i in range(1000)]
    lat = [0.002] * 1000
    for i in range(540, 560):
        lat[i] = 0.5711 + 0.001 - dues[i]
    commits = [(t, t, t + 0.001, t + 0.0011, 1) for t in (i / 100 for i in range(100)) if not 0.49 < t < 0.57]
    commits.append((0.500, 0.500, 0.560, 0.561, 3))
    commits.sort(key=lambda c: c[1])
    fsyncs = [(i / 50, 0.001) for i in range(50)]  # a quiet disk: 1 ms each
    rep = tail_report(dues, lat, commits, fsyncs)
    assert rep["commit_ms"]["max"] == pytest.approx(60.0, abs=0.01)
    assert rep["commit_overlap"]["slowest_1pct_stalled"] == 1.0  # every one of the slowest 1 % waited behind it
    assert rep["commit_overlap"]["all_stalled"] == pytest.approx(0.06, abs=0.02)  # the events that overlapped it
    assert rep["fsync_overlap"]["slowest_1pct_stalled"] == 0.0  # the disk was not the cause
    assert rep["fsync_ms"]["p99"] == pytest.approx(1.0, abs=0.01)
    # the slowest 10 (due 0.540-0.549 s) waited ~25 ms behind the stall before their own 1.1 ms commit
    split = rep["slowest_split_ms"]
    assert split["queue_wait"] == pytest.approx(25.0, abs=1.0)
    assert split["own_commit"] == pytest.approx(1.1, abs=0.01)
    assert split["after"] == pytest.approx(1.0, abs=0.01)
    assert split["unmatched"] == 0
    line = summary_line(rep)
    assert "commit p50/p99/max" in line and "100%" in line and "probe fsync" in line
    assert "ms before its commit, 1.1 ms its commit, 1.0 ms after" in line


def test_no_timings_no_claims() -> None:
    assert tail_report([], [], [], []) == {}
    assert summary_line({}) == ""


def test_the_fsync_probe_records_each_fsync_and_leaves_nothing_behind(tmp_path: Any) -> None:
    with FsyncProbe(str(tmp_path), interval_s=0.01) as probe:
        time.sleep(1.5)  # the probe process starts (imports) and writes
    assert len(probe.samples) >= 5
    assert all(d >= 0 for _, d in probe.samples)
    starts = [t for t, _ in probe.samples]
    assert starts == sorted(starts)
    assert list(tmp_path.iterdir()) == []  # its data file and its output are removed


def test_machine_cpu_counts_busy_ticks_within_the_total() -> None:
    first = machine_cpu()
    assert first is not None
    sum(i * i for i in range(300_000))
    second = machine_cpu()
    assert second is not None and 0 <= second[0] - first[0] <= second[1] - first[1]


def test_commit_logs_of_every_process_are_read_with_their_checkpoints_and_removed(tmp_path: Any) -> None:
    (tmp_path / "c.101").write_text("1.0 1.1 1.3 1.4 5 3\nC 1.2 1.25\n")
    (tmp_path / "c.102").write_text("0.5 0.6 0.7 0.8 2\n")  # a receiver before the joined field
    commits, checkpoints = read_commit_logs(str(tmp_path / "c"))
    assert [(c[1], c[4], c[5]) for c in commits] == [(0.6, 2, 0), (1.1, 5, 3)]  # sorted by start, both processes
    assert checkpoints == [(1.2, pytest.approx(0.05))]
    assert list(tmp_path.iterdir()) == []
    rep = tail_report([1.0], [0.5], commits, [], checkpoints)
    assert rep["checkpoint_ms"]["max"] == pytest.approx(50.0)
    assert "1 checkpoints" in summary_line(rep)
    assert rep["commit_ms"]["joined_share"] == pytest.approx(3 / 7)
    assert "43% of them joined while it waited for the write lock" in summary_line(rep)


def test_run_queue_wait_of_this_process_tree_is_counted_and_never_negative() -> None:
    import os

    tree = descendants(os.getpid())
    assert tree[0] == os.getpid()
    first = runqueue_seconds(tree)
    sum(i * i for i in range(200_000))
    assert runqueue_seconds(tree) >= first >= 0
