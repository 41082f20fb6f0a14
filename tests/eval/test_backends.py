"""LocalBackend on a real tiny Qwen2: batching must not change answers, scores must be exact."""

from __future__ import annotations

import math

import pytest
import torch

from medgo.errors import ConfigError, MedgoError
from medgo.eval.backends import Backend, LocalBackend, LogprobsUnsupported, RequestsFailed
from tests.fixtures.openai_stub import OpenAIStub

OpenAIStubHang = OpenAIStub.HANG

CHATS = [
    [{"role": "user", "content": "高血压吃什么药好？"}],
    [
        {"role": "system", "content": "你是医学助手。"},
        {"role": "user", "content": "头痛三天，伴发热，需要做什么检查？请详细说明。"},
    ],
    [{"role": "user", "content": "感冒了怎么办？"}],
]


def test_implements_the_backend_protocol(tiny_backend):
    assert isinstance(tiny_backend, Backend)


def test_batched_left_padded_generation_equals_one_at_a_time(chatty_model_dir):
    batched = LocalBackend(str(chatty_model_dir), batch_size=3).generate(CHATS, max_new_tokens=12)
    single = LocalBackend(str(chatty_model_dir), batch_size=1)
    assert batched == [single.generate([chat], max_new_tokens=12)[0] for chat in CHATS]
    assert len(set(batched)) == len(CHATS), "replies should differ by prompt, or this test proves nothing"
    assert all("<|im_end|>" not in reply and "<|endoftext|>" not in reply for reply in batched)


