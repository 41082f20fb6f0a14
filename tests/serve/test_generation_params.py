"""Validation of client-supplied chats and generation settings (shared by every protocol)."""

from __future__ import annotations

import pytest
from kserve.errors import InvalidInput

from medgo.serve.generation import MAX_STOP_SEQUENCES, Usage, parse_generation_params, parse_messages


def test_valid_settings_are_kept_and_a_single_stop_string_becomes_a_list():
    params = parse_generation_params(
        {"max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "stop": "。", "seed": 3}
    )
    assert (params.max_tokens, params.temperature, params.top_p, params.stop, params.seed) == (
        16,
        0.7,
        0.9,
        ["。"],
        3,
    )


def test_missing_settings_stay_unset_so_the_model_defaults_apply():
    params = parse_generation_params(None)
    assert set(params.model_dump().values()) == {None}
    assert {"max_tokens", "temperature", "top_p", "top_k", "stop", "seed", "min_tokens"} <= set(
        params.model_dump()
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"max_tokens": 0}, "parameters.max_tokens: Input should be greater than or equal to 1"),
        ({"max_tokens": -5}, "parameters.max_tokens: Input should be greater than or equal to 1"),
        ({"temperature": 2.5}, "parameters.temperature: Input should be less than or equal to 2"),
        ({"temperature": -0.1}, "parameters.temperature: Input should be greater than or equal to 0"),
        ({"top_p": 0}, "parameters.top_p: Input should be greater than 0"),
        ({"top_p": 1.5}, "parameters.top_p: Input should be less than or equal to 1"),
        ({"temperature": "hot"}, "parameters.temperature: Input should be a valid number"),
        ({"max_token": 5}, "parameters.max_token: unknown parameter"),
        ({"stop": [""]}, "parameters.stop[0]: String should have at least 1 character"),
        ({"seed": 2**64}, "parameters.seed: Input should be less than or equal to 18446744073709551615"),
        ({"seed": -(2**63) - 1}, "parameters.seed: Input should be greater than or equal to"),
        ({"top_k": -2}, "parameters.top_k: Input should be greater than or equal to -1"),
        ({"frequency_penalty": 2.5}, "parameters.frequency_penalty: Input should be less than or equal to 2"),
        ({"repetition_penalty": 0}, "parameters.repetition_penalty: Input should be greater than 0"),
        ({"min_tokens": -1}, "parameters.min_tokens: Input should be greater than or equal to 0"),
    ],
)
def test_invalid_settings_raise_invalid_input_naming_the_field(settings, expected):
    with pytest.raises(InvalidInput) as info:
        parse_generation_params(settings)
    assert expected in str(info.value)


def test_too_many_stop_sequences_are_refused():
    with pytest.raises(InvalidInput, match="parameters.stop"):
        parse_generation_params({"stop": ["a"] * (MAX_STOP_SEQUENCES + 1)})


def test_settings_must_be_an_object():
    with pytest.raises(InvalidInput, match="parameters must be a JSON object"):
        parse_generation_params(["max_tokens", 3])


def test_messages_become_template_turns_with_parts_joined_and_developer_as_system():
    turns = parse_messages(
        [
            {"role": "developer", "content": "你是医生。"},
            {"role": "user", "content": [{"type": "text", "text": "头痛"}, {"type": "text", "text": "三天"}]},
            {"role": "assistant", "content": "请问是否发热？", "name": "ignored"},
        ]
    )
    assert turns == [
        {"role": "system", "content": "你是医生。"},
        {"role": "user", "content": "头痛三天"},
        {"role": "assistant", "content": "请问是否发热？"},
    ]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], "messages must be a non-empty list"),
        ("头痛", "messages must be a non-empty list"),
        ([{"role": "doctor", "content": "x"}], "messages[0].role: Input should be"),
        ([{"role": "user"}], "messages[0].content: Field required"),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "user", "content": [{"type": "image_url", "url": "x"}]},
            ],
            "messages[1].content",
        ),
    ],
)
def test_invalid_messages_raise_invalid_input_naming_the_turn(messages, expected):
    with pytest.raises(InvalidInput) as info:
        parse_messages(messages)
    assert expected in str(info.value)


def test_error_messages_never_echo_the_offending_value():
    secret = "张三 身份证 110101199003074514"
    with pytest.raises(InvalidInput) as info:
        parse_messages([{"role": secret, "content": secret}])
    assert secret not in str(info.value)
    with pytest.raises(InvalidInput) as info:
        parse_generation_params({"temperature": secret})
    assert secret not in str(info.value)


def test_usage_totals_and_serialises_like_openai():
    assert Usage(prompt_tokens=7, completion_tokens=5).as_dict() == {
        "prompt_tokens": 7,
        "completion_tokens": 5,
        "total_tokens": 12,
    }
