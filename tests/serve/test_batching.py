"""The continuous-batching engine in-process: batched answers equal unbatched ones, cancellation, the queue bound."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from medgo.serve.batching import Aborted, BatchEngine, Finished, Job, QueueFull, Sampling, TextDelta
from medgo.serve.generation import GenerationParams
from medgo.serve.model import MedgoModel

QUESTIONS = [
    "头痛",
    "发热三天，咳嗽",
    "血糖高怎么办？",
    "胸痛伴出汗，需要做什么检查？",
    "The patient reports chest pain",
    "咳嗽",
]
LONG = 160
EVENT_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> MedgoModel:
    served = MedgoModel(
        "medgo", str(tiny_model_dir), max_new_tokens=LONG, max_prompt_tokens=400, max_batch_size=8
    )
    served.load()
    yield served
    served.stop()


def _chat(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


class Collector:
    """Events of submitted jobs, by job, readable from the test thread."""

    def __init__(self) -> None:
        self.events: dict[int, queue.Queue] = {}

    def deliver(self, handle, event) -> None:
        self.events.setdefault(id(handle), queue.Queue()).put(event)

    def next(self, handle):
        self.events.setdefault(id(handle), queue.Queue())
        return self.events[id(handle)].get(timeout=EVENT_TIMEOUT_S)

    def last(self, handle):
        while not isinstance(event := self.next(handle), Finished | Aborted):
            pass
        return event


def test_batched_greedy_answers_equal_unbatched_ones(model):
    settings = [GenerationParams(max_tokens=n, temperature=0) for n in (24, 8, 32, 16, 24, 12)]
    alone = [model.complete(_chat(q), p) for q, p in zip(QUESTIONS, settings, strict=True)]
    steps_before = model.batch_engine.steps
    with ThreadPoolExecutor(max_workers=len(QUESTIONS)) as pool:
        together = list(
            pool.map(lambda qp: model.complete(_chat(qp[0]), qp[1]), zip(QUESTIONS, settings, strict=True))
        )
    assert together == alone
    assert [c.usage.completion_tokens <= p.max_tokens for c, p in zip(together, settings, strict=True)] == [
        True
    ] * 6
    sequential_steps = sum(c.usage.completion_tokens - 1 for c in alone)
    assert model.batch_engine.steps - steps_before < sequential_steps, "the prompts shared decoding steps"


def test_seeded_sampling_gives_the_same_answer_alone_and_beside_greedy_rows(model):
    seeded = GenerationParams(max_tokens=20, temperature=1.3, top_p=0.9, top_k=50, seed=11)
    alone = model.complete(_chat("头痛"), seeded)
    with ThreadPoolExecutor(max_workers=4) as pool:
        greedy = [
            pool.submit(model.complete, _chat(q), GenerationParams(max_tokens=20, temperature=0))
            for q in QUESTIONS[:3]
        ]
        beside = pool.submit(model.complete, _chat("头痛"), seeded)
        [f.result() for f in greedy]
    assert beside.result() == alone
    other_seed = model.complete(_chat("头痛"), seeded.model_copy(update={"seed": 12}))
    assert other_seed.text != alone.text


def test_penalties_change_greedy_answers(model):
    plain = model.complete(
        _chat("血糖高怎么办？"), GenerationParams(max_tokens=40, temperature=0, min_tokens=40)
    )
    penalised = model.complete(
        _chat("血糖高怎么办？"),
        GenerationParams(
            max_tokens=40, temperature=0, min_tokens=40, frequency_penalty=2.0, presence_penalty=2.0
        ),
    )
    assert penalised.text != plain.text


def test_min_tokens_holds_off_the_end_of_sequence(model):
    free = model.complete(_chat("头痛"), GenerationParams(max_tokens=LONG, temperature=0))
    assert free.finish_reason == "stop" and free.usage.completion_tokens < 60, "precondition: ends early"
    held = model.complete(_chat("头痛"), GenerationParams(max_tokens=60, min_tokens=60, temperature=0))
    assert (held.finish_reason, held.usage.completion_tokens) == ("length", 60)


def test_a_cancelled_running_job_stops_at_the_next_step(model, tiny_model_dir):
    engine = model.batch_engine
    collector = Collector()
    prompt = model.encode_chat(_chat("头痛"))
    job = Job("r-cancel", prompt, max_tokens=LONG, min_tokens=LONG, stream=True)
    [handle] = engine.submit([job], collector.deliver)
    assert isinstance(collector.next(handle), TextDelta), "generation is under way"
    handle.cancel()
    aborted = collector.last(handle)
    assert isinstance(aborted, Aborted) and aborted.reason == "cancelled"
    assert 1 <= aborted.completion_tokens < LONG


def test_a_full_queue_refuses_and_a_cancelled_waiting_job_leaves_it(model):
    engine = BatchEngine(
        model._model,
        model._tokenizer,
        eos_token_ids=model._eos_token_ids,
        max_batch_size=1,
        max_queue=1,
        model_name="queue-test",
    )
    engine.start()
    try:
        collector = Collector()
        prompt = model.encode_chat(_chat("发热"))
        long_job = Job("r-long", prompt, max_tokens=LONG, min_tokens=LONG, stream=True)
        [running] = engine.submit([long_job], collector.deliver)
        assert isinstance(collector.next(running), TextDelta), "the first job holds the only row"
        [waiting] = engine.submit([long_job], collector.deliver)
        with pytest.raises(QueueFull) as info:
            engine.submit([long_job], collector.deliver)
        assert info.value.retry_after_s >= 1
        waiting.cancel()
        assert isinstance(collector.last(waiting), Aborted)
        assert engine.queue_depth == 0
        [third] = engine.submit([Job("r-short", prompt, max_tokens=2)], collector.deliver)
        running.cancel()
        assert collector.last(running).reason == "cancelled"
        assert isinstance(collector.last(third), Finished)
    finally:
        engine.stop()


def test_stopping_the_engine_aborts_queued_and_running_jobs(model):
    engine = BatchEngine(
        model._model,
        model._tokenizer,
        eos_token_ids=model._eos_token_ids,
        max_batch_size=1,
        max_queue=2,
        model_name="stop-test",
    )
    engine.start()
    collector = Collector()
    started = threading.Event()
    prompt = model.encode_chat(_chat("发热"))

    def deliver(handle, event):
        started.set()
        collector.deliver(handle, event)

    handles = engine.submit([Job("r", prompt, max_tokens=LONG, min_tokens=LONG, stream=True)] * 2, deliver)
    assert started.wait(EVENT_TIMEOUT_S)
    engine.stop()
    assert {collector.last(h).reason for h in handles} == {"shutdown"}


def test_sampling_resolves_request_settings_over_the_model_defaults(model):
    assert model.sampling(GenerationParams(temperature=0)) == Sampling(do_sample=False)
    sampled = model.sampling(GenerationParams(top_p=0.5, seed=3))
    assert (sampled.do_sample, sampled.top_p, sampled.temperature, sampled.seed) == (True, 0.5, 1.0, 3)
    assert model.sampling(GenerationParams(top_k=-1)).top_k == 0


@pytest.mark.parametrize("seed", [0, 2**64 - 1, -(2**63)])
def test_every_accepted_seed_samples(model, seed):
    params = GenerationParams(max_tokens=4, temperature=1.0, seed=seed)
    assert model.complete(_chat("头痛"), params) == model.complete(_chat("头痛"), params)
