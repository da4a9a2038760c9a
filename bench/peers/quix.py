"""Quix Streams doing bench.domain's job: RocksDB state scoped to the message key, deltas to a topic.

At-least-once, changelog topics on, checkpoint every 5 s (the library's defaults).

    python -m bench.peers.quix --bootstrap 127.0.0.1:39192 --group g --input bench.movements --output out --state DIR
"""
from __future__ import annotations

import argparse
import time

from quixstreams import Application, State

from bench.domain import apply_movement


def build(args: argparse.Namespace) -> Application:
    # Built inside a function: app.topic() talks to the broker when the pipeline is defined.
    app = Application(broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      commit_interval=5.0, processing_guarantee="at-least-once", state_dir=args.state,
                      use_changelog_topics=True, loglevel="WARNING")
    movements = app.topic(args.input, key_deserializer="bytes", value_deserializer="json")
    deltas = app.topic(args.output, key_serializer="bytes", value_serializer="json")

    def count_per_key(movement: dict, state: State) -> dict:
        new, delta = apply_movement(state.get("s"), movement)
        state.set("s", new)
        return delta

    # Quix keeps the input record's timestamp on output records; stamp them with the time of
    # production instead, as the other systems' producers do, so timestamps measure latency.
    sdf = app.dataframe(movements).apply(count_per_key, stateful=True)
    sdf.set_timestamp(lambda _value, _key, _timestamp, _headers: int(time.time() * 1000)).to_topic(deltas)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "group", "input", "output", "state"):
        parser.add_argument(f"--{name}", required=True)
    build(parser.parse_args()).run()


if __name__ == "__main__":
    main()
