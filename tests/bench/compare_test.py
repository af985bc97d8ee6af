#!/usr/bin/env python3
"""Unit tests of the benchmark's old-against-new verdict (compare.py)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


class MedianInterval(unittest.TestCase):
    def test_ten_rounds_drop_one_from_each_end(self):
        # For B = Binomial(10, 1/2): P(B <= 1) = 11/1024 is within 0.025 and
        # P(B <= 2) = 56/1024 is not, so the interval runs from the 2nd
        # smallest ratio to the 2nd largest.
        low, high, coverage = compare.median_interval([float(i) for i in range(10, 0, -1)])
        self.assertEqual((low, high), (2.0, 9.0))
        self.assertAlmostEqual(coverage, 1 - 2 * 11 / 1024)

    def test_twelve_rounds_drop_two_from_each_end(self):
        low, high, coverage = compare.median_interval([float(i) for i in range(1, 13)])
        self.assertEqual((low, high), (3.0, 10.0))
        self.assertAlmostEqual(coverage, 1 - 2 * 79 / 4096)

    def test_six_rounds_are_the_fewest_at_95_percent(self):
        self.assertIsNone(compare.median_interval([1.0] * 5))
        self.assertEqual(compare.median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0])[:2], (1.0, 6.0))

    def test_coverage_is_never_below_the_confidence_asked(self):
        for n in range(6, 40):
            self.assertGreaterEqual(compare.median_interval([1.0] * n)[2], 0.95, n)


class Verdict(unittest.TestCase):
    def test_identical_code_with_little_noise_is_the_same(self):
        v = compare.verdict([0.97, 1.02, 0.99, 1.04, 0.95, 1.01, 1.0, 0.98, 1.03, 0.96])
        self.assertEqual(v["verdict"], "same")
        self.assertTrue(v["holds"])

    def test_a_small_loss_in_every_round_is_slower(self):
        # Inside the margin, but every round below 1: a loss shown is a loss.
        v = compare.verdict([0.95, 0.96, 0.94, 0.97, 0.95, 0.98, 0.96, 0.95, 0.97, 0.96])
        self.assertEqual(v["verdict"], "slower")
        self.assertFalse(v["holds"])

    def test_too_much_noise_shows_nothing(self):
        v = compare.verdict([0.6, 1.4, 0.7, 1.3, 0.8, 1.2, 0.75, 1.25, 0.65, 1.35])
        self.assertEqual(v["verdict"], "not shown")
        self.assertFalse(v["holds"])

    def test_one_wild_round_does_not_decide(self):
        v = compare.verdict([1.1, 1.2, 1.15, 0.3, 1.12, 1.18, 1.25, 1.1, 1.3, 1.16])
        self.assertEqual(v["verdict"], "faster")
        self.assertAlmostEqual(v["median"], 1.155)

    def test_few_rounds_never_hold(self):
        v = compare.verdict([1.5, 1.6, 1.7])
        self.assertEqual(v["verdict"], "too few rounds")
        self.assertFalse(v["holds"])


if __name__ == "__main__":
    unittest.main()
