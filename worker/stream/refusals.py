"""Which write errors are the broker refusing *this record* for good, and how to name them.

A record the broker refuses for something in the record itself (too large for the topic's
``max.message.bytes``, no key for a compacted topic, a timestamp out of range) is refused again
however often it is retried: it goes to the dead-letter topic with the reason ``output_rejected``.
Every other failure (the broker unreachable, a leader moving, an authorization missing) is about
the worker or the cluster, not the record: the partition is rewound and retried, a bounded
number of times (see ``StreamRunner.rewind``).

The broker refuses a whole produce batch at once, so a refusal names a *suspect*: a record that
shared a batch with the culprit is refused too. Suspects are therefore written again alone,
where a refusal can only be their own.
"""

from __future__ import annotations

from aiokafka.errors import (
    BrokerResponseError,
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnknownError,
)

# UnknownError: aiokafka 0.14 does not know INVALID_RECORD (87), the broker's answer to a
# keyless record for a compacted topic (older produce versions get CORRUPT_MESSAGE instead).
_RECORD_REFUSALS = (MessageSizeTooLargeError, RecordListTooLargeError, CorruptRecordException,
                    InvalidTimestampError, UnknownError)


def is_refusal(error: BaseException | None) -> bool:
    """True when the broker refused a record for something in the record (retrying cannot help)."""
    return isinstance(error, _RECORD_REFUSALS)


def describe(error: BaseException) -> str:
    """The broker's error for ``ner.error.message``: its name, code and meaning."""
    if isinstance(error, BrokerResponseError):
        if isinstance(error, UnknownError):
            return ("the broker refused the record with an error code this client does not name "
                    "(INVALID_RECORD, e.g. a record without a key for a compacted topic)")
        return f"the broker refused the record: {error.message} ({error.errno}): {error.description}"
    return f"the broker refused the record: {error!r}"
