"""The one trainer entry for the three stages, always run under torchrun.

``python -m torch.distributed.run … -m medgo.train --config train.yaml [--set key=value …]``

* ``pt``  – causal LM on packed token shards (full fine-tuning or LoRA) with ``transformers.Trainer``.
* ``sft`` – TRL ``SFTTrainer`` with LoRA, loss on assistant tokens only.
* ``dpo`` – TRL ``DPOTrainer`` with LoRA; the reference is the adapter-disabled model (no copy).

Outputs (rank 0): a loadable model directory — a LoRA adapter whose ``base_model_name_or_path``
is the base model's URI, or a full model — with the tokenizer, ``train_log.jsonl`` and
``manifest.json``; pushed to ``output_uri`` (path or ``s3://``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from medgo.config import TrainConfig, load_config
from medgo.data.io import Quarantined, iter_records
from medgo.errors import InputError, MedgoError
from medgo.logs import fields, setup_logging
from medgo.modeling.loading import (
    ADAPTER_CONFIG,
    adapter_base_model,
    is_adapter_dir,
    load_model,
    load_tokenizer,
    resolve_attn_implementation,
)
from medgo.storage import is_s3, localize, localize_artifact, publish, write_manifest
from medgo.train.distributed import is_main_process

log = logging.getLogger(__name__)


def deepspeed_config_path(preset: str) -> str | None:
    """Path of a shipped DeepSpeed config (``zero2``, ``zero3``, ``zero3_offload``) or None."""
    if preset == "none":
        return None
    return str(resources.files("medgo.train") / "deepspeed" / f"{preset}.json")


def training_arguments(cfg: TrainConfig, output_dir: str) -> dict:
    """The ``TrainingArguments`` (and TRL config) fields every stage shares."""
    import torch

    use_cpu = cfg.use_cpu or not torch.cuda.is_available()
    if cfg.bf16 and use_cpu:
        raise MedgoError("bf16=true needs a GPU; set bf16=false for CPU runs")
    return dict(
        output_dir=output_dir,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=cfg.bf16,
        use_cpu=use_cpu,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        report_to=[],
        deepspeed=deepspeed_config_path(cfg.deepspeed),
        disable_tqdm=not sys.stderr.isatty(),
        remove_unused_columns=False,
        ddp_find_unused_parameters=False if cfg.use_lora else None,
    )


def _init_zero3(cfg: TrainConfig, use_cpu: bool) -> None:
    """ZeRO-3 must initialise the process group before ``from_pretrained`` so weights load sharded."""
    if cfg.deepspeed.startswith("zero3"):
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo" if use_cpu else "nccl")


def _lora_config(cfg: TrainConfig, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type=task_type,
    )


def _read_jsonl_dataset(data_uri: str, what: str):
    """The ``train*.jsonl`` records of a data-stage artifact; an unreadable line is an error, not a skip
    (the data stage already quarantined what it could not use)."""
    from datasets import Dataset

    root = localize_artifact(data_uri, what=what)
    files = sorted(root.glob("train*.jsonl")) if root.is_dir() else [root]
    if not files:
        raise InputError(f"{what} at {data_uri} has no train*.jsonl")
    rows = []
    for path in files:
        for item in iter_records(path, what=what):
            if isinstance(item, Quarantined):
                raise InputError(f"unusable line ({item.reason})", source=str(path), line=item.line)
            rows.append(item.data)
    if not rows:
        raise InputError(f"{what} at {data_uri} is empty")
    return Dataset.from_list(rows)


def _load_token_shards(data_uri: str):
    from datasets import load_dataset

    root = localize_artifact(data_uri, what="packed token shards")
    files = sorted(str(p) for p in root.glob("tokens-*.parquet"))
    if not files:
        raise InputError(f"packed token shards at {data_uri}: no tokens-*.parquet files")
    ds = load_dataset("parquet", data_files=files, split="train")
    if len(ds) == 0:
        raise InputError(f"packed token shards at {data_uri} hold no sequences")
    return ds


class _PackedCollator:
    """Batches packed sequences. With FlashAttention-2 the per-document ``position_ids`` go to the
    model and no attention mask, so attention stays within documents (padding-free packing);
    other backends get the attention mask and documents in a sequence see each other, the usual
    trade-off for continued pretraining (logged once)."""

    def __init__(self, separate_documents: bool) -> None:
        self.separate_documents = separate_documents

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
        mask = torch.tensor([r["attention_mask"] for r in rows], dtype=torch.long)
        labels = ids.masked_fill(mask == 0, -100)
        batch = {"input_ids": ids, "labels": labels}
        if self.separate_documents:
            batch["position_ids"] = torch.tensor([r["position_ids"] for r in rows], dtype=torch.long)
        else:
            batch["attention_mask"] = mask
        return batch


def build_pt_trainer(cfg: TrainConfig, out: str):
    """A ``transformers.Trainer`` for continued pretraining on packed token shards."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(**training_arguments(cfg, out))
    _init_zero3(cfg, args.use_cpu)
    dataset = _load_token_shards(cfg.data_uri)
    attn = resolve_attn_implementation(cfg.attn_implementation)
    if attn != "flash_attention_2":
        log.info(
            "packed pretraining without document masking: the attention backend cannot separate documents",
            extra=fields(backend=attn),
        )
    tokenizer = load_tokenizer(cfg.model_uri)
    model = load_model(cfg.model_uri, attn_implementation=attn)
    if cfg.use_lora:
        from peft import get_peft_model

        model = get_peft_model(model, _lora_config(cfg))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=_PackedCollator(attn == "flash_attention_2"),
        processing_class=tokenizer,
    )
    return trainer


