"""Verdict delivery to a real loopback HTTP server: chat messages, retries, Grafana annotations."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from analyzers.config import GrafanaSettings, NotifyRoute, default_config
from analyzers.delivery.notify import SCHEMA, deliver
from analyzers.model import Deploy, DeployVerdict, MetricVerdict
from tests.fixtures.sink import Sink

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DEPLOY = Deploy(deploy_id="d-9", service="checkout", environment="production", version="v9", started_at=T0,
                author="<@U123> <!channel>")


def _verdict(overall: str = "fail") -> DeployVerdict:
    m = MetricVerdict(metric="error_ratio", role="guard", expect="increase", outcome="regressed" if overall == "fail" else "ok",
                      reason="guard error_ratio regressed.", unit="ratio",
                      result={"effect": 0.04, "effect_rel": 8.0, "effect_ci": [0.03, 0.05], "p_value": 1e-5})
    return DeployVerdict(deploy_id="d-9", overall=overall, reason="checkout v9 failed verification.",  # type: ignore[arg-type]
                         metrics=(m,), checked_at=T0, service="checkout", version="v9")


def _no_sleep(_: float) -> None:
    pass


def test_fail_verdict_reaches_matching_slack_route(sink: Sink) -> None:
    cfg = replace(default_config(), routes=(NotifyRoute("oncall", sink.url + "/slack", "slack", ("checkout",)),))
    out = deliver(_verdict(), DEPLOY, cfg, sleep=_no_sleep)
    assert [d.ok for d in out] == [True]
    (msg,) = sink.bodies("/slack")
    assert "FAIL" in msg["text"] and "checkout" in msg["text"]
    text = str(msg["blocks"])
    assert "error_ratio" in text and "+4.00 pp (x9)" in text  # a ratio's change in points, apart from x9
    assert "+4.00%" not in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text  # event text cannot mention people


def test_routes_filter_by_service_and_verdict(sink: Sink) -> None:
    cfg = replace(default_config(), routes=(
        NotifyRoute("search-only", sink.url + "/a", "slack", ("search",)),
        NotifyRoute("fails-only", sink.url + "/b", "json", (), ("fail",)),
    ))
    assert deliver(_verdict("pass"), DEPLOY, cfg, sleep=_no_sleep) == []
    out = deliver(_verdict("fail"), DEPLOY, cfg, sleep=_no_sleep)
    assert [d.target for d in out] == ["fails-only"]
    (body,) = sink.bodies("/b")
    assert body["schema"] == SCHEMA and body["verdict"]["overall"] == "fail"


def test_retries_on_503_then_delivers(sink: Sink) -> None:
    sink.fail_next = 2
    cfg = replace(default_config(), routes=(NotifyRoute("r", sink.url + "/x", "json"),))
    (d,) = deliver(_verdict(), DEPLOY, cfg, sleep=_no_sleep)
    assert d.ok and d.attempts == 3
    assert len(sink.bodies("/x")) == 1


def test_gives_up_on_4xx_without_retrying(sink: Sink) -> None:
    sink.fail_next, sink.fail_status = 5, 404
    cfg = replace(default_config(), routes=(NotifyRoute("r", sink.url + "/x", "json"),))
    (d,) = deliver(_verdict(), DEPLOY, cfg, sleep=_no_sleep)
    assert not d.ok and d.attempts == 1 and d.status_code == 404 and "fix the webhook URL" in (d.error or "")


def test_unreachable_target_is_reported_not_raised() -> None:
    cfg = replace(default_config(), routes=(NotifyRoute("r", "http://127.0.0.1:9/hook", "json"),))
    (d,) = deliver(_verdict(), DEPLOY, cfg, sleep=_no_sleep)
    assert not d.ok and d.attempts == 4 and "ConnectionError" in (d.error or "")


def test_grafana_annotation_is_posted(sink: Sink) -> None:
    cfg = replace(default_config(), grafana=GrafanaSettings(url=sink.url, token="t0k"))
    (d,) = deliver(_verdict(), DEPLOY, cfg, sleep=_no_sleep)
    assert d.kind == "annotation" and d.ok
    (body,) = sink.bodies("/api/annotations")
    assert body["time"] == int(T0.timestamp() * 1000)
    assert "verdict:fail" in body["tags"] and "service:checkout" in body["tags"]
    assert sink.received[0]["headers"]["Authorization"] == "Bearer t0k"


SLACK_TOKEN = "kT9xQ2vWmZ8rYbN3cL5pJ7dF"


def test_a_failed_delivery_stores_no_webhook_secret(tmp_path: object, sink: Sink) -> None:
    """A Slack-style URL's path is its token; requests quotes it in its error text, and the
    deploy page shows what the store holds. Neither may show the token."""
    from analyzers.events.store import open_store

    unreachable = f"http://127.0.0.1:9/services/T0123ABCD/B0456EFGH/{SLACK_TOKEN}"
    sink.fail_next, sink.fail_status = 1, 403
    cfg = replace(default_config(), routes=(
        NotifyRoute("oncall", unreachable, "slack"),
        NotifyRoute("mattermost", f"{sink.url}/hooks/{SLACK_TOKEN}?token={SLACK_TOKEN}", "slack"),
    ), grafana=GrafanaSettings(url="http://admin:hunter22@127.0.0.1:9", token="glsa_" + SLACK_TOKEN))
    out = deliver(_verdict(), DEPLOY, cfg, sleep=_no_sleep)
    assert [d.ok for d in out] == [False, False, False]
    assert "ConnectionError" in (out[0].error or "") and "HTTP 403" in (out[1].error or "")
    store = open_store(f"sqlite:///{tmp_path}/deploys.db")
    try:
        for d in out:
            store.save_delivery(DEPLOY.deploy_id, d.at, d.target, d.to_dict())
        shown = json.dumps(store.deliveries(DEPLOY.deploy_id))
    finally:
        store.close()
    assert SLACK_TOKEN not in shown and "hunter22" not in shown and "B0456EFGH" not in shown
    assert "127.0.0.1" in shown and "oncall" in shown  # the reader still learns which target failed


def test_slack_lists_failing_metrics_first_and_says_what_guards_fail_on() -> None:
    from analyzers.delivery.notify import slack_message

    ok = MetricVerdict(metric="throughput", role="guard", expect="decrease", outcome="ok", reason="fine.", unit="req/s")
    v = replace(_verdict(), metrics=(ok, *_verdict().metrics))
    text = slack_message(v, DEPLOY)["blocks"][1]["text"]["text"]
    assert text.index("*error_ratio*") < text.index("*throughput*")
    assert "(guard, fails on increase) — regressed" in text and "(guard, fails on decrease) — ok" in text


def test_slack_text_objects_are_verbatim_and_nothing_unfurls() -> None:
    """Slack would otherwise link a bare URL from event text and preview it."""
    from analyzers.delivery.notify import slack_message

    msg = slack_message(_verdict(), replace(DEPLOY, version="https://evil.example/phish"), dashboard_url="https://d.example")
    objects = [b["text"] for b in msg["blocks"] if "text" in b] + [e for b in msg["blocks"] for e in b.get("elements", [])]
    assert objects and all(o["type"] == "mrkdwn" and o["verbatim"] is True for o in objects)
    assert msg["unfurl_links"] is False and msg["unfurl_media"] is False


def test_slack_gives_a_canary_metric_its_counts_not_an_empty_before_after() -> None:
    import numpy as np

    from analyzers.delivery.notify import slack_message
    from analyzers.stats.canary import compare_rates, judge
    from analyzers.verify.canary import CanaryReport, canary_verdict

    c = compare_rates("error_ratio", np.full(10, 3.0), np.full(10, 1.0), np.full(10, 100.0), np.full(10, 1000.0),
                      alpha=0.005)
    rep = CanaryReport(judgement=judge([c]), start=T0, end=T0, queries={"error_ratio": ["q"]})
    text = slack_message(canary_verdict(DEPLOY, rep, now=T0), DEPLOY)["blocks"][1]["text"]["text"]
    line = next(x for x in text.splitlines() if x.startswith("• *error_ratio* (canary"))
    assert "— regressed: canary 30 of 1,000 requests vs baseline 10 of 10,000 requests, effect canary/baseline x" in line
    assert ": n/a," not in line
