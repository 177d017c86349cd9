"""One MAD-based robust scale (``noise.robust_scales``) for the whole stats package: the 1-D
``robust_scale``, the per-block scale inside ``history_phi`` and the placebos' local scales give
the numbers their three former spellings gave (within 1e-12)."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.stats import noise, placebo


def _old_1d(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if x.size < 2:
        return 0.0
    s = 1.4826 * float(np.median(np.abs(x - np.median(x))))
    return s if s > 0 else float(np.std(x))


def _old_rows(e: np.ndarray) -> np.ndarray:
    full = not np.isnan(e).any()
    med = (lambda a: np.median(a, axis=1)) if full else (lambda a: np.nanmedian(a, axis=1))
    s = 1.4826 * med(np.abs(e - med(e)[:, None]))
    return np.where(s > 0, s, (np.std if full else np.nanstd)(e, axis=1))


def _old_columns(ref: np.ndarray) -> np.ndarray:
    scale = 1.4826 * np.median(np.abs(ref - np.median(ref, axis=0)), axis=0)
    return np.where(scale > 0, scale, np.std(ref, axis=0))


def _cases(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    heavy = rng.standard_t(2.5, size=(6, 301)) * 3.0 + 10.0
    flat = np.ones((3, 40))
    flat[1, ::7] = 2.0  # MAD 0, standard deviation not
    gappy = rng.normal(size=(5, 256))
    gappy[rng.random(gappy.shape) < 0.2] = np.nan
    return [heavy, flat, gappy, rng.normal(size=(4, 257)), rng.normal(size=(2, 2))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_scale_gives_the_former_numbers(seed: int) -> None:
    for x in _cases(seed):
        np.testing.assert_allclose(noise.robust_scales(x), _old_rows(x), rtol=1e-12, atol=1e-12)
        for row in x:
            assert noise.robust_scale(row) == pytest.approx(_old_1d(row), rel=1e-12, abs=1e-12)
        if not np.isnan(x).any():
            np.testing.assert_allclose(noise.robust_scales(x), _old_columns(x.T), rtol=1e-12, atol=1e-12)
    assert noise.robust_scale(np.array([1.0, np.nan])) == 0.0  # fewer than two finite values


def test_gaussian_scale_is_the_standard_deviation() -> None:
    x = np.random.default_rng(3).normal(0.0, 2.0, size=(1, 20_000))
    assert noise.robust_scales(x)[0] == pytest.approx(2.0, rel=0.03)


def test_placebo_local_scales_are_the_former_column_scales() -> None:
    """(history_phi's numbers are pinned with the whole pipeline in test_stats_reference.py.)"""
    rng = np.random.default_rng(4)
    plan = np.arange(60)
    x = rng.normal(size=(60, 9))
    x[:, 3] = 1.0  # a flat column: MAD and standard deviation 0
    xn = np.ones((60, 1))
    _, scale = placebo._whitened(x, plan, 0.3, 40, xn)
    u = noise.ar1_transform(plan, x, 0.3)
    u = u - xn @ (np.linalg.pinv(xn[:40]) @ u[:40])
    np.testing.assert_allclose(scale, _old_columns(u[:40]), rtol=1e-12, atol=1e-12)
