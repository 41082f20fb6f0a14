"""The medgo chat model as a KServe model: KServe v1 and v2 inference plus the generation core.

One :class:`MedgoModel` holds one causal LM (a merged export, or a base model plus a LoRA
adapter merged at load time) and its chat template. Generation is CPU/GPU-bound and not
re-entrant, so every request runs on a single dedicated worker thread, in arrival order, while
the event loop stays free to answer health probes. Request logging records token counts and
timings only: prompts and answers are patient data and never reach the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import kserve
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, to_http_parameters
from kserve.utils.utils import generate_uuid

from medgo.chat import Messages
from medgo.config import DEFAULT_SYSTEM_PROMPT, ServeConfig
from medgo.errors import ConfigError
from medgo.logs import fields
from medgo.modeling import input_device, load_for_inference, stop_token_ids
from medgo.serve.generation import (
    Completion,
    GenerationParams,
    Usage,
    parse_generation_params,
    parse_messages,
)

log = logging.getLogger(__name__)

#: KServe v2 tensor names, after the Triton LLM convention (``text_input`` → ``text_output``).
V2_INPUT_NAME = "text_input"
V2_OUTPUT_NAME = "text_output"
#: v2 request parameters that steer the transport, not generation.
_V2_TRANSPORT_PARAMETERS = frozenset({"binary_data_output"})


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
        max_batch_size: the most prompts one v1/v2 request may carry.
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
    ) -> None:
        super().__init__(name)
        for setting, value in (
            ("max_new_tokens", max_new_tokens),
            ("max_prompt_tokens", max_prompt_tokens),
            ("max_batch_size", max_batch_size),
        ):
            if value < 1:
                raise ConfigError(f"serve: {setting} must be at least 1, got {value}")
        self.model_uri = model_uri
        self.adapter_uri = adapter_uri
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.system_prompt = system_prompt or None
        self.max_batch_size = max_batch_size
        self.created = int(time.time())
        self._model = None
        self._tokenizer = None
        self._device = "cpu"
        self._context_length: int | None = None
        self._eos_token_ids: frozenset[int] = frozenset()
        self._generation_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, config: ServeConfig) -> MedgoModel:
        return cls(
            config.model_name,
            config.model_uri,
            adapter_uri=config.adapter_uri,
            max_new_tokens=config.max_new_tokens,
            max_prompt_tokens=config.max_prompt_tokens,
            system_prompt=config.system_prompt,
            max_batch_size=config.max_batch_size,
        )

    # ----------------------------------------------------------------------------------------
    # lifecycle

    def load(self) -> bool:
        """Load weights and tokenizer; a tokenizer without a chat template is an error.

        An adapter is merged into the weights; several visible GPUs share the model through a
        device map (see :func:`medgo.modeling.load_for_inference`).
        """
        started = time.monotonic()
        model, self._tokenizer = load_for_inference(self.model_uri, self.adapter_uri, merge_adapter=True)
        self._model = model
        self._device = str(input_device(model))
        self._context_length = getattr(self._model.config, "max_position_embeddings", None)
        self._eos_token_ids = frozenset(stop_token_ids(self._tokenizer, self._model))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"generate-{self.name}")
        self.created = int(time.time())
        self.ready = True
        log.info(
            "model loaded",
            extra=fields(
                model=self.name,
                uri=self.model_uri,
                adapter=self.adapter_uri,
                device=self._device,
                params=sum(p.numel() for p in self._model.parameters()),
                context_length=self._context_length,
                seconds=round(time.monotonic() - started, 2),
            ),
        )
        return self.ready

    def stop(self) -> None:
        """Refuse new work and let the generation thread finish its current request."""
        self.ready = False
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def get_input_types(self) -> list[dict]:
        return [{"name": V2_INPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": V2_OUTPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    # ----------------------------------------------------------------------------------------
    # generation

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
    ) -> tuple[str, Usage]:
        """Answer one chat; returns the answer text and its token counts.

        Blocking; safe to call from several threads (calls are serialised). Invalid messages or
        settings raise :class:`~kserve.errors.InvalidInput`.
        """
        settings = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p}
        params = parse_generation_params({k: v for k, v in settings.items() if v is not None})
        completion = self.complete(parse_messages(messages), params)
        return completion.text, completion.usage

    def complete(self, conversation: Messages, params: GenerationParams | None = None) -> Completion:
        """Generate one answer for a validated conversation (blocking, serialised)."""
        params = params or GenerationParams()
        max_tokens = self.resolve_max_tokens(params)
        tokenizer = self._require_loaded()
        with self._generation_lock:
            prompt_ids = self._encode(self._with_system_prompt(conversation))
            self._check_length(len(prompt_ids), max_tokens)
            generated = self._generate(prompt_ids, max_tokens, params)
        return _to_completion(generated, len(prompt_ids), self._eos_token_ids, tokenizer, params.stop)

    async def acomplete(
        self, conversations: Sequence[Messages], params: GenerationParams | None = None
    ) -> list[Completion]:
        """Answer conversations on the generation thread, keeping the event loop responsive."""
        if not self.ready or self._executor is None:
            raise ModelNotReady(self.name)
        params = params or GenerationParams()
        self.resolve_max_tokens(params)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        completions = await loop.run_in_executor(
            self._executor, partial(self._complete_all, conversations, params)
        )
        log.info(
            "generated",
            extra=fields(
                model=self.name,
                answers=len(completions),
                prompt_tokens=sum(c.usage.prompt_tokens for c in completions),
                completion_tokens=sum(c.usage.completion_tokens for c in completions),
                finish_reasons=",".join(sorted({c.finish_reason for c in completions})),
                seconds=round(time.monotonic() - started, 3),
            ),
        )
        return completions

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

    def _complete_all(self, conversations: Sequence[Messages], params: GenerationParams) -> list[Completion]:
        return [self.complete(conversation, params) for conversation in conversations]

    def _require_loaded(self):
        if self._model is None or self._tokenizer is None:
            raise RuntimeError(f"model {self.name} is not loaded; call load() first")
        return self._tokenizer

    def _with_system_prompt(self, conversation: Messages) -> Messages:
        if self.system_prompt is None or any(turn["role"] == "system" for turn in conversation):
            return list(conversation)
        return [{"role": "system", "content": self.system_prompt}, *conversation]

    def _encode(self, conversation: Messages) -> list[int]:
        from jinja2 import TemplateError

        try:
            text = self._tokenizer.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=False
            )
        except TemplateError as exc:
            raise InvalidInput(
                f"messages cannot be formatted with this model's chat template: {exc}"
            ) from None
        return self._tokenizer(text, add_special_tokens=False)["input_ids"]

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

    def _generate(self, prompt_ids: list[int], max_tokens: int, params: GenerationParams) -> list[int]:
        import torch

        input_ids = torch.tensor([prompt_ids], device=self._device)
        options: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "attention_mask": torch.ones_like(input_ids),
            "pad_token_id": self._tokenizer.pad_token_id,
            **self._sampling_options(params),
        }
        if params.stop:
            options["stopping_criteria"] = _stop_on_strings(self._tokenizer, len(prompt_ids), params.stop)
        with _seeded_rng(params.seed, self._device), torch.inference_mode():
            output = self._model.generate(input_ids, **options)
        return output[0, len(prompt_ids) :].tolist()

    def _sampling_options(self, params: GenerationParams) -> dict[str, Any]:
        """Greedy for ``temperature=0``; sampling for another temperature, a ``top_p``, or the model's default."""
        if params.temperature == 0.0:
            return {"do_sample": False}
        sample = (
            params.temperature is not None
            or params.top_p is not None
            or bool(self._model.generation_config.do_sample)
        )
        if not sample:
            return {"do_sample": False}
        options: dict[str, Any] = {"do_sample": True}
        if params.temperature is not None:
            options["temperature"] = params.temperature
        if params.top_p is not None:
            options["top_p"] = params.top_p
        return options

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
            raise InvalidInput(
                f"unknown top-level field(s) {', '.join(unknown)}; expected 'instances' and "
                "optionally 'parameters'"
            )
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("instances must be a non-empty list")
        self._check_batch_size(len(instances))
        conversations = [_instance_conversation(item, f"instances[{i}]") for i, item in enumerate(instances)]
        params = parse_generation_params(payload.get("parameters"))
        completions = await self.acomplete(conversations, params)
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
        completions = await self.acomplete([[{"role": "user", "content": p}] for p in prompts], params)
        output = InferOutput(
            name=V2_OUTPUT_NAME,
            shape=[len(completions)],
            datatype="BYTES",
            data=[c.text for c in completions],
        )
        return InferResponse(
            response_id=request.id or generate_uuid(), model_name=self.name, infer_outputs=[output]
        )

    def _check_batch_size(self, size: int) -> None:
        if size > self.max_batch_size:
            raise InvalidInput(
                f"request carries {size} prompts; this server accepts at most "
                f"{self.max_batch_size} per request"
            )


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


