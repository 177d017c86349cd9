"""The canary's one error budget split over its metrics by weight, and the window warnings."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from analyzers.config import config_from_dict, default_config
from analyzers.errors import ConfigError
from analyzers.stats.canary import RATIO_WEIGHT, alpha_split, compare_buckets, compare_rates
from analyzers.verify.canary import canary_warnings, metric_weight
from benchmarks.bench_canary import LES, bucket_probs


def test_split_follows_the_weights_and_adds_up_to_alpha() -> None:
    assert alpha_split(0.01, [3.0, 1.0]) == pytest.approx([0.0075, 0.0025], rel=1e-12)
    assert alpha_split(0.01, [1.0, 1.0, 1.0, 1.0]) == pytest.approx([0.0025] * 4, rel=1e-12)
    assert sum(alpha_split(0.05, [5.0, 0.5, 2.0])) == pytest.approx(0.05, rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        alpha_split(0.01, [1.0, 0.0])


def test_default_weights_favour_count_metrics_and_config_overrides_them() -> None:
    cfg = default_config()
    assert metric_weight(cfg.canary, cfg.metric("error_ratio")) == RATIO_WEIGHT == 3.0
    assert metric_weight(cfg.canary, cfg.metric("latency_p99")) == 1.0
    cfg = config_from_dict({"canary": {"weights": {"error_ratio": 1, "latency_p99": 2.5}}})
    assert metric_weight(cfg.canary, cfg.metric("error_ratio")) == 1.0
    assert metric_weight(cfg.canary, cfg.metric("latency_p99")) == 2.5
    with pytest.raises(ConfigError, match="canary.weights"):
        config_from_dict({"canary": {"weights": {"no_such_metric": 1}}})
    with pytest.raises(ConfigError, match="canary.weights"):
        config_from_dict({"canary": {"weights": {"error_ratio": 0}}})
    with pytest.raises(ConfigError, match="canary.weights"):
        config_from_dict({"canary": {"weights": {"error_ratio": "high"}}})


def _noop(rng: np.random.Generator, minutes: int, share: float) -> tuple[np.ndarray, ...]:
    """Both versions alike on a daily cycle with a shared load spike (errors x5, latency x1.8)."""
    t = np.arange(minutes)
    load = (1 + 0.5 * np.sin(2 * math.pi * t / 1440 + rng.uniform(0, 2 * math.pi))) * np.where((t >= 3) & (t < 6), 4, 1)
    n = rng.poisson(50 * 60 * load)
    nc = rng.binomial(n, share)
    err = 0.01 * np.where(load > 2, 5.0, 1.0)
    scale = np.where(load > 2, 1.8, 1.0)
    cc = np.cumsum([rng.multinomial(k, bucket_probs(m)) for k, m in zip(nc, scale, strict=True)], axis=1)
    cb = np.cumsum([rng.multinomial(k, bucket_probs(m)) for k, m in zip(n - nc, scale, strict=True)], axis=1)
    return rng.binomial(nc, err), rng.binomial(n - nc, err), nc, n - nc, cc, cb


def test_union_bound_keeps_the_canary_false_fail_within_alpha_whatever_the_weights() -> None:
    # one canary = the error test and the latency test (3 bounds) on the same minutes; a no-op
    # fails if any of them fails at any look of the window: at most alpha in total
    rng = np.random.default_rng(20261207)
    alpha, runs, window = 0.1, 200, 8
    fails = {w: 0 for w in ((RATIO_WEIGHT, 1.0), (1.0, 4.0))}
    for _ in range(runs):
        x, y, nc, nb, cc, cb = _noop(rng, window + 2, share=0.2)
        for w in fails:
            a_err, a_lat = alpha_split(alpha, list(w))
            opts = {"interval": False, "horizon": window}
            e = compare_rates("error_ratio", x, y, nc, nb, alpha=a_err, **opts)  # type: ignore[arg-type]
            lat = compare_buckets("latency_p99", LES, cc, cb, alpha=a_lat, **opts)  # type: ignore[arg-type]
            fails[w] += e.status == "regressed" or lat.status == "regressed"
    limit = alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)
    for w, n in fails.items():
        assert n / runs <= limit, (w, n / runs)


def test_a_window_longer_than_15_minutes_is_warned_at_load(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="analyzers.config"):
        config_from_dict({"canary": {"window": "15m"}})
        assert not caplog.records
        cfg = config_from_dict({"canary": {"window": "30m"}})
    assert len(caplog.records) == 1
    text = caplog.records[0].getMessage()
    assert '"30m"' in text and "count x interval" in text and "interval x iterations" in text
    assert canary_warnings(cfg.canary) == [text]
    assert canary_warnings(default_config().canary) == []


def test_a_canary_step_shorter_than_the_window_is_warned() -> None:
    cs = config_from_dict({"canary": {"window": "5m"}}).canary
    assert canary_warnings(cs, step_s=300) == []
    assert canary_warnings(cs, step_s=600) == []  # a longer step: the test decides inside it
    (text,) = canary_warnings(cs, step_s=60)
    assert "1m" in text and '"5m"' in text and "set window to the step" in text
