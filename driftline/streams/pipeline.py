"""What the worker does with each batch, independent of Kafka (consumer.py only wires it).

Data flow, in the order of the modules to read:

    predictions batch -> intake.py (parse, bounds, columns) -> DLQ for rejects
                      -> stage1.py: per partition, per model version: PartitionWindows and the
                         label join (PartitionLabels) -> closed partial sketches, performance
                         partials, outcomes, watermarks -> partials topic (payloads.py, by model)
    partials batch    -> stage2.py: ModelWindows -> merged window -> evaluate_window (the core)
                      -> events (events.py) -> alerts topic; summaries -> metrics topic

State changed by a batch is marked dirty; `Pipeline.checkpoint` writes every dirty partition
and model to the checkpoint topic (checkpoint.py). The shell (consumer.py) calls it on an
interval and on revoke/shutdown, confirms every output with the broker, and only then commits
the input offsets: committed offsets are never ahead of the checkpointed state.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from driftline.config import Config
from driftline.detectors.concept import ConceptDriftConfig
from driftline.detectors.profile import ReferenceProfile
from driftline.detectors.thresholds import DriftThresholds
from driftline.sinks.prometheus import WorkerMetrics
from driftline.streams.context import (
    Checkpoints,
    LoadCheckpoints,
    Message,
    Monitored,
    Send,
    Shared,
    Topics,
)
from driftline.streams.intake import MAX_RECORDS_PER_MESSAGE, record_key
from driftline.streams.labels import PartitionLabels
from driftline.streams.memory import release_free_heap
from driftline.streams.outcomes import load_concept_config
from driftline.streams.profiles import ProfileDirectory
from driftline.streams.stage1 import PartitionStage
from driftline.streams.stage2 import ModelStage
from driftline.streams.windows import ModelWindows, PartitionWindows

CHECKPOINT_CONFIRM_BYTES = 16 * 1024 * 1024
"""`Pipeline.checkpoint` waits for `confirm` each time it has sent this many bytes: the
producer's queue then holds at most ~this much of a checkpoint (its copy of every message,
compressed batches besides), not all of it. On the packed 100-models scenario a checkpoint
sent 65 MiB of stage-1 segments and 43 MiB of pending stage-2 partials before the one
confirmation at its end (docs/BENCHMARKS.md, "Peak of the packed scenario")."""

__all__ = [
    "MAX_RECORDS_PER_MESSAGE",
    "LoadCheckpoints",
    "Message",
    "Pipeline",
    "Send",
    "Topics",
    "record_key",
]


class Pipeline:
    """Both stages of one worker behind the interface the shell (consumer.py) calls."""

    def __init__(
        self,
        config: Config,
        profiles: Mapping[tuple[str, str], ReferenceProfile],
        thresholds: DriftThresholds,
        topics: Topics,
        n_sources: int,
        send: Send,
        load_checkpoints: LoadCheckpoints,
        clock: Callable[[], float] = time.time,
        profile_directory: ProfileDirectory | None = None,
        concept: ConceptDriftConfig | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.config = config
        # concept-drift suites (`concept_drift` in the thresholds file): a bad key fails here
        self.concept = concept or load_concept_config(config.worker.thresholds_file)
        self.thresholds = thresholds
        self.topics = topics
        self.n_sources = n_sources
        self.shared = Shared(
            config,
            topics,
            send,
            Monitored(dict(profiles), profile_directory),
            Checkpoints(load_checkpoints, max_value_bytes=config.worker.checkpoint_message_bytes),
            clock,
            metrics or WorkerMetrics(),  # the worker's, or a registry of this pipeline's own
        )
        self.intake = PartitionStage(self.shared)
        self.merge = ModelStage(self.shared, thresholds, self.concept, n_sources)
        # end offsets of the predictions partitions, replaced (never mutated) by the shell
        # every second: the consumer lag is end - processed, computed when Prometheus scrapes
        self.end_offsets: dict[int, int] = {}
        self.metrics.watch(self)

    @property
    def metrics(self) -> WorkerMetrics:
        return self.shared.metrics

    # -- state, for the shell and tests -------------------------------------------------------

    @property
    def profiles(self) -> dict[tuple[str, str], ReferenceProfile]:
        return self.shared.monitored.profiles

    @property
    def models(self) -> list[str]:
        return self.shared.monitored.models

    @property
    def stage1(self) -> dict[int, PartitionWindows]:
        return self.intake.partitions

    @property
    def labels(self) -> dict[int, PartitionLabels]:
        return self.intake.joins

    @property
    def stage2(self) -> dict[str, ModelWindows]:
        return self.merge.models

    @property
    def rewound(self) -> set[int]:
        """Partitions the shell must re-read from their committed offset (it resets this)."""
        return self.intake.rewound

    @rewound.setter
    def rewound(self, partitions: set[int]) -> None:
        self.intake.rewound = partitions

    def add_profiles(self, profiles: Mapping[tuple[str, str], ReferenceProfile]) -> None:
        """Monitor more model versions from now on (their records so far were not windowed)."""
        self.shared.monitored.add(profiles)

    # -- rebalance ---------------------------------------------------------------------------

    def assign_partitions(self, topic_partitions: Iterable[tuple[str, int]]) -> None:
        """Newly assigned source partitions get `idle_timeout` of grace before being idle."""
        self.intake.assign_partitions(topic_partitions)

    def forget_partitions(self, topic_partitions: Iterable[tuple[str, int]]) -> None:
        """Drop in-memory state of revoked partitions; whoever gets them restores the checkpoint."""
        for topic, partition in topic_partitions:
            if topic == self.topics.partials:
                self.merge.forget(partition)
            elif topic == self.topics.predictions:
                self.intake.forget(partition)
        self.shared.checkpoints.reset()

    def rewind(self, topic: str, partition: int, first: int, last: int) -> None:
        """See `PartitionStage.rewind`."""
        self.intake.rewind(topic, partition, first, last)

    # -- batches -----------------------------------------------------------------------------

    async def on_predictions(self, messages: list[Message]) -> None:
        await self.intake.on_predictions(messages)

    async def on_labels(self, messages: list[Message]) -> None:
        """Join labels to their predictions (same partition number: co-partitioned topics)."""
        await self.intake.on_labels(messages)

    async def on_partials(self, messages: list[Message]) -> None:
        await self.merge.on_partials(messages)

    async def declare_idle(
        self, end_offsets: Mapping[int, int], positions: Mapping[int, int | None]
    ) -> None:
        """See `PartitionStage.declare_idle`."""
        await self.intake.declare_idle(end_offsets, positions)

    async def dead_letter(
        self, message: Message, kind: str, reason: str, index: int | None
    ) -> None:
        """Send one message to the DLQ for one reason."""
        await self.intake.dead_letter(message, kind, reason, index)

    def assigned_partitions(self) -> list[int]:
        return self.intake.assigned_partitions()

    def processed_offset(self, partition: int) -> int | None:
        """Next offset to process on a source partition (None before its state is loaded)."""
        return self.intake.processed_offset(partition)

    def quiet_partitions(self) -> list[int]:
        """Assigned source partitions that delivered no record for `idle_timeout` seconds."""
        return self.intake.quiet_partitions()

    # -- checkpoint --------------------------------------------------------------------------

    async def checkpoint(self, confirm: Callable[[], Awaitable[object]] | None = None) -> int:
        """Write the state of every partition and model changed since the last call to the
        checkpoint topic; returns how many were written. The caller confirms the sends with
        the broker before it commits any input offset; ``confirm`` (the shell's: every
        message sent so far confirmed) is awaited meanwhile after each
        `CHECKPOINT_CONFIRM_BYTES` sent, so that they are not all queued at once."""
        # what the last interval freed (its checkpoint's messages, now confirmed, closed
        # windows) back to the system before this one allocates: a lower peak RSS (memory.py)
        release_free_heap()
        async with self.intake.lock, self.merge.lock:
            written = 0
            queued = 0  # bytes sent since the last confirm

            async def send(key: bytes, value: bytes | None) -> None:
                nonlocal queued
                await self.shared.send(self.topics.checkpoints, key, value, None)
                queued += len(key) + len(value or b"")
                if confirm is not None and queued >= CHECKPOINT_CONFIRM_BYTES:
                    await confirm()
                    queued = 0

            # stage 1 one partition at a time: its segments, its head, then tombstones
            for messages in self.intake.checkpoint_messages():
                for key, value in messages:
                    await send(key, value)
                written += 1
            for model_key, model_value in self.merge.checkpoint_values():
                for part_key, part in self.shared.checkpoints.messages(model_key, model_value):
                    await send(part_key, part)
                written += 1
            return written
