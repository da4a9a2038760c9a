"""The pipeline's own floor: a bare aiokafka loop that reads and writes as many records per raw event
as the pipeline did on the same data, and does nothing else with them.

The pipeline's Kafka bill per raw event is what `bench.scenarios.pipeline_volume` counts after a
pipeline run: the records it wrote (internal hops, outputs, changelogs, trace facts) and, of those,
the ones it read back (its internal topics). This loop pays the same bill with no processing: for
each raw record it writes `--read-back` records (fractions carried over) to an internal topic; for
each of those it reads back it writes its share of the rest (`--written` − `--read-back`) to the
output topic. Values are copies of the raw record's (the pipeline's records are of that order of
size; its day-ledger changelog records are larger). At-least-once like the others: the producer is
flushed before offsets are committed (every 5 s).

    python -m bench.peers.hops --bootstrap 127.0.0.1:39192 --group g --output out --internal hop \\
        --written 14.2 --read-back 4.1
"""
from __future__ import annotations

import argparse
import asyncio

from app.topics import RAW_TOPICS
from bench.peers import bare


class Share:
    """Whole records to write per record read, with the fraction carried to the next one."""

    def __init__(self, per_record: float) -> None:
        self.per_record, self.carried = per_record, 0.0

    def take(self) -> int:
        self.carried += self.per_record
        whole = int(self.carried)
        self.carried -= whole
        return whole


async def run(args: argparse.Namespace) -> None:
    hops = Share(args.read_back)
    rest = Share((args.written - args.read_back) / args.read_back) if args.read_back else None

    async def handle(producer, tp, messages) -> None:
        topic, share = (args.output, rest) if tp.topic == args.internal else (args.internal, hops)
        for m in messages:
            for _ in range(share.take()):
                await producer.send(topic, m.value, key=m.key)

    await bare.consume(args.bootstrap, args.group, [*RAW_TOPICS, args.internal], handle)


def main() -> None:
    parser = bare.arguments(__doc__)
    parser.add_argument("--internal", required=True)
    parser.add_argument("--written", type=float, required=True, help="records written per raw event")
    parser.add_argument("--read-back", type=float, required=True, help="of those, records read back per raw event")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
