"""A narrow patch to Faust's consumer, kept in one place (see RELIABILITY.md, "Faust issues").

A skipped record is not a processed one. Records fetched before a rebalance that reach a stream
after it are skipped by Faust (faust-streaming/faust#221, #223) and then *acked*
(`Stream._py_aiter`); an ack is Faust's "processed" mark, so the next commit may pass over a record
no agent handled, and if the partition stays with the same worker it is never read again (the chaos
suite lost a dead letter that way). Here a stale record is only let go of (`forget_unhandled`), and
its offset is kept as a *hole*: no offset of that partition is committed until a record at or
below the hole has been handled in the current generation, or the committed offset has passed it.
The hole matters most on a partition the group never committed: Faust's own guard against
committing over a gap at the head of the acked offsets (faust-streaming/faust#312) only works when
a committed offset is known (`if committed_offset:`), so the first records of a fresh partition
could be skipped and committed over (the chaos suite lost offset 0 of two partitions that way).
Where it works it is off by one and lets a commit pass a single unacked record at the head: on
topics with contiguous offsets the head must be acked before anything is committed (`_head_acked`).

A hole is only filled if the partition is read again from below it. After a rebalance Faust seeks
every partition to its committed offset, but aiokafka's `seek_to_committed` does nothing for a
partition with no committed offset, or offset 0 (`if offset and offset > 0`): its fetch position
stays after the records fetched in the last generation, and a record skipped as stale there was
never read again (found while chasing the lost master items of the next paragraph, as agents
began to wait for the global tables across rebalances). So after Faust's seek, each stream
partition without a committed offset is sought to its first offset, as a new consumer with
`auto_offset_reset=earliest` would, and that offset is what the agents' order check expects
first (`next_to_process`).

Flow control resumed while it is already running clears nothing. Faust's stream queues are
cleared whenever `app.flow_control.resume()` is called (mode's FlowControlQueue, clear_on_resume),
which is meant for records fetched before a rebalance suspended the flow. But recovery resumes the
flow early, then resumes the stream partitions, seeks them and calls `resume()` again
(`Recovery.on_recovery_completed`): records fetched during the seek, already past Faust's read
offset, were dropped from the agents' queues and never fetched again (the long chaos run lost the
first 8 items of a master partition that way, committed over by the head-gap rule above).
"""
from __future__ import annotations

import weakref
from collections import defaultdict

from faust import streams as faust_streams
from faust.transport.consumer import Consumer
from mode.utils.queues import FlowControlEvent

from app.topics import IN_ORDER_TOPICS

_faust_ack = Consumer.ack
_faust_new_offset = Consumer._new_offset
_faust_perform_seek = Consumer.perform_seek
_faust_init = Consumer.__init__
_mode_resume = FlowControlEvent.resume


def forget_unhandled(consumer: Consumer, message) -> None:
    """Let go of a delivered record without marking it processed: it is not committed, and a
    rebalance or a stop does not wait for it (see agents/streams.py)."""
    consumer._unacked_messages.discard(message)
    message.acked = True


def let_go_stale(consumer: Consumer, message) -> None:
    """A record fetched before the rebalance, not handled: let go of, and no offset of its
    partition is committed until it is read again (the hole, above)."""
    forget_unhandled(consumer, message)
    holes = consumer._stale_holes
    tp, offset = message.tp, message.offset
    if tp not in holes:
        consumer.log.info("skipped %s@%s fetched before the rebalance: no commit of it until it is read again",
                          tp, offset)
    holes[tp] = min(holes.get(tp, offset), offset)


def set_current_event(event) -> None:
    """Make `event` the one Faust's tables see as current (`faust.current_event()`): a table write
    goes to its partition. Faust's stream iterator sets this for every record it yields; our own
    record loop (agents/streams.py, `delivered`) does not iterate the stream, so it sets it here."""
    faust_streams._current_event.set(weakref.ref(event))


def _ack_unless_stale(self: Consumer, message) -> bool:
    generation = getattr(message, "generation_id", None)
    current = getattr(self.app, "consumer_generation_id", None)
    holes = self._stale_holes
    tp, offset = message.tp, message.offset
    if generation is not None and current is not None and generation != current:
        let_go_stale(self, message)
        return False
    if tp in holes and offset <= holes[tp]:
        del holes[tp]  # read again from below the hole: the skipped records are being handled
    return _faust_ack(self, message)


