"""Continuous batching: every prompt in flight is decoded in one forward pass per step.

One engine thread owns the model. Requests wait in a bounded queue; at every decoding step the
engine admits waiting prompts into the running batch (up to ``max_batch_size``), prefills them
together, merges their key/value cache into the running one and decodes one token for every
row. A row leaves the batch as soon as it ends (end-of-sequence token, stop string,
``max_tokens``, cancellation), so short answers never wait for long ones and a client that
goes away stops costing compute at the next step.

* Rows are left-padded; each row keeps its own position ids and attention mask, so padding
  never changes what a row computes (greedy answers equal the unbatched ones, up to float
  rounding of different matrix shapes).
* Sampling settings are per row (temperature, top_p, top_k, penalties, seed: a seeded row
  samples from its own generator), so requests with different settings share a batch.
* When the engine is idle and other requests are known to be on their way (being parsed and
  tokenised), it waits up to ``batch_wait_s`` for them so they start in one prefill; a lone
  request starts at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from medgo.logs import fields
from medgo.serve import metrics
from medgo.serve.generation import Completion, Usage
from medgo.serve.streaming import TextStream

log = logging.getLogger(__name__)

AbortReason = Literal["cancelled", "timeout", "error", "shutdown"]


class QueueFull(Exception):
    """The engine's queue holds ``max_queue`` prompts already; the client should retry later."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the server is at capacity; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class EngineStopped(Exception):
    """The engine is not running (not started yet, or shutting down)."""


