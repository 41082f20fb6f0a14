"""One loader for evaluation and serving: where the tokenizer lives, which tokens stop an answer,
where the weights go, and that an ``s3://`` model is downloaded once (the tokenizer alone, without
the weights, when only the tokenizer is asked for)."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from medgo.errors import InputError
from medgo.modeling import loading
from medgo.modeling.loading import (
    TOKENIZER_FILES,
    inference_placement,
    load_for_inference,
    load_tokenizer,
    stop_token_ids,
    tokenizer_source,
)


def _touch(directory: Path, *names: str, base: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        content = {"base_model_name_or_path": base} if name == "adapter_config.json" else {}
        (directory / name).write_text(json.dumps(content))
    return directory


@pytest.fixture(scope="module")
def lora_dir(sample_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter of the sample model with non-zero weights, saved without a tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model

    from medgo.modeling import load_model

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("lora")
    config = LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(load_model(str(sample_model_dir)), config).save_pretrained(out)
    assert not (out / "tokenizer_config.json").exists() and not (out / "config.json").exists()
    return out


# --- where the tokenizer lives -----------------------------------------------------------------


def test_an_adapter_with_its_own_tokenizer_wins(tmp_path):
    model = _touch(tmp_path / "model", "config.json", "tokenizer_config.json")
    adapter = _touch(tmp_path / "adapter", "adapter_config.json", "tokenizer_config.json", base=str(model))
    assert tokenizer_source(model, adapter) == str(adapter)


def test_an_adapter_without_a_tokenizer_uses_the_model_s(tmp_path):
    model = _touch(tmp_path / "model", "config.json", "tokenizer_config.json")
    adapter = _touch(tmp_path / "adapter", "adapter_config.json", base="s3://elsewhere/base")
    assert tokenizer_source(model, adapter) == str(model)
    assert tokenizer_source(model, None) == str(model)


def test_an_adapter_only_model_dir_defers_to_its_recorded_base(tmp_path):
    bare = _touch(tmp_path / "bare", "adapter_config.json", base="s3://bucket/models/base")
    assert tokenizer_source(bare) == "s3://bucket/models/base"
    with_tokenizer = _touch(tmp_path / "with-tok", "adapter_config.json", "tokenizer.json", base="s3://x/y")
    assert tokenizer_source(with_tokenizer) == str(with_tokenizer)


def test_a_full_model_that_also_holds_an_adapter_config_is_its_own_source(tmp_path):
    merged = _touch(tmp_path / "merged", "config.json", "adapter_config.json", base="s3://bucket/base")
    assert tokenizer_source(merged) == str(merged)


def test_an_adapter_that_records_no_base_is_a_clear_error(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "adapter_config.json").write_text("{}")
    with pytest.raises(InputError, match="base_model_name_or_path"):
        tokenizer_source(bare)


def test_load_tokenizer_follows_an_adapter_only_dir_to_its_base(sample_model_dir, lora_dir):
    tok = load_tokenizer(str(lora_dir), require_chat_template=True)
    assert tok.get_vocab() == load_tokenizer(str(sample_model_dir)).get_vocab()


# --- stop tokens ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "expected"), [(None, [2]), (7, [2, 7]), ([7, 2, 9], [2, 7, 9]), (2, [2])]
)
def test_stop_token_ids_join_the_tokenizer_and_generation_config(configured, expected):
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=configured))
    assert stop_token_ids(SimpleNamespace(eos_token_id=2), model) == expected


def test_stop_token_ids_without_any_eos_is_empty():
    assert stop_token_ids(SimpleNamespace(eos_token_id=None), SimpleNamespace()) == []


# --- placement ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("available", "count", "expected"),
    [
        (False, 0, ("cpu", None)),
        (True, 1, ("cuda", None)),
        (True, 2, (None, "auto")),
        (True, 8, (None, "auto")),
    ],
)
def test_inference_placement(monkeypatch, available, count, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    assert inference_placement() == expected
    assert inference_placement("cpu") == ("cpu", None)


class _FakeModel:
    def __init__(self):
        self.moved_to = None

    def to(self, device):
        self.moved_to = device
        return self

    def eval(self):
        return self


def test_several_gpus_load_with_a_device_map_in_bfloat16(monkeypatch, sample_model_dir):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    calls = []
    fake = _FakeModel()
    monkeypatch.setattr(loading, "load_model", lambda uri, **kw: calls.append((uri, kw)) or fake)
    model, _ = load_for_inference(str(sample_model_dir))
    assert model is fake and fake.moved_to is None  # the device map placed it; no .to(one device)
    assert calls == [
        (
            str(sample_model_dir),
            {
                "adapter_uri": None,
                "attn_implementation": "auto",
                "dtype": torch.bfloat16,
                "device_map": "auto",
            },
        )
    ]


def test_cpu_loads_float32_on_the_cpu(sample_model_dir):
    import torch

    model, tokenizer = load_for_inference(str(sample_model_dir), device="cpu")
    assert next(model.parameters()).device.type == "cpu" and model.dtype == torch.float32
    assert not model.training and tokenizer.chat_template


# --- adapters and localisation --------------------------------------------------------------------


def test_an_adapter_only_model_dir_loads_like_base_plus_adapter(sample_model_dir, lora_dir):
    import torch

    adapter_only, tok = load_for_inference(str(lora_dir), device="cpu")
    explicit, _ = load_for_inference(str(sample_model_dir), str(lora_dir), device="cpu")
    base, _ = load_for_inference(str(sample_model_dir), device="cpu")
    ids = tok("发热咳嗽三天", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(adapter_only(**ids).logits, explicit(**ids).logits)
        assert not torch.equal(adapter_only(**ids).logits, base(**ids).logits)


def test_merging_the_adapter_gives_a_plain_model_with_the_same_outputs(sample_model_dir, lora_dir):
    import torch
    from peft import PeftModel

    unmerged, tok = load_for_inference(str(sample_model_dir), str(lora_dir), device="cpu")
    merged, _ = load_for_inference(str(sample_model_dir), str(lora_dir), device="cpu", merge_adapter=True)
    assert isinstance(unmerged, PeftModel) and not isinstance(merged, PeftModel)
    ids = tok("发热咳嗽三天", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**ids).logits, unmerged(**ids).logits, rtol=1e-4, atol=1e-4)


def test_an_adapter_as_model_plus_another_adapter_is_refused(lora_dir):
    with pytest.raises(InputError, match="is itself a LoRA adapter"):
        load_for_inference(str(lora_dir), str(lora_dir), device="cpu")


def test_the_tokenizer_patterns_take_tokenizer_files_and_no_weights():
    def wanted(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in TOKENIZER_FILES)

    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "added_tokens.json",
        "config.json",
        "generation_config.json",
    ):
        assert wanted(name), name
    for name in (
        "model.safetensors",
        "model-00001-of-00031.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "adapter_model.safetensors",
        "optimizer.pt",
        "manifest.json",
    ):
        assert not wanted(name), name


def test_load_tokenizer_asks_localize_for_tokenizer_files_only(monkeypatch, sample_model_dir):
    asked = []
    real = loading.localize
    monkeypatch.setattr(loading, "localize", lambda uri, **kw: asked.append(kw) or real(uri, **kw))
    load_tokenizer(str(sample_model_dir))
    assert asked == [{"what": "tokenizer", "include": TOKENIZER_FILES}]


# --- against a real S3 server (SeaweedFS `weed`, from the dev extra) ----------------------------


@pytest.fixture(scope="module")
def s3_bucket(s3_server) -> str:
    return f"{s3_server}/loading"


@pytest.fixture(scope="module")
def s3_model(s3_bucket, sample_model_dir) -> str:
    from medgo.storage import publish

    return publish(sample_model_dir, f"{s3_bucket}/models/tiny")


def test_load_tokenizer_from_s3_downloads_no_weights(s3_model, sample_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGO_CACHE_DIR", str(tmp_path / "cache"))
    tok = load_tokenizer(s3_model, require_chat_template=True)
    assert tok.get_vocab() == load_tokenizer(str(sample_model_dir)).get_vocab()
    fetched = {p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    assert "tokenizer_config.json" in fetched and "config.json" in fetched
    assert not [name for name in fetched if name.endswith((".safetensors", ".bin"))], fetched


def test_s3_model_is_downloaded_once(s3_model, tmp_path, monkeypatch):
    from medgo import storage

    monkeypatch.setenv("MEDGO_CACHE_DIR", str(tmp_path / "cache"))
    downloads = []
    real_client = storage.s3_client

    def counting_client():
        client = real_client()
        real_download = client.download_file
        client.download_file = lambda bucket, key, dest: (
            downloads.append(key) or real_download(bucket, key, dest)
        )
        return client

    monkeypatch.setattr(storage, "s3_client", counting_client)
    model, tokenizer = load_for_inference(s3_model, device="cpu")
    assert tokenizer.chat_template and not model.training
    assert len(downloads) == len(set(downloads)), downloads
    assert any(key.endswith("model.safetensors") for key in downloads)


def test_an_adapter_whose_base_is_on_s3_loads_with_the_base_tokenizer(
    s3_model, lora_dir, sample_model_dir, tmp_path, monkeypatch
):
    import torch

    monkeypatch.setenv("MEDGO_CACHE_DIR", str(tmp_path / "cache"))
    adapter = tmp_path / "adapter"
    shutil.copytree(lora_dir, adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": s3_model}))
    remote, tok = load_for_inference(str(adapter), device="cpu")
    local, _ = load_for_inference(str(sample_model_dir), str(lora_dir), device="cpu")
    assert tok.chat_template
    ids = tok("发热咳嗽三天", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(remote(**ids).logits, local(**ids).logits)
