"""How every agent walks its stream: in offset order per partition, each event acked once handled."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import faust
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from agents.outputs import current_outbox, dead_letter, new_outbox, send_outbox
from app import metrics
from app import topics as t
from app.domain.dead_letters import error_detail
from app.faust_fixes import set_current_event
from app.kafka_transport import forget_unhandled, let_go_stale, next_to_process, of_older_generation
from app.models.records import ErrorCode, Rejection
from app.outbox import Outbox
from tables.catch_up import global_tables

log = logging.getLogger(__name__)

# After this many records ahead of a missing one, a rewind evidently cannot bring it back (deleted
# by retention): carry on from what is there. Larger than any stream buffer (4096).
GIVE_UP_AFTER = 20_000
REWIND_RETRY = 5.0
STALL_AFTER = 30.0


class Turn(Enum):
    HANDLE = "handle"   # the next record of its partition
    BEHIND = "behind"   # handled already in this generation, or below the committed offset
    AHEAD = "ahead"     # records before it have not reached the agent yet


@dataclass
class PartitionOrder:
    """Which record of each partition an agent handles next, within one consumer generation.

    Faust can hand an agent a partition's records out of order around a rebalance or a restart
    (the chaos suite saw a FULFIL at offset 141 applied before its RESERVE at 126, after a worker
    was killed): records prefetched for the partition reach the stream before the ones Faust seeks
    back to. Plain bookkeeping, no Faust: the first record of a generation must be the committed
    offset (when one is known), and each next one the offset after the last handled.
    """

    generation: int | None = None
    expected: dict = field(default_factory=dict)
    rewound_to: dict = field(default_factory=dict)
    skipped_ahead: dict = field(default_factory=dict)

    def turn(self, tp, offset: int, generation: int | None, committed: int | None) -> Turn:
        if generation != self.generation:
            self.generation = generation
            self.expected.clear()
            self.rewound_to.clear()
            self.skipped_ahead.clear()
        expected = self.expected.get(tp)
        if expected is None:
            expected = committed if committed is not None else offset
            self.expected[tp] = expected
        # A partition kept through a rebalance is read again from its committed offset even where
        # Faust did not seek back: records handled before the rebalance lost their acks with it,
        # and a commit can only move on over records acked in this generation.
        if offset == expected or (offset > expected and self.skipped_ahead.get(tp, 0) >= GIVE_UP_AFTER):
            self.expected[tp] = offset + 1
            self.skipped_ahead.pop(tp, None)
            return Turn.HANDLE
        if offset < expected:
            return Turn.BEHIND
        self.skipped_ahead[tp] = self.skipped_ahead.get(tp, 0) + 1
        return Turn.AHEAD

    def needs_rewind(self, tp, now: float) -> int | None:
        """The offset to seek back to for a partition that is ahead: once per missing record, again
        every REWIND_RETRY seconds while it has not come (a seek can be undone by a fetch in flight)."""
        expected = self.expected[tp]
        last = self.rewound_to.get(tp)
        if last is not None and last[0] == expected and now - last[1] < REWIND_RETRY:
            return None
        self.rewound_to[tp] = (expected, now)
        return expected

    def expects(self, tp, generation: int | None) -> bool:
        """Whether the partition's next offset is known from the records handled in this generation:
        then `turn` and `next_offset` do not read the committed one, and it need not be looked up."""
        return generation == self.generation and tp in self.expected

    def next_offset(self, tp, generation: int | None, committed: int | None) -> int | None:
        """The offset the partition's agent needs next (None: not known yet, nothing committed)."""
        if self.expects(tp, generation):
            return self.expected[tp]
        return committed


