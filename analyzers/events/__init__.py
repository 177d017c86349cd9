"""The deploy-event layer: what a deploy event is, who may send one, and where it is kept.

Modules (each usable alone)::

    schema      parse_event(): deploy-event/v1 validation, strict JSON, UTC timestamps
    signatures  sign() / verify(): Standard Webhooks HMAC signatures, key rotation
    sources     adapters from GitHub, GitLab, Argo CD, Spinnaker, Grafana shapes to deploy-event/v1
    store       open_store("sqlite:///..." | "postgresql://..."): idempotent, durable store
    send        send_event(): sign and POST an event (demo, users' scripts); a tested curl recipe
    loadgen     python -m analyzers.demo.loadgen: events/s and latency benchmark of the receiver

The HTTP receiver that ties them together is :mod:`analyzers.server.receiver`.
"""

from __future__ import annotations

from analyzers.events.schema import DeployEventIn, parse_event
from analyzers.events.signatures import sign, verify
from analyzers.events.store import Store, open_store

__all__ = ["DeployEventIn", "parse_event", "sign", "verify", "Store", "open_store"]
