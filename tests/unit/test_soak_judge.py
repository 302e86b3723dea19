"""make soak's judge (bench/soak/judge.py) with reloads: the slope between reloads and the
steps at reloads judged apart. Synthetic series shaped like the long run's (a SIP worker's
private memory: a step at each reload that shrinks to nothing, flat between, and a few
samples of old and new modules side by side right after each reload)."""
from __future__ import annotations

from bench.soak.judge import STEPS_JUDGED_FROM, judge_series

MIB = 1 << 20
SERIES = "kamailio.rss_anon/udp-0"          # tolerance: max(5 % of the level, 2 MiB)
PER_SEGMENT = 18                            # samples between two reloads (10 s apart, 180 s)
SPACING = 3000                              # requests between two samples


def run(steps: list[float], slope_per_sample: float = 0.0, spike: float = 0.0, base: float = 16 * MIB):
    """xs, ys, reloads_x of a run with a reload before each of `steps`' levels."""
    xs, ys, reloads, level, n = [], [], [], base, 0
    for segment in range(len(steps) + 1):
        if segment:
            reloads.append(xs[-1])
            level += steps[segment - 1]
        for i in range(PER_SEGMENT):
            xs.append(float(n * SPACING))
            ys.append(level + slope_per_sample * n + (spike if segment and i < 4 else 0.0))
            n += 1
    return xs, ys, reloads


SHRINKING = [8 * MIB, 2.6 * MIB, 0.2 * MIB, 1.0 * MIB, -0.1 * MIB, 0.0, 0.2 * MIB]   # the SBC run's udp-0-2


def test_steps_that_shrink_to_nothing_pass_when_the_reloads_are_known():
    xs, ys, reloads = run(SHRINKING, spike=1.5 * MIB)
    v = judge_series(SERIES, xs, ys, 0.0, reloads)
    assert v is not None and v.ok, v
    assert v.steps is not None and len(v.steps) == len(SHRINKING)
    assert abs(v.steps[0] - 8 * MIB) < 1 and abs(v.late_steps - 0.1 * MIB) < 1


def test_control_the_same_run_judged_as_one_slope_fails():
    """CONTROL: without the reloads (the judge of before) the steps are taken for a leak."""
    xs, ys, reloads = run(SHRINKING, spike=1.5 * MIB)
    v = judge_series(SERIES, xs, ys, 0.0)
    assert v is not None and not v.ok and v.steps is None


def test_a_reload_that_leaks_the_same_every_time_fails():
    xs, ys, reloads = run([1 * MIB] * 7)
    v = judge_series(SERIES, xs, ys, 0.0, reloads)
    assert v is not None and not v.ok, v
    assert v.late_steps > v.allowed and v.growth <= v.allowed      # the steps fail it, not the slope


def test_a_steady_leak_between_reloads_fails_although_the_steps_are_flat():
    # 3 MiB over the run, spread evenly: 8 segments of 18 samples
    xs, ys, reloads = run([0.0] * 7, slope_per_sample=3 * MIB / (8 * PER_SEGMENT))
    v = judge_series(SERIES, xs, ys, 0.0, reloads)
    assert v is not None and not v.ok and v.growth > v.allowed, v


def test_flat_between_and_at_reloads_passes():
    xs, ys, reloads = run([0.0] * 7, spike=3 * MIB)
    v = judge_series(SERIES, xs, ys, 0.0, reloads)
    assert v is not None and v.ok and abs(v.growth) < 1 and abs(v.late_steps) < 1, v


def test_with_too_few_reloads_the_steps_count_in_the_one_slope():
    steps = SHRINKING[:STEPS_JUDGED_FROM - 1]
    xs, ys, reloads = run(steps)
    v = judge_series(SERIES, xs, ys, 0.0, reloads)
    assert v is not None and v.steps is None and not v.ok      # 10.8 MiB of steps in the slope


def test_reloads_during_warm_up_are_not_judged():
    xs, ys, reloads = run(SHRINKING)
    warmup = reloads[-2] + 1            # only the last reload after warm-up: one slope, and flat
    v = judge_series(SERIES, xs, ys, warmup, reloads)
    assert v is not None and v.steps is None
