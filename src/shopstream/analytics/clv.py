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
        """Expected value of a customer's future purchases (population mean if x = 0)."""
        p, q, gamma = self.p, self.q, self.gamma
        conditional = p * (gamma + x * m) / (p * x + q - 1)
        return np.asarray(np.where(x > 0, conditional, p * gamma / (q - 1)), dtype=np.float64)


def bgnbd_log_likelihood(params: Array, x: Array, t_x: Array, big_t: Array) -> float:
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
    return float(np.sum(base + np.logaddexp(no_dropout, dropout)))


def gamma_gamma_log_likelihood(params: Array, x: Array, m: Array) -> float:
    p, q, gamma = params
    px = p * x
    return float(
        np.sum(
            special.gammaln(px + q)
            - special.gammaln(px)
            - special.gammaln(q)
            + q * np.log(gamma)
            + (px - 1) * np.log(m)
            + px * np.log(x)
            - (px + q) * np.log(gamma + m * x)
        )
    )


def _fit(objective: Callable[[Array], float], start: Array) -> Array:
    """Maximise a log-likelihood over positive parameters (optimised on the log scale)."""

    def negative(log_params: Array) -> float:
        value = objective(np.exp(log_params))
        return -float(value) if np.isfinite(value) else 1e300

    result = optimize.minimize(
        negative,
        np.log(start),
        method="Nelder-Mead",
        options={"maxiter": 20_000, "xatol": 1e-8, "fatol": 1e-10},
    )
    return np.asarray(np.exp(result.x), dtype=np.float64)


def fit_bgnbd(x: Array, t_x: Array, big_t: Array) -> BgNbd:
    r, alpha, a, b = _fit(
        lambda params: bgnbd_log_likelihood(params, x, t_x, big_t),
        np.array([1.0, max(float(np.mean(big_t)), 1.0), 1.0, 1.0]),
    )
    return BgNbd(float(r), float(alpha), float(a), float(b))


def fit_gamma_gamma(x: Array, m: Array) -> GammaGamma:
    """Fit on customers with repeat purchases of positive value only."""
    keep = (x > 0) & (m > 0)
    p, q, gamma = _fit(
        lambda params: gamma_gamma_log_likelihood(params, x[keep], m[keep]),
        np.array([1.0, 2.0, max(float(np.mean(m[keep])), 1.0)]),
    )
    return GammaGamma(float(p), float(q), float(gamma))
