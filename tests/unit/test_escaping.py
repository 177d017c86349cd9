"""Hostile event text through every output: no link, image, mention, markup or forged row.

Each hostile string goes into every event field a report or message shows (version, author,
deploy id, environment, a neighbour's fields copied by the overlap warning, reasons that quote
them) and through every output: the Markdown report as GitHub renders it (cmark-gfm, GitHub's
own renderer, with raw HTML allowed so nothing is hidden by a sanitizer), the HTML report, the
Slack blocks and fallback text, the generic JSON webhook and the Grafana annotation. The text
itself must still be there, shown as written.
"""

from __future__ import annotations

import html
import json
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from analyzers.config import GrafanaSettings
from analyzers.delivery.escape import md_code, plain
from analyzers.delivery.notify import annotation_body, json_message, slack_message
from analyzers.delivery.reports import render_html, render_markdown
from analyzers.model import Deploy, DeployVerdict, MetricVerdict
from analyzers.text import deploy_link

DASH = "https://dash.example"
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)

#: (name, value): each is tried in every field.
HOSTILE = [
    ("md-link-image", "[CLICK](https://evil.example/phish) ![t](https://evil.example/pixel.png)"),
    ("md-ref-link", "[x][1] [1]: https://evil.example/ref"),
    ("pre-escaped", "\\[CLICK\\](https://evil.example/esc) \\![i](https://evil.example/i.png)"),
    ("html", '<img src=x onerror=alert(1)><script>alert(1)</script><a href="https://evil.example">a</a>'),
    ("entities", "&lt;script&gt; &#x3C;img src=x&#x3E; &amp;"),
    ("backticks", "`x` ``y`` ```z``` ` lone"),
    ("pipes", "a | b || c \\| d"),
    ("newlines", "line1\n## fake heading\n| fake | row |\r\n> quote\n- item"),
    ("slack", "<!channel> <!here> <@U123> <#C42> <!subteam^S1> <https://evil.example|click here>"),
    ("slack-link-break", "x>|<https://evil.example/steal|Open the evidence> &"),
    ("bare-links", "https://evil.example/bare www.evil.example mail@evil.example ftp://evil.example/f"),
    ("javascript", "javascript:alert(document.cookie)"),
    ("github-mentions", "@octocat @acme/security-team cc @here"),
    ("emphasis", "**bold** _it_ ~~strike~~ <b>x</b> # h"),
    ("bidi", "invoice\u202egnp.exe\u202c \u2066rtl\u2069"),
    ("controls", "nul\x00bell\x07esc\x1b[31mred"),
    ("long", "A" * 5000 + "[tail](https://evil.example/tail)"),
]
IDS = [name for name, _ in HOSTILE]


def _deploy(s: str) -> Deploy:
    return Deploy(deploy_id=f"d-{s}", service="checkout", environment=f"prod {s}", version=f"v1 {s}",
                  started_at=T0, author=f"dev {s}", description=f"desc {s}")


def _verdict(s: str) -> DeployVerdict:
    neighbour = _deploy("n " + s)
    m = MetricVerdict(
        metric="error_ratio", role="guard", expect="increase", outcome="regressed", unit="ratio",
        reason=f"guard error_ratio regressed: +3.39 pp (x6.5) after v1 {s}.",
        query='sum(rate(http_requests_total{service="checkout",code=~"5.."}[1m]))',
        result={"status": "shifted", "direction": "increase", "effect": 0.0339, "effect_rel": 5.49,
                "effect_ci": [0.02, 0.05], "ci_level": 0.99, "p_value": 0.0, "baseline": "pre-window",
                "before_value": 0.0062, "after_value": 0.0401},
    )
    return DeployVerdict(
        deploy_id=f"d-{s}", overall="fail", reason=f"checkout v1 {s} failed verification: error_ratio (regressed).",
        metrics=(m,), checked_at=T0, service="checkout", version=f"v1 {s}",
        # As verify_deploy writes it: the neighbour's fields copied into this deploy's report.
        warnings=(f"Overlapping deploys within 15 min: checkout {neighbour.version} ({neighbour.deploy_id}); "
                  "a change cannot be attributed to one of them alone.",),
        overlapping=(neighbour.deploy_id,),
    )


