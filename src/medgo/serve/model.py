"""The medgo chat model as a KServe model: KServe v1 and v2 inference plus the generation core.

One :class:`MedgoModel` holds one causal LM (a merged export, or a base model plus a LoRA
adapter merged at load time) and its chat template. Prompts are tokenised on a worker thread
(the event loop stays free for health probes and other requests), checked against the limits,
and handed to a :class:`~medgo.serve.batching.BatchEngine`, which decodes every prompt in flight
in one batch. A request ends early when its client disconnects or its ``request_timeout_s``
passes, and is refused with :class:`ServerBusy` (503 + Retry-After) when the queue is full.

Request logging records ids, token counts and timings only: prompts and answers are patient
data and reach the logs only with ``log_text`` (a debugging switch, off in every manifest).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kserve
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, to_http_parameters

from medgo.chat import Messages
from medgo.config import DEFAULT_SYSTEM_PROMPT, ServeConfig
from medgo.errors import ConfigError
from medgo.logs import fields
from medgo.modeling import input_device, load_for_inference, stop_token_ids
from medgo.serve.batching import (
    Aborted,
    BatchEngine,
    EngineStopped,
    Finished,
    Job,
    JobHandle,
    QueueFull,
    Sampling,
    TextDelta,
)
from medgo.serve.generation import (
    Completion,
    GenerationParams,
    Usage,
    parse_generation_params,
    parse_messages,
)
from medgo.serve.middleware import RequestContext, current_request, new_request_id
from medgo.serve.response_log import InMemoryResponseLog, ResponseLog

log = logging.getLogger(__name__)

#: KServe v2 tensor names, after the Triton LLM convention (``text_input`` → ``text_output``).
V2_INPUT_NAME = "text_input"
V2_OUTPUT_NAME = "text_output"
#: v2 request parameters that steer the transport, not generation.
_V2_TRANSPORT_PARAMETERS = frozenset({"binary_data_output"})


class ServerBusy(Exception):
    """The queue is full or the server is shutting down: HTTP 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class GenerationTimeout(Exception):
    """The request did not finish within ``request_timeout_s`` (HTTP 504); its generation was stopped."""


class ClientDisconnected(Exception):
    """The client went away; its generation was stopped. Nobody reads the response."""


class GenerationFailed(Exception):
    """The engine failed on this request (a server fault: HTTP 500, logged with its cause)."""


