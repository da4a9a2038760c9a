"""The app's Kafka transport: Faust's aiokafka driver, subclassed where Faust's consumer is wrong for us.

The seam is Faust's own plug-in point for transports (the `faust.transports` entry point in
pyproject.toml; the app's broker URLs use its scheme, SCHEME), as `faust.stores` is for the bulk
restore. Faust's classes are not changed: `Transport` hands Faust our `Consumer`, which overrides
four of its methods and runs its aiokafka consumer through our `ConsumerInAppLoop`, in the app's
event loop rather than in a thread of its own. Each override
calls Faust's own method and says why it is there (RELIABILITY.md §5). A fifth, the drainer that
hands fetched records to the agents (`_drain_messages`), is ours whole: Faust's raced every record
against a rebalance, ours races each fetch. Unit tests run Faust's
methods beside ours (tests/unit/test_batches.py, tests/unit/test_kafka_transport.py), so a
faust-streaming upgrade that changes what we rely on breaks a test, not a worker.

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
never read again. So after Faust's seek, each stream partition without a committed offset is sought
to its first offset, as a new consumer with `auto_offset_reset=earliest` would, and that offset is
what the agents' order check expects first (`next_to_process`), in that consumer generation only.

Faust builds its worker consumer with `fetch_max_wait_ms=1500` fixed in the code, and the broker
answers the requests of one connection in turn. So every offset look-up Faust's recovery makes
after a rebalance (high-waters, then earliest offsets of the changelogs, for actives and again for
standbys) queued behind an idle fetch: about 4.5 s of every recovery in the soak's worker logs. Our
consumer waits at most FETCH_MAX_WAIT_MS on a fetch that finds nothing, and asks for FETCH_MIN_BYTES
before the broker answers sooner (`fetch_settings`); its other settings are Faust's, taken from the
app's configuration as Faust takes them.
"""
from __future__ import annotations

import asyncio
import logging

import aiokafka
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from faust.exceptions import ImproperlyConfigured
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list
from mode.utils.futures import maybe_async

from app.domain.keys import PARTITIONED_BY_SKU, partition_key
from app.outbox import OutgoingRecord, call_with_offset, packed_runs
from app.partitions import key_hash
from app.topics import IN_ORDER_TOPICS, MASTER_TOPICS

SCHEME = "stock-sync-kafka"
log = logging.getLogger(__name__)


def forget_unhandled(consumer: Consumer, message) -> None:
    """Let go of a delivered record without marking it processed: it is not committed, and a
    rebalance or a stop does not wait for it (see agents/streams.py)."""
    consumer._unacked_messages.discard(message)
    message.acked = True


def records_in_flight(consumer: Consumer) -> int:
    """How many delivered records the consumer still waits on (tracked, not acked nor let go of)."""
    return len(consumer._unacked_messages)


def of_older_generation(app, message) -> bool:
    """A record fetched in an earlier consumer generation than the app's current one (a rebalance has
    come since); one without a generation (not fetched by a consumer) is not."""
    generation = getattr(message, "generation_id", None)
    current = getattr(app, "consumer_generation_id", None)
    return generation is not None and current is not None and generation != current


def let_go_stale(consumer: Consumer, message) -> None:
    """A record fetched before the rebalance, not handled: let go of, and no offset of its
    partition is committed until it is read again (the hole, above)."""
    forget_unhandled(consumer, message)
    holes = consumer.stale_holes
    tp, offset = message.tp, message.offset
    if tp not in holes:
        consumer.log.info("skipped %s@%s fetched before the rebalance: no commit of it until it is read again",
                          tp, offset)
    holes[tp] = min(holes.get(tp, offset), offset)


class FirstOffsets:
    """The first offsets of the stream partitions never committed, as sought after a rebalance, and the
    consumer generation they were sought in: they answer for that generation only.

    Between a rebalance and the seek that follows it no committed offset is known (Faust forgets a
    revoked partition's at once), and Faust's recovery resumes the flow before that seek, so records
    the fetcher read from the broker's committed offset meanwhile reach the agents. A first offset
    sought in an earlier generation, when the partition had no commit yet, is stale by then: taken
    for the next offset, it had the agents read the whole partition again from 0 though the broker
    held a commit (the long chaos runs, RELIABILITY.md §5 row 4e). Plain bookkeeping, no Faust.
    """

    def __init__(self) -> None:
        self.generation: int | None = None
        self.offsets: dict = {}

    def sought(self, generation: int | None, offsets: dict) -> None:
        self.generation, self.offsets = generation, offsets

    def of(self, tp, generation: int | None) -> int | None:
        return self.offsets.get(tp) if generation == self.generation else None