def build_sft_trainer(cfg: TrainConfig, out: str):
    """A TRL ``SFTTrainer`` for LoRA SFT with the loss on assistant tokens only."""
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **training_arguments(cfg, out),
        max_length=cfg.max_seq_len,
        assistant_only_loss=True,
        packing=False,
        dataset_kwargs={"skip_prepare_dataset": False},
    )
    _init_zero3(cfg, args.use_cpu)
    dataset = _read_jsonl_dataset(cfg.data_uri, "SFT data").select_columns(["messages"])
    tokenizer = load_tokenizer(cfg.model_uri, require_chat_template=True)
    model = load_model(cfg.model_uri, attn_implementation=cfg.attn_implementation)
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(cfg),
    )


def build_dpo_trainer(cfg: TrainConfig, out: str):
    """DPO with LoRA. Starting from the SFT adapter (``model_uri`` is its directory), TRL keeps training
    that adapter and makes a frozen copy of it the reference: the reference is the SFT policy, held as a
    second small adapter on the same base weights rather than a second model. Works under ZeRO-3
    because nothing is merged into sharded weights. From a plain model, a fresh adapter is trained and
    the adapter-disabled model is the reference."""
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        **training_arguments(cfg, out),
        max_length=cfg.max_seq_len,
        beta=cfg.dpo_beta,
        loss_type=[cfg.dpo_loss_type],
    )
    _init_zero3(cfg, args.use_cpu)
    dataset = _read_jsonl_dataset(cfg.data_uri, "preference data").select_columns(
        ["prompt", "chosen", "rejected"]
    )
    tokenizer = load_tokenizer(cfg.model_uri, require_chat_template=True)
    model = load_model(
        cfg.model_uri,
        adapter_uri=cfg.adapter_uri,
        attn_implementation=cfg.attn_implementation,
        trainable_adapter=True,
    )
    continues_adapter = isinstance(model, PeftModel)
    return DPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=None if continues_adapter else _lora_config(cfg),
    )


TRAINER_BUILDERS = {"pt": build_pt_trainer, "sft": build_sft_trainer, "dpo": build_dpo_trainer}


def base_model_uri(cfg: TrainConfig) -> str:
    """The URI of the full model the trained adapter applies to.

    ``model_uri`` itself, unless it is an adapter directory (DPO continuing the SFT adapter), whose
    recorded base is then the base of the new adapter too.
    """
    if cfg.adapter_uri is None:
        model_dir = localize(cfg.model_uri, what="model")
        if is_adapter_dir(model_dir):
            return adapter_base_model(model_dir)
    return cfg.model_uri


def _save(trainer, cfg: TrainConfig, out: Path) -> dict:
    """Save a loadable model directory and its manifest (call on every rank: ZeRO-3 gathers)."""
    trainer.save_model(str(out))
    history = [h for h in trainer.state.log_history if "loss" in h]
    if not is_main_process():
        return {}
    shutil.rmtree(out / "ref", ignore_errors=True)  # DPO's frozen reference copy is not part of the result
    trainer.processing_class.save_pretrained(out)
    adapter_cfg = out / ADAPTER_CONFIG
    if adapter_cfg.exists():
        data = json.loads(adapter_cfg.read_text())
        data["base_model_name_or_path"] = base_model_uri(cfg)  # a URI, not this node's download cache
        adapter_cfg.write_text(json.dumps(data, indent=2))
    with open(out / "train_log.jsonl", "w", encoding="utf-8") as fh:
        for h in trainer.state.log_history:
            fh.write(json.dumps(h) + "\n")
    for junk in out.glob("training_args.bin"):
        junk.unlink()
    counts = {
        "steps": trainer.state.global_step,
        "final_loss": history[-1]["loss"] if history else None,
        "first_loss": history[0]["loss"] if history else None,
        "kind": "lora_adapter" if adapter_cfg.exists() else "full",
    }
    inputs = {"data": cfg.data_uri, "model": cfg.model_uri}
    if cfg.adapter_uri:
        inputs["adapter"] = cfg.adapter_uri
    write_manifest(out, stage=f"train.{cfg.stage}", counts=counts, config=cfg, inputs=inputs)
    return counts


def run(cfg: TrainConfig) -> dict:
    """Train one stage and publish the result to ``cfg.output_uri``."""
    import torch

    torch.manual_seed(cfg.seed)
    local_out = Path(tempfile.mkdtemp(prefix="medgo-out-")) if is_s3(cfg.output_uri) else Path(cfg.output_uri)
    local_out.mkdir(parents=True, exist_ok=True)
    # Checkpoints stay out of the published artifact (they hold optimizer state, not a model).
    ckpt_dir = tempfile.mkdtemp(prefix="medgo-checkpoints-")
    log.info(
        "training",
        extra=fields(
            stage=cfg.stage,
            deepspeed=cfg.deepspeed,
            lora=cfg.use_lora,
            world_size=os.environ.get("WORLD_SIZE", "1"),
        ),
    )
    try:
        trainer = TRAINER_BUILDERS[cfg.stage](cfg, ckpt_dir)
        trainer.train()
        counts = _save(trainer, cfg, local_out)
    finally:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if is_main_process():
        if is_s3(cfg.output_uri):
            publish(local_out, cfg.output_uri)
        log.info("saved", extra=fields(stage=cfg.stage, output=cfg.output_uri, **counts))
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m medgo.train",
        description="medgo trainer (pt | sft | dpo). Start it under torchrun; see medgo.train.launch.",
    )
    parser.add_argument("--config", help="TrainConfig YAML file")
    parser.add_argument("--stage", choices=sorted(TRAINER_BUILDERS), help="overrides the config's stage")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (dotted keys reach nested fields, e.g. lora.r=8); repeatable",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    try:
        cfg = load_config(TrainConfig, args.config, args.overrides, stage=args.stage)
        run(cfg)
    except MedgoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
