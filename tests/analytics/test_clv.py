"""BG/NBD and Gamma-Gamma against the published CDNOW figures.

``data/cdnow_summary.csv``: the CDNOW sample summary (2,357 customers, weeks) used in Fader,
Hardie & Lee (2005) and Fader & Hardie (2013), as distributed with the MIT-licensed
``lifetimes`` package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from shopstream.analytics.clv import fit_bgnbd, fit_gamma_gamma

CDNOW = pl.read_csv(Path(__file__).parent / "data" / "cdnow_summary.csv")


def _columns() -> tuple[np.ndarray, ...]:
    return tuple(CDNOW[c].to_numpy().astype(np.float64) for c in ("x", "t_x", "T", "zbar"))


def test_bgnbd_matches_the_paper() -> None:
    x, t_x, big_t, _ = _columns()
    model = fit_bgnbd(x, t_x, big_t)
    # Fader, Hardie & Lee (2005): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426.
    assert (model.r, model.alpha, model.a, model.b) == pytest.approx(
        (0.243, 4.414, 0.793, 2.426), abs=2e-3
    )
    # Their worked example: x = 2, t_x = 30.43, T = 38.86 -> 1.226 purchases in 39 weeks.
    expected = model.expected_purchases(39, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert expected[0] == pytest.approx(1.226, abs=2e-3)
    alive = model.p_alive(np.array([0.0]), np.array([0.0]), np.array([38.86]))
    assert alive[0] == 1.0  # no repeat purchase: BG/NBD never counts them as dropped out


def test_gamma_gamma_matches_the_note() -> None:
    x, _, _, m = _columns()
    model = fit_gamma_gamma(x, m)
    # Fader & Hardie (2013): p = 6.25, q = 3.74, gamma = 15.44; mean spend of 946 customers.
    assert (model.p, model.q, model.gamma) == pytest.approx((6.25, 3.74, 15.44), abs=0.02)
    assert int(((x > 0) & (m > 0)).sum()) == 946