@dataclass
class StallWatch:
    """Partitions whose agent has waited STALL_AFTER seconds for an offset the log already holds.

    Faust sometimes stops fetching a partition after a rebalance or a restart (faust-streaming#629
    and kin: the chaos suite saw it in about one run in three, always the same partition number of
    every topic of one agent); a rewind can also be undone by a fetch in flight, and be retried
    only when another record of the partition arrives, which at the end of a burst never happens.
    Plain bookkeeping, no Faust: `waiting` gives, per partition, the offset its agent needs and the
    log's end offset; a partition is reported once per STALL_AFTER while that offset does not move.
    """

    since: dict = field(default_factory=dict)   # partition -> (offset waited for, waiting since)
    not_ready_since: float | None = None        # when the worker last began to wait (rebalance, recovery)

    def report_waiting(self, reasons: list, now: float) -> None:
        """Log, once per STALL_AFTER, a worker that has been waiting that long: it cannot stall-check."""
        if not reasons:
            self.not_ready_since = None
        elif self.not_ready_since is None:
            self.not_ready_since = now
        elif now - self.not_ready_since >= STALL_AFTER:
            log.warning("no records handed to agents for %.0f s: %s", now - self.not_ready_since, ", ".join(reasons))
            self.not_ready_since = now

    def stalled(self, waiting: dict, now: float) -> list:
        found = []
        for tp in list(self.since):
            if tp not in waiting:
                del self.since[tp]
        for tp, (needed, end) in waiting.items():
            if needed is None or end <= needed:
                self.since.pop(tp, None)
                continue
            seen = self.since.get(tp)
            if seen is None or seen[0] != needed:
                self.since[tp] = (needed, now)
            elif now - seen[1] >= STALL_AFTER:
                found.append(tp)
                self.since[tp] = (needed, now)
        return found


_order = PartitionOrder()
_stalls = StallWatch()


# The master topics too: compacted, so their agents keep no offset order, but a master partition
# that is never read again leaves every worker dead-lettering good sales as UNKNOWN_ITEM.
STALL_WATCHED_TOPICS = t.IN_ORDER_TOPICS | t.MASTER_TOPICS


def end_to_reach(tp, end: int) -> int:
    """The end offset an agent that has handled everything of the partition has reached: the log's
    end, but on a topic without contiguous offsets one less (a producer's transaction may end it
    with a commit marker, an offset no record fills)."""
    return end if tp.topic in t.IN_ORDER_TOPICS else end - 1


async def fetch_stalled_partitions_again(app: faust.App) -> None:
    """Find partitions of STALL_WATCHED_TOPICS whose records do not reach their agent, and fetch them
    again from the offset the agent needs (run every few seconds by a timer, agents/master.py)."""
    consumer = app.consumer
    waiting = {"rebalancing": app.rebalancing, "recovering": not app.tables.recovery.completed.is_set(),
               "global tables behind": not global_tables.is_current(app)}
    if any(waiting.values()):
        _stalls.since.clear()   # waiting by design: not a stall
        _stalls.report_waiting([reason for reason, on in waiting.items() if on], time.monotonic())
        return
    _stalls.report_waiting([], time.monotonic())
    partitions = [tp for tp in consumer.assignment() if tp.topic in STALL_WATCHED_TOPICS]
    if not partitions:
        return
    generation = app.consumer_generation_id
    try:
        ends = await asyncio.wait_for(consumer.highwaters(*partitions), STALL_AFTER / 3)
    except asyncio.TimeoutError:
        log.warning("no offsets from the broker within %.0f s: stalled partitions are looked for again later",
                    STALL_AFTER / 3)
        return
    if generation != app.consumer_generation_id or app.rebalancing:
        return
    # Never-committed partitions were sought to their first offset when the recovery completed
    # (app/kafka_transport.py), so next_to_process knows every partition's offset by now.
    needed = {tp: _order.next_offset(tp, generation, next_to_process(consumer, tp)) for tp in partitions}
    for tp in _stalls.stalled({tp: (needed[tp], end_to_reach(tp, ends.get(tp, 0))) for tp in partitions},
                              time.monotonic()):
        active = consumer._active_partitions
        paused, buffered = tp in consumer._paused_partitions, tp in consumer._buffered_partitions
        log.warning("%s: offset %s has been in the log for %.0f s without reaching its agent (end %s; in "
                    "the fetch set: %s, paused: %s, buffer full: %s): fetching the partition again from %s",
                    tp, needed[tp], STALL_AFTER, ends.get(tp), active is not None and tp in active, paused,
                    buffered, needed[tp])
        metrics.PARTITIONS_FETCHED_AGAIN.labels(topic=tp.topic).inc()
        if paused:
            consumer.resume_partitions({tp})
        if active is not None:
            active.add(tp)
        consumer._buffered_partitions.discard(tp)
        await consumer.seek_wait({tp: needed[tp]})


# --- Delivery: an agent's records, taken from Faust's channel queue in lists ------------------------

