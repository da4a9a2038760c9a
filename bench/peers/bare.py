"""The loop both bare aiokafka peers run (the ceiling and the same-hops floor): `getmany`, hand each
partition's records to the peer, and every 5 s flush the producer before committing (at-least-once)."""
from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

COMMIT_EVERY = 5.0


async def consume(bootstrap: str, group: str, topics: list[str],
                  handle: Callable[[AIOKafkaProducer, object, list], Awaitable[None]]) -> None:
    """Until SIGTERM: `handle(producer, partition, records)` for what each `getmany` returns."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20,
                                fetch_max_bytes=16 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 << 10)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    last_commit = time.monotonic()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for tp, messages in batch.items():
                await handle(producer, tp, messages)
            if time.monotonic() - last_commit >= COMMIT_EVERY:
                await producer.flush()
                await consumer.commit()
                last_commit = time.monotonic()
    finally:
        await producer.flush()
        await consumer.commit()
        await consumer.stop()
        await producer.stop()


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every bare peer takes; each adds its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--output", required=True)
    return parser
