"""Customer lifetime value: the BG/NBD purchase model and the Gamma-Gamma spend model.

The published likelihoods, fitted by maximum likelihood with SciPy:
- BG/NBD: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way".
- Gamma-Gamma: Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value".
Inputs per customer are the usual RFM summary: ``x`` repeat purchases, ``t_x`` time of the
last purchase and ``T`` age, both measured from the first purchase, and ``m`` the mean value
of the repeat purchases. The test suite checks the fit against the papers' CDNOW figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

Array = npt.NDArray[np.float64]
LOG_PARAM_BOUND: Final = 15.0  # parameters stay within e^-15 .. e^15
_NO_DROPOUT: Final = 1e-6  # mean dropout probability below which BG/NBD is plain NBD


@dataclass(frozen=True, slots=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, x: Array, t_x: Array, big_t: Array) -> Array:
        """Probability that each customer has not yet dropped out."""
        ratio = np.where(
            x > 0,
            self.a
            / np.maximum(self.b + x - 1, 1e-12)
            * ((self.alpha + big_t) / (self.alpha + t_x)) ** (self.r + x),
            0.0,
        )
        return np.asarray(1.0 / (1.0 + ratio), dtype=np.float64)

    def expected_purchases(self, t: float, x: Array, t_x: Array, big_t: Array) -> Array:
        """Expected purchase days in the next ``t`` days, given each customer's history.

        When the fit finds (almost) no dropout (a / (a + b) below 1e-6, as for shoppers who
        all come back daily), the closed form cancels catastrophically; its limit, the NBD
        model's ``(r + x) / (alpha + T) * t``, is used instead. At most one purchase day per
        day: results are capped at ``t``."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        if a / (a + b) < _NO_DROPOUT:
            expected = (r + x) / (alpha + big_t) * t
        else:
            hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + big_t + t))
            head = (a + b + x - 1) / (a - 1)
            body = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp
            expected = head * body * self.p_alive(x, t_x, big_t)
        return np.asarray(np.clip(expected, 0.0, t), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class GammaGamma:
    p: float
    q: float
    gamma: float

    def expected_spend(self, x: Array, m: Array) -> Array:
        """Expected value of a customer's future purchases (population mean if x = 0).
        The mean exists only for q > 1; NaN where the fit gives none."""
        p, q, gamma = self.p, self.q, self.gamma
        if q <= 1:
            return np.full_like(x, np.nan, dtype=np.float64)
        conditional = p * (gamma + x * m) / (p * x + q - 1)
        return np.asarray(np.where(x > 0, conditional, p * gamma / (q - 1)), dtype=np.float64)


def bgnbd_log_likelihood(
    params: Array, x: Array, t_x: Array, big_t: Array, weights: Array | None = None
) -> float:
    """Log-likelihood of the customers (``weights``: how many customers each row stands for)."""
    r, alpha, a, b = params
    base = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    no_dropout = special.betaln(a, b + x) - special.betaln(a, b) - (r + x) * np.log(alpha + big_t)
    repeat = x > 0
    dropout = np.full_like(x, -np.inf)
    dropout[repeat] = (
        special.betaln(a + 1, b + x[repeat] - 1)
        - special.betaln(a, b)
        - (r + x[repeat]) * np.log(alpha + t_x[repeat])
    )
    each = base + np.logaddexp(no_dropout, dropout)
    return float(np.sum(each if weights is None else weights * each))


def gamma_gamma_log_likelihood(
    params: Array, x: Array, m: Array, weights: Array | None = None
) -> float:
    p, q, gamma = params
    px = p * x
    each = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + m * x)
    )
    return float(np.sum(each if weights is None else weights * each))


def _distinct(*columns: Array) -> tuple[list[Array], Array]:
    """The distinct rows of ``columns`` and how often each occurs: the likelihoods depend on
    a customer only through these values, and with day-grained recency a few hundred
    thousand customers share some ten thousand of them (a fit 20x faster, same optimum)."""
    rows, counts = np.unique(np.column_stack(columns), axis=0, return_counts=True)
    return [rows[:, i] for i in range(len(columns))], counts.astype(np.float64)


def _fit(objective: Callable[[Array], float], start: Array) -> Array:
    """Maximise a log-likelihood over positive parameters (optimised on the log scale)."""

    # Tolerances are relative to the likelihood's size: absolute ones on a sum over many
    # customers can never be met, and the search would run to its iteration limit.
    at_start = objective(start)
    scale = abs(at_start) if np.isfinite(at_start) and at_start != 0 else 1.0

    def negative(log_params: Array) -> float:
        value = objective(np.exp(log_params))
        return -float(value) / scale if np.isfinite(value) else 1e300

    result = optimize.minimize(
        negative,
        np.log(start),
        method="Nelder-Mead",
        # Little history leaves the likelihood flat in some direction: bounds keep the
        # search from walking off to parameters whose predictions overflow.
        bounds=[(-LOG_PARAM_BOUND, LOG_PARAM_BOUND)] * len(start),
        options={"maxiter": 20_000, "xatol": 1e-8, "fatol": 1e-10},
    )
    return np.asarray(np.exp(result.x), dtype=np.float64)


def fit_bgnbd(x: Array, t_x: Array, big_t: Array) -> BgNbd:
    (ux, ut_x, ubig_t), weights = _distinct(x, t_x, big_t)
    r, alpha, a, b = _fit(
        lambda params: bgnbd_log_likelihood(params, ux, ut_x, ubig_t, weights),
        np.array([1.0, max(float(np.mean(big_t)), 1.0), 1.0, 1.0]),
    )
    return BgNbd(float(r), float(alpha), float(a), float(b))


def fit_gamma_gamma(x: Array, m: Array) -> GammaGamma:
    """Fit on customers with repeat purchases of positive value only."""
    keep = (x > 0) & (m > 0)
    (ux, um), weights = _distinct(x[keep], m[keep])
    p, q, gamma = _fit(
        lambda params: gamma_gamma_log_likelihood(params, ux, um, weights),
        np.array([1.0, 2.0, max(float(np.mean(m[keep])), 1.0)]),
    )
    return GammaGamma(float(p), float(q), float(gamma))