def _new_offset_not_over_holes(self: Consumer, tp):
    holes = self._stale_holes
    if tp in holes:
        committed = self._committed_offset[tp]
        if committed is None or committed <= holes[tp]:
            return None  # a skipped record is not handled yet: commit nothing past the last commit
        del holes[tp]  # committed past it meanwhile (handled by this worker or another owner)
    if tp.topic in IN_ORDER_TOPICS and not _head_acked(self, tp):
        return None  # the next record to commit is still in flight: commit nothing past it
    return _faust_new_offset(self, tp)


def _head_acked(consumer: Consumer, tp) -> bool:
    """Whether a commit may move on: the partition's next record to commit is acked, or nothing is.

    Faust's own head guard (`min(acked) - committed_offset > 1`) is off by one: its committed
    offset is the next one to read, so with that record unacked and the one after it acked, Faust
    commits past it. Micro-batches are acked when their changelog records are delivered, so a later batch
    can be acked first. (Faust flushes the producer before it commits, and our batches have sent
    everything before a later one is acked, so no loss through this was shown: defence in depth.)
    On topics with contiguous offsets the head is known (`next_to_process`), compacted gaps aside.
    """
    acked = consumer._acked[tp]
    head = next_to_process(consumer, tp)
    return not acked or head is None or min(acked) <= head


def next_to_process(consumer: Consumer, tp) -> int | None:
    """The partition's committed offset or, never committed, its first offset (None: not known)."""
    committed = consumer._committed_offset.get(tp)
    return committed if committed is not None else consumer._start_offsets.get(tp)


async def _perform_seek_forgetting_holes(self: Consumer) -> None:
    await _faust_perform_seek(self)
    assigned = self.assignment()
    changelogs = self.app.tables.changelog_topics
    uncommitted = [tp for tp in assigned
                   if tp.topic not in changelogs and not tp.topic.endswith("__assignor-__leader")
                   and self._committed_offset.get(tp) is None]
    self._start_offsets = dict(await self.earliest_offsets(*uncommitted)) if uncommitted else {}
    if self._start_offsets:
        await self.seek_wait(self._start_offsets)
    holes = self._stale_holes
    for tp in list(holes):
        committed = self._committed_offset.get(tp)
        if tp not in assigned or (committed is not None and committed > holes[tp]):
            del holes[tp]  # revoked, or another worker handled it since


class _ReadOffsets(defaultdict):
    """Faust's read offsets, except that its drainer never sees one for a topic of IN_ORDER_TOPICS.

    The drainer (`Consumer._drain_messages`, the only reader through `[]`) drops a record below the
    partition's read offset and counts the offsets it jumped over as processed ("gaps", meant for
    compacted topics). When records arrive out of order around a rebalance, the first drops the
    record the agent is waiting for and the second lets a commit pass records nobody handled. For
    those topics the agents keep the order themselves (agents/streams.py).
    """

    def __getitem__(self, tp):
        if tp.topic in IN_ORDER_TOPICS:
            return None
        return super().__getitem__(tp)


def _init_with_own_read_offsets(self: Consumer, *args, **kwargs) -> None:
    _faust_init(self, *args, **kwargs)
    self._read_offset = _ReadOffsets(lambda: None, self._read_offset)
    self._stale_holes: dict = {}  # partition -> lowest offset skipped as stale and not handled since
    self._start_offsets: dict = {}  # partition never committed -> its first offset, sought to after a rebalance


def _resume_unless_running(self: FlowControlEvent) -> None:
    if self.is_active():
        return  # already flowing: the queues hold records of the current generation, keep them
    _mode_resume(self)


def install() -> None:
    if FlowControlEvent.resume is not _resume_unless_running:
        FlowControlEvent.resume = _resume_unless_running
    if Consumer.ack is not _ack_unless_stale:
        Consumer.ack = _ack_unless_stale
        Consumer._new_offset = _new_offset_not_over_holes
        Consumer.perform_seek = _perform_seek_forgetting_holes
        Consumer.__init__ = _init_with_own_read_offsets
