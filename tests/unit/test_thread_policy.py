"""The thread policy under CPU contention, with made-up step timings: a busy core makes the full
thread count 30 times slower (as measured with another llama.cpp on the same 2 cores), one thread
only a little slower."""

from __future__ import annotations

from appliance.engine.tuning.threads import (
    EXPLORE_BUDGET,
    EXPLORE_EVERY,
    FALLBACK_S,
    FREED_BUDGET,
    PROBE_EVERY_S,
    ThreadPolicy,
)


def run(policy: ThreadPolicy, steps: int, cost_ms: dict[int, float]) -> list[int]:
    used = []
    for _ in range(steps):
        n = policy.choose()
        used.append(n)
        policy.observe(n, cost_ms[n] / 1000 * 4, rows=4)
    return used


def seconds(used: list[int], cost_ms: dict[int, float]) -> float:
    return sum(cost_ms[n] / 1000 * 4 for n in used)


QUIET = {1: 18.0, 2: 10.0}
BUSY = {1: 21.0, 2: 570.0}


def test_quiet_machine_keeps_every_thread() -> None:
    policy = ThreadPolicy(most=2)
    used = run(policy, 500, QUIET)
    assert policy.current == 2 and used.count(2) > 0.9 * len(used)


def test_contention_moves_to_fewer_threads_and_back() -> None:
    policy = ThreadPolicy(most=2)
    run(policy, 200, QUIET)
    used = run(policy, 300, BUSY)
    assert policy.current == 1
    # After the first exploration round found one thread cheaper, nearly every step uses it.
    assert used[-200:].count(1) > 190
    # Back to both threads once quiet, within the time that pays for the last costly round
    # (one 2.3 s step at 2 threads: 2.2 s over one thread's step, so 44 s) and one more round.
    used = run(policy, 1000, QUIET)
    assert policy.current == 2
    assert seconds(used[: used.index(2)], QUIET) < 2.3 / EXPLORE_BUDGET + EXPLORE_EVERY * 4 * QUIET[1] / 1000


def test_exploring_under_contention_costs_a_small_share_of_the_time() -> None:
    """Measured before: 3 steps of ~3 s at 2 threads every 64 one-thread steps of 14 ms, two thirds of the time."""
    policy = ThreadPolicy(most=2)
    run(policy, 12, BUSY)
    used = run(policy, 5000, BUSY)
    spent, ideal = seconds(used, BUSY), seconds([1] * len(used), BUSY)  # ideal: one thread throughout
    assert used.count(2) >= 1  # it still looks
    assert spent < (1 + 2 * EXPLORE_BUDGET) * ideal


def test_a_clearly_dearer_count_is_tried_for_one_step_only() -> None:
    policy = ThreadPolicy(most=2)
    run(policy, 12, BUSY)
    used = run(policy, 2 * EXPLORE_EVERY, BUSY)
    assert "22" not in "".join(map(str, used))


def test_trying_on_a_quiet_machine_costs_about_one_step_in_64() -> None:
    """One thread costs 1.6-1.7x two on a quiet 2-core Xeon: a try of it needs one step to tell."""
    policy = ThreadPolicy(most=2)
    quiet = {1: 17.0, 2: 10.0}
    run(policy, 100, quiet)
    used = run(policy, 64 * 50, quiet)
    assert used.count(1) <= 55
    assert seconds(used, quiet) < 1.015 * seconds([2] * len(used), quiet)


def test_a_batch_growing_from_one_row_to_eight_keeps_every_thread() -> None:
    """Step times on a quiet 2-core Xeon (ms). Per row, one thread at 8 rows is cheaper than two
    threads at one row: with costs blended over batch sizes, a try of one thread on the first
    8-row step looked like a win and the engine ran 64 steps on one thread (measured: 70 of 511)."""
    step_ms = {1: {1: 18.5, 2: 11.2}, 8: {1: 75.0, 2: 49.0}}
    for offset in range(EXPLORE_EVERY):  # wherever the batch grows between two tries
        policy = ThreadPolicy(most=2)
        for rows, steps in ((1, 200 + offset), (8, 300), (1, 300)):
            used = []
            for _ in range(steps):
                n = policy.choose()
                used.append(n)
                policy.observe(n, step_ms[rows][n] / 1000, rows=rows)
            assert policy.current == 2
            assert used.count(1) <= 6  # a one-step try every 64 steps


def test_prompt_steps_use_the_current_count_and_never_explore() -> None:
    policy = ThreadPolicy(most=2)
    run(policy, 30, QUIET)
    before = (policy._steps, policy._since_s)
    assert {policy.choose(prefill=True) for _ in range(10 * EXPLORE_EVERY)} == {2}
    assert (policy._steps, policy._since_s) == before


def test_contention_from_the_first_step_is_left_within_a_few_steps() -> None:
    """Before, the first exploration came after 64 steps: minutes at half a second a step."""
    policy = ThreadPolicy(most=2)
    used = run(policy, 12, BUSY)
    assert policy.current == 1 and used[-3:] == [1, 1, 1]


def test_contention_arriving_is_explored_at_the_next_step() -> None:
    policy = ThreadPolicy(most=2)
    run(policy, 30, QUIET)
    used = run(policy, 4, BUSY)
    assert used[1] == 1  # one slow step, then the other count is tried at once


