"""Native-histogram samples into a real Prometheus over remote write, with no extra dependency.

``promtool tsdb create-blocks-from openmetrics`` cannot write native histograms, but the
remote-write receiver (``--web.enable-remote-write-receiver``) of a Prometheus started with
``--enable-feature=native-histograms`` takes them. A remote-write body is a snappy-compressed
``prometheus.WriteRequest`` protobuf (prompb/types.proto, prompb/remote.proto); both are simple
enough to write by hand here:

* protobuf: varints, zigzag ``sint``, length-delimited and packed repeated fields;
* snappy (block format, what remote write uses): the uncompressed length as a varint, then
  literal chunks only. That is valid snappy which simply does not compress, and it spares a
  C extension from PyPI.

Only integer (``count_int``, delta-encoded buckets) histograms with positive buckets are
written, as client libraries send them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import requests


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _len_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _double(field: int, x: float) -> bytes:
    return _key(field, 1) + struct.pack("<d", x)


def _uint(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(n)


def _sint(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(_zigzag(n))


def snappy_literal(data: bytes) -> bytes:
    """``data`` in snappy's block format as literal chunks (valid, uncompressed)."""
    out = bytearray(_varint(len(data)))
    for i in range(0, len(data), 65536):
        chunk = data[i : i + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + n.to_bytes(2, "little")
        out += chunk
    return bytes(out)


@dataclass(frozen=True)
class NativeSample:
    """One integer native histogram: observations per bucket index at ``schema``.

    Bucket ``i`` covers ``(2**(i * 2**-schema - 2**-schema), 2**(i * 2**-schema)]``, i.e. its upper
    bound is ``base**i`` with ``base = 2**(2**-schema)``.
    """

    timestamp_ms: int
    schema: int
    buckets: Mapping[int, int]  # bucket index -> cumulative-over-time count (a counter)
    total_sum: float

    @property
    def count(self) -> int:
        return sum(self.buckets.values())


def bucket_upper(schema: int, index: int) -> float:
    return float(2.0 ** (index * 2.0 ** -schema))


def bucket_index(schema: int, x: float) -> int:
    """The index of the bucket holding ``x`` > 0 (upper bound inclusive)."""
    return math.ceil(math.log2(x) * 2**schema - 1e-9)


def _histogram(s: NativeSample) -> bytes:
    body = _uint(1, s.count) + _double(3, s.total_sum) + _sint(4, s.schema) + _double(5, 0.0) + _uint(6, 0)
    indices = sorted(i for i, c in s.buckets.items() if c > 0)
    spans: list[tuple[int, int]] = []  # (offset from the previous span's end, length)
    prev_end: int | None = None
    for i in indices:
        if prev_end is not None and i == prev_end:
            spans[-1] = (spans[-1][0], spans[-1][1] + 1)
        else:
            spans.append((i - (prev_end if prev_end is not None else 0), 1))
        prev_end = i + 1
    for offset, length in spans:
        body += _len_field(11, _sint(1, offset) + _uint(2, length))
    deltas = bytearray()
    last = 0
    for i in indices:
        deltas += _varint(_zigzag(s.buckets[i] - last))
        last = s.buckets[i]
    if deltas:
        body += _len_field(12, bytes(deltas))
    body += _uint(14, 2)  # reset_hint NO: these are cumulative counters that never reset
    body += _key(15, 0) + _varint(s.timestamp_ms)
    return body


def write_request(series: Sequence[tuple[Mapping[str, str], Sequence[NativeSample]]]) -> bytes:
    """A ``WriteRequest`` body (protobuf, not yet compressed) of native-histogram series.

    Bodies concatenate into one request (protobuf merges repeated fields): send history in one
    request, since once the head holds "now" the receiver refuses samples older than about an
    hour ("out of bounds").
    """
    out = bytearray()
    for labels, samples in series:
        ts = bytearray(_labels(labels))
        for s in samples:
            ts += _len_field(4, _histogram(s))
        out += _len_field(1, bytes(ts))
    return bytes(out)


def _labels(labels: Mapping[str, str]) -> bytes:
    return b"".join(
        _len_field(1, _len_field(1, name.encode()) + _len_field(2, labels[name].encode())) for name in sorted(labels)
    )


def float_request(series: Sequence[tuple[Mapping[str, str], Sequence[tuple[int, float]]]]) -> bytes:
    """A ``WriteRequest`` body of plain float series: (labels, [(timestamp ms, value), ...])."""
    out = bytearray()
    for labels, points in series:
        ts = bytearray(_labels(labels))
        for t, v in points:
            ts += _len_field(2, _double(1, v) + _key(2, 0) + _varint(t))
        out += _len_field(1, bytes(ts))
    return bytes(out)


def remote_write(url: str, series: Sequence[tuple[Mapping[str, str], Sequence[NativeSample]]]) -> None:
    """POST native-histogram series to ``url``/api/v1/write; raises with the server's answer if refused."""
    post(url, write_request(series))


def remote_write_floats(url: str, series: Sequence[tuple[Mapping[str, str], Sequence[tuple[int, float]]]]) -> None:
    """POST plain float series (e.g. a summary's quantile series) to ``url``/api/v1/write."""
    post(url, float_request(series))


def post(url: str, body: bytes) -> None:
    """One remote-write request (snappy-framed protobuf); raises with the server's answer if refused."""
    resp = requests.post(
        url.rstrip("/") + "/api/v1/write",
        data=snappy_literal(body),
        headers={
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
        timeout=30,
    )
    if resp.status_code // 100 != 2:
        raise RuntimeError(f"remote write refused: HTTP {resp.status_code}: {resp.text.strip()[:500]}")
