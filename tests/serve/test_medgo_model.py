"""MedgoModel in-process: loading, the generation core, its limits, KServe v1/v2 predict."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from medgo.errors import ConfigError, InputError
from medgo.serve.generation import GenerationParams
from medgo.serve.model import V2_OUTPUT_NAME, MedgoModel

QUESTION = [{"role": "user", "content": "高血压患者需要注意什么？"}]


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> MedgoModel:
    medgo_model = MedgoModel("medgo", str(tiny_model_dir), max_new_tokens=24, max_prompt_tokens=200)
    assert medgo_model.load() is True
    yield medgo_model
    medgo_model.stop()


def test_load_marks_the_model_ready(model):
    assert model.ready


def test_chat_returns_text_and_usage_within_max_tokens(model):
    text, usage = model.chat(QUESTION, max_tokens=6, temperature=0)
    assert isinstance(text, str)
    assert 1 <= usage.completion_tokens <= 6
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_prompt_tokens_count_the_chat_template_and_the_default_system_prompt(model, tiny_model_dir):
    from medgo.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    with_system = [{"role": "system", "content": model.system_prompt}, *QUESTION]
    expected = len(
        tokenizer(
            tokenizer.apply_chat_template(with_system, add_generation_prompt=True, tokenize=False),
            add_special_tokens=False,
        )["input_ids"]
    )
    _, usage = model.chat(QUESTION, max_tokens=1)
    assert usage.prompt_tokens == expected
    _, own_system = model.chat([{"role": "system", "content": "简短回答。"}, *QUESTION], max_tokens=1)
    assert own_system.prompt_tokens < usage.prompt_tokens


def test_greedy_generation_is_deterministic(model):
    assert model.chat(QUESTION, max_tokens=8, temperature=0) == model.chat(
        QUESTION, max_tokens=8, temperature=0
    )


def test_seeded_sampling_is_reproducible(model):
    params = GenerationParams(max_tokens=8, temperature=1.5, top_p=0.95, seed=7)
    assert model.complete(QUESTION, params) == model.complete(QUESTION, params)


def test_a_seeded_request_leaves_the_global_random_stream_alone(model):
    import torch

    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    model.complete(QUESTION, GenerationParams(max_tokens=4, temperature=1.0, seed=9))
    assert torch.equal(torch.rand(4), expected)


def test_stop_string_ends_generation_and_is_cut_from_the_answer(model):
    full = model.complete(QUESTION, GenerationParams(max_tokens=12, temperature=0))
    assert len(full.text) >= 4, "precondition: the tiny model says something"
    # A stop string from the first half, so generation must end early to honour it.
    start = next(i for i in range(1, len(full.text) // 2 + 1) if full.text[i] != "\ufffd")
    stop = full.text[start]
    cut = model.complete(QUESTION, GenerationParams(max_tokens=12, temperature=0, stop=[stop]))
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.usage.completion_tokens < full.usage.completion_tokens


def test_max_tokens_above_the_server_cap_is_invalid_input(model):
    with pytest.raises(InvalidInput, match="at most 24 tokens"):
        model.chat(QUESTION, max_tokens=25)


def test_prompt_longer_than_the_limit_is_invalid_input(model):
    with pytest.raises(InvalidInput, match=r"accepts at most 200"):
        model.chat([{"role": "user", "content": "发热咳嗽" * 200}], max_tokens=1)


def test_concurrent_callers_get_the_answers_they_would_get_alone(model):
    questions = [[{"role": "user", "content": q}] for q in ("头痛", "发热三天", "血糖高", "胸痛")]
    alone = [model.chat(q, max_tokens=8, temperature=0) for q in questions]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda q: model.chat(q, max_tokens=8, temperature=0), questions * 2))
    assert together == alone * 2


def test_v1_predict_answers_prompts_messages_and_strings_in_order(model):
    payload = {
        "instances": [{"prompt": "头痛"}, {"messages": [{"role": "user", "content": "头痛"}]}, "头痛"],
        "parameters": {"max_tokens": 5, "temperature": 0},
    }
    result = asyncio.run(model.predict(payload))
    assert len(result["predictions"]) == 3
    assert len(set(result["predictions"])) == 1, "the three forms are the same question"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"instances": []}, "instances must be a non-empty list"),
        ({"instances": [{"prompt": "x", "messages": []}]}, "instances[0] must be a string or an object"),
        ({"instances": [{"prompt": 3}]}, "instances[0].prompt must be a string"),
        ({"instances": ["x"], "parameters": {"top_p": 2}}, "parameters.top_p"),
        ({"instances": ["x"], "signature_name": "s"}, "unknown top-level field(s); expected 'instances'"),
        ({"instances": ["x"] * 17}, "at most 16 per request"),
        (b"not json", "must be JSON"),
    ],
)
def test_v1_predict_rejects_malformed_requests(model, payload, expected):
    with pytest.raises(InvalidInput) as info:
        asyncio.run(model.predict(payload))
    assert expected in str(info.value)


def test_v2_predict_maps_a_bytes_tensor_to_a_bytes_tensor(model):
    tensor = InferInput(
        name="text_input", shape=[2], datatype="BYTES", data=["头痛", b"\xe5\xa4\xb4\xe7\x97\x9b"]
    )
    request = InferRequest(
        model_name="medgo",
        infer_inputs=[tensor],
        request_id="r-1",
        parameters={"max_tokens": 4, "temperature": 0},
    )
    response = asyncio.run(model.predict(request))
    [output] = response.outputs
    assert (response.id, output.name, output.datatype, output.shape) == ("r-1", V2_OUTPUT_NAME, "BYTES", [2])
    assert output.data[0] == output.data[1], "str and UTF-8 bytes carry the same prompt"


def test_v2_predict_takes_grpc_requests_with_bytes_contents_and_string_parameters(model):
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    tensor = pb.ModelInferRequest.InferInputTensor(
        name="text_input",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=["头痛".encode()]),
    )
    grpc_request = pb.ModelInferRequest(
        model_name="medgo",
        id="g-1",
        inputs=[tensor],
        parameters={
            "max_tokens": pb.InferParameter(int64_param=4),
            "temperature": pb.InferParameter(string_param="0"),
        },
    )
    response = asyncio.run(model.predict(InferRequest.from_grpc(grpc_request)))
    assert response.outputs[0].data == [model.chat([{"role": "user", "content": "头痛"}], 4, 0)[0]]
    assert response.to_grpc().outputs[0].datatype == "BYTES"


def test_v2_predict_rejects_non_bytes_inputs(model):
    tensor = InferInput(name="x", shape=[1], datatype="INT32", data=[1])
    with pytest.raises(InvalidInput, match="exactly one BYTES input"):
        asyncio.run(model.predict(InferRequest(model_name="medgo", infer_inputs=[tensor])))


def test_an_answer_ending_at_the_end_token_counts_it_but_does_not_show_it(model):
    question = [{"role": "user", "content": "头痛"}]
    completion = model.complete(question, GenerationParams(max_tokens=24, temperature=0))
    assert completion.finish_reason == "stop", "precondition: the tiny model ends this answer itself"
    assert "<|im_end|>" not in completion.text
    held = model.complete(question, GenerationParams(max_tokens=24, temperature=0, stop=["\u0000never"]))
    assert held == completion


def test_settings_below_one_are_config_errors():
    with pytest.raises(ConfigError, match="max_new_tokens must be at least 1"):
        MedgoModel("medgo", "/nowhere", max_new_tokens=0)


def test_loading_a_missing_model_names_it(tmp_path):
    with pytest.raises(InputError, match="model not found"):
        MedgoModel("medgo", str(tmp_path / "missing")).load()


def test_a_tokenizer_without_chat_template_is_refused(tiny_model_dir, tmp_path):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink()
    with pytest.raises(InputError, match="no chat template"):
        MedgoModel("medgo", str(plain)).load()


@pytest.fixture(scope="module")
def lora_adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights, so it visibly changes the model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model

    from medgo.modeling import load_model

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    adapter_dir = tmp_path_factory.mktemp("lora")
    get_peft_model(load_model(str(tiny_model_dir)), config).save_pretrained(adapter_dir)
    return adapter_dir


def test_an_adapter_changes_the_answers(model, tiny_model_dir, lora_adapter_dir):
    adapted = MedgoModel("medgo", str(tiny_model_dir), adapter_uri=str(lora_adapter_dir), max_new_tokens=24)
    adapted.load()
    assert adapted.chat(QUESTION, max_tokens=8, temperature=0) != model.chat(
        QUESTION, max_tokens=8, temperature=0
    )


def test_an_adapter_directory_serves_as_model_uri_with_its_base_tokenizer(tiny_model_dir, lora_adapter_dir):
    with_adapter = MedgoModel("medgo", str(tiny_model_dir), adapter_uri=str(lora_adapter_dir))
    adapter_only = MedgoModel("medgo", str(lora_adapter_dir))
    with_adapter.load()
    adapter_only.load()
    assert adapter_only.chat(QUESTION, max_tokens=8, temperature=0) == with_adapter.chat(
        QUESTION, max_tokens=8, temperature=0
    )
