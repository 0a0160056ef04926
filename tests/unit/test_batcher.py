import time

from worker.stream.batcher import Batcher


def test_batch_respects_document_and_token_limits() -> None:
    batcher: Batcher[str] = Batcher(max_documents=3, max_tokens=100, max_wait_s=10)
    for name, tokens in (("a", 40), ("b", 40), ("c", 40), ("d", 10)):
        batcher.add(name, tokens)
    assert batcher.due()
    assert batcher.take() == ["a", "b"]  # c would pass the token budget
    assert batcher.take() == ["c", "d"]
    assert len(batcher) == 0 and batcher.tokens == 0


def test_an_oversized_document_still_forms_a_batch_alone() -> None:
    batcher: Batcher[str] = Batcher(max_documents=8, max_tokens=10, max_wait_s=10)
    batcher.add("huge", 500)
    assert batcher.take() == ["huge"]


def test_a_partial_batch_is_due_after_the_wait() -> None:
    batcher: Batcher[str] = Batcher(max_documents=8, max_tokens=100, max_wait_s=0.05)
    batcher.add("a", 1)
    assert not batcher.due()
    time.sleep(0.06)
    assert batcher.due()


def test_remove_drops_items_of_revoked_partitions() -> None:
    batcher: Batcher[str] = Batcher(max_documents=8, max_tokens=100, max_wait_s=1)
    batcher.add("p0-a", 5)
    batcher.add("p1-a", 7)
    assert batcher.remove(lambda item: item.startswith("p0")) == 1
    assert batcher.tokens == 5
    assert batcher.take() == ["p0-a"]
