"""Cross-request batching (models/batching.py): merged passes, right rows back to each caller, errors, order."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from models.batching import CoalescingRunner


class RecordingForward:
    """forward(batch) = batch * 2 (as float), recording each pass's batch; optionally held until released."""

    def __init__(self, hold_first: bool = False, delay: float = 0.0):
        self.batches: list[np.ndarray] = []
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.started = threading.Event()
        self.hold_first, self.delay = hold_first, delay

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        self.threads.add(threading.current_thread().name)
        self.started.set()
        if self.hold_first and len(self.batches) == 1:
            assert self.release.wait(10)
        time.sleep(self.delay)
        if (batch == 99).any():
            raise RuntimeError("poisoned batch")
        return batch.astype(np.float64) * 2


def wait_pending(runner: CoalescingRunner, count: int) -> None:
    deadline = time.time() + 10
    while len(runner._pending) < count:
        assert time.time() < deadline, "jobs never queued"
        time.sleep(0.005)


def in_thread(runner: CoalescingRunner, batch: np.ndarray, results: dict, key) -> threading.Thread:
    def target():
        try:
            results[key] = runner.run(batch)
        except RuntimeError as exc:
            results[key] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_single_caller_gets_its_own_rows():
    forward = RecordingForward()
    runner = CoalescingRunner(forward)
    out = runner.run(np.arange(6).reshape(3, 2))
    np.testing.assert_array_equal(out, np.arange(6).reshape(3, 2) * 2)
    assert runner.passes == 1


def test_waiting_callers_share_one_pass_and_each_gets_its_rows():
    forward = RecordingForward(hold_first=True)
    runner = CoalescingRunner(forward, max_images=64, slice_images=16)  # jobs of up to 8 images are small
    results: dict = {}
    first = in_thread(runner, np.full((1, 2), 0), results, "first")
    assert forward.started.wait(10)
    threads = [in_thread(runner, np.full((k, 2), k), results, k) for k in range(1, 6)]
    wait_pending(runner, 5)
    forward.release.set()
    for t in [first, *threads]:
        t.join(10)
    for k in range(1, 6):
        np.testing.assert_array_equal(results[k], np.full((k, 2), 2 * k))
    assert runner.passes == 2  # the held pass, then all five waiting jobs together
    assert len(forward.batches[1]) == 1 + 2 + 3 + 4 + 5


@pytest.mark.parametrize(("overtaken_seconds", "passes"), [
    (2.0, [1, 1, 8]),  # the 1-image job overtakes the 8-image one, and the cap splits the passes
    (0.0, [1, 8, 1]),  # everyone is overdue at once: arrival order
])
def test_small_jobs_go_first_until_a_job_has_been_overtaken_for_too_long(overtaken_seconds, passes):
    forward = RecordingForward(hold_first=True)
    runner = CoalescingRunner(forward, max_images=8, max_overtaken_seconds=overtaken_seconds)
    results: dict = {}
    first = in_thread(runner, np.zeros((1, 1)), results, "first")
    assert forward.started.wait(10)
    big = in_thread(runner, np.full((8, 1), 8), results, "big")
    wait_pending(runner, 1)
    small = in_thread(runner, np.full((1, 1), 1), results, "small")
    wait_pending(runner, 2)
    forward.release.set()
    for t in (first, big, small):
        t.join(10)
    assert [len(b) for b in forward.batches] == passes
    np.testing.assert_array_equal(results["big"], np.full((8, 1), 16))


def test_after_a_large_pass_a_waiting_small_job_goes_next_even_when_every_large_one_is_overdue():
    """Under a flood of large jobs every one of them was overdue, and a person's one image waited behind all of
    them (3 s for the Custom CNN, bench_soak.py --only mixed-flood). A large pass is now followed by the small
    jobs' pass whenever one waits; the overdue large jobs go after it, one slice's worth per pass (merged, they
    made a 64-image pass for the person's photo to wait for)."""
    forward = RecordingForward(hold_first=True)
    runner = CoalescingRunner(forward, max_images=64, slice_images=16, max_overtaken_seconds=0.0)
    results: dict = {}
    first = in_thread(runner, np.zeros((12, 1)), results, "first")
    assert forward.started.wait(10)
    bigs = [in_thread(runner, np.full((12, 1), k), results, k) for k in (1, 2)]
    wait_pending(runner, 2)
    small = in_thread(runner, np.full((1, 1), 5), results, "small")
    wait_pending(runner, 3)
    forward.release.set()
    for t in (first, *bigs, small):
        t.join(10)
    assert [len(b) for b in forward.batches] == [12, 1, 12, 12]
    np.testing.assert_array_equal(results["small"], np.full((1, 1), 10))