async def delivered(stream: faust.StreamT, max_records: int, linger: float = 0.0) -> AsyncIterator[list]:
    """Lists of the stream's events to handle, in offset order per partition, none of them acked.

    This is the seam that replaces Faust's per-record stream iteration (`Stream.__aiter__`), which
    cost more CPU per record than a position update (a `sleep(0)`, sensors, a context variable and
    two generator layers for every record). Faust still fetches each record, decodes it and puts
    it into the agent's channel queue; this takes whatever that queue holds, up to `max_records`,
    and waits only when it is empty, so an idle stage gets one record at a time and a loaded one
    a list. A stage off the stock path may `linger`: after the first record of a list it waits up
    to that long for the list to fill, so a trickle of records still makes batches worth their
    per-batch cost, and a full list goes at once.
    Per record it does what Faust's iterator did, with our rules instead of Faust's:

    * a record fetched before the current rebalance (or during one) is let go of, not acked:
      Faust acks it (faust#221), so a commit could pass it; here it leaves a hole that no commit
      passes until it is read again (app/kafka_transport.py);
    * a record is tracked as in flight (a rebalance and a stop wait for it) and acked only when
      the stage has handled it (`ack_handled`): Faust acks in a `finally` around its `yield`,
      so a body interrupted by a stop had its record acked with its outputs never produced;
    * on topics with contiguous offsets (topics.IN_ORDER_TOPICS) records are handed over strictly
      in offset order: one that arrives ahead of a missing one is let go of and the partition is
      read again from the missing offset; one already handled in this generation, or below the
      committed offset, is let go of too (`PartitionOrder`);
    * after every rebalance nothing is handed over before the global tables (master data) have
      caught up with their changelogs (tables/catch_up.py).
    """
    app = stream.app
    queue = stream.channel.queue
    while True:
        try:
            events = [await queue.get() if queue.empty() else queue.get_nowait()]
            if linger:
                await _until_filled(queue, max_records - 1, linger)
            while len(events) < max_records and not queue.empty():
                events.append(queue.get_nowait())
        except StopAsyncIteration:
            return   # Faust ends an agent's channel this way when the agent stops
        to_handle = await _hand_over(app, events)
        if to_handle:
            yield to_handle


LINGER_CHECKS = 5   # looks at the queue per linger: a list that fills waits at most a fifth of it more


