"""The Python ceiling: a bare aiokafka consume → dict → produce loop doing bench.domain's job.

At-least-once like the others: deltas are flushed before offsets are committed (every 5 s). State
lives in a dict; `--changelog` also writes each batch's dirty keys to a compacted changelog topic,
the durability bill the frameworks pay ("fair ceiling").

    python -m bench.peers.ceiling --bootstrap 127.0.0.1:39192 --group g --input bench.movements --output out
"""
from __future__ import annotations

import argparse
import asyncio

import orjson

from bench.domain import apply_movement
from bench.peers import bare


async def run(args: argparse.Namespace) -> None:
    state: dict[bytes, dict] = {}
    loads, dumps = orjson.loads, orjson.dumps

    async def handle(producer, tp, messages) -> None:
        dirty: dict[bytes, dict] = {}
        for m in messages:
            new, delta = apply_movement(state.get(m.key), loads(m.value))
            state[m.key] = new
            await producer.send(args.output, dumps(delta), key=m.key, partition=tp.partition)
            if args.changelog:
                dirty[m.key] = new
        for key, value in dirty.items():
            await producer.send(args.changelog, dumps(value), key=key)

    await bare.consume(args.bootstrap, args.group, [args.input], handle)


def main() -> None:
    parser = bare.arguments(__doc__)
    parser.add_argument("--input", required=True)
    parser.add_argument("--changelog", default="")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