def test_an_error_reaches_every_job_in_the_pass_and_the_runner_recovers():
    forward = RecordingForward(hold_first=True)
    runner = CoalescingRunner(forward, max_images=64)
    results: dict = {}
    first = in_thread(runner, np.zeros((1, 1)), results, "first")
    assert forward.started.wait(10)
    poisoned = in_thread(runner, np.full((1, 1), 99), results, "poisoned")
    innocent = in_thread(runner, np.full((2, 1), 3), results, "innocent")
    wait_pending(runner, 2)
    forward.release.set()
    for t in (first, poisoned, innocent):
        t.join(10)
    assert isinstance(results["poisoned"], RuntimeError)
    assert isinstance(results["innocent"], RuntimeError)  # shared the failed pass
    np.testing.assert_array_equal(runner.run(np.full((2, 1), 3)), np.full((2, 1), 6))
    with pytest.raises(RuntimeError, match="poisoned"):
        runner.run(np.full((1, 1), 99))


def test_many_threads_all_get_correct_answers_and_passes_run_on_one_thread():
    forward = RecordingForward(delay=0.002)
    runner = CoalescingRunner(forward, max_images=16, name="demo")
    results: dict = {}
    threads = [in_thread(runner, np.full((1 + k % 4, 3), k), results, k) for k in range(40)]
    for t in threads:
        t.join(30)
    for k in range(40):
        np.testing.assert_array_equal(results[k], np.full((1 + k % 4, 3), 2 * k))
    assert runner.passes < 40  # some callers shared passes
    assert len(forward.threads) == 1 and next(iter(forward.threads)).startswith("demo-forward")


def test_a_large_batch_queues_as_slices_so_one_image_waits_for_one_slice_not_the_whole_batch():
    """A 64-image evaluation chunk used to run as one pass (about a second on the 2-core machine) while a person's
    one image waited behind it; it now queues as 16-image slices and the one image goes between two of them."""
    forward = RecordingForward(delay=0.05)
    runner = CoalescingRunner(forward, max_images=8, slice_images=16)
    big = np.arange(64, dtype=np.float32).reshape(64, 1)
    out: dict[str, np.ndarray] = {}
    finished: dict[str, float] = {}

    def run(name: str, batch: np.ndarray) -> None:
        out[name] = runner.run(batch)
        finished[name] = time.monotonic()

    bulk = threading.Thread(target=run, args=("bulk", big))
    bulk.start()
    assert forward.started.wait(5)
    run("one", np.array([[1000.0]], dtype=np.float32))
    bulk.join()
    assert max(len(b) for b in forward.batches) == 16
    assert finished["one"] < finished["bulk"]  # it did not wait for the whole batch
    np.testing.assert_array_equal(out["bulk"], big * 2)  # the slices' rows come back whole and in order
    np.testing.assert_array_equal(out["one"], [[2000.0]])


def test_a_small_jobs_pass_carries_no_slice_of_a_large_one():
    """Merged with a waiting 16-image slice, a person's one image paid for the slice's pass (the CNN's 96 views);
    small jobs now share passes only with other small ones, and the slice runs next."""
    forward = RecordingForward(hold_first=True)
    runner = CoalescingRunner(forward, max_images=64, slice_images=16)
    results: dict = {}
    first = in_thread(runner, np.zeros((1, 1)), results, "first")
    assert forward.started.wait(10)
    slice_ = in_thread(runner, np.full((16, 1), 5), results, "slice")
    wait_pending(runner, 1)
    ones = [in_thread(runner, np.full((1, 1), k), results, k) for k in (1, 2)]
    wait_pending(runner, 3)
    forward.release.set()
    for t in (first, slice_, *ones):
        t.join(10)
    assert [len(b) for b in forward.batches] == [1, 2, 16]
    np.testing.assert_array_equal(results["slice"], np.full((16, 1), 10))
    assert [results[k].item() for k in (1, 2)] == [2, 4]
