"""Is the new code slower than the old? The verdict for one job.

The benchmark runs each job on this tree's volume and on the baseline's twin,
back to back or at the same time (run-bench.sh --together), ROUNDS times,
and takes one IOPS ratio (new / old) per round. On this machine one round
can be off by a factor of 1.5 either way (the host's other work, a TCG
guest, where the scheduler puts fio), so no single ratio, and no mean of a
few, settles anything. The verdict uses the median of the ratios and a
distribution-free confidence interval for it, the one the sign test gives:
between the j-th smallest and the j-th largest ratio, for the largest j the
binomial tail allows. It assumes nothing about the noise's shape beyond
rounds being independent, and one wild round moves it by one rank at most.

A job holds when the interval shows that it is not slower by more than the
margin (its low end is at least 1 - margin) and does not show it slower at
all (its high end is at least 1). Six rounds are the fewest that give a 95%
interval.
"""
from math import comb
import statistics

MARGIN = 0.10
CONFIDENCE = 0.95


def median_interval(ratios, confidence=CONFIDENCE):
    """(low, high, coverage): order statistics j and n+1-j of the ratios,
    with j the largest for which P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2;
    coverage is what that interval achieves (at least `confidence`). None when
    there are too few ratios for any interval at that confidence."""
    r = sorted(ratios)
    n = len(r)
    alpha = (1.0 - confidence) / 2.0
    j, below = 0, 0.0  # below = P(B <= j - 1)
    while j < n and below + comb(n, j) / 2.0**n <= alpha:
        below += comb(n, j) / 2.0**n
        j += 1
    if j == 0:
        return None
    return r[j - 1], r[n - j], 1.0 - 2.0 * below


def verdict(ratios, margin=MARGIN, confidence=CONFIDENCE):
    """A dict: median, low, high, coverage, verdict, holds. The verdicts:
    'faster' (the whole interval above 1), 'same' (inside [1 - margin, ...]
    and reaching 1), 'slower' (the whole interval below 1), 'not shown' (the
    interval reaches below 1 - margin: too noisy to rule out a loss),
    'too few rounds'."""
    out = {"median": statistics.median(ratios) if ratios else float("nan"),
           "low": float("nan"), "high": float("nan"), "coverage": 0.0}
    interval = median_interval(ratios, confidence)
    if interval is None:
        return dict(out, verdict="too few rounds", holds=False)
    out["low"], out["high"], out["coverage"] = interval
    if out["high"] < 1.0:
        v = "slower"
    elif out["low"] < 1.0 - margin:
        v = "not shown"
    elif out["low"] > 1.0:
        v = "faster"
    else:
        v = "same"
    return dict(out, verdict=v, holds=v in ("faster", "same"))
