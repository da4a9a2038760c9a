"""The Faust application and its topic handles, built once from Settings."""
from __future__ import annotations

import hashlib
import ssl

import faust
from mode.utils.objects import cached_property

from app import faust_fixes, kafka_transport
from app import topics as t
from app.models import limits
from app.connection import faust_credentials
from app.settings import Settings
from app.stop_deadline import StopDeadline

settings = Settings.from_env()
limits.configure(settings.limits)


def web_ssl_context(s: Settings) -> ssl.SSLContext | None:
    """HTTPS for the web views when WEB_TLS_CERT and WEB_TLS_KEY are set."""
    if s.web_tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(s.web_tls_cert), str(s.web_tls_key))
    return context


def canonical_url(s: Settings) -> str:
    """Where this worker's web views are reached (web views proxy a key's request to its owner)."""
    return f"{'https' if s.web_tls_cert else 'http'}://{s.web_host}:{s.web_port}"


def group_instance_id(s: Settings) -> str | None:
    """The worker's static identity in the consumer group: KAFKA_GROUP_INSTANCE_ID and its URL.

    A static member that rejoins is handed its previous assignment without a rebalance, and
    Faust's assignor refuses an assignment made for another URL (an AssertionError inside
    aiokafka's coordinator: the worker never consumes again). So a worker that comes back at
    another address must come back as another member: the URL is part of the identity.
    """
    if s.group_instance_id is None:
        return None
    return f"{s.group_instance_id}-{hashlib.blake2b(canonical_url(s).encode(), digest_size=4).hexdigest()}"


class App(faust.App):
    """Faust's app, with the flow control our record loop needs (app/faust_fixes.py) and, in a
    worker process, a stop that ends within STOP_TIMEOUT (app/stop_deadline.py)."""

    # Set by the worker's entry point (app/worker.py) only: the deadline exits the process, which a
    # test or a tool that uses the app in-process must never see.
    stop_deadline: StopDeadline | None = None

    @cached_property
    def flow_control(self) -> faust_fixes.FlowControl:
        return faust_fixes.FlowControl(loop=self.loop)

    async def on_stop(self) -> None:
        """Faust's stop (drain the streams, commit, flush), bounded by the stop deadline if one is set."""
        if self.stop_deadline is not None:
            self.stop_deadline.arm()
        await super().on_stop()

    def what_the_stop_waits_on(self) -> str:
        """For the deadline's log line; called on its thread while the loop may still run: a count only."""
        in_flight = kafka_transport.records_in_flight(self._consumer) if self._consumer is not None else 0
        return f"{in_flight} records in flight, not acknowledged (is the broker reachable?)"