async def _until_filled(queue: asyncio.Queue, size: int, linger: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + linger
    while queue.qsize() < size and (left := deadline - loop.time()) > 0:
        await asyncio.sleep(min(left, linger / LINGER_CHECKS))


async def _hand_over(app: faust.App, events: list) -> list:
    """The events of `events` the stage may handle now, each tracked as in flight (see `delivered`)."""
    consumer = app.consumer
    if not global_tables.is_current(app):
        await global_tables.wait(app)
        if app.should_stop:
            _let_go_unhandled(consumer, events)   # not handled, so not committed: read again later
            return []
    to_handle, rewinds = [], {}
    acking_topics = app.topics.acking_topics
    for event in events:
        message = event.message
        if fetched_before_rebalance(app, message):
            let_go_stale(consumer, message)
            continue
        if message.topic in acking_topics and not message.tracked:
            message.tracked = True
            consumer.track_message(message)
        if message.topic in t.IN_ORDER_TOPICS:
            tp, generation = message.tp, app.consumer_generation_id
            # The committed offset matters only for a partition's first record in a generation.
            committed = None if _order.expects(tp, generation) else next_to_process(consumer, tp)
            turn = _order.turn(tp, message.offset, generation, committed)
            if turn is not Turn.HANDLE:
                forget_unhandled(consumer, message)
                rewind = _order.needs_rewind(tp, time.monotonic()) if turn is Turn.AHEAD else None
                if rewind is not None:
                    rewinds[tp] = (message.offset, rewind)
                continue
        to_handle.append(event)
    for tp, (offset, rewind) in rewinds.items():
        if tp in consumer.assignment():
            log.warning("%s: offset %s reached the agent before %s: reading the partition again from %s",
                        tp, offset, rewind, rewind)
            # In the consumer's own thread (Consumer.seek calls aiokafka from this one).
            await consumer.seek_wait({tp: rewind})
    # Faust's own stall check ("Stream has not started processing ...") reads when each partition's
    # stream last took a record; its iterator noted that per record, so our loop does too.
    inbound, now = app.monitor.stream_inbound_time, time.monotonic()
    for event in to_handle:
        inbound[event.message.tp] = now
    return to_handle


def source_record(message) -> str:
    """How the replay rules name the Kafka record a stage read: "partition@offset" (the topic is the
    stage's own), so that the very record read again can be told from a re-sent copy."""
    return f"{message.partition}@{message.offset}"


def _let_go_unhandled(consumer, events: list) -> None:
    for event in events:
        forget_unhandled(consumer, event.message)


def fetched_before_rebalance(app: faust.App, message) -> bool:
    """A record of an older consumer generation, or one met while a rebalance has the flow suspended."""
    return of_older_generation(app, message) or not app.flow_control.is_active()


def ack_handled(app: faust.App, event: faust.EventT) -> None:
    """The record is handled: its offset may be committed (Faust's `Stream.ack`, minus its sensor
    for stream events, which this loop never reported in)."""
    message = event.message
    if event.ack():
        app.sensors.on_message_out(message.tp, message.offset, message)


# --- The error boundary around every record of every stage (SPEC §4) -------------------------------

EVENTS_AT_ONCE = 100   # records taken from the channel queue at a time by an event-at-a-time stage
TRANSIENT_ATTEMPTS = (0.5, 2.0, 5.0)   # back-off before each new try of a record that met a transient error
STUCK_BACKOFF_MAX = 30.0


def is_transient(exc: BaseException) -> bool:
    """An error of the infrastructure, not of the record: the record is tried again before it is
    dead-lettered. A record too large for Kafka is the record's fault, whatever class it comes in."""
    if isinstance(exc, (MessageSizeTooLargeError, RecordTooLargeError)):
        return False
    return isinstance(exc, (KafkaError, ConnectionError, asyncio.TimeoutError))


@dataclass
class StuckRecords:
    """Records that could not even be dead-lettered (the DLQ cannot be written): retried, never
    skipped, and reported on /readyz, in a metric and in the log while they wait."""

    waiting: dict = field(default_factory=dict)   # "topic:partition@offset" -> (stage, error, since)

    def report(self) -> dict:
        now = time.monotonic()
        return {record: {"stage": stage, "error": error, "waiting_seconds": round(now - since, 1)}
                for record, (stage, error, since) in self.waiting.items()}


stuck_records = StuckRecords()


async def each_event(stream: faust.StreamT, stage: str, handle: Callable[[faust.EventT], Awaitable[None]]) -> None:
    """Hand every event of the stream to `handle`, in order (see `delivered`), inside an error boundary:
    whatever `handle` raises, the record ends as one dead letter (PROCESSING_ERROR, with the stage,
    the exception's type and message) and the partition moves on. An error of the infrastructure
    (Kafka away, a time-out) is retried first (TRANSIENT_ATTEMPTS). A letter that cannot be written
    is retried with back-off until it is (the record is never acked before), and reported meanwhile.
    """
    app = stream.app
    consumer = app.consumer
    # Its lists are counted like the batched stages' batches; its sends happen within the list.
    list_records = metrics.STAGE_BATCH_RECORDS.labels(stage)
    list_seconds = metrics.STAGE_BATCH_SECONDS.labels(stage, "apply")
    async for events in delivered(stream, EVENTS_AT_ONCE):
        started = time.perf_counter()
        for index, event in enumerate(events):
            if fetched_before_rebalance(app, event.message):
                let_go_stale(consumer, event.message)   # a rebalance began while the list was in hand
                continue
            set_current_event(event)   # Faust's `table[key] = value` writes into this event's partition
            error = await _handle_with_retries(event, handle)
            if error is not None and not await _reject(app, event, stage, error):
                # Stopping: this record and the rest are not acked, so not committed, and are read again after the restart.
                _let_go_unhandled(consumer, events[index:])
                return
            ack_handled(app, event)
        list_seconds.observe(time.perf_counter() - started)
        list_records.observe(len(events))


async def _reject(app: faust.App, event: faust.EventT, stage: str, error: BaseException) -> bool:
    """The record that raised ends as one dead letter; False: the worker is stopping first."""
    log.warning("%s: %s@%s dead-lettered as PROCESSING_ERROR: %s: %s", stage, event.message.tp,
                event.message.offset, type(error).__name__, str(error)[:300])
    metrics.STAGE_ERRORS.labels(stage=stage, error=type(error).__name__).inc()
    return await _dead_letter_until_written(app, event, stage, error)


async def _handle_with_retries(event: faust.EventT, handle) -> BaseException | None:
    for backoff in (*TRANSIENT_ATTEMPTS, None):
        try:
            await handle(event)
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the boundary: nothing a record causes may stop its partition
            if backoff is None or not is_transient(exc):
                return exc
            log.info("%s@%s: transient %r, trying again in %.1f s", event.message.tp, event.message.offset,
                     exc, backoff)
            await asyncio.sleep(backoff)
    return None


async def _dead_letter_until_written(app: faust.App, event: faust.EventT, stage: str, error: BaseException) -> bool:
    message = event.message
    rejection = Rejection(error_code=ErrorCode.PROCESSING_ERROR, error_detail=error_detail(error, stage))
    name = f"{message.topic}:{message.partition}@{message.offset}"
    backoff = 0.5
    while True:
        try:
            await dead_letter(message, message.topic, event.value, rejection, stage=stage, key=event.key)
            break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if name not in stuck_records.waiting:
                stuck_records.waiting[name] = (stage, repr(exc)[:300], time.monotonic())
                metrics.RECORDS_STUCK.inc()
            log.error("%s: cannot dead-letter %s (%r): trying again in %.0f s; the partition waits", stage, name,
                      exc, backoff)
            if app.should_stop:
                stuck_records.waiting.pop(name, None)
                metrics.RECORDS_STUCK.dec()
                return False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, STUCK_BACKOFF_MAX)
    if stuck_records.waiting.pop(name, None) is not None:
        metrics.RECORDS_STUCK.dec()
    return True


