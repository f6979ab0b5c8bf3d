"""The stage loop and its failure policy, in one place (STYLE.md habit 5).

Theory of operation. A stage (IntelMQ's bot, corsaro's plugin) is a small
class: :meth:`Stage.process` turns one bus message into output records, and
optional hooks emit what it holds at an interval's end. The :class:`Runner`
does everything else, the same way for every stage and either bus:

1. **poll** a batch from the consumer group;
2. **process** each message; outputs are queued on the producer;
3. **flush** the producer until the broker holds every output;
4. **commit** the batch's offsets -- only now, so a crash at any point before
   re-delivers rather than loses (at-least-once; stable event ids make the
   duplicates harmless). A stage that keeps state across messages (open
   windows) reports, through :meth:`Stage.held_offsets`, the first offset whose
   effect exists only in its memory, and commits stop there.

Failures, by kind:

* **Transient** (:class:`TransientError`: broker or peer away): wait with
  bounded exponential backoff and jitter, and try the same operation again --
  the same poll, the same flush (the producer keeps its records), the same
  commit, or the same message. Never a tight loop, never a crash.
* **Poison input** (:class:`InputError` from the stage, e.g. a flow batch
  that does not decode): the message goes to the dead-letter topic with its
  origin and reason (:mod:`darknet_iodef.bus.deadletter`), a counter moves, one
  line is logged, and the batch goes on.
* **A bug** (any other exception from the stage): logged with its traceback
  and retried ``max_attempts`` times (it may have been a passing condition);
  then the message is dead-lettered with the exception as reason, so one bad
  message cannot stop the pipeline nor loop it.
* **Bad configuration** never gets here: settings are validated at start-up
  and the CLI exits 2 naming the setting.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from darknet_iodef.bus.base import Bus, Consumer, Message, Producer, TopicPartition
from darknet_iodef.bus.deadletter import encode_dead_letter
from darknet_iodef.bus.settings import BusSettings
from darknet_iodef.errors import InputError, TransientError
from darknet_iodef.metrics import StageMetrics, stage_metrics

__all__ = ["Backoff", "Output", "Publisher", "RunStats", "Runner", "Stage", "Stopped", "runner_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Output:
    """One record a stage wants on the bus (partition from the key unless given)."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


class Stage:
    """Base of a bus stage: override :meth:`process`, and the hooks the stage needs."""

    #: component name, used in metric names and dead letters (``sensor``, ``aggregator``, ...)
    name: str = "stage"

    def process(self, message: Message) -> Iterable[Output]:
        """Outputs for one message; raise InputError for a message that does not decode."""
        raise NotImplementedError

    def idle(self) -> Iterable[Output]:
        """Called when a poll found nothing: emit what is due (default: nothing)."""
        return ()

    def finish(self) -> Iterable[Output]:
        """End of a finite input: emit everything still held (not called on shutdown)."""
        return ()

    def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """These partitions moved to another member: drop what is held for them (default: nothing).

        Their new owner re-reads them from the last commit, so whatever this
        member still holds for them would only be emitted twice.
        """

    def held_offsets(self) -> Mapping[TopicPartition, int]:
        """Per partition, the first offset whose effect is still only in memory.

        A stateless stage holds nothing (the default). A windowing stage returns
        the first offset of each partition's open window, so a restart re-reads
        from there.
        """
        return {}


@dataclass(slots=True)
class Backoff:
    """Bounded exponential backoff with jitter: ``initial * 2**n`` up to ``maximum``, minus up to half."""

    initial: float = 0.2
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"unusable backoff {self.initial}..{self.maximum} x{self.multiplier}")

    def next(self) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** min(self.attempt, 64))
        self.attempt += 1
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempt = 0


@dataclass(slots=True)
class RunStats:
    """What one runner did (the embedded ``run`` prints these; tests assert them)."""

    polls: int = 0
    consumed: int = 0
    produced: int = 0
    dead_letters: int = 0
    retries: int = 0
    commits: int = 0
    refused_commits: int = 0


class Stopped(Exception):
    """The runner was asked to stop while waiting; nothing after this point is committed."""


