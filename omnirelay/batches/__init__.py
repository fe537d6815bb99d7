"""Batches run by the gateway itself, on any routed model: OpenAI's Files and Batch APIs and Anthropic's Message
Batches API over one durable job table (``core/batches.py``, kept by ``omnirelay.state``), and the runner each
gateway process starts. Between the server (which mounts ``Batches.mounts``) and the pipeline (which runs
every item)."""

from __future__ import annotations

from collections.abc import Callable

from omnirelay.batches.anthropic_api import AnthropicBatchesApi
from omnirelay.batches.create import BatchCreator
from omnirelay.batches.execute import ItemExecutor
from omnirelay.batches.native_runner import NativeBatches
from omnirelay.batches.openai_api import OpenAIBatchesApi
from omnirelay.batches.runner import BatchRunner
from omnirelay.config import Config
from omnirelay.pipeline.calls import CallPipeline
from omnirelay.state.gate import KeyGate
from omnirelay.upstream.executor import HttpExecutor
from omnirelay.web.routes import Mount


class Batches:
    """The endpoints and the runner, built once at start. ``busy`` counts the requests in flight (the runner
    yields to them)."""

    def __init__(
        self, config: Config, gate: KeyGate, pipeline: CallPipeline, executor: HttpExecutor, busy: Callable[[], int]
    ) -> None:
        self.settings = settings = config.batches
        store = gate.store
        native = NativeBatches(store.batches, pipeline, gate, executor)
        self.runner = BatchRunner(
            store.batches, store.files, ItemExecutor(pipeline, gate), settings, busy, self._held(gate), native
        )
        creator = BatchCreator(store.batches, gate, pipeline, settings, self.runner.notify)
        self.openai = OpenAIBatchesApi(store.files, store.batches, gate, creator, settings)
        self.anthropic = AnthropicBatchesApi(store.batches, gate, creator, settings.max_file_bytes)

    @staticmethod
    def _held(gate: KeyGate) -> Callable[[dict[str, int]], None]:
        def update(held: dict[str, int]) -> None:
            gate.held_units = held

        return update

    def mounts(self) -> list[Mount]:
        return [self.openai.mount(), self.anthropic.mount()]

    async def start(self) -> None:
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()