# --- Micro-batches: the record loop of the high-volume stages --------------------------------------

BATCH_MAX = 1000        # records per batch at most; a batch is whatever has arrived (no wait is added but a stage's linger)
BATCHES_IN_FLIGHT = 8   # batches whose changelog is not acknowledged yet, before the loop waits


class StageBatch(Protocol):
    """One attempt at one batch of a stage: each record applied in memory, then the whole at once.
    What it publishes meanwhile is queued in the attempt's outbox (agents/outputs.py), sent after
    `finish`."""

    async def take(self, event: faust.EventT) -> None:
        """Apply one record to the batch's state and queue its outputs. Whatever it raises leaves the
        batch's state and outbox as they were before the record (the record is rejected alone)."""

    def finish(self, outbox: Outbox) -> None:
        """Queue the batch's state (one changelog record per changed key, one RocksDB WriteBatch per
        partition once they are with the producer: tables/store.py, BatchWrites)."""


async def each_batch(stream: faust.StreamT, stage: str, new_batch: Callable[[], StageBatch],
                     max_records: int = BATCH_MAX, linger: float = 0.0, unpack: Unpack | None = None) -> None:
    """`each_event` for a stage that works in micro-batches, with the same guarantees per record.

    Records come in offset order per partition (`delivered`), and a batch is what has arrived
    while the last one was worked on, up to `max_records`: an idle stage handles one record at a
    time, a loaded one amortises its state writes over many. A record that raises is rejected
    alone (one dead letter, and nothing of what it queued is sent); an infrastructure error retries
    the whole batch from the stored state (outputs already handed to the producer when it struck
    are sent again, with the same identity: RELIABILITY.md §2); a batch that cannot
    be written for another reason is split into batches of one, so the record at fault is found.
    What a batch publishes and its changelog records go to the producer together at its end, as
    whole record batches (app/outbox.py); its records are acked, so may be committed, only once all
    of them are acknowledged. Meanwhile the next batch runs. On a topic whose records may be packs
    of records (app/packs.py), `unpack` gives each Kafka record's records: each is taken, and
    rejected, as a record of its own, at most `max_records` of them a batch, and the Kafka records
    are acked once all of their records' batches are delivered.
    """
    app = stream.app
    in_flight: deque[asyncio.Future] = deque()
    batch_records = metrics.STAGE_BATCH_RECORDS.labels(stage)
    apply_seconds = metrics.STAGE_BATCH_SECONDS.labels(stage, "apply")
    send_seconds = metrics.STAGE_BATCH_SECONDS.labels(stage, "send")
    sending = 0.0

    async def timed_send(outbox: Outbox) -> list:
        nonlocal sending
        started = time.perf_counter()
        try:
            return await send_outbox(outbox)
        finally:
            sending += time.perf_counter() - started

    async for events in delivered(stream, max_records, linger):
        started, sending = time.perf_counter(), 0.0
        records, unreadable = (events, []) if unpack is None else unpacked(events, unpack)
        rejected, deliveries = await apply_in_batches(records, new_batch, timed_send, max_records)
        rejected += unreadable
        apply_seconds.observe(time.perf_counter() - started - sending)
        send_seconds.observe(sending)
        batch_records.observe(len(records))
        for event, error in rejected:
            if not await _reject(app, event, stage, error):
                _let_go_unhandled(app.consumer, events)   # stopping: nothing of this batch is acked, so it is read again after the restart
                return
        in_flight.append(asyncio.ensure_future(_ack_when_delivered(app, events, deliveries)))
        while in_flight and (len(in_flight) > BATCHES_IN_FLIGHT or in_flight[0].done()):
            await in_flight.popleft()


