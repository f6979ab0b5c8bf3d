"""``darknet-iodef run``: sensor, aggregator and reporter in one process over the in-memory bus.

The stages are the ones Kafka mode runs (:mod:`darknet_iodef.pipeline`),
driven in turn by one thread: after every interval the sensor publishes, the
aggregator's and then the reporter's runner take everything waiting for them,
so memory holds about one interval of flows at a time and the output appears
while the capture is read. The bus has one partition per topic: one
aggregator needs no spreading, and its spoofing summaries are then exactly
those of ``darknet-iodef aggregate``. The result -- ``events.jsonl``, the
documents under ``incidents/`` -- is byte for byte what the chain
``sensor | aggregate | report`` writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aggregator.settings import AggregatorSettings
from darknet_iodef.bus.memory import MemoryBus
from darknet_iodef.bus.settings import BusSettings
from darknet_iodef.errors import DarknetError
from darknet_iodef.flowtuple import FlowBatch
from darknet_iodef.metrics import aggregator_metrics, reporter_metrics, sensor_metrics
from darknet_iodef.pipeline.aggregator_stage import AggregatorStage
from darknet_iodef.pipeline.reporter_stage import ReporterStage
from darknet_iodef.pipeline.sensor_stage import SensorStage, publish_captures, publish_live, publisher_for
from darknet_iodef.pipeline.settings import PipelineSettings
from darknet_iodef.pipeline.summary import SourceCounter, dumps, event_summary
from darknet_iodef.runner import Output, Runner, runner_for
from reporter.contacts import ContactTable
from reporter.rid import SigningIdentity
from reporter.settings import ReporterSettings
from sensor.settings import SensorSettings

__all__ = ["EmbeddedResult", "run_embedded"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EmbeddedResult:
    summary: dict[str, Any]
    out: Path


def _drain(runner: Runner) -> None:
    while runner.step(0.0):
        pass


def reloader(
    agg_stage: AggregatorStage,
    rep_stage: ReporterStage,
    contacts_loader: Callable[[], ContactTable | None] | None,
) -> Callable[[], None]:
    """What SIGHUP does in a live run: re-read the allow-list and the contacts table.

    A table that no longer loads keeps the previous one (one line in the log),
    so an operator's typo never stops a telescope.
    """

    def reload() -> None:
        agg_stage.known.reload()
        if contacts_loader is None:
            return
        try:
            table = contacts_loader()
        except DarknetError as exc:
            log.warning("Keeping the previous contacts table: %s", exc)
            return
        rep_stage.contacts = table
        log.info(
            "Reloaded the contacts table: %d organisations, %d prefixes",
            len(table.contacts) if table is not None else 0,
            table.prefix_count if table is not None else 0,
        )

    return reload


def run_embedded(
    captures: Sequence[str],
    out: Path,
    *,
    sensor: SensorSettings,
    aggregator: AggregatorSettings,
    reporter: ReporterSettings,
    pipeline: PipelineSettings,
    bus: BusSettings,
    contacts: ContactTable | None = None,
    signer: SigningIdentity | None = None,
    interface: str | None = None,
    live: Any = None,
    stop: threading.Event | None = None,
    progress_enabled: bool | None = None,
    deliver: Any = None,
    contacts_loader: Callable[[], ContactTable | None] | None = None,
) -> EmbeddedResult:
    """Run the whole pipeline on ``captures`` (or live on ``interface``); write everything under ``out``."""
    stop = stop or threading.Event()
    bus = dataclasses.replace(bus, kafka="", flows_partitions=1, events_partitions=1)
    mem = MemoryBus(bus.topic_partitions())
    out.mkdir(parents=True, exist_ok=True)
    incidents = out / "incidents"
    incidents.mkdir(exist_ok=True)

    sensor_stage = SensorStage(bus.flows_topic, bus.flows_partitions, metrics=sensor_metrics())
    agg_stage = AggregatorStage(
        aggregator,
        events_topic=bus.events_topic,
        flows_partitions=1,
        sensor_lag_s=pipeline.sensor_lag_s,
        metrics=aggregator_metrics(),
    )
    rep_stage = ReporterStage(
        reporter,
        incidents,
        contacts=contacts,
        signer=signer,
        grace_s=pipeline.report_grace_s,
        keep_periods=pipeline.report_keep_periods,
        deliver=deliver,
        metrics=reporter_metrics(),
    )
    # ``stop`` ends the capture; what was captured is then processed to the end (the memory bus
    # never fails, so these runners never wait), hence their own event, never set
    done = threading.Event()
    agg = runner_for(agg_stage, mem, bus, group=bus.aggregator_group, topics=[bus.flows_topic], stop=done)
    rep = runner_for(rep_stage, mem, bus, group=bus.reporter_group, topics=[bus.events_topic], stop=done)
    for runner in (agg, rep):
        runner.poll_timeout = 0.0  # one thread feeds the bus: whatever is not there now will not come
    publisher = publisher_for(mem, bus, done)
    sources = SourceCounter()

    def on_batch(batch: FlowBatch) -> None:
        sources.add(batch.flows["src_ip"])

    def publish(outputs: list[Output]) -> None:
        publisher.publish(outputs)
        _drain(agg)
        _drain(rep)

    if interface:
        live_summary = publish_live(
            interface,
            sensor,
            live,
            sensor_stage,
            publish,
            stop=stop,
            on_batch=on_batch,
            reload_callbacks=[reloader(agg_stage, rep_stage, contacts_loader)],
        )
        packets = int(getattr(live_summary, "frames", 0))
    else:
        publish_captures(
            captures, sensor, sensor_stage, publish, progress_enabled=progress_enabled, on_batch=on_batch
        )
        packets = sensor_stage.totals.capture_records
    agg.run(until_end=True)
    rep.run(until_end=True)
    rep_stage.close()

    events_bytes = b"".join(m.value for m in mem.messages(bus.events_topic))
    (out / "events.jsonl").write_bytes(events_bytes)
    events = [json.loads(line) for line in events_bytes.splitlines() if line.strip()]
    st = sensor_stage.totals.builder
    summary: dict[str, Any] = {
        "sensor": {
            "captures": list(captures) if not interface else [],
            "interface": interface or None,
            "packets": packets,
            "dark_packets": int(st.get("dark_packets", 0)),
            "dropped_packets": {
                k.removesuffix("_packets"): int(v)
                for k, v in sorted(st.items())
                if k.endswith("_packets") and v and k not in ("packets", "dark_packets", "malformed_packets")
            },
            "sources": len(sources),
            "flows": sensor_stage.totals.flows,
            "intervals": sensor_stage.totals.batches,
        },
        "events": event_summary(events),
        "reports": {
            "documents": rep_stage.documents(),
            "recipients": rep_stage.recipients(),
            "unassigned": rep_stage.unassigned(),
            "not_reported": rep_stage.withheld_counts(),
            "directory": str(incidents),
        },
        "bus": {
            "flows_messages": sensor_stage.totals.messages,
            "dead_letters": agg.stats.dead_letters + rep.stats.dead_letters,
        },
    }
    (out / "summary.json").write_bytes(dumps(summary))
    return EmbeddedResult(summary, out)