class MedgoModel(kserve.Model):
    """A chat LLM served through KServe.

    Args:
        name: the model name in URLs (``/v1/models/<name>:predict``) and in OpenAI ``model`` fields.
        model_uri: a saved model directory, local, on a PVC or ``s3://``.
        adapter_uri: an optional LoRA adapter, merged into the weights at load time.
        max_new_tokens: the most tokens one answer may have; also the default ``max_tokens``.
        max_prompt_tokens: the longest accepted prompt, counted after applying the chat template.
        system_prompt: added as the first turn when a chat has no system turn (the SFT data
            carries one); ``None`` or ``""`` sends chats as they are.
        max_batch_size: the most prompts decoded together, and the most one v1/v2 request may carry.
        max_queue: the most prompts waiting for a place in the batch; more are refused (503).
        batch_wait_ms: how long an idle server waits for requests already arriving to batch them.
        request_timeout_s: the most one request may take, queueing included.
        aliases: further model names that reach this model (the vLLM runtime's adapter name).
        log_text: put prompts and answers in the request log (patient data: debugging only).
        torch_threads: CPU threads per operation; 0 picks the container's CPU quota (torch's own
            default counts the node's cores, which oversubscribes a pod with a CPU limit).
        response_log: where answered prompts are kept by request id (in memory by default).
    """

    def __init__(
        self,
        name: str,
        model_uri: str,
        *,
        adapter_uri: str | None = None,
        max_new_tokens: int = 256,
        max_prompt_tokens: int = 2048,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        max_batch_size: int = 16,
        max_queue: int = 64,
        batch_wait_ms: float = 5.0,
        request_timeout_s: float = 300.0,
        aliases: Sequence[str] = (),
        log_text: bool = False,
        response_log: ResponseLog | None = None,
        torch_threads: int = 0,
    ) -> None:
        super().__init__(name)
        for setting, value in (
            ("max_new_tokens", max_new_tokens),
            ("max_prompt_tokens", max_prompt_tokens),
            ("max_batch_size", max_batch_size),
        ):
            if value < 1:
                raise ConfigError(f"serve: {setting} must be at least 1, got {value}")
        if max_queue < 0 or batch_wait_ms < 0 or request_timeout_s <= 0:
            raise ConfigError("serve: max_queue and batch_wait_ms must be >= 0, request_timeout_s > 0")
        self.model_uri = model_uri
        self.adapter_uri = adapter_uri
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.system_prompt = system_prompt or None
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.batch_wait_ms = batch_wait_ms
        self.request_timeout_s = request_timeout_s
        self.aliases = tuple(a for a in aliases if a and a != name)
        self.log_text = log_text
        self.torch_threads = torch_threads
        self.response_log: ResponseLog = response_log if response_log is not None else InMemoryResponseLog()
        self.created = int(time.time())
        self._model = None
        self._tokenizer = None
        self._device = "cpu"
        self._context_length: int | None = None
        self._eos_token_ids: frozenset[int] = frozenset()
        self._engine: BatchEngine | None = None
        self._tokenize_pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, config: ServeConfig, *, response_log: ResponseLog | None = None) -> MedgoModel:
        return cls(
            config.model_name,
            config.model_uri,
            adapter_uri=config.adapter_uri,
            max_new_tokens=config.max_new_tokens,
            max_prompt_tokens=config.max_prompt_tokens,
            system_prompt=config.system_prompt,
            max_batch_size=config.max_batch_size,
            max_queue=config.max_queue,
            batch_wait_ms=config.batch_wait_ms,
            request_timeout_s=config.request_timeout_s,
            aliases=[config.served_adapter_name()] if config.served_adapter_name() else [],
            log_text=config.log_text,
            torch_threads=config.torch_threads,
            response_log=response_log
            if response_log is not None
            else InMemoryResponseLog(config.response_retention_s, config.response_log_max_entries),
        )

    @property
    def served_names(self) -> tuple[str, ...]:
        """Every model name this model answers to: its own, then its aliases."""
        return (self.name, *self.aliases)

    @property
    def batch_engine(self) -> BatchEngine:
        if self._engine is None:
            raise ModelNotReady(self.name)
        return self._engine

    # ----------------------------------------------------------------------------------------
    # lifecycle

    def load(self) -> bool:
        """Load weights and tokenizer (a tokenizer without a chat template is an error), start the engine.

        An adapter is merged into the weights; several visible GPUs share the model through a
        device map (see :func:`medgo.modeling.load_for_inference`).
        """
        import torch

        started = time.monotonic()
        threads = self.torch_threads or cpu_quota()
        if threads:
            torch.set_num_threads(threads)
        model, self._tokenizer = load_for_inference(self.model_uri, self.adapter_uri, merge_adapter=True)
        self._model = model
        self._device = str(input_device(model))
        self._context_length = getattr(self._model.config, "max_position_embeddings", None)
        self._eos_token_ids = frozenset(stop_token_ids(self._tokenizer, self._model))
        self._engine = BatchEngine(
            model,
            self._tokenizer,
            eos_token_ids=self._eos_token_ids,
            max_batch_size=self.max_batch_size,
            max_queue=self.max_queue,
            batch_wait_s=self.batch_wait_ms / 1000,
            model_name=self.name,
        )
        self._engine.start()
        self._tokenize_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tokenize-{self.name}")
        self.created = int(time.time())
        self.ready = True
        log.info(
            "model loaded",
            extra=fields(
                model=self.name,
                aliases=",".join(self.aliases) or None,
                uri=self.model_uri,
                adapter=self.adapter_uri,
                device=self._device,
                params=sum(p.numel() for p in self._model.parameters()),
                context_length=self._context_length,
                max_batch_size=self.max_batch_size,
                max_queue=self.max_queue,
                torch_threads=torch.get_num_threads(),
                seconds=round(time.monotonic() - started, 2),
            ),
        )
        return self.ready

    def stop(self) -> None:
        """Refuse new work, abort what is queued or running, end the engine thread."""
        self.ready = False
        if self._engine is not None:
            self._engine.stop()
        if self._tokenize_pool is not None:
            self._tokenize_pool.shutdown(wait=False, cancel_futures=True)

    def get_input_types(self) -> list[dict]:
        return [{"name": V2_INPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": V2_OUTPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    # ----------------------------------------------------------------------------------------
    # preparing jobs

    def resolve_max_tokens(self, params: GenerationParams) -> int:
        """The request's ``max_tokens``, or the server cap; above the cap is an :class:`InvalidInput`."""
        if params.max_tokens is None:
            return self.max_new_tokens
        if params.max_tokens > self.max_new_tokens:
            raise InvalidInput(
                f"max_tokens is {params.max_tokens}; this server generates at most "
                f"{self.max_new_tokens} tokens per answer"
            )
        return params.max_tokens

    def sampling(self, params: GenerationParams) -> Sampling:
        """The request's settings over the model's ``generation_config`` defaults.

        Greedy for ``temperature=0``; sampling for another temperature, a ``top_p`` or ``top_k``,
        or when the model's generation config samples by default.
        """
        defaults = self._model.generation_config
        if params.temperature == 0.0:
            do_sample = False
        elif params.temperature is not None or params.top_p is not None or (params.top_k or 0) > 0:
            do_sample = True
        else:
            do_sample = bool(defaults.do_sample)
        top_k = params.top_k if params.top_k is not None else (defaults.top_k or 0)
        return Sampling(
            do_sample=do_sample,
            temperature=params.temperature or defaults.temperature or 1.0,
            top_p=params.top_p if params.top_p is not None else (defaults.top_p or 1.0),
            top_k=max(0, top_k),
            repetition_penalty=params.repetition_penalty or defaults.repetition_penalty or 1.0,
            presence_penalty=params.presence_penalty or 0.0,
            frequency_penalty=params.frequency_penalty or 0.0,
            seed=params.seed,
        )

    def with_system_prompt(self, conversation: Messages) -> Messages:
        """The conversation the model sees: the server's system prompt first when the chat has none."""
        if self.system_prompt is None or any(turn["role"] == "system" for turn in conversation):
            return list(conversation)
        return [{"role": "system", "content": self.system_prompt}, *conversation]

    def encode_chat(self, conversation: Messages) -> list[int]:
        """Token ids of a conversation (system prompt added) with the generation prompt appended."""
        from jinja2 import TemplateError

        tokenizer = self._require_loaded()
        try:
            text = tokenizer.apply_chat_template(
                self.with_system_prompt(conversation), add_generation_prompt=True, tokenize=False
            )
        except TemplateError as exc:
            raise InvalidInput(
                f"messages cannot be formatted with this model's chat template: {exc}"
            ) from None
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_text(self, prompt: str) -> list[int]:
        """Token ids of a raw completion prompt (the tokenizer's own special tokens, no chat template)."""
        return self._require_loaded()(prompt)["input_ids"]

    def build_job(
        self, prompt_ids: list[int], params: GenerationParams, *, request_id: str, stream: bool = False
    ) -> Job:
        """A job for the engine; the prompt length and ``max_tokens`` are checked here, before queueing."""
        max_tokens = self.resolve_max_tokens(params)
        if not prompt_ids:
            raise InvalidInput("prompt is empty: it has no tokens")
        self._check_length(len(prompt_ids), max_tokens)
        return Job(
            request_id=request_id,
            prompt_ids=prompt_ids,
            max_tokens=max_tokens,
            min_tokens=min(params.min_tokens or 0, max_tokens),
            sampling=self.sampling(params),
            stop=tuple(params.stop or ()),
            stream=stream,
        )

    async def prepare(
        self,
        prompts: Sequence[Messages | str],
        params: GenerationParams,
        *,
        request_id: str,
        stream: bool = False,
    ) -> list[Job]:
        """Tokenise chats (message lists) or raw prompts (strings) off the event loop and build their jobs."""
        self._require_ready()
        self.resolve_max_tokens(params)
        if not self.batch_engine.has_room(len(prompts)):
            raise ServerBusy("the server is at capacity; retry later", self.batch_engine.retry_after_s())

        def encode_all() -> list[Job]:
            return [
                self.build_job(
                    self.encode_text(p) if isinstance(p, str) else self.encode_chat(p),
                    params,
                    request_id=request_id,
                    stream=stream,
                )
                for p in prompts
            ]

        return await asyncio.get_running_loop().run_in_executor(self._tokenize_pool, encode_all)

    # ----------------------------------------------------------------------------------------
    # generating

    async def generate(
        self,
        prompts: Sequence[Messages | str],
        params: GenerationParams | None = None,
        *,
        request_id: str | None = None,
        context: RequestContext | None = None,
    ) -> list[Completion]:
        """Answer every prompt (batched with whatever else is in flight); raises the request-level errors.

        ``context`` (default: the current HTTP request's) stops generation when its client
        disconnects. Raises :class:`InvalidInput`, :class:`ServerBusy`, :class:`GenerationTimeout`,
        :class:`ClientDisconnected` or :class:`GenerationFailed`.
        """
        params = params or GenerationParams()
        context = context or current_request()
        request_id = request_id or (context.request_id if context else new_request_id())
        started = time.monotonic()
        with self.batch_engine.arriving():
            jobs = await self.prepare(prompts, params, request_id=request_id)
            events = self._submit(jobs, context)
        completions: list[Completion | None] = [None] * len(jobs)
        async with events as stream:
            async for index, event in stream:
                if isinstance(event, Finished):
                    completions[index] = event.completion
        done = [c for c in completions if c is not None]
        self._log_generated(request_id, prompts, done, started)
        return done

    async def stream(
        self,
        prompt: Messages | str,
        params: GenerationParams | None = None,
        *,
        request_id: str | None = None,
        context: RequestContext | None = None,
    ) -> AsyncIterator[str | Completion]:
        """Answer one prompt as it is generated: text pieces (clean, final), then the :class:`Completion`.

        Preparation errors (:class:`InvalidInput`, :class:`ServerBusy`) are raised before the
        first item; later ones (timeout, disconnect, failure) while iterating.
        """
        params = params or GenerationParams()
        context = context or current_request()
        request_id = request_id or (context.request_id if context else new_request_id())
        started = time.monotonic()
        with self.batch_engine.arriving():
            [job] = await self.prepare([prompt], params, request_id=request_id, stream=True)
            events = self._submit([job], context)

        async def pieces() -> AsyncIterator[str | Completion]:
            async with events as stream:
                async for _, event in stream:
                    if isinstance(event, TextDelta):
                        yield event.text
                    elif isinstance(event, Finished):
                        self._log_generated(request_id, [prompt], [event.completion], started)
                        yield event.completion

        return pieces()

    def _submit(self, jobs: list[Job], context: RequestContext | None) -> _JobEvents:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def deliver(handle: JobHandle, event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (handle, event))

        try:
            handles = self.batch_engine.submit(jobs, deliver)
        except QueueFull as exc:
            raise ServerBusy(str(exc), exc.retry_after_s) from None
        except EngineStopped:
            raise ServerBusy("the server is shutting down") from None
        return _JobEvents(handles, queue, context, self.request_timeout_s)

    async def remember(self, request_id: str, model: str, conversation: Messages, answer: str) -> None:
        """Keep an answered prompt in the response log (on a worker thread; failures are only logged)."""
        try:
            await asyncio.to_thread(
                self.response_log.record,
                request_id,
                model,
                self.with_system_prompt(conversation),
                answer,
                int(time.time()),
            )
        except Exception as exc:
            log.error(
                "response log failed",
                extra=fields(model=self.name, request_id=request_id, error=type(exc).__name__),
            )

    def _log_generated(
        self,
        request_id: str,
        prompts: Sequence[Messages | str],
        completions: list[Completion],
        started: float,
    ) -> None:
        extra: dict[str, Any] = {
            "model": self.name,
            "request_id": request_id,
            "answers": len(completions),
            "prompt_tokens": sum(c.usage.prompt_tokens for c in completions),
            "completion_tokens": sum(c.usage.completion_tokens for c in completions),
            "finish_reasons": ",".join(sorted({c.finish_reason for c in completions})),
            "seconds": round(time.monotonic() - started, 3),
        }
        if self.log_text:
            extra["prompts"] = [p if isinstance(p, str) else list(p) for p in prompts]
            extra["answers_text"] = [c.text for c in completions]
        log.info("generated", extra=fields(**extra))

    # ----------------------------------------------------------------------------------------
    # blocking helpers for in-process callers (tests, notebooks)

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
    ) -> tuple[str, Usage]:
        """Answer one chat; returns the answer text and its token counts (blocking, thread-safe)."""
        settings = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p}
        params = parse_generation_params({k: v for k, v in settings.items() if v is not None})
        completion = self.complete(parse_messages(messages), params)
        return completion.text, completion.usage

    def complete(self, conversation: Messages | str, params: GenerationParams | None = None) -> Completion:
        """Generate one answer for a validated conversation or raw prompt (blocking, batched with others)."""
        import queue as thread_queue

        params = params or GenerationParams()
        self._require_ready()
        prompt_ids = (
            self.encode_text(conversation)
            if isinstance(conversation, str)
            else self.encode_chat(conversation)
        )
        job = self.build_job(prompt_ids, params, request_id=new_request_id())
        events: thread_queue.SimpleQueue = thread_queue.SimpleQueue()
        try:
            [handle] = self.batch_engine.submit([job], lambda handle, event: events.put(event))
        except QueueFull as exc:
            raise ServerBusy(str(exc), exc.retry_after_s) from None
        except EngineStopped:
            raise ServerBusy("the server is shutting down") from None
        try:
            event = events.get(timeout=self.request_timeout_s)
        except thread_queue.Empty:
            handle.cancel("timeout")
            raise GenerationTimeout(f"no answer within {self.request_timeout_s} s") from None
        if isinstance(event, Aborted):
            raise _aborted_error(event)
        return event.completion

    def _require_loaded(self):
        if self._model is None or self._tokenizer is None:
            raise RuntimeError(f"model {self.name} is not loaded; call load() first")
        return self._tokenizer

    def _require_ready(self) -> None:
        if not self.ready or self._engine is None or not self._engine.running:
            raise ModelNotReady(self.name)

    def _check_length(self, prompt_tokens: int, max_tokens: int) -> None:
        if prompt_tokens > self.max_prompt_tokens:
            raise InvalidInput(
                f"prompt is {prompt_tokens} tokens after applying the chat template; this server "
                f"accepts at most {self.max_prompt_tokens}"
            )
        if self._context_length and prompt_tokens + max_tokens > self._context_length:
            raise InvalidInput(
                f"prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the "
                f"model's context length of {self._context_length} tokens"
            )

    # ----------------------------------------------------------------------------------------
    # KServe protocols

    async def predict(
        self,
        payload: dict | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        """KServe v1 (``{"instances": [...]}``) and v2 (a BYTES tensor of prompts, over REST or gRPC) inference."""
        if isinstance(payload, InferRequest):
            return await self._predict_v2(payload)
        if isinstance(payload, dict):
            return await self._predict_v1(payload)
        if isinstance(payload, bytes | str):
            raise InvalidInput("KServe v1 requests must be JSON: send Content-Type: application/json")
        raise InvalidInput('KServe v1 request body must be a JSON object: {"instances": [...]}')

    async def _predict_v1(self, payload: dict) -> dict:
        """``{"instances": [{"messages": [...]} | {"prompt": "..."} | "...", ...], "parameters": {...}}``
        → ``{"predictions": ["answer", ...]}`` (the convention of KServe's Hugging Face runtime)."""
        unknown = sorted(set(payload) - {"instances", "parameters"})
        if unknown:
            raise InvalidInput("unknown top-level field(s); expected 'instances' and optionally 'parameters'")
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("instances must be a non-empty list")
        self._check_batch_size(len(instances))
        conversations = [_instance_conversation(item, f"instances[{i}]") for i, item in enumerate(instances)]
        params = parse_generation_params(payload.get("parameters"))
        request_id = _request_id()
        completions = await self.generate(conversations, params, request_id=request_id)
        await self._remember_all(request_id, conversations, completions)
        return {"predictions": [c.text for c in completions]}

    async def _predict_v2(self, request: InferRequest) -> InferResponse:
        """One BYTES input of prompts (each a single user turn) → one BYTES output of answers."""
        if len(request.inputs) != 1 or request.inputs[0].datatype != "BYTES":
            raise InvalidInput(
                f"expected exactly one BYTES input tensor of prompts (named '{V2_INPUT_NAME}')"
            )
        prompts = _v2_strings(request.inputs[0])
        if not prompts:
            raise InvalidInput("the input tensor holds no prompts")
        self._check_batch_size(len(prompts))
        raw_parameters = to_http_parameters(request.parameters or {})
        params = parse_generation_params(
            {k: v for k, v in raw_parameters.items() if k not in _V2_TRANSPORT_PARAMETERS}
        )
        request_id = _request_id()
        conversations: list[Messages] = [[{"role": "user", "content": p}] for p in prompts]
        completions = await self.generate(conversations, params, request_id=request_id)
        await self._remember_all(request_id, conversations, completions)
        output = InferOutput(
            name=V2_OUTPUT_NAME,
            shape=[len(completions)],
            datatype="BYTES",
            data=[c.text for c in completions],
        )
        return InferResponse(
            response_id=request.id or request_id, model_name=self.name, infer_outputs=[output]
        )

    async def _remember_all(
        self, request_id: str, conversations: list[Messages], completions: list[Completion]
    ) -> None:
        """One prompt is kept under the request id, several under ``<request id>~<index>`` (``~`` never occurs in a request id)."""
        for index, (conversation, completion) in enumerate(zip(conversations, completions, strict=True)):
            key = request_id if len(conversations) == 1 else f"{request_id}~{index}"
            await self.remember(key, self.name, conversation, completion.text)

    async def explain(self, payload, headers=None):
        """KServe's ``:explain`` verb: this model has no explainer (a 400, not KServe's 501)."""
        raise InvalidInput("this model has no explainer; use :predict")

    def _check_batch_size(self, size: int) -> None:
        if size > self.max_batch_size:
            raise InvalidInput(
                f"request carries {size} prompts; this server accepts at most "
                f"{self.max_batch_size} per request"
            )


class _JobEvents:
    """``async with`` the events of submitted jobs: ``(index, event)`` pairs until every job ended.

    A disconnect of the request's client cancels the jobs (reason ``cancelled``), the request's
    deadline cancels them with reason ``timeout``; either ends iteration with the matching error.
    Leaving the block early (an error, a consumer that stopped reading) cancels what is left.
    """

    def __init__(
        self, handles: list[JobHandle], queue: asyncio.Queue, context: RequestContext | None, timeout_s: float
    ) -> None:
        self.handles = handles
        self.queue = queue
        self.context = context
        self.timeout_s = timeout_s
        self._timer = None
        self._watcher = None

    def _cancel_all(self, reason) -> None:
        for handle in self.handles:
            handle.cancel(reason)

    async def __aenter__(self) -> AsyncIterator[tuple[int, Any]]:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.timeout_s, self._cancel_all, "timeout")
        if self.context is not None:
            self._watcher = asyncio.ensure_future(self.context.disconnected.wait())
            self._watcher.add_done_callback(lambda _: self._cancel_all("cancelled"))
        return self._iterate()

    async def __aexit__(self, *exc_info) -> None:
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        self._cancel_all("cancelled")

    async def _iterate(self) -> AsyncIterator[tuple[int, Any]]:
        index = {id(h): i for i, h in enumerate(self.handles)}
        remaining = len(self.handles)
        while remaining:
            handle, event = await self.queue.get()
            if isinstance(event, Aborted):
                raise _aborted_error(event)
            if isinstance(event, Finished):
                remaining -= 1
            yield index[id(handle)], event