class _Tags(HTMLParser):
    """Start tags with attributes, and the text content."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    p.close()
    return p


def _shown(s: str | None) -> str:
    """What a reader must see of ``s``: its first 120 characters as :func:`plain` shows them."""
    return plain(s, limit=None)[:120]


def github_html(md: str) -> str:
    """The Markdown as GitHub renders it (GFM tables, autolinks, strikethrough), raw HTML kept."""
    return cmarkgfm.github_flavored_markdown_to_html(md, options=Options.CMARK_OPT_UNSAFE)


MD_TAGS = {"h2", "p", "strong", "code", "table", "thead", "tbody", "tr", "th", "td", "blockquote", "sub",
           "details", "summary", "ul", "li", "a"}


@pytest.mark.parametrize("s", [v for _, v in HOSTILE], ids=IDS)
def test_markdown_report_as_github_renders_it(s: str) -> None:
    v, d = _verdict(s), _deploy(s)
    page = github_html(render_markdown(v, d, dashboard_url=DASH))
    parsed = _parse(page)
    tags = [t for t, _ in parsed.tags]
    assert set(tags) <= MD_TAGS, set(tags) - MD_TAGS  # no img, script, em, del, raw HTML
    links = [a.get("href") for t, a in parsed.tags if t == "a"]
    assert links == [deploy_link(DASH, v.deploy_id)]  # the one link is ours, id encoded
    assert tags.count("h2") == 1 and tags.count("tr") == 2 and tags.count("table") == 1  # nothing forged
    text = "".join(parsed.text).replace("\u2060", "")
    for field in (d.version, d.author, d.deploy_id, v.overlapping[0]):
        assert _shown(field) in text, field  # shown as written, nothing lost


@pytest.mark.parametrize("s", [v for _, v in HOSTILE], ids=IDS)
def test_code_span_holds_any_backticks(s: str) -> None:
    page = github_html("id " + md_code(s, limit=None))
    parsed = _parse(page)
    assert [t for t, _ in parsed.tags] == ["p", "code"]
    assert "".join(parsed.text).rstrip("\n") == "id " + plain(s, limit=None)


HTML_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "span", "p", "b", "code", "small", "div",
             "table", "thead", "tbody", "tr", "th", "td", "svg", "polyline", "line", "text", "em", "a"}


@pytest.mark.parametrize("s", [v for _, v in HOSTILE], ids=IDS)
def test_html_report_shows_text_never_markup(s: str) -> None:
    v, d = _verdict(s), _deploy(s)
    parsed = _parse(render_html(v, d, dashboard_url=DASH))
    assert {t for t, _ in parsed.tags} <= HTML_TAGS
    assert [a.get("href") for t, a in parsed.tags if t == "a"] == [deploy_link(DASH, v.deploy_id)]
    text = "".join(parsed.text)
    for field in (d.version, d.author, d.deploy_id, d.description, v.overlapping[0]):
        assert _shown(field) in text, field


def _slack_texts(msg: dict[str, Any]) -> list[str]:
    out = [msg["text"]]
    for b in msg["blocks"]:
        if "text" in b:
            out.append(b["text"]["text"])
        out.extend(e["text"] for e in b.get("elements", []))
    return out


@pytest.mark.parametrize("s", [v for _, v in HOSTILE], ids=IDS)
def test_slack_blocks_and_fallback_cannot_mention_or_link(s: str) -> None:
    v, d = _verdict(s), _deploy(s)
    msg = slack_message(v, d, dashboard_url=DASH)
    link = deploy_link(DASH, v.deploy_id)
    ours = f"<{link if len(link) <= 2900 else DASH}|Open the evidence>"
    texts = _slack_texts(msg)
    for t in texts:
        rest = t.replace(ours, "")
        assert "<" not in rest and ">" not in rest, t  # no <!channel>, <@U..>, <url|text>
        # Every & starts one of the three entities Slack knows: nothing else is parsed.
        assert rest.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "").count("&") == 0
    assert sum(t.count(ours) for t in texts) == 1
    assert "|" not in deploy_link(DASH, v.deploy_id) and ">" not in deploy_link(DASH, v.deploy_id)
    assert all(len(t) <= 3000 for t in texts)  # Slack's limit per text object
    shown = html.unescape(" ".join(texts))
    for field in (d.version, d.author):
        assert _shown(field)[:60] in shown, field


@pytest.mark.parametrize("s", [v for _, v in HOSTILE], ids=IDS)
def test_generic_json_webhook_carries_fields_exactly(s: str) -> None:
    v, d = _verdict(s), _deploy(s)
    body = json.loads(json.dumps(json_message(v, d)))
    assert body["deploy"]["version"] == d.version and body["deploy"]["author"] == d.author
    assert body["verdict"]["deploy_id"] == v.deploy_id and body["verdict"]["warnings"] == list(v.warnings)


@pytest.mark.parametrize("s", [v for _, v in HOSTILE], ids=IDS)
def test_grafana_annotation_text_is_one_plain_line(s: str) -> None:
    body = annotation_body(_verdict(s), _deploy(s), GrafanaSettings(url="http://grafana.example"))
    assert "\n" not in body["text"] and "\u202e" not in body["text"] and len(body["text"]) <= 2000


@pytest.mark.parametrize("s", [v for _, v in HOSTILE], ids=IDS)
def test_no_github_mention_survives_in_markdown(s: str) -> None:
    """GitHub turns ``@user`` and ``@org/team`` in a PR comment into notifications after rendering:
    a word joiner after every ``@`` keeps the text and breaks the mention."""
    import re

    page = github_html(render_markdown(_verdict(s), _deploy(s), dashboard_url=DASH))
    outside_code = re.sub(r"<code>.*?</code>", "", page, flags=re.S)  # GitHub leaves code spans alone
    assert not re.search(r"@[A-Za-z0-9]", outside_code)


def test_before_after_of_the_issue_example() -> None:
    """The issue's case: before, the link and pixel were live in the PR comment."""
    s = "[CLICK](https://evil.example/phish) ![t](https://evil.example/pixel.png)"
    v, d = replace(_verdict("x"), version=s), replace(_deploy("x"), version=s, author=s)
    page = github_html(render_markdown(v, d))
    assert "evil.example" in page  # still shown ...
    assert 'href="https://evil.example' not in page and "<img" not in page  # ... as text only