def test_an_explicit_thread_count_is_never_changed() -> None:
    policy = ThreadPolicy(most=2, fixed=True)
    used = run(policy, 300, BUSY)
    assert set(used) == {2} and policy.current == 2


def test_candidates_stay_few_on_big_machines() -> None:
    assert ThreadPolicy(most=2).candidates() == [1, 2]
    assert ThreadPolicy(most=64).candidates() == [1, 2, 3, 4, 8, 16, 32, 64]


class Cores:
    """A stand-in for hive/idle_cpu.py: the idle cores the test says there are."""

    def __init__(self, free: float) -> None:
        self.free = free

    def __call__(self) -> float:
        return self.free


def test_no_idle_core_means_no_try_with_more_threads() -> None:
    """With the idle cores read, a busy neighbour costs no 2-thread steps at all until the
    fallback, where the budget alone let one through every so often."""
    cores = Cores(2.0)
    policy = ThreadPolicy(most=2, idle=cores)
    run(policy, 200, QUIET)
    cores.free = 0.0  # a neighbour takes both cores
    run(policy, 12, BUSY)
    assert policy.current == 1
    steps = int(0.9 * FALLBACK_S / (BUSY[1] * 4 / 1000))  # most of the fallback's time at one thread
    assert run(policy, steps, BUSY).count(2) == 0
    # The fallback still tries, in case the counters mislead (a CPU quota, say).
    assert 2 in run(policy, steps, BUSY)


def test_idle_cores_coming_back_bring_every_thread_back_at_once() -> None:
    cores = Cores(0.0)
    policy = ThreadPolicy(most=2, idle=cores)
    run(policy, 12, BUSY)
    run(policy, 2000, BUSY)  # long enough for a costly round to have put the next one far off
    assert policy.current == 1
    cores.free = 0.9  # the neighbour stopped: the core we leave free is idle again
    used = run(policy, 2000, QUIET)
    assert policy.current == 2
    # The last round (the fallback's, one 2.3 s step) put the next off by 2.2 / FREED_BUDGET s, not
    # 2.2 / EXPLORE_BUDGET (44 s) as without the probe.
    assert seconds(used[: used.index(2)], QUIET) <= 2.3 / FREED_BUDGET + PROBE_EVERY_S


def test_a_neighbour_that_comes_and_goes_sets_off_few_tries() -> None:
    """Idle readings that swing between busy and free every half second: tries with more threads
    stay within the budget for a core coming free."""
    cores = Cores(0.0)
    policy = ThreadPolicy(most=2, idle=cores)
    run(policy, 12, BUSY)
    used: list[int] = []
    for i in range(400):  # 400 x 6 steps of 84 ms: about half a second each
        cores.free = 0.0 if i % 2 else 1.0
        used += run(policy, 6, BUSY)
    spent, ideal = seconds(used, BUSY), seconds([1] * len(used), BUSY)
    assert spent < (1 + 2 * FREED_BUDGET) * ideal


def test_a_quiet_machine_with_the_probe_behaves_as_without() -> None:
    policy = ThreadPolicy(most=2, idle=Cores(1.0))
    used = run(policy, 500, QUIET)
    assert policy.current == 2 and used.count(2) > 0.9 * len(used)


def test_idle_cores_come_from_the_allowed_cpus_counters(tmp_path, monkeypatch) -> None:
    """idle + iowait of the CPUs this process may use, per second, between two readings."""
    import os

    from appliance.engine.tuning import idle_cpu

    stat = tmp_path / "stat"
    ticks = os.sysconf("SC_CLK_TCK")

    def write(idle0: int, idle1: int, other: int) -> None:
        stat.write_text(
            f"cpu  1 2 3 {idle0 + idle1 + other} 0 0 0 0 0 0\n"
            f"cpu0 1 2 3 {idle0} 0 0 0 0 0 0\ncpu1 1 2 3 {idle1} 0 0 0 0 0 0\ncpu2 1 2 3 {other} 0 0 0 0 0 0\n"
            "intr 12345\n"
        )

    clock = iter([100.0, 101.0, 102.0])
    monkeypatch.setattr(idle_cpu.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(idle_cpu.os, "sched_getaffinity", lambda pid: {0, 1})
    probe = idle_cpu.IdleCpu(stat)
    write(0, 0, 0)
    assert probe.cores() is None  # one reading is no rate yet
    write(ticks // 2, ticks, 10 * ticks)  # cpu2 is not ours: its idle time does not count
    assert probe.cores() == 1.5 and probe.state() == "1.5 idle cores at the latest reading"
    stat.unlink()
    assert probe.cores() is None and not probe.readable and "not held back" in probe.state()


def test_the_policy_states_its_count_and_the_costs_it_chose_by() -> None:
    """The hive status's threads line: the count in use, and the running costs at the current batch size."""
    assert ThreadPolicy(most=4, fixed=True).state() == "4 threads on every step (a fixed count)"
    assert not ThreadPolicy(most=1).adapts and ThreadPolicy(most=2).adapts
    policy = ThreadPolicy(most=2)
    assert policy.state() == "2 of 2 threads (no step measured yet)"
    policy.observe(2, 0.010, 1)
    policy.observe(1, 0.020, 1)
    assert policy.state() == "2 of 2 threads (a row of a 1-row step: 1 threads 20.0 ms, 2 threads 10.0 ms)"