def next_to_process(consumer: Consumer, tp) -> int | None:
    """The partition's committed offset or, never committed, its first offset as sought in this
    consumer generation (None: not known, as between a rebalance and its seek: `FirstOffsets`)."""
    committed = consumer.committed_offset(tp)
    if committed is not None:
        return committed
    return consumer.first_offsets.of(tp, consumer.app.consumer_generation_id)


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


def with_master_records(records: dict, master_left: dict) -> dict:
    """One fetch's records per partition with the master records taken after it, master partitions
    first; a partition's records stay in offset order."""
    if not master_left:
        return records
    merged = {tp: [*records.get(tp, ()), *rest] for tp, rest in master_left.items()}
    for tp, taken in records.items():
        merged.setdefault(tp, taken)
    return merged


def master_data_first(fetched: list) -> list:
    """The records of one fetch with the master data's ahead of the rest, each partition's in order.

    A receipt sent right behind its store's master record often comes in the same fetch; handed
    over in the fetch's partition order, the ingest stage could map it before the master stage had
    loaded the store, and dead-letter it as UNKNOWN_LOCATION (12 of 40 such pairs with 16 KiB / 20
    ms fetches, none with this; BENCHMARKS.md, twenty-third session). Handed over first, the master
    record's agent runs first: it loads a new item or location before its first await. Master data
    that another worker loads still reaches this one later, through the global table's changelog.
    """
    if not any(tp.topic in MASTER_TOPICS for tp, _ in fetched):
        return fetched
    return sorted(fetched, key=lambda pair: pair[0].topic not in MASTER_TOPICS)   # stable: offsets stay in order


def fetch_only(consumer: aiokafka.AIOKafkaConsumer, wanted) -> None:
    """Let aiokafka fetch only the partitions Faust asks records of, pausing the rest of the assignment.

    Faust's `pause_partitions` (an active table's changelog after its recovery) and its flow control
    (an agent's full queue) only leave partitions out of what `getmany` asks for: aiokafka goes on
    fetching them. The records fetched for such a partition are never taken, and aiokafka sends no
    fetch to a broker while a fetched result there is fresh (under 100 ms old, its
    `prefetch_backoff`) and not taken. A worker logging its fetches at the start of a load held
    such a result for each of the position stage's 24 changelog partitions, while `getmany` waited
    70-200 ms at a time. Pausing them in aiokafka too stops those fetches, and each fetch names
    fewer partitions; what it changes in latency or CPU was too small for the twenty-fifth
    session's runs to show (BENCHMARKS.md).
    """
    assigned = consumer.assignment()
    paused = consumer.paused()
    to_pause, to_resume = partitions_to_pause(assigned, wanted, paused)
    if to_pause:
        consumer.pause(*to_pause)
    if to_resume:
        consumer.resume(*to_resume)


def partitions_to_pause(assigned, wanted, paused) -> tuple[list, list]:
    """(assigned partitions to pause, paused ones to resume) so that exactly `wanted` is fetched.

    Both lists hold aiokafka's own partitions (from `assigned` and `paused`), the only class its
    `pause` takes; Faust's `TP` in `wanted` is a named tuple too, so membership compares them as
    tuples without converting either side (this runs before every fetch)."""
    to_pause = [tp for tp in assigned if tp not in wanted and tp not in paused]
    to_resume = [tp for tp in paused if tp in wanted]
    return to_pause, to_resume


