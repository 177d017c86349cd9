"""Incident drill-down pipelines: what the dashboard's Latency and Errors pages show.

Each module builds its PromQL with :mod:`analyzers.prometheus`, queries through a
:class:`analyzers.drilldown.base.Querier` and does its maths with :mod:`analyzers.stats`, so the
dashboard only caches and draws, and scripts get the same figures:

- :mod:`.latency`: percentiles and heatmap, before/after bucket distributions, "who is slow";
- :mod:`.slo`: multi-window burn rates and the alerting policy behind them.

See ``docs/prometheus.md``.
"""
