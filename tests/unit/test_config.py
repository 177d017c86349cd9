"""Configuration: TOML in, typed settings out; every mistake names the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzers.config import config_from_dict, default_config, load_config, parse_duration
from analyzers.errors import ConfigError
from analyzers.text import format_duration


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("250ms", 0.25), (90, 90)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration_names_the_key() -> None:
    with pytest.raises(ConfigError, match="verification.window_after"):
        config_from_dict({"verification": {"window_after": "soon"}})


def test_format_duration_for_promql() -> None:
    assert [format_duration(s) for s in (60, 300, 3600, 86400, 90, 15)] == ["1m", "5m", "1h", "1d", "90s", "15s"]


def test_full_file_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_TOKEN", "s3cret")
    monkeypatch.setenv("HOOK", "https://chat.example/hook")
    path = tmp_path / "c.toml"
    path.write_text(
        """
[prometheus]
url = "https://prom.internal"
bearer_token_env = "PROM_TOKEN"
tenant = "team-a"
path_prefix = "/prometheus"
timeout = "45s"

[store]
url = "postgresql://deploys@db/deploys"

[verification]
window_after = "45m"
alpha = 0.01

[slo]
threshold = "500ms"
objective = 0.999

[metrics.checkout_p95]
query = 'histogram_quantile(0.95, sum by (le) (rate(x_bucket{service="$service"}[$window])))'
unit = "s"
good = "decrease"
guard = true

[services.checkout]
guards = ["error_ratio", "checkout_p95"]
depends_on = ["payments"]
slo = { threshold = "250ms", objective = 0.99 }

[[notify.routes]]
name = "oncall"
url_env = "HOOK"
services = ["checkout"]
"""
    )
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    monkeypatch.delenv("DEPLOY_STORE_URL", raising=False)
    cfg = load_config(path)
    assert cfg.prometheus.bearer_token == "s3cret"
    assert cfg.prometheus.base_url == "https://prom.internal/prometheus"
    assert cfg.prometheus.timeout_s == 45
    assert cfg.store_url.startswith("postgresql://")
    assert cfg.verification.window_after_s == 2700 and cfg.verification.alpha == 0.01
    assert cfg.guards_for("checkout") == ("error_ratio", "checkout_p95")
    assert cfg.guards_for("search") == ("error_ratio", "latency_p99", "latency_shift", "checkout_p95")
    assert cfg.slo_for("checkout").threshold_s == 0.25 and cfg.slo_for("search").objective == 0.999
    assert cfg.routes[0].url == "https://chat.example/hook" and cfg.routes[0].matches("checkout", "fail")
    assert not cfg.routes[0].matches("checkout", "pass")


def test_env_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_URL", "http://10.0.0.1:9090")
    monkeypatch.setenv("DEPLOY_STORE_URL", "sqlite:///x.db")
    monkeypatch.delenv("ANALYZERS_CONFIG", raising=False)
    cfg = load_config()
    assert cfg.prometheus.url == "http://10.0.0.1:9090" and cfg.store_url == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"metrics": {"m": {"unit": "s"}}}, "needs a 'query'"),
        ({"metrics": {"m": {"query": "up", "good": "up"}}}, "must be 'increase', 'decrease' or 'none'"),
        ({"metrics": {"m": {"query": "up", "colour": "red"}}}, "unknown keys"),
        ({"prometheus": {"bearer_token_env": "NOPE_NOT_SET"}}, "NOPE_NOT_SET"),
        ({"services": {"a": {"guards": ["nope"]}}}, "unknown metric 'nope'"),
        ({"notify": {"routes": [{"url": "ftp://x"}]}}, "must start with http"),
        ({"slo": {"objective": 99.5}}, "between 0 and 1"),
        ({"verification": {"alpha": 2}}, "between 0 and 1"),
    ],
)
def test_mistakes_are_named(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_unknown_metric_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="error_ratio"):
        default_config().metric("p99")
