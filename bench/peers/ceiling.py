"""The Python ceiling: a bare aiokafka consume → dict → produce loop doing bench.domain's job.

At-least-once like the others: deltas are flushed before offsets are committed (every 5 s). State
lives in a dict; `--changelog` also writes each batch's dirty keys to a compacted changelog topic,
the durability bill the frameworks pay ("fair ceiling").

    python -m bench.peers.ceiling --bootstrap 127.0.0.1:39192 --group g --input bench.movements --output out
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.domain import apply_movement


async def run(args: argparse.Namespace) -> None:
    consumer = AIOKafkaConsumer(args.input, bootstrap_servers=args.bootstrap, group_id=args.group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=16 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 << 10)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    state: dict[bytes, dict] = {}
    last_commit = time.monotonic()
    loads, dumps, send = orjson.loads, orjson.dumps, producer.send
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            dirty: dict[bytes, dict] = {}
            for tp, messages in batch.items():
                for m in messages:
                    new, delta = apply_movement(state.get(m.key), loads(m.value))
                    state[m.key] = new
                    await send(args.output, dumps(delta), key=m.key, partition=tp.partition)
                    if args.changelog:
                        dirty[m.key] = new
            for key, value in dirty.items():
                await send(args.changelog, dumps(value), key=key)
            if time.monotonic() - last_commit >= 5.0:
                await producer.flush()
                await consumer.commit()
                last_commit = time.monotonic()
    finally:
        await producer.flush()
        await consumer.commit()
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--changelog", default="")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
