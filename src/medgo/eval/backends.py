"""What the evaluation asks of a model: greedy answers to chats, and option log-likelihoods.

Tasks talk to a :class:`Backend`, never to transformers or HTTP directly, so the same task code
scores a local checkpoint (:class:`LocalBackend`) and any OpenAI-compatible endpoint
(:class:`EndpointBackend`: the deployed InferenceService, vLLM, or a judge model).

What each backend supports:

==================  =========================================  ======================================
                    LocalBackend                               EndpointBackend
==================  =========================================  ======================================
generate            batched greedy decoding, KV cache,         ``/chat/completions``, temperature 0,
                    left padding, sorted by length             concurrent requests, retries, timeouts
choice_logprobs     exact: one padded forward per batch of     first-token ``top_logprobs`` of
                    questions, any number of choice tokens     ``/chat/completions``; single-token
                                                               choices only; an endpoint without
                                                               log-probs raises
                                                               :class:`LogprobsUnsupported` (score
                                                               MCQ with ``mcq_mode=generate``)
==================  =========================================  ======================================

An endpoint request that still fails after its retries is not scored: the call finishes the
other requests, then raises :class:`RequestsFailed` naming every failed request and why.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from tqdm.auto import tqdm

from medgo.chat import Messages
from medgo.errors import ConfigError, MedgoError
from medgo.logs import fields
from medgo.serve.streaming import TextStream

log = logging.getLogger(__name__)

#: HTTP statuses worth retrying: timeouts, conflicts, rate limits and server-side failures.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: Statuses that mean every further request would fail the same way: stop at once.
FATAL_STATUS = frozenset({401, 403, 404})
#: The most alternatives an OpenAI-compatible endpoint returns per token (OpenAI's limit).
MAX_TOP_LOGPROBS = 20


@runtime_checkable
class Backend(Protocol):
    """A model under evaluation."""

    #: Identifies the model in results and logs (a URI, never prompt text).
    name: str

    def generate(self, chats: Sequence[Messages], max_new_tokens: int) -> list[str]:
        """The greedy assistant reply to each chat, without the prompt or special tokens."""
        ...

    def choice_logprobs(self, chats: Sequence[Messages], choices: Sequence[str]) -> list[list[float]]:
        """For each chat, the log-likelihood of each choice as the start of the assistant's reply."""
        ...


@dataclass(frozen=True)
class RequestFailure:
    """One request that could not be answered; ``position`` is its index in the backend call."""

    position: int
    reason: str
    item_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "item_id": self.item_id, "reason": self.reason}


class RequestsFailed(MedgoError):
    """Some requests of a backend call failed after their retries; none of the call is scored.

    Tasks re-raise it with their item ids (:meth:`with_item_ids`), so the runner can report the
    task as not evaluated, item by item, instead of scoring the failures as wrong answers.
    """

    def __init__(self, failures: Sequence[RequestFailure], total: int, backend: str) -> None:
        self.failures, self.total, self.backend = list(failures), total, backend
        first = self.failures[0]
        where = first.item_id or f"request {first.position}"
        super().__init__(
            f"{backend}: {len(self.failures)} of {total} requests failed after retries "
            f"(first: {where}: {first.reason})"
        )

    def with_item_ids(self, ids: Sequence[str]) -> RequestsFailed:
        """The same failures, labelled with the ids of the items the call was made for."""
        return RequestsFailed(
            [replace(f, item_id=ids[f.position]) if f.position < len(ids) else f for f in self.failures],
            self.total,
            self.backend,
        )


class LogprobsUnsupported(MedgoError):
    """The endpoint returns no token log-probabilities, so options cannot be scored by likelihood."""


def _batches(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start : start + size])