# --- the latency_shift guard (audit10) --------------------------------------------------------
# Its verdict carries new fields (request_latency, day_before, thin_minutes, a reason written as a
# factor) and its query is the bucket range query rendered from the deploy's own service: with a
# hostile service, that query holds the (PromQL-escaped) hostile text too, and reaches the PromQL
# block of the Markdown report, the HTML report's table and the JSON.


def _shift_verdict(s: str) -> tuple[DeployVerdict, Deploy]:
    from analyzers.config import default_config
    from analyzers.verify.plan import metric_query

    d = replace(_deploy(s), service=f"checkout {s}")
    try:
        query = metric_query(default_config(), "latency_shift", d)
    except Exception:  # noqa: BLE001 - a value PromQL cannot express (a lone surrogate): refused at query time
        query = "sum by (le) (increase(http_request_duration_seconds_bucket[1m]))"
    m = MetricVerdict(
        metric="latency_shift", role="guard", expect="increase", outcome="regressed", unit="s",
        reason=(f"guard latency_shift (fails on increase) regressed: requests x1.34 slower (99.7% any-look CI "
                f"x1.23-x1.48), median 98.3 ms -> 142.8 ms after {d.version}."),
        query=query,
        result={"status": "shifted", "direction": "increase", "effect": 0.0336, "effect_rel": 0.342,
                "effect_ci": [0.0226, 0.0472], "ci_level": 0.99, "p_value": 1e-6, "baseline": "pre-window",
                "before_value": 0.0983, "after_value": 0.1428, "thin_minutes": 0.0,
                "request_latency": {"quantile": 0.5, "factor": 1.342, "factor_ci": [1.23, 1.48],
                                    "text": f"requests x1.34 slower {s}"},
                "day_before": {"status": "shifted", "direction": "increase", "factor": 1.31,
                               "factor_ci": [1.12, 1.54], "why": s}},
    )
    v = replace(_verdict(s), service=d.service, metrics=(m, *_verdict(s).metrics),
                reason=f"{d.service} {d.version} failed verification: latency_shift (regressed).")
    return v, d


@pytest.mark.parametrize("s", [v for _, v in HOSTILE], ids=IDS)
def test_latency_shift_verdict_in_markdown_html_slack_and_json_stays_text(s: str) -> None:
    v, d = _shift_verdict(s)
    page = github_html(render_markdown(v, d, dashboard_url=DASH))
    parsed = _parse(page)
    tags = [t for t, _ in parsed.tags]
    assert set(tags) <= MD_TAGS, set(tags) - MD_TAGS
    assert [a.get("href") for t, a in parsed.tags if t == "a"] == [deploy_link(DASH, v.deploy_id)]
    assert tags.count("h2") == 1 and tags.count("table") == 1 and tags.count("tr") == 3  # header + 2 metrics
    text = "".join(parsed.text).replace("\u2060", "")
    assert _shown(d.service) in text and "x1.34 slower" in text
    html_page = _parse(render_html(v, d, dashboard_url=DASH))
    assert {t for t, _ in html_page.tags} <= HTML_TAGS
    assert [a.get("href") for t, a in html_page.tags if t == "a"] == [deploy_link(DASH, v.deploy_id)]
    assert [t for t, _ in html_page.tags].count("tr") == 3
    msg = slack_message(v, d, dashboard_url=DASH)
    link = deploy_link(DASH, v.deploy_id)
    ours = f"<{link if len(link) <= 2900 else DASH}|Open the evidence>"
    for t in _slack_texts(msg):
        rest = t.replace(ours, "")
        assert "<" not in rest and ">" not in rest, t
    body = json.loads(json.dumps(json_message(v, d)))
    shift = body["verdict"]["metrics"][0]
    assert shift["query"] == v.metrics[0].query and shift["result"]["day_before"]["why"] == s
    assert shift["result"]["request_latency"]["text"].endswith(s)
