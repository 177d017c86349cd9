"""Value objects shared by every layer: a deploy, its expectations, and its verdict.

All timestamps are timezone-aware UTC ``datetime`` objects. Values are frozen;
``to_dict()`` gives JSON-ready data (timestamps as RFC 3339 strings) and
``from_dict()`` reads it back, so the store, reports and dashboard share one shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Expect = Literal["increase", "decrease", "unchanged"]
Outcome = Literal["confirmed", "no_effect", "opposite", "regressed", "improved", "ok", "inconclusive", "error"]
Overall = Literal["pass", "fail", "inconclusive"]

#: Exit codes of ``python -m analyzers verify``.
EXIT_CODES: dict[str, int] = {"pass": 0, "fail": 1, "inconclusive": 2, "error": 3}


def to_utc(ts: datetime | str) -> datetime:
    """Parse/normalise a timestamp to aware UTC. Naive datetimes are taken as UTC."""
    if isinstance(ts, str):
        s = ts.strip()
        if s.endswith("Z") or s.endswith("z"):
            s = s[:-1] + "+00:00"
        ts = datetime.fromisoformat(s)
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def iso(ts: datetime | None) -> str | None:
    """RFC 3339 in UTC with a trailing Z, or None."""
    if ts is None:
        return None
    return to_utc(ts).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Expectation:
    """What a deploy declares it will do to one catalog metric."""

    metric: str
    expect: Expect
    min_effect: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Expectation:
        return cls(metric=d["metric"], expect=d["expect"], min_effect=d.get("min_effect"))


@dataclass(frozen=True)
class Deploy:
    """One deploy (or release) as stored: status updates of one ``deploy_id`` merged."""

    deploy_id: str
    service: str
    environment: str
    version: str
    started_at: datetime
    kind: Literal["deploy", "release"] = "deploy"
    status: str = "succeeded"
    finished_at: datetime | None = None
    source: str = "generic"
    commit_sha: str | None = None
    ref: str | None = None
    author: str | None = None
    url: str | None = None
    description: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    expectations: tuple[Expectation, ...] = ()
    flag: str | None = None
    flag_from: str | None = None
    flag_to: str | None = None
    signed: bool = True
    received_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["expectations"] = [e.to_dict() for e in self.expectations]
        for k in ("started_at", "finished_at", "received_at", "updated_at"):
            d[k] = iso(getattr(self, k))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Deploy:
        kw = dict(d)
        for k in ("started_at", "finished_at", "received_at", "updated_at"):
            if kw.get(k) is not None:
                kw[k] = to_utc(kw[k])
        kw["expectations"] = tuple(Expectation.from_dict(e) for e in kw.get("expectations") or ())
        kw["labels"] = dict(kw.get("labels") or {})
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in kw.items() if k in known})


@dataclass(frozen=True)
class MetricVerdict:
    """The verdict on one metric of one deploy.

    ``role`` is ``expectation`` (declared by the deploy) or ``guard`` (checked on every
    deploy). ``outcome``: for expectations ``confirmed`` / ``no_effect`` / ``opposite``;
    for guards ``ok`` / ``regressed``; ``improved`` (a guard, or a metric declared unchanged, moved
    its good way); for any ``inconclusive`` or ``error``. The decision table that gives them is
    :mod:`analyzers.verify.decision`.
    ``result`` is ``verify_series(...).to_dict()`` (JSON-ready) when the test ran.
    """

    metric: str
    role: Literal["expectation", "guard"]
    expect: str
    outcome: Outcome
    reason: str
    unit: str = ""
    query: str = ""
    result: dict[str, Any] | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    p_adjusted: float | None = None
    #: A small copy of the series around the deploy for reports: ``{"t": [unix s], "v": [value|None]}``.
    chart: dict[str, list[Any]] | None = None
    #: Judged and reported but never fails the deploy or a gate (``dry_run`` in the config).
    dry_run: bool = False

    @property
    def failed(self) -> bool:
        return self.outcome in ("opposite", "regressed") and not self.dry_run

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window_start"] = iso(self.window_start)
        d["window_end"] = iso(self.window_end)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricVerdict:
        kw = dict(d)
        for k in ("window_start", "window_end"):
            if kw.get(k) is not None:
                kw[k] = to_utc(kw[k])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in kw.items() if k in known})


@dataclass(frozen=True)
class DeployVerdict:
    """Overall verdict of one deploy: ``pass`` / ``fail`` / ``inconclusive`` with evidence."""

    deploy_id: str
    overall: Overall
    reason: str
    metrics: tuple[MetricVerdict, ...]
    checked_at: datetime
    service: str = ""
    version: str = ""
    warnings: tuple[str, ...] = ()
    overlapping: tuple[str, ...] = ()
    multiple_testing: str = ""
    retry_after_s: float | None = None
    #: Which scheduled check produced it (``first``, ``finished``, ``final``) or ``manual``.
    check_kind: str = "manual"
    #: What changed since the previous verdict of this deploy, one sentence each.
    changes: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.overall]

    def to_dict(self) -> dict[str, Any]:
        return {
            "deploy_id": self.deploy_id,
            "service": self.service,
            "version": self.version,
            "overall": self.overall,
            "reason": self.reason,
            "metrics": [m.to_dict() for m in self.metrics],
            "checked_at": iso(self.checked_at),
            "warnings": list(self.warnings),
            "overlapping": list(self.overlapping),
            "multiple_testing": self.multiple_testing,
            "retry_after_s": self.retry_after_s,
            "check_kind": self.check_kind,
            "changes": list(self.changes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeployVerdict:
        return cls(
            deploy_id=d["deploy_id"],
            overall=d["overall"],
            reason=d.get("reason", ""),
            metrics=tuple(MetricVerdict.from_dict(m) for m in d.get("metrics", ())),
            checked_at=to_utc(d["checked_at"]),
            service=d.get("service", ""),
            version=d.get("version", ""),
            warnings=tuple(d.get("warnings", ())),
            overlapping=tuple(d.get("overlapping", ())),
            multiple_testing=d.get("multiple_testing", ""),
            retry_after_s=d.get("retry_after_s"),
            check_kind=d.get("check_kind", "manual"),
            changes=tuple(d.get("changes", ())),
        )


#: The placeholder a trace URL template carries exactly once.
TRACE_ID_PLACEHOLDER = "{trace_id}"


@dataclass(frozen=True)
class TraceUrl:
    """Where a trace id opens (``[dashboard] trace_url``), e.g. ``http://tempo.example/trace/{trace_id}``.

    Only the operator's config sets it, and the host is fixed there: the template must be an
    http(s) URL whose scheme and host come before ``{trace_id}`` (so no trace id, which comes
    from the scraped service, can choose where the link points). The id is percent-encoded
    into it; an id that is empty, longer than 256 characters or holds control characters gets
    no link. Other braces are left alone (Grafana Explore URLs carry JSON).
    """

    template: str

    def __post_init__(self) -> None:
        from urllib.parse import urlsplit

        from analyzers.errors import ConfigError

        t = self.template
        example = "for example 'http://tempo.example/trace/{trace_id}' or 'http://jaeger.example/trace/{trace_id}'"
        if not isinstance(t, str) or t.count(TRACE_ID_PLACEHOLDER) != 1:
            raise ConfigError(f"[dashboard] trace_url must contain {{trace_id}} exactly once, got {t!r}: {example}")
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in t):
            raise ConfigError(f"[dashboard] trace_url must not contain spaces or control characters, got {t!r}")
        prefix = t.split(TRACE_ID_PLACEHOLDER)[0]
        parts = urlsplit(prefix)
        authority_done = "://" in prefix and any(c in prefix.split("://", 1)[1] for c in "/?#")
        if parts.scheme not in ("http", "https") or not parts.hostname or not authority_done:
            raise ConfigError(
                f"[dashboard] trace_url must be an http:// or https:// URL whose host comes before {{trace_id}}, "
                f"got {t!r}: {example}"
            )

    def url(self, trace_id: str) -> str | None:
        """The link for ``trace_id`` (percent-encoded), or None when the id cannot be linked."""
        from urllib.parse import quote

        if not trace_id or len(trace_id) > 256 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in trace_id):
            return None
        return self.template.replace(TRACE_ID_PLACEHOLDER, quote(trace_id, safe=""))
