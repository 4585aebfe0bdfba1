"""Paired hypothesis tests: does a metric differ between two conditions over many prompts?

For each prompt i the metric is measured under condition A (e.g. clean) and B (e.g. with
heads ablated); the differences d_i = b_i - a_i are tested against 0 with

- a sign-flip permutation test (under H0 each d_i is as likely to be -d_i): exact over
  all 2^n sign patterns when that is at most `n_permutations`, else Monte Carlo with
  p = (1 + #{|T*| >= |T|}) / (1 + n_permutations);
- a paired t-test (`scipy.stats.ttest_rel`);
- Cohen's d for paired samples, d_z = mean(d) / sd(d);
- a bootstrap confidence interval of mean(d) (BCa, `scipy.stats.bootstrap`).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lookingglass.errors import InputError

Alternative = Literal["two-sided", "greater", "less"]


@dataclass
class HypothesisResult:
    """The outcome of a paired test of condition B against condition A; differences are
    B - A, and `alternative="greater"` tests mean(B - A) > 0."""

    conditions: tuple[str, str]
    values_a: np.ndarray
    values_b: np.ndarray
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    t_statistic: float
    t_pvalue: float
    permutation_pvalue: float
    n_permutations: int
    exact: bool
    cohens_d: float
    ci_low: float
    ci_high: float
    confidence: float
    alternative: str

    def significant(self, alpha: float = 0.05) -> bool:
        """True if both the permutation test and the t-test reject H0 at level `alpha`."""
        return self.permutation_pvalue < alpha and self.t_pvalue < alpha

    def __str__(self) -> str:
        a, b = self.conditions
        kind = "exact" if self.exact else f"{self.n_permutations} permutations"
        return (
            f"{b} - {a} over {self.n} prompts: mean {self.mean_diff:.4g} "
            f"({self.confidence:.0%} CI [{self.ci_low:.4g}, {self.ci_high:.4g}]); "
            f"{a} {self.mean_a:.4g}, {b} {self.mean_b:.4g}\n"
            f"permutation test ({kind}, {self.alternative}): p = {self.permutation_pvalue:.4g}\n"
            f"paired t-test: t = {self.t_statistic:.4g}, p = {self.t_pvalue:.4g}\n"
            f"Cohen's d (paired) = {self.cohens_d:.3f}"
        )


def paired_test(
    values_a: Sequence[float] | np.ndarray,
    values_b: Sequence[float] | np.ndarray,
    conditions: tuple[str, str] = ("a", "b"),
    n_permutations: int = 10_000,
    n_bootstrap: int = 10_000,
    confidence: float = 0.95,
    alternative: Alternative = "two-sided",
    seed: int = 0,
) -> HypothesisResult:
    """Test whether paired values differ (see the module docstring).

    Args:
        values_a, values_b: the metric per prompt under each condition (same length, >= 2).
        conditions: names of the two conditions.
        n_permutations: Monte Carlo permutations (exact enumeration if 2^n is at most this).
        n_bootstrap: bootstrap resamples for the confidence interval.
        confidence: the interval's confidence level.
        alternative: "two-sided", "greater" (B > A) or "less" (B < A).
        seed: seeds the permutations and the bootstrap.
    """
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise InputError(
            f"Need two equal-length 1-D samples of at least 2 values, got {a.shape} and {b.shape}."
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("The metric values must be finite.")
    if alternative not in ("two-sided", "greater", "less"):
        raise InputError(
            f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}."
        )
    from scipy import stats

    diffs = b - a
    rng = np.random.default_rng(seed)
    p_perm, exact, n_perm = _sign_flip_pvalue(diffs, n_permutations, alternative, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero-variance differences: t is nan
        t = stats.ttest_rel(b, a, alternative=alternative)
    sd = diffs.std(ddof=1)
    mean = float(diffs.mean())
    cohens_d = mean / sd if sd > 0 else (0.0 if mean == 0 else float(np.sign(mean) * np.inf))
    ci_low, ci_high = _bootstrap_ci(diffs, n_bootstrap, confidence, rng)
    return HypothesisResult(
        conditions=tuple(conditions),
        values_a=a,
        values_b=b,
        n=len(a),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        mean_diff=mean,
        t_statistic=float(t.statistic),
        t_pvalue=float(t.pvalue),
        permutation_pvalue=p_perm,
        n_permutations=n_perm,
        exact=exact,
        cohens_d=float(cohens_d),
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=confidence,
        alternative=alternative,
    )


def _sign_flip_pvalue(
    diffs: np.ndarray, n_permutations: int, alternative: str, rng: np.random.Generator
) -> tuple[float, bool, int]:
    n = len(diffs)
    observed = diffs.mean()
    exact = 2**n <= n_permutations
    if exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = rng.choice((1.0, -1.0), size=(n_permutations, n))
    null = signs @ diffs / n
    # A relative tolerance keeps ties (the observed statistic itself) counted despite rounding.
    tol = 1e-12 * max(1.0, abs(observed))
    if alternative == "two-sided":
        extreme = np.abs(null) >= abs(observed) - tol
    elif alternative == "greater":
        extreme = null >= observed - tol
    else:
        extreme = null <= observed + tol
    if exact:
        return float(extreme.mean()), True, len(signs)
    return float((1 + extreme.sum()) / (1 + n_permutations)), False, n_permutations


def _bootstrap_ci(
    diffs: np.ndarray, n_bootstrap: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    from scipy import stats

    if np.all(diffs == diffs[0]):
        return float(diffs[0]), float(diffs[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            (diffs,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_bootstrap,
            method="BCa",
            random_state=rng,
        )
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa can fail on tiny samples
        result = stats.bootstrap(
            (diffs,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_bootstrap,
            method="percentile",
            random_state=rng,
        )
        low, high = result.confidence_interval
    return float(low), float(high)


def hypothesis_experiment(
    bench: Any,
    metric: Callable[[Any, str], float],
    prompts: Sequence[Any],
    conditions: tuple[str, str] = ("clean", "ablated"),
    n_permutations: int = 10_000,
    n_bootstrap: int = 10_000,
    confidence: float = 0.95,
    alternative: Alternative = "two-sided",
    seed: int = 0,
    name: str | None = None,
):
    """The `Experiment` behind `@bench.test_hypothesis`: calling it evaluates
    `metric(prompt, condition)` for every prompt and both conditions, runs `paired_test`
    and logs the `HypothesisResult` (kind "hypothesis"), versioned by `metric`'s source."""
    from lookingglass.bench.experiment import Experiment

    if len(conditions) != 2:
        raise InputError(f"A paired test compares exactly two conditions, got {conditions!r}.")
    prompts = list(prompts)

    def run_test(
        prompts=prompts,
        conditions=tuple(conditions),
        n_permutations=n_permutations,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        alternative=alternative,
        seed=seed,
    ):
        values = {c: [] for c in conditions}
        for prompt in _progress(prompts, bench.progress, metric.__name__):
            for condition in conditions:
                values[condition].append(float(metric(prompt, condition)))
        return paired_test(
            values[conditions[0]],
            values[conditions[1]],
            conditions,
            n_permutations,
            n_bootstrap,
            confidence,
            alternative,
            seed,
        )

    # Recorded arguments are run_test's; the version is the metric's source.
    signature = inspect.signature(run_test)
    functools.update_wrapper(run_test, metric)
    run_test.__signature__ = signature
    return Experiment(
        run_test, lambda: bench.store, lambda: bench.model, name=name, kind="hypothesis"
    )


def _progress(items: Sequence[Any], enabled: bool, description: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, leave=False)
