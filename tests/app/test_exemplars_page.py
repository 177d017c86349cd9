"""Exemplars on the Latency page (AppTest): a real Prometheus with exemplar storage scraping a
client_python target that attaches trace ids; links come from the config's trace URL template."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
import requests
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP
from tests.app.test_latency_page import arr, chart
from tests.fixtures.prom import exemplar_target, scraping_prometheus, wait_for_exemplars

pytestmark = pytest.mark.integration

TEMPLATE = "http://tempo.example/trace/{trace_id}"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, float]]]:
    with exemplar_target(20261207) as (target, observed), \
            scraping_prometheus(target, tmp_path_factory.mktemp("exemplar-app")) as prom:
        wait_for_exemplars(prom.url, 'http_request_duration_seconds_bucket{service="shop"}')
        _wait_for_samples(prom.url, 10)  # the page's rate window (>= 4 scrapes) needs a few of them
        yield prom.url, observed


def _wait_for_samples(url: str, n: int, timeout_s: float = 60.0) -> None:
    query = 'count_over_time(http_request_duration_seconds_count{service="shop"}[1m])'
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = requests.post(url + "/api/v1/query", data={"query": query}, timeout=5).json()["data"]["result"]
        if result and float(result[0]["value"][1]) >= n:
            return
        time.sleep(0.5)
    raise RuntimeError(f"fewer than {n} scrapes of the exemplar target within {timeout_s:.0f} s")


def open_latency(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str,
                 panel: str | None = None) -> AppTest:
    """The Latency page of ``shop``; ``panel`` opens that tab (``?panel=``), else the first one
    (the exemplar table)."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[prometheus]\nscrape_interval = "1s"\n' + config)
    monkeypatch.setenv("ANALYZERS_CONFIG", str(cfg))
    monkeypatch.setenv("PROMETHEUS_URL", url)
    monkeypatch.setenv("DEPLOY_STORE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"svc": "shop", "lat_range": "1h", "pct": ["p99"], **({"panel": panel} if panel else {})})
    at.switch_page("views/latency.py").run()
    assert not at.exception, at.exception
    return at


def _chart(at: AppTest, key: str) -> dict[str, Any]:
    charts = {c.proto.id: c for c in [*at.get("plotly_chart"), *at.get("bidi_component")]}
    found = [c for k, c in charts.items() if key in k]
    assert found, (key, list(charts), [i.value for i in at.info], [e.value for e in at.error])
    return chart(at, found[0].proto.id)


def test_exemplars_are_drawn_on_both_charts_and_link_to_their_traces(
    traced: tuple[str, dict[str, float]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, observed = traced
    config = f'[dashboard]\ntrace_url = "{TEMPLATE}"\n'
    at = open_latency(url, tmp_path, monkeypatch, config, panel="Bucket heatmap")
    expected = sorted(v * 1000 for v in observed.values())
    # the percentile chart (uPlot): exemplars drawn from their own columns, in ms on the lines' y axis
    spec = _chart(at, "percentiles")
    rows = spec["exemplars"]
    ys = np.asarray(rows["ms"], dtype=float)
    assert len(ys) > 0 and all(min(abs(y - e) for e in expected) < 1e-6 * y for y in ys)
    assert "ms" in spec["y"]["title"] and len(rows["t"]) == len(ys)
    # a click on an exemplar never opens a deploy: only the deploy markers carry ids (the script
    # opens a deploy from spec["deploys"]["deploy_id"] alone)
    assert "deploy_id" not in rows
    latency = [dict(h)["latency"] for h in rows["hover"]]
    assert set(rows["trace"]) <= set(observed) and all(v.endswith(("ms", " s")) for v in latency)
    # the heatmap (Plotly)
    spec = _chart(at, "heatmap")
    marks = next(t for t in spec["data"] if t.get("name") == "exemplars")
    ys = arr(marks["y"]).astype(float)
    assert len(ys) > 0 and all(min(abs(y - e) for e in expected) < 1e-6 * y for y in ys)
    assert "customdata" not in marks  # a click on an exemplar never opens a deploy
    assert all("trace " in h and "<script" not in h for h in marks["hovertext"])
    at = open_latency(url, tmp_path, monkeypatch, config)  # the first tab: the table of traces
    table = next(d.value for d in at.dataframe if "trace id" in d.value.columns)
    assert set(table["trace id"]) <= set(observed)
    for tid, link in zip(table["trace id"], table["trace"], strict=True):
        assert link.startswith("http://tempo.example/trace/") and unquote(link.rsplit("/", 1)[1]) == tid
    assert table["latency"].iloc[0].endswith(("ms", " s"))


def test_without_a_template_exemplars_show_without_links_and_say_how(
    traced: tuple[str, dict[str, float]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = traced
    at = open_latency(url, tmp_path, monkeypatch, "")
    table = next(d.value for d in at.dataframe if "trace id" in d.value.columns)
    assert table["trace"].isna().all() or (table["trace"] == "").all() or table["trace"].map(lambda v: v is None).all()
    assert any("trace_url" in c.value for c in at.caption)