def manual_choice_logprob(backend: LocalBackend, chat, choice: str) -> float:
    """Sum of the choice tokens' log-probs from one unbatched forward over prompt + choice."""
    tok = backend.tokenizer
    prompt = tok(
        tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True), add_special_tokens=False
    )["input_ids"]
    cont = tok(choice, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([prompt + cont])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(float(logprobs[len(prompt) - 1 + k, t]) for k, t in enumerate(cont))


def test_choice_logprobs_match_an_unbatched_forward(chatty_backend):
    choices = ["A", "B", "C", "阿司匹林片"]  # the last spans several tokens, so rows are padded
    assert len(chatty_backend.tokenizer("阿司匹林片", add_special_tokens=False)["input_ids"]) > 1
    scores = chatty_backend.choice_logprobs(CHATS, choices)
    assert [len(row) for row in scores] == [len(choices)] * len(CHATS)
    for chat, row in zip(CHATS, scores, strict=True):
        expected = [manual_choice_logprob(chatty_backend, chat, c) for c in choices]
        assert row == pytest.approx(expected, abs=1e-4)
        assert all(s < 0 for s in row)


def test_choice_logprobs_rejects_empty_choices(tiny_backend):
    with pytest.raises(ValueError, match="at least one choice"):
        tiny_backend.choice_logprobs(CHATS[:1], [])
    with pytest.raises(ValueError, match="tokenizes to nothing"):
        tiny_backend.choice_logprobs(CHATS[:1], ["A", ""])


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
def test_adapter_is_applied_and_tokenizer_found_with_the_base(tiny_model_dir, tiny_backend, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(0)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")  # no tokenizer saved with it

    with_adapter = LocalBackend(str(tiny_model_dir), adapter_uri=str(tmp_path / "adapter"))
    assert with_adapter.name.endswith("adapter")
    plain = tiny_backend.choice_logprobs(CHATS[:1], ["A", "B"])[0]
    adapted = with_adapter.choice_logprobs(CHATS[:1], ["A", "B"])[0]
    assert adapted != pytest.approx(plain, abs=1e-3)


def test_choice_logprobs_batch_questions_of_different_lengths(chatty_model_dir):
    """Questions of very different lengths share a left-padded batch and score as they would alone."""
    chats = CHATS + [[{"role": "user", "content": "胸痛" * 40}]]
    batched = LocalBackend(str(chatty_model_dir), batch_size=4)
    single = LocalBackend(str(chatty_model_dir), batch_size=1)
    for choices in (["A", "B", "C", "D"], ["A", "阿司匹林片"]):
        together = batched.choice_logprobs(chats, choices)
        alone = [single.choice_logprobs([chat], choices)[0] for chat in chats]
        for row, expected in zip(together, alone, strict=True):
            assert row == pytest.approx(expected, abs=1e-4)
        for chat, row in zip(chats, together, strict=True):
            assert row == pytest.approx([manual_choice_logprob(batched, chat, c) for c in choices], abs=1e-4)


class TestEndpointBackend:
    """Against a scripted OpenAI-compatible server on 127.0.0.1 (it stands in for a misbehaving endpoint)."""

    @staticmethod
    def backend(url, **settings):
        from medgo.eval.backends import EndpointBackend, EndpointSettings

        return EndpointBackend(EndpointSettings(base_url=url, model="medgo", backoff_s=0.0, **settings))

    def test_generate_sends_greedy_chat_requests_concurrently(self, openai_stub):
        stub = openai_stub(lambda body, attempt: f" echo {body['messages'][-1]['content']} ")
        with self.backend(stub.url, concurrency=3) as backend:
            replies = backend.generate(CHATS, max_new_tokens=7)
        assert replies == [f"echo {chat[-1]['content']}" for chat in CHATS]
        assert {b["temperature"] for b in stub.bodies} == {0} and {b["max_tokens"] for b in stub.bodies} == {
            7
        }
        assert {b["model"] for b in stub.bodies} == {"medgo"}

    def test_retries_transient_failures_then_succeeds(self, openai_stub):
        def flaky(body, attempt):
            return (503, {"error": {"message": "overloaded"}}) if attempt < 2 else "好的"

        stub = openai_stub(flaky)
        with self.backend(stub.url, max_retries=3) as backend:
            assert backend.generate(CHATS[:1], max_new_tokens=4) == ["好的"]
        assert len(stub.bodies) == 3

    def test_failures_after_retries_are_reported_per_request(self, openai_stub):
        def partly_down(body, attempt):
            text = body["messages"][-1]["content"]
            if "头痛" in text:
                return (500, {"error": {"message": "boom"}})
            if "感冒" in text:
                return (400, {"error": {"message": "prompt too long"}})
            return "ok"

        stub = openai_stub(partly_down)
        with self.backend(stub.url, max_retries=2) as backend, pytest.raises(RequestsFailed) as failed:
            backend.generate(CHATS, max_new_tokens=4)
        failures = {f.position: f.reason for f in failed.value.failures}
        assert set(failures) == {1, 2}
        assert "HTTP 500: boom (after 3 attempts)" in failures[1]
        assert failures[2] == "HTTP 400: prompt too long"  # a client error is not retried
        assert sum("感冒" in b["messages"][-1]["content"] for b in stub.bodies) == 1
        assert sum("头痛" in b["messages"][-1]["content"] for b in stub.bodies) == 3
        labelled = failed.value.with_item_ids(["a", "b", "c"])
        assert [f.item_id for f in labelled.failures] == ["b", "c"]
        assert "2 of 3 requests failed" in str(failed.value)

    def test_a_hanging_request_times_out_and_is_retried(self, openai_stub):
        stub = openai_stub(lambda body, attempt: OpenAIStubHang if attempt == 0 else "late but fine")
        with self.backend(stub.url, timeout_s=0.5, max_retries=1) as backend:
            assert backend.generate(CHATS[:1], max_new_tokens=4) == ["late but fine"]

    def test_bad_credentials_stop_the_run(self, openai_stub):
        stub = openai_stub(lambda body, attempt: (401, {"error": {"message": "invalid api key"}}))
        with (
            self.backend(stub.url) as backend,
            pytest.raises(MedgoError, match="refused the evaluation: HTTP 401"),
        ):
            backend.generate(CHATS, max_new_tokens=4)

    def test_malformed_responses_are_failures_not_empty_answers(self, openai_stub):
        stub = openai_stub(lambda body, attempt: (200, {"choices": []}))
        with self.backend(stub.url, max_retries=1) as backend, pytest.raises(RequestsFailed) as failed:
            backend.generate(CHATS[:1], max_new_tokens=4)
        assert "malformed response" in failed.value.failures[0].reason

    def test_choice_logprobs_from_top_logprobs(self, openai_stub):
        def with_logprobs(body, attempt):
            assert body["logprobs"] is True and body["max_tokens"] == 1 and body["top_logprobs"] == 20
            top = [
                {"token": "B", "logprob": -0.2},
                {"token": " A", "logprob": -1.5},
                {"token": "A", "logprob": -2.0},
            ]
            return (
                200,
                {
                    "choices": [
                        {
                            "message": {"role": "assistant", "content": "B"},
                            "logprobs": {"content": [{"token": "B", "logprob": -0.2, "top_logprobs": top}]},
                        }
                    ]
                },
            )

        stub = openai_stub(with_logprobs)
        with self.backend(stub.url) as backend:
            (row,) = backend.choice_logprobs(CHATS[:1], ["A", "B", "C"])
        assert row[1] == pytest.approx(-0.2)
        assert row[0] == pytest.approx(math.log(math.exp(-1.5) + math.exp(-2.0)))  # " A" and "A" both mean A
        assert row[2] == pytest.approx(-2.0)  # not listed: the smallest listed value bounds it

    def test_an_endpoint_without_logprobs_says_to_use_generate_mode(self, openai_stub):
        stub = openai_stub(lambda body, attempt: "A")
        with self.backend(stub.url) as backend, pytest.raises(LogprobsUnsupported, match="mcq_mode=generate"):
            backend.choice_logprobs(CHATS[:1], ["A", "B"])

    def test_api_key_is_sent_as_bearer_token(self, openai_stub, monkeypatch):
        from medgo.config import EvalConfig
        from medgo.eval.runner import open_backend

        stub = openai_stub(lambda body, attempt: "ok")
        monkeypatch.setenv("MEDGO_TEST_KEY", "s3cret")
        config = EvalConfig(endpoint={"api_key_env": "MEDGO_TEST_KEY", "backoff_s": 0})
        backend = open_backend(stub.url + "?model=medgo-sft", None, config)
        assert backend.settings.model == "medgo-sft" and backend.settings.base_url == stub.url
        assert backend.generate(CHATS[:1], 4) == ["ok"]
        assert stub.headers[-1]["Authorization"] == "Bearer s3cret"
        assert "s3cret" not in backend.name
        monkeypatch.delenv("MEDGO_TEST_KEY")
        with pytest.raises(ConfigError, match="MEDGO_TEST_KEY is not set"):
            open_backend(stub.url, None, config)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("http://h:8080/openai/v1", ("http://h:8080/openai/v1", "dflt")),
        ("https://h/openai/v1/?model=medgo-sft", ("https://h/openai/v1", "medgo-sft")),
        ("http://h/v1?model=a&x=1", ("http://h/v1?x=1", "a")),
    ],
)
def test_split_endpoint_ref(ref, expected):
    from medgo.eval.backends import split_endpoint_ref

    assert split_endpoint_ref(ref, "dflt") == expected