@contextlib.contextmanager
def _seeded_rng(seed: int | None, device: str) -> Iterator[None]:
    """Seed sampling for one request only; the RNG stream of unseeded requests is left as it was."""
    if seed is None:
        yield
        return
    import torch

    # Under a device map sampling runs on the last shard's GPU: fork every visible one.
    devices = list(range(torch.cuda.device_count())) if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _stop_on_strings(tokenizer, prompt_tokens: int, stop: list[str]):
    """A stopping criterion that looks for ``stop`` in the generated text only.

    transformers' built-in ``stop_strings`` also matches across the end of the prompt (a prompt
    ending in a newline plus generated newlines can complete a stop string), which OpenAI's
    semantics do not; decoding the answer so far each step costs little next to a forward pass.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            answers = tokenizer.batch_decode(input_ids[:, prompt_tokens:], skip_special_tokens=True)
            return torch.tensor(
                [any(s in answer for s in stop) for answer in answers], device=input_ids.device
            )

    return StoppingCriteriaList([StopOnStrings()])


def _to_completion(
    generated: list[int], prompt_tokens: int, eos_token_ids: frozenset[int], tokenizer, stop: list[str] | None
) -> Completion:
    """Cut the generated ids at the first end-of-sequence token and the text at the first stop string.

    The end-of-sequence token counts as a completion token (as in vLLM) but is not part of the text.
    """
    end = next((i for i, token in enumerate(generated) if token in eos_token_ids), None)
    completion_tokens = len(generated) if end is None else end + 1
    text = tokenizer.decode(generated[:end], skip_special_tokens=True)
    finish_reason = "length" if end is None else "stop"
    cut = min((i for i in (text.find(s) for s in stop or []) if i >= 0), default=None)
    if cut is not None:
        text, finish_reason = text[:cut], "stop"
    return Completion(
        text=text,
        finish_reason=finish_reason,
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
    )
