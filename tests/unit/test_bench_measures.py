"""The benchmark's arithmetic: percentiles of SIPp's millisecond samples, rates, ratios."""
import math

from bench.load import RunResult, percentile
from bench.report import meets, ratio
from bench.run import median_ok, round_rate


def test_percentile_interpolates_within_the_millisecond():
    # SIPp logs whole milliseconds; 0 stands for [0, 0.5) ms here, 1 for [0.5, 1.5) ...
    assert percentile([0] * 50 + [1] * 50, 50) == 0.5
    assert percentile([0] * 99 + [10], 99) == 0.5
    assert 9.5 <= percentile([0] * 98 + [10] * 2, 99) <= 10.5
    assert math.isnan(percentile([], 50))


def test_a_point_is_clean_when_the_median_run_had_no_failure():
    ok = RunResult("native", 100, 200, successful=200)
    failed = RunResult("native", 100, 200, successful=199, failed=1)
    short = RunResult("native", 100, 200, successful=150)          # calls never made count too
    assert median_ok([ok, ok, failed])
    assert not median_ok([ok, failed, short])


def test_rates_are_rounded_to_readable_steps():
    assert round_rate(1234) == 1250
    assert round_rate(456) == 460
    assert round_rate(42) == 40


def test_ratios_and_targets():
    assert ratio(110, 100) == 1.1
    assert ratio(1, 0) is None and ratio(float("nan"), 1) is None
    assert meets("cpu_per_1000", 1.15) and not meets("cpu_per_1000", 1.16)
    assert meets("max_rate", 0.95) and not meets("max_rate", 0.94)
    assert meets("route_time_extra_us", None) is None