class LocalBackend:
    """A transformers checkpoint (optionally with a LoRA adapter) run in this process.

    Generation is batched greedy decoding with left padding and the KV cache; prompts are
    sorted by length so a batch pads little. Option scoring batches *questions*: rows are
    ``prompt + choice`` (just the prompt when every choice is one token, the MCQ case), left
    padded with position ids counted from each row's first real token, so a padded row scores
    exactly as it would alone; only the positions that predict choice tokens are projected to
    the vocabulary. Replies are detokenised by the model server's own
    :class:`~medgo.serve.streaming.TextStream` (no U+FFFD of unfinished characters, no control
    bytes), so a model answers and scores the same here as behind ``medgo serve``.
    """

    def __init__(
        self, model_uri: str, adapter_uri: str | None = None, batch_size: int = 8, device: str | None = None
    ) -> None:
        from medgo.modeling import input_device, load_for_inference, stop_token_ids

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.name = model_uri if not adapter_uri else f"{model_uri}+{adapter_uri}"
        self.batch_size = batch_size
        # One download per s3:// URI; several GPUs share a large model through a device map.
        self.model, self.tokenizer = load_for_inference(model_uri, adapter_uri, device=device)
        self.tokenizer.padding_side = "left"
        self.device = input_device(self.model)
        self._eos_ids = stop_token_ids(self.tokenizer, self.model)
        log.info(
            "loaded model for evaluation",
            extra=fields(model=self.name, device=str(self.device), batch_size=batch_size),
        )

    def _prompt_text(self, chat: Messages) -> str:
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def generate(self, chats: Sequence[Messages], max_new_tokens: int) -> list[str]:
        import torch
        from transformers import GenerationConfig

        texts = [self._prompt_text(chat) for chat in chats]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            eos_token_id=self._eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        replies: list[str] = [""] * len(texts)
        progress = tqdm(total=len(texts), desc="generate", unit="prompt", leave=False)
        with torch.inference_mode():
            for batch in _batches(order, self.batch_size):
                enc = self.tokenizer(
                    [texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(self.device)
                out = self.model.generate(**enc, generation_config=config)
                new_tokens = out[:, enc["input_ids"].shape[1] :]
                for i, row in zip(batch, new_tokens.tolist(), strict=True):
                    replies[i] = self._answer_text(row).strip()
                progress.update(len(batch))
        progress.close()
        return replies

    def _answer_text(self, token_ids: Sequence[int]) -> str:
        """Generated ids up to the first end-of-sequence, detokenised as the model server does."""
        stream = TextStream(self.tokenizer)
        for token in token_ids:
            if token in self._eos_ids:
                break
            stream.push(token)
        stream.finish()
        return stream.text

    def choice_logprobs(self, chats: Sequence[Messages], choices: Sequence[str]) -> list[list[float]]:
        if not choices:
            raise ValueError("choice_logprobs needs at least one choice")
        # Prompt and choice are tokenised apart so a choice is the same tokens after every prompt.
        choice_ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
        if any(not ids for ids in choice_ids):
            raise ValueError(f"a choice tokenizes to nothing: {list(choices)!r}")
        prompts = [self.tokenizer(self._prompt_text(c), add_special_tokens=False)["input_ids"] for c in chats]
        if all(len(ids) == 1 for ids in choice_ids):
            return self._next_token_scores(prompts, [ids[0] for ids in choice_ids])
        return self._continuation_scores(prompts, choice_ids)

    def _forward_tail(self, rows: list[list[int]], keep: int):
        """Log-probs of the last ``keep`` positions of left-padded ``rows`` (float32, on the logits' device)."""
        import torch

        longest = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (longest - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (longest - len(r)) + [1] * len(r) for r in rows], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
        ).logits
        return torch.log_softmax(logits.float(), dim=-1)

    def _next_token_scores(self, prompts: list[list[int]], choice_tokens: list[int]) -> list[list[float]]:
        import torch

        scores: list[list[float]] = [[] for _ in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        progress = tqdm(total=len(prompts), desc="score options", unit="question", leave=False)
        with torch.inference_mode():
            for batch in _batches(order, self.batch_size):
                logprobs = self._forward_tail([prompts[i] for i in batch], keep=1)[:, -1]
                picked = logprobs[:, torch.tensor(choice_tokens, device=logprobs.device)].tolist()
                for i, row in zip(batch, picked, strict=True):
                    scores[i] = row
                progress.update(len(batch))
        progress.close()
        return scores

    def _continuation_scores(
        self, prompts: list[list[int]], choice_ids: list[list[int]]
    ) -> list[list[float]]:
        import torch

        pairs = [(q, c) for q in range(len(prompts)) for c in range(len(choice_ids))]
        pairs.sort(key=lambda qc: len(prompts[qc[0]]) + len(choice_ids[qc[1]]))
        scores = [[0.0] * len(choice_ids) for _ in prompts]
        with torch.inference_mode():
            for batch in tqdm(
                list(_batches(range(len(pairs)), self.batch_size)), desc="score options", leave=False
            ):
                rows = [prompts[pairs[k][0]] + choice_ids[pairs[k][1]] for k in batch]
                keep = max(len(choice_ids[pairs[k][1]]) for k in batch) + 1
                logprobs = self._forward_tail(rows, keep=keep)
                for row, k in enumerate(batch):
                    q, c = pairs[k]
                    ids = choice_ids[c]
                    # Positions keep-1-len(ids) .. keep-2 of the kept tail predict the choice tokens.
                    start = keep - 1 - len(ids)
                    steps = torch.arange(start, start + len(ids), device=logprobs.device)
                    targets = torch.tensor(ids, device=logprobs.device)
                    scores[q][c] = float(logprobs[row, steps, targets].sum())
        return scores


@dataclass(frozen=True)
class EndpointSettings:
    """How to talk to an OpenAI-compatible endpoint (see :class:`medgo.config.EndpointConfig`)."""

    base_url: str
    model: str
    api_key: str | None = None
    concurrency: int = 4
    max_retries: int = 3
    timeout_s: float = 120.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0


def split_endpoint_ref(ref: str, default_model: str) -> tuple[str, str]:
    """``http://host/openai/v1?model=NAME`` → ``("http://host/openai/v1", "NAME")``.

    The query names the served model (a KServe vLLM runtime serves each LoRA adapter under
    its own name); without one, ``default_model`` is used.
    """
    parts = urlsplit(ref)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"not an http(s) endpoint URL: {ref!r}")
    query = parse_qs(parts.query)
    model = query.pop("model", [default_model])[-1]
    rest = urlencode({k: v[-1] for k, v in query.items()})
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), rest, "")), model


