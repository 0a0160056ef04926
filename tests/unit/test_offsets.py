import pytest
from aiokafka import TopicPartition

from worker.stream.offsets import OffsetTracker, PartitionProgress

TP = TopicPartition("in", 0)


def test_commit_position_stops_at_the_first_unacknowledged_record() -> None:
    progress = PartitionProgress()
    for offset in (10, 11, 12, 13):
        progress.track(offset)
    progress.ack(12)
    progress.ack(13)
    assert progress.committable() is None
    progress.ack(10)
    assert progress.committable() == 11
    progress.ack(11)
    assert progress.committable() == 14
    assert progress.pending == 0


def test_gaps_in_offsets_are_fine() -> None:
    progress = PartitionProgress()
    progress.track(5)
    progress.track(9)  # compacted topics and transaction markers leave gaps
    progress.ack(9)
    progress.ack(5)
    assert progress.committable() == 10


def test_out_of_order_tracking_is_refused() -> None:
    progress = PartitionProgress()
    progress.track(3)
    with pytest.raises(ValueError):
        progress.track(3)


def test_committed_position_is_not_offered_twice() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    tracker.progress(TP).track(0)
    tracker.progress(TP).ack(0)
    assert tracker.committable() == {TP: 1}
    tracker.mark_committed({TP: 1})
    assert tracker.committable() == {}


def test_a_revoked_partition_ignores_late_acknowledgements() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    progress = tracker.progress(TP)
    progress.track(0)
    tracker.revoke([TP])
    progress.ack(0)
    assert progress.committable() is None
    assert not tracker.is_assigned(TP)
    assert tracker.pending() == 0
