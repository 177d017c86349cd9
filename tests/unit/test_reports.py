"""Reports: every format carries the verdict, units and reasons, and never renders event text as markup."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from analyzers.delivery.reports import render_html, render_json, render_markdown
from analyzers.model import Deploy, DeployVerdict, Expectation, MetricVerdict
from analyzers.text import format_value

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
EVIL = '<script>alert(1)</script> | **bold** `x`'


def _deploy() -> Deploy:
    return Deploy(
        deploy_id="d-1",
        service="checkout",
        environment="production",
        version="v2",
        started_at=T0,
        author=EVIL,
        description=EVIL,
        expectations=(Expectation("latency_p99", "decrease"),),
    )


def _verdict() -> DeployVerdict:
    m = MetricVerdict(
        metric="error_ratio",
        role="guard",
        expect="increase",
        outcome="regressed",
        reason="guard error_ratio regressed: +4.50% (+900%).",
        unit="ratio",
        query='sum(rate(http_request_errors_total{service="checkout"}[1m]))',
        result={"status": "shifted", "direction": "increase", "effect": 0.045, "effect_rel": 9.0,
                "effect_ci": [0.04, 0.05], "p_value": 1e-6, "baseline": "pre-window"},
        p_adjusted=2e-6,
    )
    return DeployVerdict(deploy_id="d-1", overall="fail", reason="checkout v2 failed verification: error_ratio (regressed).",
                         metrics=(m,), checked_at=T0, service="checkout", version="v2",
                         multiple_testing="Holm correction across 2 tested metrics at alpha=0.05")


def test_markdown_has_badge_units_and_reason() -> None:
    md = render_markdown(_verdict(), _deploy())
    assert "FAIL" in md
    assert "4.50%" in md  # ratio shown as percent with its unit
    assert "regressed" in md
    assert "Holm" in md
    assert "<script>" not in md  # escaped event text


def test_html_escapes_event_text_and_is_self_contained() -> None:
    page = render_html(_verdict(), _deploy())
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "http://" not in page.split("<table>")[0].replace("http-equiv", "")  # no external resources
    assert "FAIL" in page


def test_json_round_trips_verdict() -> None:
    data = json.loads(render_json(_verdict(), _deploy()))
    again = DeployVerdict.from_dict(data["verdict"])
    assert again == _verdict()
    assert Deploy.from_dict(data["deploy"]) == _deploy()


def test_format_value_units() -> None:
    assert format_value(0.0123, "ratio") == "1.23%"
    assert format_value(0.25, "s") == "250.0 ms"
    assert format_value(2.5, "s") == "2.500 s"
    assert format_value(None, "s") == "n/a"
    assert format_value(12.0, "req/s") == "12 req/s"


def test_html_embeds_an_inline_chart_with_the_deploy_marker() -> None:
    from dataclasses import replace

    v = _verdict()
    t = [int(T0.timestamp()) + 60 * i for i in range(-30, 30)]
    m = replace(v.metrics[0], chart={"t": t, "v": [0.005 if i < 30 else 0.05 for i in range(60)]})
    page = render_html(replace(v, metrics=(m,)), _deploy())
    assert "<svg" in page and "polyline" in page
    assert 'stroke-dasharray' in page  # the deploy marker
    assert "5.00%" in page  # y axis labelled in the metric's unit


def test_before_after_levels_and_gaps_are_shown() -> None:
    from dataclasses import replace

    v = _verdict()
    m = replace(v.metrics[0], result={**(v.metrics[0].result or {}), "before_value": 0.005, "after_value": 0.05,
                                      "before_missing": 0.0, "after_missing": 0.2})
    md = render_markdown(replace(v, metrics=(m,)), _deploy())
    assert "0.50% → 5.00%" in md
    assert "after 20% missing" in md


def test_json_report_is_versioned() -> None:
    assert json.loads(render_json(_verdict(), _deploy()))["schema"] == "deploy-verdict/v1"


def test_effect_interval_is_labelled_with_its_level() -> None:
    """The interval is a (1 - alpha) one: 99 % at the default alpha 0.01, 95 % for older verdicts."""
    from dataclasses import replace

    old = _verdict()
    assert "effect [95% CI]" in render_markdown(old, _deploy())
    m = replace(old.metrics[0], result={**(old.metrics[0].result or {}), "ci_level": 0.99})
    new = replace(old, metrics=(m,))
    assert "effect [99% CI]" in render_markdown(new, _deploy())
    assert "effect [99% CI]" in render_html(new, _deploy())
    assert "95%" not in render_markdown(new, _deploy())


def test_a_ratio_change_reads_in_points_apart_from_the_relative_change() -> None:
    md = render_markdown(_verdict(), _deploy())
    assert "| +4.50 pp (x10), 95% CI +4.00 pp to +5.00 pp |" in md  # the effect cell
    assert "| +4.50% (+900" not in md


def test_a_guard_says_what_it_fails_on_and_an_expectation_what_was_declared() -> None:
    from dataclasses import replace

    v = _verdict()
    md = render_markdown(v, _deploy())
    assert "| checked for |" in md and "| fails on increase |" in md and "expected" not in md
    exp = replace(v.metrics[0], role="expectation", expect="decrease", outcome="opposite")
    assert "| declared decrease |" in render_markdown(replace(v, metrics=(exp,)), _deploy())


def test_a_spread_only_change_has_no_direction() -> None:
    from dataclasses import replace

    v = _verdict()
    m = replace(v.metrics[0], unit="s", result={"status": "shifted", "direction": None, "change_kind": "variance",
                                                  "effect": -0.1069, "effect_rel": -0.16, "effect_ci": [-0.2, 0.01],
                                                  "p_value": 1e-11, "details": {"spread_ratio": 0.0953}})
    md = render_markdown(replace(v, metrics=(m,)), _deploy())
    assert "spread x0.095, no level change" in md
    assert "-106.9 ms" not in md  # the level did not move: no signed effect shown


def test_p_values_never_read_zero_in_reports() -> None:
    from dataclasses import replace

    v = _verdict()
    m = replace(v.metrics[0], result={**(v.metrics[0].result or {}), "p_value": 0.0}, p_adjusted=0.0)
    md = render_markdown(replace(v, metrics=(m,)), _deploy())
    assert "| < 0.0001 (adj. < 0.0001) |" in md


def test_reports_link_back_to_the_deploy_with_its_id_encoded() -> None:
    from dataclasses import replace

    v = replace(_verdict(), deploy_id="a&b#c`)")
    md = render_markdown(v, _deploy(), dashboard_url="https://dash.example/")
    assert "[Open in the dashboard](<https://dash.example/deploy?deploy=a%26b%23c%60%29>)" in md
    page = render_html(v, _deploy(), dashboard_url="https://dash.example/")
    assert '<a href="https://dash.example/deploy?deploy=a%26b%23c%60%29">Open in the dashboard</a>' in page


def test_failing_metrics_come_first() -> None:
    from dataclasses import replace

    v = _verdict()
    ok = replace(v.metrics[0], metric="throughput", outcome="ok", role="guard", expect="decrease")
    md = render_markdown(replace(v, metrics=(ok, v.metrics[0])), _deploy())
    assert md.index("| error\\_ratio |") < md.index("| throughput |")


def test_times_are_shown_in_the_zone_asked_for() -> None:
    md = render_markdown(_verdict(), _deploy(), zone="Asia/Kolkata")
    assert "started 2026-11-20 15:30 IST" in md and "checked 2026-11-20 15:30 IST" in md
    assert "started 2026-11-20 10:00 UTC" in render_markdown(_verdict(), _deploy())


def test_a_canary_metric_reads_against_its_baseline() -> None:
    from dataclasses import replace

    v = _verdict()
    m = MetricVerdict(metric="error_ratio", role="canary", expect="no worse than baseline", outcome="regressed",
                      reason="canary error rate 1.8 times the baseline's.", unit="ratio",
                      result={"method": "sequential rate ratio", "status": "fail", "alpha": 0.01, "ratio": 1.83,
                              "ratio_ci": [1.21, 2.64]})
    md = render_markdown(replace(v, metrics=(m,)), _deploy())
    assert "| fails if worse than baseline |" in md
    assert "canary/baseline x1.8, 99% CI x1.2 to x2.6" in md


def test_a_figure_that_could_not_be_computed_is_null_in_strict_json_never_a_crash() -> None:
    """Found by audit10: a bucket test whose windows hold a few requests pools every bucket into one
    group, so its drift p-value is NaN (``bucket_drift``: "nothing to compare"). The verdict kept it,
    and ``verify --format json``, the dashboard's JSON download and the ``json`` chat route then
    raised ``ValueError: Out of range float values`` (or sent the ``NaN`` token, which strict JSON
    parsers refuse). Such a figure is ``null``; every other figure is kept as it was."""
    from dataclasses import replace

    from analyzers.delivery.notify import json_message
    from analyzers.stats.bucket_drift import drift_adjusted_comparison

    les = (0.1, 0.25, 0.5, 1.0, float("inf"))
    blocks = [(2, 4, 5, 6, 6), (1, 3, 4, 6, 7), (2, 5, 6, 7, 7), (3, 4, 6, 6, 6)]  # cumulative, a few requests each
    drift = drift_adjusted_comparison(les, blocks, (1, 2, 5, 6, 7))
    assert drift.p_value != drift.p_value  # NaN: one pooled group, nothing to compare
    v = _verdict()
    m = replace(v.metrics[0], result={**(v.metrics[0].result or {}),
                                      "bucket_test": {"p_value": 0.3, "p_drift": drift.p_value,
                                                      "p_beyond_drift": drift.p_value, "drift_dispersion": drift.dispersion,
                                                      "bounds": [0.1, float("inf")]}})
    v = replace(v, metrics=(m,))

    def strict(text: str) -> object:
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"not JSON: {c}")))

    body = strict(render_json(v, _deploy()))
    bt = body["verdict"]["metrics"][0]["result"]["bucket_test"]  # type: ignore[index]
    assert bt["p_beyond_drift"] is None and bt["p_drift"] is None and bt["bounds"] == [0.1, None]
    assert bt["p_value"] == 0.3 and body["verdict"]["metrics"][0]["result"]["effect"] == 0.045  # type: ignore[index]
    assert strict(json.dumps(json_message(v, _deploy())))["verdict"]["overall"] == "fail"  # type: ignore[index]