def _aborted_error(event: Aborted) -> Exception:
    if event.reason == "timeout":
        return GenerationTimeout("the request did not finish in time; its generation was stopped")
    if event.reason == "cancelled":
        return ClientDisconnected("the client disconnected; its generation was stopped")
    if event.reason == "shutdown":
        return ServerBusy("the server is shutting down")
    return GenerationFailed("generation failed on the server")


def cpu_quota() -> int | None:
    """CPUs the container may use per its cgroup v2 quota (``cpu.max``), or None when unlimited/unknown."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max", encoding="ascii").read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, int(int(quota) / int(period)))


def _request_id() -> str:
    context = current_request()
    return context.request_id if context else new_request_id()


def _instance_conversation(instance: Any, where: str) -> Messages:
    """A v1 instance as chat-template turns: a bare string or ``prompt`` is one user turn."""
    if isinstance(instance, str):
        instance = {"prompt": instance}
    if not isinstance(instance, dict) or ("messages" in instance) == ("prompt" in instance):
        raise InvalidInput(
            f"{where} must be a string or an object with exactly one of 'messages' or 'prompt'"
        )
    if "messages" in instance:
        return parse_messages(instance["messages"], where=f"{where}.messages")
    if not isinstance(instance["prompt"], str):
        raise InvalidInput(f"{where}.prompt must be a string")
    return [{"role": "user", "content": instance["prompt"]}]


def _v2_strings(tensor) -> list[str]:
    """The elements of a BYTES tensor as text (REST sends strings, gRPC and binary REST send bytes)."""
    try:
        values = tensor.as_numpy().reshape(-1).tolist()
    except (ValueError, TypeError):
        raise InvalidInput(f"input '{tensor.name}': data does not match its shape {tensor.shape}") from None
    texts = []
    for value in values:
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"input '{tensor.name}': element is not valid UTF-8") from None
        if not isinstance(value, str):
            raise InvalidInput(f"input '{tensor.name}': elements must be strings")
        texts.append(value)
    return texts
