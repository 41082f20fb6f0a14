"""Typed configs: YAML + overrides, unknown keys and malformed files are errors naming the problem."""

import pytest

from medgo.config import EvalConfig, PrepareConfig, TrainConfig, load_config, parse_overrides
from medgo.errors import ConfigError


def test_yaml_then_values_then_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(
        "stage: sft\nmodel_uri: /m\ndata_uri: /d\noutput_uri: /o\nlearning_rate: 0.1\nlora:\n  r: 4\n"
    )
    cfg = load_config(TrainConfig, path, ["lora.alpha=32", "learning_rate=0.5"], max_steps=3)
    assert cfg.lora.r == 4 and cfg.lora.alpha == 32 and cfg.lora.dropout == 0.05
    assert cfg.learning_rate == 0.5 and cfg.max_steps == 3


def test_medgo_lora_defaults():
    cfg = TrainConfig(stage="sft", model_uri="m", data_uri="d", output_uri="o")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules) == (
        16,
        8,
        0.05,
        "all-linear",
    )
    assert cfg.learning_rate == 2e-5 and cfg.lr_scheduler == "cosine" and cfg.warmup_ratio == 0.01
    assert cfg.per_device_batch_size == 1 and cfg.gradient_accumulation_steps == 4 and cfg.num_epochs == 2


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("min_chars: 5\nmin_charz: 7\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: invalid PrepareConfig: min_charz: unknown key"):
        load_config(PrepareConfig, path)


def test_nested_unknown_key_and_bad_value():
    with pytest.raises(ConfigError, match=r"gate\.min_mcq_acc: unknown key"):
        load_config(EvalConfig, overrides=["gate.min_mcq_acc=0.5"])
    with pytest.raises(ConfigError, match=r"gate\.min_mcq_accuracy"):
        load_config(EvalConfig, overrides=["gate.min_mcq_accuracy=1.5"])


def test_malformed_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("min_chars: 5\nfoo: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: malformed YAML"):
        load_config(PrepareConfig, path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(PrepareConfig, tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(PrepareConfig, path)


def test_override_syntax():
    assert parse_overrides(["a.b=3", "c=[x, y]", "d="]) == {"a": {"b": 3}, "c": ["x", "y"], "d": ""}
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["oops"])


def test_non_pt_stage_requires_lora():
    with pytest.raises(ConfigError, match="use_lora=false is only valid for pt"):
        load_config(TrainConfig, stage="sft", model_uri="m", data_uri="d", output_uri="o", use_lora=False)


def _stage_configs():
    import medgo.config as config_module

    return [
        obj
        for obj in vars(config_module).values()
        if isinstance(obj, type)
        and issubclass(obj, config_module.StageConfig)
        and obj not in (config_module.StageConfig,)
    ]


@pytest.mark.parametrize("cls", _stage_configs(), ids=lambda c: c.__name__)
def test_every_config_field_is_described(cls):
    assert cls.__doc__, cls
    undocumented = [name for name, info in cls.model_fields.items() if not info.description]
    assert not undocumented, f"{cls.__name__}: fields without a description: {undocumented}"


def test_literals_reject_unknown_values_with_the_field_named():
    from medgo.config import TrainConfig

    with pytest.raises(ConfigError, match="lr_scheduler"):
        load_config(
            TrainConfig, stage="sft", model_uri="m", data_uri="d", output_uri="o", lr_scheduler="cosin"
        )
    with pytest.raises(ConfigError, match="dpo_loss_type"):
        load_config(
            TrainConfig, stage="dpo", model_uri="m", data_uri="d", output_uri="o", dpo_loss_type="sigmod"
        )


def test_serve_config_is_bounded():
    from medgo.config import ServeConfig

    with pytest.raises(ConfigError, match="http_port"):
        load_config(ServeConfig, model_uri="m", http_port=70000)
    with pytest.raises(ConfigError, match="max_batch_size"):
        load_config(ServeConfig, model_uri="m", max_batch_size=0)
