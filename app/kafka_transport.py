"""The app's Kafka transport: Faust's aiokafka driver, with the worker's consumer built here.

Faust builds its worker consumer with `fetch_max_wait_ms=1500` fixed in the code, and the broker
answers the requests of one connection in turn. So every offset look-up Faust's recovery makes
after a rebalance (high-waters, then earliest offsets of the changelogs, for actives and again for
standbys) queued behind an idle fetch: about 4.5 s of every recovery, seen in the soak's worker logs
(RELIABILITY.md §5). Here the consumer waits at most FETCH_MAX_WAIT_MS on a fetch that finds nothing.

The seam is Faust's own plug-in point for transports (the `faust.transports` entry point in
pyproject.toml; the app's broker URLs use its scheme, SCHEME): a subclass of Faust's driver, not a
patch of it. The consumer's other settings are Faust's, taken from the app's configuration as
Faust takes them; tests/unit/test_kafka_transport.py compares the two consumers setting by setting,
so a Faust upgrade that changes its consumer breaks that test, not a worker.
"""
from __future__ import annotations

import aiokafka
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from faust.exceptions import ImproperlyConfigured
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list

SCHEME = "stock-sync-kafka"
FETCH_MAX_WAIT_MS = 200   # Kafka's Java consumer waits 500 ms; an idle worker fetches 5 times a second


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
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
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
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
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