def is_endpoint_ref(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


class _Fatal(Exception):
    """A response that makes retrying pointless (bad credentials, unknown model or route)."""


class EndpointBackend:
    """Any OpenAI-compatible ``/chat/completions`` endpoint, asked concurrently.

    ``base_url`` ends where OpenAI clients' ``base_url`` ends (``…/openai/v1`` on a medgo
    server or KServe, ``…/v1`` on vLLM). Each request is retried on timeouts, transport errors
    and retryable statuses with exponential backoff and jitter (honouring ``Retry-After``);
    401/403/404 stop the run at once with the server's message. Requests are greedy
    (``temperature=0``) so scores are reproducible. The API key, when given, is sent as a
    bearer token and never logged.
    """

    def __init__(self, settings: EndpointSettings, *, name: str | None = None) -> None:
        import httpx

        if settings.concurrency < 1 or settings.max_retries < 0 or settings.timeout_s <= 0:
            raise ConfigError("endpoint: concurrency >= 1, max_retries >= 0 and timeout_s > 0 are required")
        self.settings = settings
        self.name = name or f"{settings.base_url}#{settings.model}"
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._client = httpx.Client(
            timeout=settings.timeout_s,
            headers=headers,
            limits=httpx.Limits(max_connections=settings.concurrency * 2),
        )
        self._rng = random.Random(0)
        self._rng_lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EndpointBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- protocol ----------------------------------------------------------------------------

    def generate(self, chats: Sequence[Messages], max_new_tokens: int) -> list[str]:
        bodies = [
            {
                "model": self.settings.model,
                "messages": list(chat),
                "max_tokens": max_new_tokens,
                "temperature": 0,
            }
            for chat in chats
        ]
        responses = self._post_all(bodies, desc="generate")
        return [_message_text(r).strip() for r in responses]

    def choice_logprobs(self, chats: Sequence[Messages], choices: Sequence[str]) -> list[list[float]]:
        if not choices:
            raise ValueError("choice_logprobs needs at least one choice")
        bodies = [
            {
                "model": self.settings.model,
                "messages": list(chat),
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": MAX_TOP_LOGPROBS,
            }
            for chat in chats
        ]
        try:
            responses = self._post_all(bodies, desc="score options")
        except RequestsFailed as exc:
            # A server that refuses the parameter (400 naming logprobs) instead of ignoring it.
            if any(f.reason.startswith("HTTP 400") and "logprobs" in f.reason for f in exc.failures):
                raise LogprobsUnsupported(_no_logprobs_message(self.name)) from None
            raise
        return [_choice_scores(r, choices, self.name) for r in responses]

    # -- transport ---------------------------------------------------------------------------

    def _post_all(self, bodies: list[dict[str, Any]], *, desc: str) -> list[dict[str, Any]]:
        url = f"{self.settings.base_url}/chat/completions"
        results: list[dict[str, Any] | None] = [None] * len(bodies)
        failures: list[RequestFailure] = []
        fatal: list[str] = []
        stop = threading.Event()

        def work(position: int) -> None:
            if stop.is_set():
                failures.append(RequestFailure(position, "not sent: the run was stopped by a fatal error"))
                return
            try:
                results[position] = self._post_with_retries(url, bodies[position])
            except _Fatal as exc:
                fatal.append(str(exc))
                stop.set()
                failures.append(RequestFailure(position, str(exc)))
            except _GaveUp as exc:
                failures.append(RequestFailure(position, str(exc)))

        progress = tqdm(total=len(bodies), desc=desc, unit="request", leave=False)
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            for _ in pool.map(lambda p: (work(p), progress.update(1)), range(len(bodies))):
                pass
        progress.close()
        if fatal:
            raise MedgoError(f"{self.name} refused the evaluation: {fatal[0]}")
        if failures:
            failures.sort(key=lambda f: f.position)
            log.warning(
                "endpoint requests failed after retries",
                extra=fields(backend=self.name, failed=len(failures), of=len(bodies)),
            )
            raise RequestsFailed(failures, len(bodies), self.name)
        return [r for r in results if r is not None]

    def _post_with_retries(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        last = "no attempt made"
        for attempt in range(self.settings.max_retries + 1):
            retry_after: float | None = None
            try:
                response = self._client.post(url, json=body)
            except httpx.TimeoutException:
                last = f"timed out after {self.settings.timeout_s:g} s"
            except httpx.TransportError as exc:
                last = f"transport error: {type(exc).__name__}"
            else:
                if response.status_code == 200:
                    try:
                        payload = response.json()
                        _message_text(payload)
                        return payload
                    except (ValueError, _Malformed) as exc:
                        last = f"malformed response: {exc}"
                elif response.status_code in FATAL_STATUS:
                    raise _Fatal(f"HTTP {response.status_code}: {_error_message(response)}")
                elif response.status_code in RETRYABLE_STATUS:
                    last = f"HTTP {response.status_code}: {_error_message(response)}"
                    retry_after = _retry_after_s(response)
                else:
                    raise _GaveUp(f"HTTP {response.status_code}: {_error_message(response)}")
            if attempt < self.settings.max_retries:
                time.sleep(self._backoff(attempt, retry_after))
        raise _GaveUp(f"{last} (after {self.settings.max_retries + 1} attempts)")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        with self._rng_lock:
            jitter = self._rng.uniform(0.5, 1.5)
        delay = self.settings.backoff_s * (2**attempt) * jitter
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.settings.max_backoff_s)


class _GaveUp(Exception):
    """A request that failed on every attempt (or with a status not worth retrying)."""


class _Malformed(Exception):
    """A 200 response without a chat completion in it."""


def _message_text(payload: Any) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _Malformed("no choices[0].message.content") from None
    if content is None:
        return ""
    if not isinstance(content, str):
        raise _Malformed("message content is not text")
    return content


def _no_logprobs_message(backend: str) -> str:
    return (
        f"{backend} returned no token log-probabilities; score multiple-choice questions with "
        "mcq_mode=generate (generate and extract the letter) on this endpoint"
    )


def _choice_scores(payload: dict[str, Any], choices: Sequence[str], backend: str) -> list[float]:
    """Each choice's log-prob as the first answer token, from the response's ``top_logprobs``.

    A choice absent from the top alternatives gets the smallest reported log-prob (an upper
    bound on its true value), so the argmax is exact whenever the best choice is listed.
    """
    try:
        first = payload["choices"][0]["logprobs"]["content"][0]
        top = first.get("top_logprobs") or [{"token": first["token"], "logprob": first["logprob"]}]
    except (KeyError, IndexError, TypeError):
        raise LogprobsUnsupported(_no_logprobs_message(backend)) from None
    by_choice: dict[str, float] = {}
    for entry in top:
        token = str(entry.get("token", "")).strip()
        if token in choices:
            value = float(entry["logprob"])
            previous = by_choice.get(token)
            by_choice[token] = value if previous is None else _logaddexp(previous, value)
    floor = min(float(entry["logprob"]) for entry in top)
    return [by_choice.get(choice, floor) for choice in choices]


def _logaddexp(a: float, b: float) -> float:
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))


def _retry_after_s(response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_message(response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return response.text[:200]
    if isinstance(error, dict):
        return str(error.get("message", error))[:200]
    return str(error)[:200]


def api_key_from_env(variable: str | None) -> str | None:
    """The API key in environment variable ``variable`` (a Kubernetes Secret mounted as env)."""
    if not variable:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"endpoint API key variable {variable} is not set")
    return value
