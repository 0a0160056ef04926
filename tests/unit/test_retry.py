import asyncio
import time

from worker.retry import Backoff, backoff_delay


def test_delay_doubles_up_to_the_ceiling() -> None:
    assert [backoff_delay(n, 0.5, 5.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_stays_between_half_and_the_whole_delay() -> None:
    for attempt in range(8):
        ceiling = min(10.0, 0.5 * 2**attempt)
        for _ in range(50):
            assert ceiling / 2 <= backoff_delay(attempt, 0.5, 10.0, jitter=True) <= ceiling


def test_retry_after_raises_the_delay_but_never_past_the_maximum() -> None:
    assert backoff_delay(0, 0.5, 10.0, retry_after=3.0) == 3.0
    assert backoff_delay(0, 0.5, 10.0, retry_after=60.0) == 10.0
    # With jitter too (the remote engine's requests): the server's wish wins over the random part.
    assert backoff_delay(0, 0.5, 10.0, jitter=True, retry_after=3.0) == 3.0
    assert backoff_delay(3, 0.5, 10.0, jitter=True, retry_after=60.0) == 10.0
    assert Backoff(0.5, 10.0, jitter=True).next_delay(retry_after=3.0) == 3.0


def test_the_last_wait_is_cut_at_the_deadline() -> None:
    backoff = Backoff(base_s=10.0, max_s=10.0, deadline_s=0.2)
    assert backoff.next_delay() <= 0.2
    assert backoff.failures == 1
    assert not backoff.exhausted()
    time.sleep(0.25)
    assert backoff.exhausted()
    assert backoff.next_delay() == 0.0


def test_wait_sleeps_and_counts() -> None:
    backoff = Backoff(base_s=0.01, max_s=0.02)
    slept = asyncio.run(backoff.wait()) + asyncio.run(backoff.wait())
    assert backoff.failures == 2
    assert slept == 0.03
