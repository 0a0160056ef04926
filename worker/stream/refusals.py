"""Which write errors are the broker refusing *this record* for good, and how to name them.

A record the broker refuses for something in the record itself (too large for the topic's
``max.message.bytes``, no key for a compacted topic, a timestamp out of range) is refused again
however often it is retried: it goes to the dead-letter topic with the reason ``output_rejected``.
A permission the broker denies (an ACL missing) is about the worker's principal, not the record,
and no retry changes it: it stops the worker at once, naming the ACL (``not_authorized``; the
policy is ``StreamRunner.rewind``'s). Every other failure (the broker unreachable, a leader
moving) is about the worker or the cluster and may pass: the partition is rewound and retried, a
bounded number of times (see ``StreamRunner.rewind``).

The broker refuses a whole produce batch at once, so a refusal names a *suspect*: a record that
shared a batch with the culprit is refused too. Suspects are therefore written again alone,
where a refusal can only be their own.
"""

from __future__ import annotations

from aiokafka.errors import (
    BrokerResponseError,
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    GroupAuthorizationFailedError,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
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


# The ACL each denial asks for (resource and operation, in the terms of kafka-acls and the admin API).
_ACL_NEEDED: tuple[tuple[type[BrokerResponseError], str], ...] = (
    (TopicAuthorizationFailedError, "WRITE on the topic"),
    (TransactionalIdAuthorizationFailed, "WRITE on the TransactionalId (a PREFIXED ACL on "
                                         "NER_TRANSACTIONAL_ID_PREFIX covers the id of every input partition)"),
    (GroupAuthorizationFailedError, "READ on the consumer group NER_GROUP_ID"),
    (ClusterAuthorizationFailedError, "IDEMPOTENT_WRITE on the cluster (or WRITE on a topic, which implies it)"),
)


class NotAuthorizedError(RuntimeError):
    """The broker denied the worker a permission; the message names the ACL that grants it."""


class RefusedDeadLetterError(RuntimeError):
    """The broker refuses a dead letter for good: nowhere is left to put the record."""


def refused_for_good(error: BaseException) -> bool:
    """Whether ``error`` is a refusal that no retry and no restart gets past: a permission denied,
    or a dead letter that the dead-letter topic will not take."""
    return isinstance(error, (NotAuthorizedError, RefusedDeadLetterError))


def not_authorized(error: BaseException | None, *, reading: bool = False) -> str | None:
    """What permission the broker denied and which ACL grants it; None when ``error`` is no denial.

    ``reading``: the error came from consuming (a topic then needs READ, not WRITE)."""
    for kind, needed in _ACL_NEEDED:
        if isinstance(error, kind):
            if reading and kind is TopicAuthorizationFailedError:
                needed = "READ on the topic"
            names = [str(name) for arg in error.args
                     for name in (arg if isinstance(arg, list | tuple | set) else [arg])]
            named = ", ".join(names) or "the request"
            return (f"not authorized: the broker answered {kind.message} ({kind.errno}) for {named}; "
                    f"the worker's principal needs {needed}")
    return None