Unpack = Callable[[bytes | None, bytes | None], list[tuple[bytes | None, bytes | None]]]


@dataclass(slots=True)
class PackedRecord:
    """One record of a pack (app/packs.py), handed to a stage as an event of its own: the Kafka
    record it came in (`message`: its partition for the state, its offset for a dead letter), and
    its own key and value."""

    message: object
    key: bytes | None
    value: bytes | None


def unpacked(events: list, unpack: Unpack) -> tuple[list, list]:
    """(the records the events carry, in order: an event that is no pack is its own record;
    the events that cannot be unpacked, each with its error: rejected whole)."""
    records, unreadable = [], []
    for event in events:
        try:
            carried = unpack(event.key, event.value)
        except Exception as exc:   # the boundary: a pack that does not read is one dead letter
            unreadable.append((event, exc))
            continue
        if len(carried) == 1 and carried[0][1] is event.value:
            records.append(event)
        else:
            records += [PackedRecord(event.message, key, value) for key, value in carried]
    return records, unreadable


class BatchFailed(Exception):
    """A batch could not be written (after the retries of a transient error)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


SendOutbox = Callable[[Outbox], Awaitable[list]]


async def apply_in_batches(records: list, new_batch: Callable[[], StageBatch], send: SendOutbox,
                           max_records: int) -> tuple[list, list]:
    """`apply_batch` over `records`, at most `max_records` at a time. A list of packs carries up to
    ~100 times as many records as it has Kafka records; taken whole, one batch's work could hold
    the event loop, heartbeats included, for seconds (a stage catching up on its backlog)."""
    rejected, deliveries = [], []
    for at in range(0, len(records), max_records):
        batch_rejected, batch_deliveries = await apply_batch(records[at:at + max_records], new_batch, send)
        rejected += batch_rejected
        deliveries += batch_deliveries
    return rejected, deliveries


async def apply_batch(events: list, new_batch: Callable[[], StageBatch],
                      send: SendOutbox = send_outbox) -> tuple[list, list]:
    """(records rejected, each with its error; deliveries to wait for). A batch that cannot be
    written as a whole is taken apart: one record at a time, so only the record at fault is rejected."""
    try:
        return await _batch_with_retries(events, new_batch, send)
    except BatchFailed as failed:
        if len(events) == 1:
            return [(events[0], failed.error)], []
        log.info("a batch of %d records could not be written (%r): one record at a time", len(events), failed.error)
    rejected, deliveries = [], []
    for event in events:
        single_rejected, single_deliveries = await apply_batch([event], new_batch, send)
        rejected += single_rejected
        deliveries += single_deliveries
    return rejected, deliveries


async def _batch_with_retries(events: list, new_batch: Callable[[], StageBatch], send: SendOutbox) -> tuple[list, list]:
    for backoff in (*TRANSIENT_ATTEMPTS, None):
        batch, rejected, outbox = new_batch(), [], new_outbox()
        publishing_into = current_outbox.set(outbox)
        try:
            for event in events:
                mark = outbox.mark()
                try:
                    await batch.take(event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    outbox.take_back(mark)
                    if is_transient(exc):
                        raise
                    rejected.append((event, exc))
            batch.finish(outbox)
            return rejected, await send(outbox)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the boundary: a batch that fails is tried again, then taken apart
            if backoff is None or not is_transient(exc):
                raise BatchFailed(exc) from exc
            log.info("a batch of %d records met a transient %r: trying again in %.1f s", len(events), exc, backoff)
            await asyncio.sleep(backoff)
        finally:
            current_outbox.reset(publishing_into)
    raise AssertionError("unreachable")


async def _ack_when_delivered(app: faust.App, events: list, deliveries: list[asyncio.Future]) -> None:
    if deliveries:
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        if any(isinstance(r, BaseException) for r in results):
            return   # not acked: outputs.stop_if_lost stops the worker; the batch is read again after the restart
    for event in events:
        ack_handled(app, event)