@dataclass(frozen=True)
class Sampling:
    """How one row picks its next token (already resolved against the model's defaults)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None

    @property
    def penalised(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


@dataclass(frozen=True)
class Job:
    """One prompt to answer."""

    request_id: str
    prompt_ids: Sequence[int]
    max_tokens: int
    min_tokens: int = 0
    sampling: Sampling = Sampling()
    stop: tuple[str, ...] = ()
    stream: bool = False


@dataclass(frozen=True)
class TextDelta:
    """New final text of a streamed answer."""

    text: str
    first: bool = False


@dataclass(frozen=True)
class Finished:
    completion: Completion


@dataclass(frozen=True)
class Aborted:
    reason: AbortReason
    completion_tokens: int = 0


Event = TextDelta | Finished | Aborted


class JobHandle:
    """The engine's side of one submitted job: where its events go and whether it was cancelled.

    ``deliver`` is called on the engine thread (or the caller's, for a job cancelled while
    queued); callers bridge it to their own world (an asyncio queue, a thread queue).
    """

    def __init__(self, job: Job, deliver: Callable[[Event], None] | None) -> None:
        self.job = job
        self._deliver = deliver
        self.cancel_reason: AbortReason | None = None
        self.submitted_at = time.monotonic()
        self.first_token_at: float | None = None
        self._done = False
        self._engine: BatchEngine | None = None

    def cancel(self, reason: AbortReason = "cancelled") -> None:
        """Stop this job at the next decoding step (or drop it from the queue at once)."""
        if self.cancel_reason is None and not self._done:
            self.cancel_reason = reason
            if self._engine is not None:
                self._engine._drop_waiting(self)

    @property
    def done(self) -> bool:
        return self._done

    def _emit(self, event: Event) -> None:
        if self._done:
            return
        if not isinstance(event, TextDelta):
            self._done = True
            if self._engine is not None:
                self._engine._ended()
        try:
            self._deliver(event)
        except RuntimeError:  # the consumer's event loop is closed (server shutting down)
            pass


@dataclass
class _Row:
    handle: JobHandle
    stream: TextStream
    generator: Any = None
    generated: list[int] = field(default_factory=list)


class BatchEngine:
    """Runs jobs of one causal LM on a dedicated thread with continuous batching.

    Args:
        model: a transformers causal LM in eval mode (one device or a device map).
        tokenizer: its tokenizer (decoding only; prompts arrive as ids).
        eos_token_ids: ids that end an answer (counted as a completion token, not shown).
        max_batch_size: most rows decoded together.
        max_queue: most jobs waiting for a row: with a full batch and a full queue
            :meth:`submit` raises :class:`QueueFull`.
        batch_wait_s: how long an idle engine waits for announced requests (see :meth:`arriving`).
        model_name: the ``model`` label of the metrics.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        eos_token_ids: Sequence[int],
        max_batch_size: int = 16,
        max_queue: int = 64,
        batch_wait_s: float = 0.005,
        model_name: str = "medgo",
    ) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.eos_token_ids = frozenset(eos_token_ids)
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.batch_wait_s = batch_wait_s
        self.model_name = model_name
        self.device = model.get_input_embeddings().weight.device
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._cond = threading.Condition()
        self._waiting: deque[JobHandle] = deque()
        self._incoming = 0
        self._in_flight = 0  # submitted and not yet ended: queued, being prefilled or in the batch
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._rows: list[_Row] = []
        self._cache = None
        self._mask = None  # [rows, cache length + 1]: 1 for real tokens, incl. the pending one
        self._positions = None  # [rows]: position id of the pending token
        self._pending = None  # [rows]: sampled tokens not yet fed to the model
        self._seconds_per_job = 1.0
        self.steps = 0
        self._labels = {"model": model_name}
        metrics.QUEUE_DEPTH.labels(**self._labels).set(0)
        metrics.RUNNING.labels(**self._labels).set(0)

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._check_cache_layout()
        self._thread = threading.Thread(target=self._run, name=f"generate-{self.model_name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Abort queued and running jobs (reason ``shutdown``) and end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def _check_cache_layout(self) -> None:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        layers = DynamicCache(config=self.model.config).layers
        if any(type(layer) is not DynamicLayer for layer in layers):
            from medgo.errors import ConfigError

            raise ConfigError(
                "serve: this model's attention layers need a sliding-window or linear cache, which "
                "the batching engine does not merge; serve it with the vLLM runtime"
            )

    # ------------------------------------------------------------------------------ admission

    @contextmanager
    def arriving(self):
        """Announce a request being parsed and tokenised, so an idle engine waits briefly for it."""
        with self._cond:
            self._incoming += 1
        try:
            yield
        finally:
            with self._cond:
                self._incoming -= 1
                self._cond.notify_all()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def capacity(self) -> int:
        """Most jobs in flight at once: a full batch plus a full queue."""
        return self.max_batch_size + self.max_queue

    def has_room(self, prompts: int = 1) -> bool:
        """Whether ``prompts`` more jobs fit right now (a cheap pre-check before tokenising)."""
        return self._in_flight + prompts <= self.capacity

    def retry_after_s(self) -> int:
        """A Retry-After estimate: the queue ahead, drained ``max_batch_size`` at a time."""
        rounds = self._in_flight / self.max_batch_size
        return max(1, min(60, round(rounds * self._seconds_per_job + 0.5)))

    def submit(self, jobs: Sequence[Job], deliver: Callable[[JobHandle, Event], None]) -> list[JobHandle]:
        """Queue ``jobs`` all or none; raises :class:`QueueFull` or :class:`EngineStopped`.

        ``deliver(handle, event)`` receives each job's events (see :class:`JobHandle`).
        """
        handles = [JobHandle(job, None) for job in jobs]
        for handle in handles:
            handle._deliver = partial(deliver, handle)
            handle._engine = self
        with self._cond:
            if not self.running:
                raise EngineStopped()
            if self._in_flight + len(handles) > self.capacity:
                metrics.GENERATIONS.labels(reason="rejected", **self._labels).inc(len(handles))
                raise QueueFull(self.retry_after_s())
            self._in_flight += len(handles)
            self._waiting.extend(handles)
            metrics.QUEUE_DEPTH.labels(**self._labels).set(len(self._waiting))
            self._cond.notify_all()
        return handles

    def _ended(self) -> None:
        with self._cond:
            self._in_flight -= 1

    def _drop_waiting(self, handle: JobHandle) -> None:
        with self._cond:
            try:
                self._waiting.remove(handle)
            except ValueError:
                return  # running (the engine sees the flag at its next step) or already finished
            metrics.QUEUE_DEPTH.labels(**self._labels).set(len(self._waiting))
        self._abort(handle, handle.cancel_reason or "cancelled", 0)

    def _admit(self) -> list[JobHandle] | None:
        """Jobs to add to the batch now; blocks while idle; ``None`` once stopping."""
        with self._cond:
            while not self._waiting and not self._rows and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            free = self.max_batch_size - len(self._rows)
            if not self._rows and self.batch_wait_s > 0 and self._incoming > 0:
                deadline = time.monotonic() + self.batch_wait_s
                while self._incoming > 0 and len(self._waiting) < free and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            taken = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
            metrics.QUEUE_DEPTH.labels(**self._labels).set(len(self._waiting))
        return taken

    # ------------------------------------------------------------------------------ the loop

    def _run(self) -> None:
        torch = self._torch
        while True:
            admitted = self._admit()
            if admitted is None:
                break
            try:
                with torch.inference_mode():
                    self._drop_cancelled_rows()
                    live = [h for h in admitted if h.cancel_reason is None]
                    for handle in admitted:
                        if handle.cancel_reason is not None:
                            self._abort(handle, handle.cancel_reason, 0)
                    if live:
                        self._prefill(live)
                    if self._rows:
                        self._decode_step()
            except Exception:
                log.exception("generation step failed", extra=fields(model=self.model_name))
                for handle in [row.handle for row in self._rows] + [
                    h for h in (admitted or []) if not h.done
                ]:
                    self._abort(handle, "error", 0)
                self._reset_batch()
            metrics.RUNNING.labels(**self._labels).set(len(self._rows))
        with self._cond:
            waiting, self._waiting = list(self._waiting), deque()
        for handle in waiting + [row.handle for row in self._rows]:
            self._abort(handle, "shutdown", 0)
        self._reset_batch()

    def _prefill(self, handles: list[JobHandle]) -> None:
        from transformers import DynamicCache

        torch = self._torch
        longest = max(len(h.job.prompt_ids) for h in handles)
        ids = torch.full((len(handles), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(handles), longest), dtype=torch.long)
        for i, handle in enumerate(handles):
            prompt = handle.job.prompt_ids
            ids[i, longest - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[i, longest - len(prompt) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        metrics.BATCH_SIZE.labels(**self._labels).observe(len(handles))
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        rows = [_Row(handle=h, stream=TextStream(self.tokenizer, h.job.stop)) for h in handles]
        for row in rows:
            if row.handle.job.sampling.do_sample:
                row.generator = torch.Generator(device=out.logits.device)
                if row.handle.job.sampling.seed is None:
                    row.generator.seed()
                else:
                    row.generator.manual_seed(row.handle.job.sampling.seed)
        tokens = self._choose(out.logits[:, -1, :], rows)
        new_mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=mask.device)], 1)
        new_positions = mask.sum(-1)
        self._merge(cache, new_mask, new_positions, torch.tensor(tokens, device=self.device), rows)
        self._after_tokens(tokens, start=len(self._rows) - len(rows))

    def _decode_step(self) -> None:
        torch = self._torch
        metrics.BATCH_SIZE.labels(**self._labels).observe(len(self._rows))
        out = self.model(
            input_ids=self._pending[:, None],
            attention_mask=self._mask,
            position_ids=self._positions[:, None],
            past_key_values=self._cache,
            use_cache=True,
        )
        self.steps += 1
        tokens = self._choose(out.logits[:, -1, :], self._rows)
        self._mask = torch.cat(
            [self._mask, torch.ones((len(self._rows), 1), dtype=self._mask.dtype, device=self._mask.device)],
            1,
        )
        self._positions = self._positions + 1
        self._pending = torch.tensor(tokens, device=self.device)
        self._after_tokens(tokens, start=0)

    def _after_tokens(self, tokens: list[int], *, start: int) -> None:
        """Record each row's new token (rows ``start`` onwards) and retire the rows that ended."""
        now = time.monotonic()
        ended = []
        for index in range(start, len(self._rows)):
            row, token = self._rows[index], tokens[index - start]
            handle = row.handle
            if handle.first_token_at is None:
                handle.first_token_at = now
                metrics.TIME_TO_FIRST_TOKEN.labels(**self._labels).observe(now - handle.submitted_at)
            row.generated.append(token)
            finish = None
            if token in self.eos_token_ids:
                finish = "stop"
            else:
                piece = row.stream.push(token, stop_allowed=len(row.generated) >= handle.job.min_tokens)
                if row.stream.stopped:
                    finish = "stop"
                elif len(row.generated) >= handle.job.max_tokens:
                    finish = "length"
                if piece and handle.job.stream:
                    handle._emit(TextDelta(piece))
            if finish is not None:
                ended.append(index)
                self._finish(row, finish)
        if ended:
            self._keep_rows([i for i in range(len(self._rows)) if i not in set(ended)])

    def _finish(self, row: _Row, finish_reason: Literal["stop", "length"]) -> None:
        handle = row.handle
        rest = row.stream.finish()
        if rest and handle.job.stream:
            handle._emit(TextDelta(rest))
        usage = Usage(prompt_tokens=len(handle.job.prompt_ids), completion_tokens=len(row.generated))
        metrics.PROMPT_TOKENS.labels(**self._labels).inc(usage.prompt_tokens)
        metrics.COMPLETION_TOKENS.labels(**self._labels).inc(usage.completion_tokens)
        metrics.GENERATIONS.labels(reason=finish_reason, **self._labels).inc()
        seconds = time.monotonic() - handle.submitted_at
        metrics.GENERATION_SECONDS.labels(**self._labels).observe(seconds)
        self._seconds_per_job = 0.8 * self._seconds_per_job + 0.2 * seconds
        handle._emit(Finished(Completion(text=row.stream.text, finish_reason=finish_reason, usage=usage)))

    def _abort(self, handle: JobHandle, reason: AbortReason, completion_tokens: int) -> None:
        if handle.done:
            return
        metrics.COMPLETION_TOKENS.labels(**self._labels).inc(completion_tokens)
        metrics.GENERATIONS.labels(reason=reason, **self._labels).inc()
        handle._emit(Aborted(reason, completion_tokens))

    def _drop_cancelled_rows(self) -> None:
        cancelled = [i for i, row in enumerate(self._rows) if row.handle.cancel_reason is not None]
        if not cancelled:
            return
        for i in cancelled:
            row = self._rows[i]
            self._abort(row.handle, row.handle.cancel_reason or "cancelled", len(row.generated))
        self._keep_rows([i for i in range(len(self._rows)) if i not in set(cancelled)])

    # ------------------------------------------------------------------------------ batch state

    def _reset_batch(self) -> None:
        self._rows, self._cache, self._mask, self._positions, self._pending = [], None, None, None, None

    def _merge(self, cache, mask, positions, pending, rows: list[_Row]) -> None:
        """Append freshly prefilled rows (their cache, mask, positions, pending tokens) to the batch."""
        torch = self._torch
        if not self._rows:
            self._cache, self._mask, self._positions, self._pending = cache, mask, positions, pending
            self._rows = rows
            return
        old_len, new_len = self._mask.shape[1], mask.shape[1]
        width = max(old_len, new_len)
        pad = torch.nn.functional.pad
        for old_layer, new_layer in zip(self._cache.layers, cache.layers, strict=True):
            old_layer.keys = torch.cat(
                [
                    pad(old_layer.keys, (0, 0, width - old_len, 0)),
                    pad(new_layer.keys, (0, 0, width - new_len, 0)),
                ]
            )
            old_layer.values = torch.cat(
                [
                    pad(old_layer.values, (0, 0, width - old_len, 0)),
                    pad(new_layer.values, (0, 0, width - new_len, 0)),
                ]
            )
        self._mask = torch.cat([pad(self._mask, (width - old_len, 0)), pad(mask, (width - new_len, 0))])
        self._positions = torch.cat([self._positions, positions])
        self._pending = torch.cat([self._pending, pending])
        self._rows = self._rows + rows

    def _keep_rows(self, keep: list[int]) -> None:
        """Drop every row not in ``keep`` and the cache columns that only padding uses now."""
        torch = self._torch
        if not keep:
            self._reset_batch()
            return
        index = torch.tensor(keep, device=self.device)
        mask = self._mask.index_select(0, index)
        first = int(mask.any(0).nonzero()[0])
        for layer in self._cache.layers:
            layer_index = index.to(layer.keys.device)
            layer.keys = layer.keys.index_select(0, layer_index)[:, :, first:, :]
            layer.values = layer.values.index_select(0, layer_index)[:, :, first:, :]
        self._mask = mask[:, first:]
        self._positions = self._positions.index_select(0, index)
        self._pending = self._pending.index_select(0, index)
        self._rows = [self._rows[i] for i in keep]

    # ------------------------------------------------------------------------------ sampling

    def _choose(self, logits, rows: list[_Row]) -> list[int]:
        """The next token of every row: argmax, or the row's own penalised, filtered sampling."""
        torch = self._torch
        early = [i for i, row in enumerate(rows) if len(row.generated) < row.handle.job.min_tokens]
        if early:
            logits = logits.clone()
            eos = torch.tensor(sorted(self.eos_token_ids), device=logits.device, dtype=torch.long)
            for i in early:
                logits[i, eos] = float("-inf")
        chosen = logits.argmax(-1).tolist()
        for i, row in enumerate(rows):
            sampling = row.handle.job.sampling
            if not sampling.do_sample and not sampling.penalised:
                continue
            scores = logits[i].float().clone()
            if sampling.penalised:
                self._penalise(scores, row, sampling)
            if not sampling.do_sample:
                chosen[i] = int(scores.argmax())
                continue
            if sampling.temperature != 1.0:
                scores /= sampling.temperature
            if 0 < sampling.top_k < scores.numel():
                kth = torch.topk(scores, sampling.top_k).values[-1]
                scores[scores < kth] = float("-inf")
            probs = torch.softmax(scores, -1)
            if sampling.top_p < 1.0:
                sorted_probs, order = probs.sort(descending=True)
                outside = sorted_probs.cumsum(-1) - sorted_probs > sampling.top_p
                sorted_probs[outside] = 0.0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            chosen[i] = int(torch.multinomial(probs, 1, generator=row.generator))
        return chosen

    def _penalise(self, scores, row: _Row, sampling: Sampling) -> None:
        torch = self._torch
        if sampling.repetition_penalty != 1.0:
            seen = torch.tensor(
                sorted({*row.handle.job.prompt_ids, *row.generated}), device=scores.device, dtype=torch.long
            )
            picked = scores[seen]
            penalty = sampling.repetition_penalty
            scores[seen] = torch.where(picked < 0, picked * penalty, picked / penalty)
        if row.generated and (sampling.presence_penalty or sampling.frequency_penalty):
            counts = torch.bincount(
                torch.tensor(row.generated, device=scores.device), minlength=scores.numel()
            )[: scores.numel()].to(scores.dtype)
            scores -= (
                counts * sampling.frequency_penalty
                + (counts > 0).to(scores.dtype) * sampling.presence_penalty
            )
