"""`/metrics` for Prometheus (no auth) and `/v1/stats`: consumer lag and the DLQ index, computed when asked."""
from __future__ import annotations

from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily

from app.faust_app import app
from app.web.auth import VIEWER
from app.web.dlq import index as dead_letters
from app.web.http import guarded, json_response, owner_url
from tables.catch_up import master_changes_behind


def _is_input(tp: TP) -> bool:
    # Changelogs are read by recovery, not processed; the assignor topic is Faust's own.
    return not tp.topic.endswith("-changelog") and "__assignor" not in tp.topic


def consumer_lag() -> list[dict]:
    """Per assigned input partition: `lag` = highwater − committed offset (what Kafka's consumer-group
    tools call lag; it includes records processed since the last commit, every ~3 s) and `unprocessed`
    = highwater − the next offset to read (records this worker has not taken yet)."""
    if not app.started:
        return []
    consumer = app.consumer
    rows = []
    for tp in sorted(filter(_is_input, consumer.assignment())):
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue  # nothing fetched from this partition yet
        read = consumer._read_offset.get(tp)        # last offset taken from the partition
        committed = consumer.committed_offset(tp)  # next offset to process, as Faust committed it
        position = read + 1 if read is not None else committed or 0
        committed = committed if committed is not None else position
        rows.append({"topic": tp.topic, "partition": tp.partition, "highwater": highwater,
                     "committed": committed, "lag": max(0, highwater - committed),
                     "unprocessed": max(0, highwater - position)})
    return rows


class PipelineCollector:
    """Metrics that are read, not counted: consumer lag per partition and the DLQ by error code."""

    def collect(self):
        lag = GaugeMetricFamily("stock_sync_consumer_lag", "Highwater minus committed offset, per input partition",
                                labels=["topic", "partition"])
        rows = consumer_lag()
        for row in rows:
            lag.add_metric([row["topic"], str(row["partition"])], row["lag"])
        yield lag
        yield GaugeMetricFamily("stock_sync_worker_lag", "Highwater minus committed offset, this worker",
                                value=sum(r["lag"] for r in rows))
        yield GaugeMetricFamily("stock_sync_worker_unprocessed",
                                "Records in assigned input partitions not yet taken by this worker",
                                value=sum(r["unprocessed"] for r in rows))
        behind = master_changes_behind(app)
        if behind is not None:
            yield GaugeMetricFamily("stock_sync_master_data_behind",
                                    "Master data changes (global tables' changelogs) this worker has not applied yet",
                                    value=behind)
        dlq = GaugeMetricFamily("stock_sync_dlq_topic_records", "Dead letters in inventory.dlq, by error code",
                                labels=["code"])
        for code, count in sorted(dead_letters.by_code.items()):
            dlq.add_metric([code], count)
        yield dlq


REGISTRY.register(PipelineCollector())


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        return self.bytes(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


@app.page("/v1/stats")
class Stats(View):
    @guarded(VIEWER)
    async def get(self, request: Request) -> Response:
        lag = consumer_lag()
        return json_response(self, {
            "worker": owner_url(),
            "consumer_lag": {"total": sum(r["lag"] for r in lag), "unprocessed": sum(r["unprocessed"] for r in lag),
                             "partitions": lag},
            "dead_letters": dead_letters.summary(),
        })