def fetch_settings() -> dict[str, int]:
    """How long a fetch may wait on the broker, and for how many bytes.

    Each fetch names every partition the worker reads (~160: the raw topics, the internal hops, the
    global tables' changelogs), encoded and decoded in pure Python by aiokafka, so what a fetch
    costs hardly depends on what it brings. With FETCH_MIN_BYTES at 1 the broker answers as soon
    as any record is there: a steady load is fetched a few records at a time, and at 96 raw
    events/s the worker spent 0.64 of a core and the broker 0.41, most of it on fetches.

    FETCH_MIN_BYTES (default 1) lets the broker hold a fetch until that many bytes are there, at
    most FETCH_MAX_WAIT_MS (default 50; Kafka's Java consumer waits 500 ms). 16 KiB with 20 ms,
    against the defaults, one worker, interleaved (BENCHMARKS.md, twenty-second session): 0.27 of
    a core at 96/s instead of 0.64 (broker 0.24 instead of 0.41), 0.79 instead of 0.93 at 482/s
    with the same p99, the same drain, and p50 ~30 ms more in a trickle (each hop waits out the
    fetch wait). It is not the default because of master data sent right before its traffic: with
    it, a receipt fetched together with its store's master record was often mapped first and
    dead-lettered (UNKNOWN_LOCATION; an e2e test failed). Since a fetch's master records are handed
    over first (`master_data_first`, `ConsumerInAppLoop._fetch_records`) an idle worker with it
    does not do that any more; a busy worker with it has not been measured since (BENCHMARKS.md,
    twenty-third session). A deployment short of CPU whose master data comes well ahead of its
    traffic may set it.

    Tried before and not kept: 64 KiB with 50 ms drained a backlog about a tenth slower, and a
    fetch wait of 200 ms made a partition whose records were still being handed over when the fetch
    left wait for its return (p99 205–799 ms at 193/s; BENCHMARKS.md, ninth and tenth sessions).
    """
    from app.faust_app import settings   # here, not at import: the app module loads this transport
    return {"fetch_max_wait_ms": settings.fetch_max_wait_ms, "fetch_min_bytes": settings.fetch_min_bytes}


