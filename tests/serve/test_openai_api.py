"""The official ``openai`` client against the real server: chat, streaming, completions, models, refusals.

Every test runs twice: against the tiny model's own chat template (with the server's system
prompt) and against Qwen2's stock ChatML template without generation markers (with the
template's default system turn).
"""

from __future__ import annotations

import httpx
import openai
import pytest

from medgo.serve.streaming import REPLACEMENT

QUESTION = [{"role": "user", "content": "高血压患者日常需要注意什么？"}]


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=f"{served.url}/openai/v1", api_key="unused", max_retries=0)


def _is_clean(text: str) -> bool:
    return REPLACEMENT not in text and all(ch in "\n\t" or ord(ch) >= 0x20 for ch in text)


def test_chat_completion_has_usage_and_the_request_id_as_its_id(client):
    raw = client.chat.completions.with_raw_response.create(model="medgo", messages=QUESTION, max_tokens=8)
    response = raw.parse()
    assert response.id == raw.headers["x-request-id"]
    assert response.object == "chat.completion" and response.model == "medgo"
    [choice] = response.choices
    assert choice.message.role == "assistant" and _is_clean(choice.message.content)
    assert choice.finish_reason in {"stop", "length"}
    assert 1 <= response.usage.completion_tokens <= 8
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_a_client_request_id_is_used_and_echoed(client):
    raw = client.chat.completions.with_raw_response.create(
        model="medgo", messages=QUESTION, max_tokens=2, extra_headers={"x-request-id": "ward-7.req:42"}
    )
    assert raw.headers["x-request-id"] == "ward-7.req:42"
    assert raw.parse().id == "ward-7.req:42"


def test_prompt_tokens_count_the_template_and_system_turn_the_model_sees(client, served):
    from medgo.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(served.model_dir))
    turns = ([{"role": "system", "content": served.system_prompt}] if served.system_prompt else []) + QUESTION
    text = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    if served.system_prompt is None:
        assert "You are a helpful assistant." in text, "precondition: Qwen2's default system turn"
    response = client.chat.completions.create(model="medgo", messages=QUESTION, max_tokens=1)
    assert response.usage.prompt_tokens == len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_streamed_chat_equals_the_unstreamed_answer_and_ends_with_usage(client):
    settings = {"model": "medgo", "messages": QUESTION, "max_tokens": 40, "temperature": 0}
    whole = client.chat.completions.create(**settings)
    chunks = list(
        client.chat.completions.create(**settings, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text_chunks = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert all(_is_clean(piece) for piece in text_chunks)
    assert "".join(text_chunks) == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_the_sse_stream_ends_with_done(served):
    body = {"model": "medgo", "messages": QUESTION, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{served.url}/openai/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_text_completions_streamed_and_not(client):
    settings = {"model": "medgo", "prompt": "高血压患者", "max_tokens": 12, "temperature": 0}
    whole = client.completions.create(**settings)
    assert whole.object == "text_completion" and whole.usage.completion_tokens >= 1
    pieces = [c.choices[0].text for c in client.completions.create(**settings, stream=True) if c.choices]
    assert "".join(pieces) == whole.choices[0].text
    default_length = client.completions.create(model="medgo", prompt="头痛", extra_body={"min_tokens": 16})
    assert default_length.usage.completion_tokens == 16, "OpenAI's default max_tokens of 16"


def test_several_prompts_get_one_choice_each(client):
    response = client.completions.create(model="medgo", prompt=["头痛", "发热"], max_tokens=3, temperature=0)
    assert [c.index for c in response.choices] == [0, 1]
    alone = client.completions.create(model="medgo", prompt="发热", max_tokens=3, temperature=0)
    assert response.choices[1].text == alone.choices[0].text


def test_models_list_and_retrieve_name_the_model_and_its_adapter_name(client):
    assert [m.id for m in client.models.list().data] == ["medgo", "medgo-lora"]
    assert client.models.retrieve("medgo-lora").id == "medgo-lora"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_the_adapter_name_reaches_the_same_model(client):
    settings = {"messages": QUESTION, "max_tokens": 12, "temperature": 0}
    as_adapter = client.chat.completions.create(model="medgo-lora", **settings)
    assert as_adapter.model == "medgo-lora"
    assert (
        as_adapter.choices[0].message.content
        == client.chat.completions.create(model="medgo", **settings).choices[0].message.content
    )


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"n": 2}, "n"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"extra_body": {"guided_json": {}}}, "guided_json"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"seed": 2**64}, "seed"),
        ({"temperature": 2.5}, "temperature"),
        ({"max_tokens": 65}, "max_tokens"),
    ],
)
def test_unsupported_or_invalid_parameters_are_refused_by_name(client, extra, named):
    extra = dict(extra)
    extra_body = extra.pop("extra_body", None)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="medgo", messages=QUESTION, extra_body=extra_body, **extra)
    assert info.value.status_code == 400
    assert named in info.value.message


def test_no_op_values_of_unsupported_parameters_are_accepted(client):
    response = client.chat.completions.create(
        model="medgo",
        messages=QUESTION,
        max_tokens=2,
        n=1,
        logprobs=False,
        response_format={"type": "text"},
        tools=[],
    )
    assert response.choices


def test_an_empty_prompt_is_refused(client):
    with pytest.raises(openai.BadRequestError, match="prompt is empty"):
        client.completions.create(model="medgo", prompt="", max_tokens=2)


def test_token_id_prompts_and_streaming_several_prompts_are_refused(client):
    with pytest.raises(openai.BadRequestError, match="token-id prompts"):
        client.completions.create(model="medgo", prompt=[1, 2, 3], max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="exactly one prompt"):
        list(client.completions.create(model="medgo", prompt=["a", "b"], max_tokens=2, stream=True))


def test_unknown_model_is_not_found_without_echoing_its_name(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="patient-张三", messages=QUESTION)
    assert "张三" not in info.value.message and "medgo" in info.value.message