def create_app(s: Settings) -> faust.App:
    web_tls = web_ssl_context(s)
    return App(
        s.app_id,
        # Our transport: Faust's aiokafka driver with our consumer (commit and seek rules, fetch wait).
        broker=[f"{kafka_transport.SCHEME}://{b}" for b in s.kafka_bootstrap.split(",")],
        # Faust's RocksDB store, restoring changelogs in bulk at each rebalance (tables/restore.py).
        store="bulkrocksdb://",
        datadir=str(s.data_dir),
        topic_partitions=s.topic_partitions,
        broker_credentials=faust_credentials(s.kafka),
        topic_replication_factor=s.topic_replication,
        processing_guarantee=s.processing_guarantee,
        # Keys are plain UTF-8 strings everywhere ("SKU@LOCATION"): topic keys, changelog keys and
        # table_route all hash the same bytes, so a web request reaches the partition's owner.
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        web_host=s.web_host,
        web_bind=s.web_host,
        web_port=s.web_port,
        web_enabled=True,
        web_ssl_context=web_tls,
        # The owner of a key is reached at this URL (web views proxy there), so it names the scheme.
        canonical_url=canonical_url(s),
        # Faust's own views serve table contents, the cluster map, sensors and the service graph to
        # anyone: off (SPEC §10). Our views route to a key's owner through app.router directly, which
        # does not need the /router view.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        # aiohttp refuses a body over this while it is read; the guarded views answer 413 as JSON.
        web_application_options={"client_max_size": s.web_max_body},
        web_in_thread=False,
        autodiscover=False,
        table_standby_replicas=0,
        # A worker that dies without leaving (SIGKILL, OOM, power) holds its partitions until the
        # group coordinator gives up on it: Faust's 60 s default stalled those keys a full minute.
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=min(3.0, s.session_timeout / 5),
        # Static membership (KAFKA_GROUP_INSTANCE_ID): a worker restarted under the same identity
        # takes its place in the group at once instead of waiting out its predecessor's session,
        # and a graceful stop does not leave the group (no rebalance for a restart).
        consumer_group_instance_id=group_instance_id(s),
        # Records wait up to this long to share a produce request (one per broker, a batch per
        # partition): at 5 ms a batch held about one record and the producer's per-request work
        # was a large part of the worker's CPU (BENCHMARKS.md, "What was optimised"). Only records
        # sent alone wait for it now: a stage batch's record batches go closed (kafka_transport).
        producer_linger=s.producer_linger_ms / 1000,
        # aiokafka keeps one batch per partition and, once it is full, makes every further send to
        # that partition wait until the batch has gone out: at the 16 KiB default (~30 availability
        # records) a stage that hands the producer a thousand records at once waited on the broker
        # round trip every few dozen of them. Batches up to 512 KiB (a request stays under 1 MB).
        producer_max_batch_size=512 * 1024,
        stream_buffer_maxsize=4096,
        broker_max_poll_records=500,
        # aiokafka refreshes metadata every 300 s by default; a producer that missed a partition's
        # leader right after start (seen under load on fresh topics) held its records that long.
        producer_metadata_max_age_ms=30_000,
        consumer_metadata_max_age_ms=30_000,
        logging_config=None,
    )


app = create_app(settings)


@app.on_before_shutdown.connect
async def _commit_what_was_processed(sender: faust.App, **_: object) -> None:
    """On a graceful stop Faust drains the streams (every event in flight finished and acked) but
    never commits: whatever was processed since the last periodic commit (up to 2.8 s) would be
    processed again by the next owner. Commit it here (Faust flushes the producer first)."""
    try:
        await sender.consumer.commit()
    except Exception as exc:  # a stop must not fail on this: the records are only processed again
        sender.log.warning("commit at shutdown failed (%r): the last records will be processed again", exc)


def _topic(name: str, **kwargs) -> faust.TopicT:
    spec = next(s for s in t.TOPIC_SPECS if s.name == name)
    return app.topic(name, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions,
                     config=t.topic_config(spec, settings.topic_replication, settings.audit_retention_ms), **kwargs)


raw_topics = {name: _topic(name) for name in t.RAW_TOPICS}
master_items_topic = _topic(t.MASTER_ITEMS)
master_locations_topic = _topic(t.MASTER_LOCATIONS)
erp_snapshots_topic = _topic(t.ERP_SNAPSHOTS)
movements_topic = _topic(t.MOVEMENTS)
availability_topic = _topic(t.AVAILABILITY)
channel_availability_topic = _topic(t.CHANNEL_AVAILABILITY)
postings_topic = _topic(t.POSTINGS)
journal_batches_topic = _topic(t.JOURNAL_BATCHES)
finance_exceptions_topic = _topic(t.FINANCE_EXCEPTIONS)
erp_acks_topic = _topic(t.ERP_ACKS)
erp_rejections_topic = _topic(t.ERP_REJECTIONS)
dlq_topic = _topic(t.DLQ)
reconciliation_topic = _topic(t.RECONCILIATION)
ledger_topic = _topic(t.LEDGER)
lineage_topic = _topic(t.LINEAGE)
recon_checks_topic = _topic(t.RECON_CHECKS)
recon_results_topic = _topic(t.RECON_RESULTS)
audit_topic = _topic(t.AUDIT)