class Runner:
    """Consume -> process -> produce -> flush -> commit, with the failure policy above."""

    def __init__(
        self,
        stage: Stage,
        consumer: Consumer,
        producer: Producer,
        *,
        dead_letter_topic: str,
        metrics: StageMetrics | None = None,
        backoff: Backoff | None = None,
        max_records: int = 500,
        poll_timeout: float = 1.0,
        max_attempts: int = 3,
        lag_interval: float = 10.0,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage = stage
        self.consumer = consumer
        self.producer = producer
        self.dead_letter_topic = dead_letter_topic
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.max_records = max_records
        self.poll_timeout = poll_timeout
        self.max_attempts = max_attempts
        self.lag_interval = lag_interval
        self.stop = stop or threading.Event()
        self._sleep = sleep
        self._clock = clock
        self._next_lag = float("-inf")
        self._committed: dict[TopicPartition, int] = {}
        self._uncommitted: dict[TopicPartition, int] = {}
        self._owned: frozenset[TopicPartition] = frozenset()
        self.stats = RunStats()

    # -- the loop ------------------------------------------------------------------------------
    def run(self, until_end: bool = False) -> RunStats:
        """Loop until :attr:`stop` is set; with ``until_end``, also stop once the input is drained.

        At the end of a drained input, :meth:`Stage.finish` emits what the stage
        still holds and everything is committed.
        """
        try:
            handled = 0
            while not self.stop.is_set():
                # at the end of a finite input, do not wait a poll timeout to learn it is over
                handled = self.step(0.0 if until_end and handled else None)
                if until_end and not handled and self._drained():
                    self._deliver(self.stage.finish())
                    self._commit_done(final=True)
                    break
        except Stopped:
            log.info("%s stopped; uncommitted messages will be read again", self.stage.name)
        return self.stats

    def step(self, timeout: float | None = None) -> int:
        """One poll, process, flush, commit cycle; returns the number of messages handled."""
        self._report_lag()
        self.stats.polls += 1
        try:
            batch = self.consumer.poll(self.max_records, self.poll_timeout if timeout is None else timeout)
        except TransientError as exc:
            self._wait("poll", exc)
            return 0
        self._check_assignment()
        if not batch:
            outputs = list(self.stage.idle())
            if outputs:
                self._deliver(outputs)
            self._commit_done()
            return 0
        self.backoff.reset()
        for message in batch:
            if self.stop.is_set():
                break  # the rest of the batch is re-read by whoever owns it next
            self._deliver_queued(self._handle(message))
            self._mark(message)
        self._flush()
        self._commit_done()
        return len(batch)

    # -- per message -----------------------------------------------------------------------------
    def _handle(self, message: Message) -> list[Output]:
        attempts = 0
        while True:
            started = self._clock()
            try:
                outputs = list(self.stage.process(message))
                self._observe(started, message)
                self.backoff.reset()
                return outputs
            except InputError as exc:
                self._observe(started, message)
                return [self._dead_letter(message, exc, warn=exc.line())]
            except TransientError as exc:
                self._wait("process", exc)
            except Exception as exc:
                attempts += 1
                log.error("%s failed on %s (attempt %d of %d)", self.stage.name, message.where, attempts,
                          self.max_attempts, exc_info=True)
                if attempts >= self.max_attempts:
                    return [self._dead_letter(message, exc, warn=f"internal error: {exc!r}")]
                self._wait("process", exc)

    def _dead_letter(self, message: Message, exc: BaseException, warn: str) -> Output:
        log.warning("%s dead-letters %s: %s", self.stage.name, message.where, warn)
        self.stats.dead_letters += 1
        if self.metrics:
            self.metrics.dead_letter_messages.labels(type(exc).__name__).inc()
        return Output(self.dead_letter_topic, message.key, encode_dead_letter(message, self.stage.name, exc))

    def _observe(self, started: float, message: Message) -> None:
        self.stats.consumed += 1
        if self.metrics:
            self.metrics.processing_duration.observe(max(0.0, self._clock() - started))
            self.metrics.consumed_messages.labels(message.topic).inc()

    # -- output and commits ----------------------------------------------------------------------
    def _deliver_queued(self, outputs: Iterable[Output]) -> None:
        for out in outputs:
            self.producer.send(out.topic, out.key, out.value, out.partition)
            self.stats.produced += 1
            if self.metrics:
                self.metrics.produced_messages.labels(out.topic).inc()

    def _deliver(self, outputs: Iterable[Output]) -> None:
        self._deliver_queued(outputs)
        self._flush()

    def _flush(self) -> None:
        while True:
            try:
                self.producer.flush()
                return
            except TransientError as exc:
                self._wait("flush", exc)

    def _mark(self, message: Message) -> None:
        # The last message read, not the highest offset ever seen: a partition read again from
        # an earlier offset (a rebalance, or a topic created anew by a broker that lost it)
        # must commit its new position, or the group would skip what lies below the old one.
        self._uncommitted[(message.topic, message.partition)] = message.offset + 1

    def _commit_done(self, final: bool = False) -> None:
        """Commit what was processed and flushed, short of what the stage still holds."""
        held = {} if final else self.stage.held_offsets()
        offsets = {}
        for tp, off in self._uncommitted.items():
            off = min(off, held.get(tp, off))
            if off != self._committed.get(tp):
                offsets[tp] = off
        if not offsets:
            return
        while True:
            try:
                ok = self.consumer.commit(offsets)
                break
            except TransientError as exc:
                self._wait("commit", exc)
        if ok:
            self.stats.commits += 1
            self._committed.update(offsets)
        else:
            self.stats.refused_commits += 1
            if self.metrics:
                self.metrics.refused_commits.inc()
            # the partitions moved: forget them, their new owner starts from the last commit
            owned = self.consumer.assignment()
            self._committed = {tp: o for tp, o in self._committed.items() if tp in owned}
        owned = self.consumer.assignment()
        self._uncommitted = {tp: o for tp, o in self._uncommitted.items()
                             if o != self._committed.get(tp) and tp in owned}

    def _check_assignment(self) -> None:
        owned = self.consumer.assignment()
        lost = self._owned - owned
        self._owned = owned
        if lost:
            log.info("%s: partitions %s moved to another member", self.stage.name,
                     ", ".join(f"{t}[{p}]" for t, p in sorted(lost)))
            self._committed = {tp: o for tp, o in self._committed.items() if tp not in lost}
            self._uncommitted = {tp: o for tp, o in self._uncommitted.items() if tp not in lost}
            self.stage.revoked(frozenset(lost))

    def _drained(self) -> bool:
        try:
            return self.consumer.at_end()
        except TransientError as exc:
            self._wait("lag", exc)
            return False

    # -- waiting -----------------------------------------------------------------------------------
    def _wait(self, operation: str, exc: BaseException) -> None:
        if self.stop.is_set():
            raise Stopped(operation)
        delay = self.backoff.next()
        self.stats.retries += 1
        if self.metrics:
            self.metrics.retries.labels(operation).inc()
        # the first failure and every tenth are worth a warning; the rest would flood the log
        loud = self.backoff.attempt <= 1 or self.backoff.attempt % 10 == 0
        level = logging.WARNING if loud else logging.DEBUG
        log.log(level, "%s: %s failed (%s); retry %d in %.1f s", self.stage.name, operation, exc,
                self.backoff.attempt, delay)
        if self._sleep is not None:
            self._sleep(delay)
        elif self.stop.wait(delay):
            raise Stopped(operation)

    def _report_lag(self) -> None:
        if self.metrics is None or self._clock() < self._next_lag:
            return
        self._next_lag = self._clock() + self.lag_interval
        try:
            lag = self.consumer.lag()
        except TransientError:
            return
        for (topic, partition), n in lag.items():
            self.metrics.consumer_lag.labels(topic, str(partition)).set(n)


class Publisher:
    """The same policy for a stage that only produces (the sensor): publish, and wait out outages.

    :meth:`publish` queues the outputs and flushes until the broker holds them,
    backing off between attempts exactly as the runner does. While the broker is
    away the caller is held here -- a live sensor's capture ring then fills and
    the kernel counts the drops -- and nothing already queued is lost. A stop
    request while waiting raises :class:`Stopped`; the records stay queued in
    the producer (a final ``flush`` may still deliver them).
    """

    def __init__(
        self,
        producer: Producer,
        *,
        name: str,
        metrics: StageMetrics | None = None,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.producer = producer
        self.name = name
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.stop = stop or threading.Event()
        self._sleep = sleep
        self.published = 0
        self.retries = 0

    def publish(self, outputs: Iterable[Output]) -> None:
        for out in outputs:
            self.producer.send(out.topic, out.key, out.value, out.partition)
            self.published += 1
            if self.metrics:
                self.metrics.produced_messages.labels(out.topic).inc()
        while True:
            try:
                self.producer.flush()
                self.backoff.reset()
                return
            except TransientError as exc:
                if self.stop.is_set():
                    raise Stopped("flush") from None
                delay = self.backoff.next()
                self.retries += 1
                if self.metrics:
                    self.metrics.retries.labels("flush").inc()
                loud = self.backoff.attempt <= 1 or self.backoff.attempt % 10 == 0
                log.log(logging.WARNING if loud else logging.DEBUG,
                        "%s: flush failed (%s), %d records kept; retry %d in %.1f s", self.name, exc,
                        self.producer.pending(), self.backoff.attempt, delay)
                if self._sleep is not None:
                    self._sleep(delay)
                elif self.stop.wait(delay):
                    raise Stopped("flush") from None


def runner_for(
    stage: Stage,
    bus: Bus,
    settings: BusSettings,
    *,
    group: str,
    topics: Sequence[str],
    stop: threading.Event | None = None,
    with_metrics: bool = True,
) -> Runner:
    """A runner for ``stage`` reading ``topics`` in ``group``, everything else from ``[bus]``.

    The topics this program creates (flows, events, dead letters) are ensured
    first; a broker that is not there yet is waited for with the same backoff
    as every other transient failure.
    """
    backoff = Backoff(settings.retry_backoff_s, settings.retry_backoff_max_s)
    stop = stop or threading.Event()
    wanted = list(dict.fromkeys([*settings.topic_partitions(), *topics]))
    while True:
        try:
            bus.ensure_topics(wanted)
            break
        except TransientError as exc:
            delay = backoff.next()
            log.warning("%s: broker not ready (%s); retry %d in %.1f s", stage.name, exc, backoff.attempt,
                        delay)
            if stop.wait(delay):
                break
    backoff.reset()
    return Runner(
        stage,
        bus.consumer(group, topics),
        bus.producer(),
        dead_letter_topic=settings.dead_letter_topic,
        metrics=stage_metrics(stage.name) if with_metrics else None,
        backoff=backoff,
        max_records=settings.max_poll_records,
        poll_timeout=settings.poll_timeout_s,
        stop=stop,
    )