class ConsumerInAppLoop(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer service, run in the app's event loop instead of a thread of its own.

    Faust runs the aiokafka consumer in a thread with an event loop of its own and hands most calls
    across: a fetch, a commit, `seek_wait` go through a method queue into that loop, and each
    result comes back through `call_soon_threadsafe`. But `seek`, `assignment` and `highwater` are
    called straight from the app's thread (Faust's recovery seeks the changelogs that way), and
    aiokafka is not thread-safe: its `seek` deletes from the fetcher's record map and completes a
    future of the other loop. In one loop there is no such call. The two threads share one GIL,
    so the thread bought no parallelism either. Measured (BENCHMARKS.md, eleventh session): the
    same CPU at 8, 96 and 231 raw events/s, and a drain a few per cent faster at most.

    Faust's class is kept whole: it builds the consumer (with our settings, below), fetches,
    commits, seeks and hands rebalances to the app as before. Only the thread is taken away: the
    service starts and stops as a plain mode `Service` in the app's loop, and a call meant for the
    thread is awaited in place. tests/unit/test_kafka_transport.py holds this to mode's and
    Faust's classes, so an upgrade that changes them breaks a test, not a worker.
    """

    # The thread's end set the shutdown event that `ServiceThread.stop` waits for: there is no thread.
    wait_for_shutdown = False

    def __init__(self, consumer, *, loop: asyncio.AbstractEventLoop, beacon) -> None:
        super().__init__(consumer, loop=loop, thread_loop=loop, beacon=beacon)

    async def start(self) -> None:
        self._thread_started.set()   # what `ServiceThread.maybe_start` asks
        await self._default_start()

    async def on_stop(self) -> None:
        """Faust's thread end: stop the aiokafka consumer, waiting at most `shutdown_timeout` for it.

        aiokafka's `stop` first lets its group coordination task finish, and one stuck (in our
        e2e run, after the conductor had crashed) never does: the worker hung in it for good.
        Faust's app waited for its consumer thread at most `shutdown_timeout` and went on.
        """
        try:
            await asyncio.wait_for(self.on_thread_stop(), self.shutdown_timeout)
        except asyncio.TimeoutError:
            self.log.warning("the Kafka consumer did not stop within %.0f s: stopping without it",
                             self.shutdown_timeout)

    async def call_thread(self, fun, *args, **kwargs):
        return await maybe_async(fun(*args, **kwargs))   # Faust passes coroutine functions and plain ones

    async def cast_thread(self, fun, *args, **kwargs) -> None:
        # Faust's aiokafka driver does not cast today; the method queue a cast would go to is never started here.
        await maybe_async(fun(*args, **kwargs))

    # `ServiceThread` leaves these to its thread's end (or, for the stop flag, to the thread's loop's
    # next turn); here they are `Service`'s own again.
    def _stopped_set(self) -> None:
        self._stopped.set()

    async def _stop_children(self) -> None:
        await self._default_stop_children()

    async def _stop_futures(self) -> None:
        await self._default_stop_futures()

    async def _stop_exit_stacks(self) -> None:
        await self._default_stop_exit_stacks()

    async def _fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
        """Faust's fetch of buffered records, then what is left buffered of the master topics.

        aiokafka returns at most `max_records` a call, taking partitions in the order their records
        were buffered, so a fetch response holding a new store's master record and, behind it, a
        receipt at that store could be cut between the two: the receipt handed over now, the
        master record a call later. The ingest stage then dead-lettered the receipt as
        UNKNOWN_LOCATION (a busy worker, 6-12 of 40 such receipts; BENCHMARKS.md, twenty-third
        session). Taken in the same call, the master records go first (`master_data_first`).
        Only a call that returned `max_records` can have been cut: one that returned fewer drained
        every buffered partition (up to a partition's fetch error, which the next call raises), so
        a worker at a steady rate makes the second call rarely.
        """
        if active_partitions:   # None: a client-only app, which fetches every partition it has
            fetch_only(consumer, active_partitions)
        records = await super()._fetch_records(consumer, active_partitions, timeout=timeout, max_records=max_records)
        if max_records is None or sum(map(len, records.values())) < max_records:
            return records
        master = {tp for tp in (active_partitions or consumer.assignment()) if tp.topic in MASTER_TOPICS}
        if not master:
            return records
        try:
            # No wait: only what is already buffered. No limit: the master topics are small.
            left = await super()._fetch_records(consumer, master, timeout=0, max_records=None)
        except Exception as error:   # a partition's fetch error: the partition's next fetch raises it again
            log.warning("buffered master records not taken with the rest of the fetch: %r", error)
            return records
        return with_master_records(records, left)

    def _create_worker_consumer(self, transport) -> aiokafka.AIOKafkaConsumer:
        app, conf = self.app, self.app.conf
        # Faust's assignor maps the tables' changelog partitions to their owners (and standbys).
        assignor = (app.assignor if conf.table_standby_replicas > 0 or app.tables.changelog_topics
                    else RoundRobinPartitionAssignor)
        if conf.broker_session_timeout > conf.broker_request_timeout:
            raise ImproperlyConfigured(
                f"Setting broker_session_timeout={conf.broker_session_timeout} "
                f"cannot be greater than broker_request_timeout={conf.broker_request_timeout}")
        return aiokafka.AIOKafkaConsumer(
            client_id=conf.broker_client_id,
            group_id=conf.id,
            group_instance_id=conf.consumer_group_instance_id,
            bootstrap_servers=server_list(transport.url, transport.default_port),
            partition_assignment_strategy=[assignor],
            enable_auto_commit=False,
            auto_offset_reset=conf.consumer_auto_offset_reset,
            max_poll_records=conf.broker_max_poll_records,
            max_poll_interval_ms=int((conf.broker_max_poll_interval or 0) * 1000.0),
            max_partition_fetch_bytes=conf.consumer_max_fetch_size,
            **fetch_settings(),
            request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
            check_crcs=conf.broker_check_crcs,
            session_timeout_ms=int(conf.broker_session_timeout * 1000.0),
            rebalance_timeout_ms=int(conf.broker_rebalance_timeout * 1000.0),
            heartbeat_interval_ms=int(conf.broker_heartbeat_interval * 1000.0),
            isolation_level="read_committed" if self.consumer.in_transaction else "read_uncommitted",
            metadata_max_age_ms=conf.consumer_metadata_max_age_ms,
            connections_max_idle_ms=conf.consumer_connections_max_idle_ms,
            **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with our commit rules (holes, an acked head) and seek (above)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stale_holes: dict = {}     # partition -> lowest offset skipped as stale and not handled since
        self.first_offsets = FirstOffsets()   # partitions never committed, sought to their first offset

    def _new_consumer_thread(self) -> ConsumerInAppLoop:
        return ConsumerInAppLoop(self, loop=self.loop, beacon=self.beacon)

    def committed_offset(self, tp) -> int | None:
        """The partition's next offset to process as last committed here or found at the seek after
        a rebalance (None: not known), for the agents' order check and the lag views."""
        return self._committed_offset.get(tp)

    async def _drain_messages(self, fetcher) -> None:
        """Faust's drainer, with one race against a rebalance per fetch instead of per record.

        Faust hands each fetched record to the agents inside `wait_first(callback(record),
        suspend_flow.wait())`: two tasks, an `asyncio.wait` and a cancellation per record, so that a
        stop (`Consumer.stop_flow`) can interrupt a hand-over blocked on a full agent queue. Here the
        records of one fetch are handed over in order by one coroutine, raced once against the same
        event. A rebalance does not set that event: it stops the hand-over itself, between two
        records (`_hand_over_fetched`). What Faust does per record besides (read offsets, gaps,
        commit_every) is Faust's, but for the topics whose order our agents keep.
        """
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = master_data_first([pair async for pair in self.getmany(timeout=1.0)])
                await self.sleep(0)
                if fetched and not self.should_stop:
                    await self.wait_first(self._hand_over_fetched(fetched), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _hand_over_fetched(self, fetched: list) -> None:
        """Hand the records of one fetch to the agents, in order, while their consumer generation lasts.

        A record's hand-over waits while a rebalance has the flow stopped (Faust's `on_message`
        acquires the app's flow control), and goes on after it. A record fetched before the
        rebalance must then not move its partition's read offset: Faust's seek has just set it to
        the offset the partition is read again from, and the records read again below a moved one
        would be dropped as already read. Faust's own drainer moves it for the one record in hand;
        a whole fetch would move it to the fetch's end (a master partition never fully loaded, on
        two workers started together under load: RELIABILITY.md §5 row 3b). So the hand-over ends
        at the first record of an older generation; the records left are read again.
        """
        app = self.app
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = app.topics.acks_enabled_for
        commit_every = self._commit_every
        for count, (tp, message) in enumerate(fetched, 1):
            if count % 100 == 0:
                await asyncio.sleep(0)   # as Faust's drainer: the agents run between long hand-overs
            if of_older_generation(app, message):
                return
            offset = message.offset
            # Faust drops a record below its partition's read offset and counts the offsets it jumped
            # over as processed ("gaps", meant for compacted topics). When records arrive out of
            # order around a rebalance, the first drops the record an agent is waiting for and the
            # second lets a commit pass records nobody handled: on IN_ORDER_TOPICS the agents keep
            # the order themselves (agents/streams.py), so neither applies.
            last_read = None if tp.topic in IN_ORDER_TOPICS else read_offset[tp]
            if last_read is not None and offset < last_read:
                continue
            if last_read and offset - last_read > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, last_read + 1, offset)
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            await callback(message)
            if of_older_generation(app, message):
                return   # it waited out a rebalance: the agents let it go as stale (agents/streams.py)
            read_offset[tp] = offset

    def ack(self, message) -> bool:
        """Faust's ack, except for a record of an older generation: let go of, with a hole."""
        holes = self.stale_holes
        tp, offset = message.tp, message.offset
        if of_older_generation(self.app, message):
            let_go_stale(self, message)
            return False
        if tp in holes and offset <= holes[tp]:
            del holes[tp]  # read again from below the hole: the skipped records are being handled
        return super().ack(message)

    def _new_offset(self, tp):
        """Faust's offset to commit, unless a hole or an unacked head is in the way: then none."""
        holes = self.stale_holes
        if tp in holes:
            committed = self.committed_offset(tp)
            if committed is None or committed <= holes[tp]:
                return None  # a skipped record is not handled yet: commit nothing past the last commit
            del holes[tp]  # committed past it meanwhile (handled by this worker or another owner)
        if tp.topic in IN_ORDER_TOPICS and not _head_acked(self, tp):
            return None  # the next record to commit is still in flight: commit nothing past it
        return super()._new_offset(tp)

    async def perform_seek(self) -> None:
        """Faust's seek, then every never-committed stream partition to its first offset.

        A seek that a rebalance overtakes stops there. Faust also seeks from its fetcher while the
        flow is stopped, that is during a rebalance, and such a seek may end after the next
        assignment: its committed offsets are the old assignment's, so a newly assigned partition
        holding a commit looked uncommitted, was sought to offset 0 and had that offset taken for the
        next one in the new generation: the likeliest cause of the last unexplained re-read from 0
        in the long chaos runs (RELIABILITY.md §5 row 4f). The new generation's own seek, in Faust's
        recovery, decides for its partitions.
        """
        generation = self.app.consumer_generation_id
        await super().perform_seek()
        assigned = self.assignment()
        changelogs = self.app.tables.changelog_topics
        uncommitted = [tp for tp in assigned
                       if tp.topic not in changelogs and not tp.topic.endswith("__assignor-__leader")
                       and self.committed_offset(tp) is None]
        first = dict(await self.earliest_offsets(*uncommitted)) if uncommitted else {}
        if self.app.consumer_generation_id != generation:
            self.log.info("a seek begun in generation %s overtaken by generation %s: left to the new one",
                          generation, self.app.consumer_generation_id)
            return
        self.first_offsets.sought(generation, first)
        if first:
            await self.seek_wait(first)
        holes = self.stale_holes
        for tp in list(holes):
            committed = self.committed_offset(tp)
            if tp not in assigned or (committed is not None and committed > holes[tp]):
                del holes[tp]  # revoked, or another worker handled it since


class Producer(faust_aiokafka.Producer):
    """Faust's producer, plus one way to hand many records over at once (app/outbox.py)."""

    async def send_in_batches(self, records: list[OutgoingRecord]) -> list[asyncio.Future]:
        """Send `records` grouped per topic partition, each group in its order, as whole record
        batches (`AIOKafkaProducer.send_batch`): one future per record batch, where `send` makes a
        coroutine, a future and a callback per record. A keyed record goes to the partition the
        producer's partitioner would pick (Kafka's murmur2, as `send` does: the unit tests compare).
        A record batch full at `max_batch_size` is sent and another begun. Record batches of
        different partitions are queued concurrently: aiokafka waits, per partition, until the
        previous batch has left before it takes the next. Records its reader unpacks go packed,
        per partition (`packed_runs`).
        """
        producer = self._ensure_producer()
        partitions_of: dict[str, list[int]] = {}
        by_partition: dict[tuple[str, int], list[OutgoingRecord]] = {}
        for record in records:
            partition = record.partition
            if partition is None:
                partitions = partitions_of.get(record.topic)
                if partitions is None:
                    partitions = partitions_of[record.topic] = sorted(await producer.partitions_for(record.topic))
                partition = self._partition_of(record.key, partitions, producer, record.topic)
            by_partition.setdefault((record.topic, partition), []).append(record)
        sent = await asyncio.gather(*(
            self._send_partition(producer, topic, partition, packed_runs(topic, partition, group))
            for (topic, partition), group in by_partition.items()))
        return [delivery for deliveries in sent for delivery in deliveries]

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers, *, transactional_id: str | None = None):
        """Faust's `send`, with a record of a topic partitioned by SKU (`app.domain.keys.partition_key`)
        sent to its SKU's partition: aiokafka's partitioner would hash the whole key."""
        if partition is None and key is not None and topic in PARTITIONED_BY_SKU:
            producer = self._ensure_producer()
            partition = self._partition_of(key, sorted(await producer.partitions_for(topic)), producer, topic)
        return await super().send(topic, key, value, partition, timestamp, headers, transactional_id=transactional_id)

    def _partition_of(self, key: bytes | None, partitions: list[int], producer, topic: str) -> int:
        """The partition aiokafka's `send` would choose with the partitioner Faust gives it (Kafka's
        default unless the app configures one), the default's key hash remembered; on a topic
        partitioned by SKU, hashed from the key's SKU."""
        if key is not None:
            key = partition_key(topic, key)
            if type(self.partitioner) is DefaultPartitioner:
                return partitions[key_hash(key) % len(partitions)]
        available = list(producer.client.cluster.available_partitions_for_topic(topic) or ())
        return self.partitioner(key, partitions, available)

    async def _send_partition(self, producer, topic: str, partition: int,
                              records: list[OutgoingRecord]) -> list[asyncio.Future]:
        deliveries = []
        builder, in_builder = producer.create_batch(), []
        for record in records:
            if builder.append(timestamp=None, key=record.key, value=record.value, headers=record.headers or []) is None:
                deliveries.append(await self._submit(producer, builder, topic, partition, in_builder))
                builder, in_builder = producer.create_batch(), []
                builder.append(timestamp=None, key=record.key, value=record.value, headers=record.headers or [])
            in_builder.append(record)
        deliveries.append(await self._submit(producer, builder, topic, partition, in_builder))
        return deliveries

    @staticmethod
    async def _submit(producer, builder, topic: str, partition: int, records: list[OutgoingRecord]) -> asyncio.Future:
        # A stage batch's records for one partition are already the record batch: closed, aiokafka
        # sends it as soon as the broker connection is free instead of letting it linger
        # `linger_ms` for records that are not coming. (A record sent alone to that partition
        # meanwhile waits until it has left, rather than joining it.)
        builder.close()
        delivery = await producer.send_batch(builder, topic, partition=partition)
        # Closed, the record batch holds exactly `records`, in their order.
        for index, record in enumerate(records):
            if record.on_delivered is not None:
                delivery.add_done_callback(call_with_offset(record.on_delivered, index))
        return delivery


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer
