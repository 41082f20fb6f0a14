"""Memory planner: will this model, stage and cluster shape fit, under which DeepSpeed config, and how big
must each training pod be?

Per GPU it estimates parameters, gradients, optimizer states and activations (with and without gradient
checkpointing) under ZeRO-2, ZeRO-3 and ZeRO-3 with CPU offload, for bf16 mixed-precision AdamW:

* model states use DeepSpeed's own accounting (its ``estimate_zero{2,3}_model_states_mem_needs``): 2 bytes
  of bf16 weights per parameter; per *trained* parameter 6 bytes of gradients under ZeRO-2 (bf16 and fp32
  partitions; ZeRO-3 keeps only the fp32 one, 4 bytes) and 12 of optimizer state (fp32 master copy,
  Adam's two moments), sharded over all GPUs; ZeRO-3 shards the weights too and holds a working set of
  4 bytes × the largest layer; offload moves weights and optimizer to the host. DeepSpeed's estimator assumes every parameter is trained. With LoRA only the
  adapter parameters have gradients and optimizer state; the frozen base still takes its 2 bytes per
  parameter (replicated under ZeRO-2, sharded under ZeRO-3), which is what decides the stage.
* activations: bf16 tensors a Qwen2/Llama decoder layer keeps for backward per token (norm inputs,
  projections' inputs, q/k/v, attention output and FlashAttention's log-sum-exp, the SwiGLU
  intermediates), the copies LoRA dropout adds, and the logits (bf16, their fp32 upcast for the loss and
  its gradient: 10 bytes per vocabulary entry per token). Gradient checkpointing keeps only each
  layer's input and recomputes one layer at a time. DPO runs chosen and rejected (twice the tokens).

It picks the fastest config that fits (ZeRO-2 before ZeRO-3 before offload; without gradient
checkpointing before with it), leaving 10 % and 2 GiB of each GPU for the CUDA context, NCCL buffers and
fragmentation, and sizes the pod: host memory (process runtimes, weight loading, offloaded states), CPU,
and a memory-backed ``/dev/shm``, which counts against the container's memory limit.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medgo.errors import InputError

GIB = 2**30
ZERO_CONFIGS = ("zero2", "zero3", "zero3_offload")
GPU_RESERVE_FRACTION, GPU_RESERVE_GIB = 0.10, 2.0
PROCESS_RUNTIME_GIB = 6.0  # Python, torch, CUDA/NCCL host buffers, tokenizer, data loader per process
CHECKPOINT_SHARD_BYTES = 5e9  # the largest safetensors shard a ZeRO-3 rank loads at once


@dataclass(frozen=True)
class ModelShape:
    """What the memory of a decoder-only transformer depends on (a Qwen2/Llama-style config)."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    head_dim: int | None = None
    qkv_bias: bool = True

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * (self.head_dim or self.hidden_size // self.num_heads)

    @property
    def q_dim(self) -> int:
        return self.num_heads * (self.head_dim or self.hidden_size // self.num_heads)

    def layer_params(self) -> int:
        h, q, kv, i = self.hidden_size, self.q_dim, self.kv_dim, self.intermediate_size
        bias = (q + 2 * kv) if self.qkv_bias else 0
        return h * q + 2 * h * kv + bias + q * h + 3 * h * i + 2 * h

    def total_params(self) -> int:
        embed = self.vocab_size * self.hidden_size
        return (
            self.num_layers * self.layer_params()
            + embed * (1 if self.tie_word_embeddings else 2)
            + self.hidden_size
        )

    def largest_layer_params(self) -> int:
        """The largest single module's own parameters (DeepSpeed's ZeRO-3 working-set unit)."""
        h, i = self.hidden_size, self.intermediate_size
        return max(self.vocab_size * h, h * i, h * self.q_dim)

    def lora_params(self, r: int) -> int:
        """LoRA rank ``r`` on every linear projection of every layer (PEFT's ``all-linear``)."""
        h, q, kv, i = self.hidden_size, self.q_dim, self.kv_dim, self.intermediate_size
        per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h)
        return self.num_layers * r * per_layer


#: Published configs (config.json of the Qwen2 base models).
KNOWN_MODELS: dict[str, ModelShape] = {
    "qwen2-0.5b": ModelShape("qwen2-0.5b", 896, 24, 14, 2, 4864, 151936, True),
    "qwen2-1.5b": ModelShape("qwen2-1.5b", 1536, 28, 12, 2, 8960, 151936, True),
    "qwen2-7b": ModelShape("qwen2-7b", 3584, 28, 28, 4, 18944, 152064, False),
    "qwen2-72b": ModelShape("qwen2-72b", 8192, 80, 64, 8, 29568, 152064, False),
}


def shape_from_config(config: dict[str, Any], name: str = "custom") -> ModelShape:
    """A :class:`ModelShape` from an HF ``config.json`` dict (Qwen2, Llama, Mistral, … field names)."""
    try:
        heads = int(config["num_attention_heads"])
        return ModelShape(
            name=name,
            hidden_size=int(config["hidden_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            intermediate_size=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            head_dim=config.get("head_dim"),
            qkv_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"model config {name}: missing or bad field {exc}") from None


def resolve_shape(model: str) -> ModelShape:
    """A built-in shape (``qwen2-72b``), an HF ``config.json`` file, or a model directory holding one."""
    if model.lower() in KNOWN_MODELS:
        return KNOWN_MODELS[model.lower()]
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise InputError(
            f"unknown model {model!r}: use one of {', '.join(KNOWN_MODELS)}, a config.json or a model directory"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    return shape_from_config(config, name=str(model))


@dataclass
class Estimate:
    """Per-GPU memory of one configuration, in GiB."""

    deepspeed: str
    gradient_checkpointing: bool
    params_gib: float
    grads_gib: float
    optimizer_gib: float
    activations_gib: float
    total_gib: float
    fits: bool


@dataclass
class PodSize:
    cpu: str
    memory: str
    shm_size: str
    host_memory_gib: float
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    model: str
    total_params: int
    trainable_params: int
    nodes: int
    gpus_per_node: int
    gpu_mem_gib: float
    stage: str
    lora: bool
    seq_len: int
    micro_batch: int
    estimates: list[Estimate]
    choice: Estimate | None
    reason: str
    pod: PodSize
    lora_note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_states_bytes(
    shape: ModelShape, deepspeed: str, total_gpus: int, trainable: int
) -> tuple[float, float, float]:
    """``(params, grads, optimizer)`` bytes per GPU (see the module docstring for the accounting)."""
    psi = shape.total_params()
    working_set = 4 * shape.largest_layer_params()
    grads = 6 * trainable / total_gpus
    optimizer = 12 * trainable / total_gpus
    if deepspeed == "zero2":
        return 2 * psi, grads, optimizer
    if deepspeed == "zero3":
        # bf16 gradients are reduce-scattered bucket by bucket straight into the fp32 partition
        return 2 * psi / total_gpus + working_set, 4 * trainable / total_gpus, optimizer
    if deepspeed == "zero3_offload":
        return working_set, 0.0, 0.0
    raise ValueError(f"unknown DeepSpeed config {deepspeed!r}")


def activation_bytes(
    shape: ModelShape, *, seq_len: int, micro_batch: int, checkpointing: bool, lora: bool, stage: str
) -> float:
    """Activations kept for backward per GPU (bf16), logits included."""
    h, kv, i, nh = shape.hidden_size, shape.kv_dim, shape.intermediate_size, shape.num_heads
    layer = 2 * (6 * h + 2 * kv + 4 * i) + 4 * nh
    if lora:  # dropout copies (2 bytes) and masks (1 byte) of each adapted projection's input
        layer += 3 * (6 * h + i)
    logits = 10 * shape.vocab_size
    if checkpointing:
        per_token = shape.num_layers * 2 * h + layer + logits
    else:
        per_token = shape.num_layers * layer + logits
    tokens = seq_len * micro_batch * (2 if stage == "dpo" else 1)
    return per_token * tokens


def plan(
    model: str | ModelShape,
    *,
    nodes: int,
    gpus_per_node: int,
    gpu_mem_gb: float,
    stage: str,
    lora: bool,
    seq_len: int = 4096,
    micro_batch: int = 1,
    lora_r: int = 16,
    load_dtype_bytes: int = 2,
    export_merged: bool = False,
) -> Plan:
    """Estimate every ZeRO config with and without gradient checkpointing, pick one, size the pod."""
    if min(nodes, gpus_per_node, seq_len, micro_batch) < 1 or gpu_mem_gb <= 0:
        raise InputError("nodes, gpus per node, seq len and micro batch must be ≥ 1 and GPU memory > 0")
    shape = model if isinstance(model, ModelShape) else resolve_shape(model)
    total_gpus = nodes * gpus_per_node
    psi = shape.total_params()
    trainable = shape.lora_params(lora_r) if lora else psi
    usable = gpu_mem_gb * (1 - GPU_RESERVE_FRACTION) - GPU_RESERVE_GIB
    estimates = []
    for ds in ZERO_CONFIGS:
        params, grads, optimizer = model_states_bytes(shape, ds, total_gpus, trainable)
        for checkpointing in (False, True):
            acts = activation_bytes(
                shape,
                seq_len=seq_len,
                micro_batch=micro_batch,
                checkpointing=checkpointing,
                lora=lora,
                stage=stage,
            )
            total = (params + grads + optimizer + acts) / GIB
            estimates.append(
                Estimate(
                    ds,
                    checkpointing,
                    round(params / GIB, 2),
                    round(grads / GIB, 2),
                    round(optimizer / GIB, 2),
                    round(acts / GIB, 2),
                    round(total, 2),
                    total <= usable,
                )
            )
    choice = next((e for e in estimates if e.fits), None)
    reason = _reason(estimates, choice, usable, gpu_mem_gb)
    pod = pod_size(
        shape,
        choice.deepspeed if choice else "zero3_offload",
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        trainable=trainable,
        load_dtype_bytes=load_dtype_bytes,
        export_merged=export_merged and lora,
    )
    lora_note = (
        f"LoRA r={lora_r} trains {trainable / 1e6:.1f} M of {psi / 1e9:.2f} B parameters: only those carry "
        f"gradients and optimizer state (18 bytes each, sharded), so DeepSpeed's full-fine-tuning estimate "
        f"({18 * psi / total_gpus / GIB:.1f} GiB/GPU of gradients and optimizer state) does not apply; the frozen "
        f"base still needs 2 bytes per parameter ({2 * psi / GIB:.1f} GiB), replicated on every GPU under ZeRO-2 "
        "and sharded under ZeRO-3."
        if lora
        else "Full fine-tuning: model states follow DeepSpeed's estimator."
    )
    return Plan(
        model=shape.name,
        total_params=psi,
        trainable_params=trainable,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        gpu_mem_gib=gpu_mem_gb,
        stage=stage,
        lora=lora,
        seq_len=seq_len,
        micro_batch=micro_batch,
        estimates=estimates,
        choice=choice,
        reason=reason,
        pod=pod,
        lora_note=lora_note,
    )


def _reason(estimates: list[Estimate], choice: Estimate | None, usable: float, gpu_mem: float) -> str:
    budget = f"{usable:.1f} GiB usable of {gpu_mem:g} GiB per GPU"
    if choice is None:
        best = min(estimates, key=lambda e: e.total_gib)
        return (
            f"nothing fits in {budget}: the smallest is {best.deepspeed} with gradient checkpointing at "
            f"{best.total_gib:.1f} GiB; use more GPUs, a shorter sequence or LoRA"
        )
    rejected = [e for e in estimates if estimates.index(e) < estimates.index(choice)]
    why_not = "; ".join(
        f"{e.deepspeed}{' + GC' if e.gradient_checkpointing else ''} needs {e.total_gib:.1f} GiB"
        for e in rejected
    )
    gc = "with gradient checkpointing" if choice.gradient_checkpointing else "without gradient checkpointing"
    return (
        f"{choice.deepspeed} {gc}: {choice.total_gib:.1f} GiB per GPU fits in {budget} and is the fastest that "
        f"fits" + (f" ({why_not})" if why_not else "")
    )


def pod_size(
    shape: ModelShape,
    deepspeed: str,
    *,
    nodes: int,
    gpus_per_node: int,
    trainable: int,
    load_dtype_bytes: int = 2,
    export_merged: bool = False,
) -> PodSize:
    """Host memory, CPU and ``/dev/shm`` of one training pod running ``gpus_per_node`` processes."""
    psi = shape.total_params()
    notes = []
    runtime = gpus_per_node * PROCESS_RUNTIME_GIB * GIB
    if deepspeed.startswith("zero3"):
        load = gpus_per_node * min(psi * load_dtype_bytes, CHECKPOINT_SHARD_BYTES)
        notes.append(
            "ZeRO-3 loads the checkpoint shard by shard (zero.Init): one shard per process at a time"
        )
    else:
        load = gpus_per_node * psi * load_dtype_bytes
        notes.append("without ZeRO-3 every process materialises the whole model on the host before moving it")
    offload = 0.0
    if deepspeed == "zero3_offload":
        offload = 1.5 * (2 * psi + 16 * trainable) / nodes
        notes.append("offload keeps this node's share of weights and optimizer state in pinned host memory")
    export = 2 * 2 * psi if export_merged else 0.0
    if export:
        notes.append("the merged export holds the bf16 base and the merged copy on the master pod")
    host = 1.1 * (runtime + max(load, export) + offload)
    shm = max(8, 2 * gpus_per_node) * GIB
    memory = math.ceil((host + shm) / GIB)
    cpu = gpus_per_node * (4 + (4 if deepspeed == "zero3_offload" else 0)) + 2
    notes.append(
        f"/dev/shm is a memory-backed emptyDir: its {shm // GIB} GiB count against the {memory} GiB limit"
    )
    return PodSize(
        cpu=str(cpu),
        memory=f"{memory}Gi",
        shm_size=f"{shm // GIB}Gi",
        host_memory_gib=round(host / GIB, 1),
        notes=notes,
    )


def deepspeed_model_states(shape: ModelShape, deepspeed: str, nodes: int, gpus_per_node: int) -> float:
    """DeepSpeed's own estimate of full fine-tuning model-state bytes per GPU (needs deepspeed)."""
    psi, largest = shape.total_params(), shape.largest_layer_params()
    if deepspeed == "zero2":
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        return estimate_zero2_model_states_mem_needs(psi, gpus_per_node, nodes, cpu_offload=False)[1]
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    offload = deepspeed == "zero3_offload"
    return estimate_zero3_model_states_mem_needs(
        psi, largest, gpus_per_node, nodes, cpu_offload=offload, cpu_offload_params=offload
    )[1]


def format_plan(p: Plan) -> str:
    """A readable report of a plan."""
    lines = [
        f"model {p.model}: {p.total_params / 1e9:.2f} B parameters, {p.trainable_params / 1e6:.1f} M trained "
        f"({'LoRA' if p.lora else 'full fine-tuning'}), stage {p.stage}, seq {p.seq_len} × micro-batch "
        f"{p.micro_batch}, {p.nodes} nodes × {p.gpus_per_node} GPUs of {p.gpu_mem_gib:g} GiB",
        "",
        f"{'config':<16}{'grad ckpt':>10}{'params':>9}{'grads':>8}{'optim':>8}{'activ':>9}{'total':>9}  fits",
    ]
    for e in p.estimates:
        lines.append(
            f"{e.deepspeed:<16}{('yes' if e.gradient_checkpointing else 'no'):>10}{e.params_gib:>9.1f}"
            f"{e.grads_gib:>8.1f}{e.optimizer_gib:>8.1f}{e.activations_gib:>9.1f}{e.total_gib:>9.1f}  "
            f"{'yes' if e.fits else 'no'}"
        )
    lines += ["(GiB per GPU)", "", f"choice: {p.reason}", p.lora_note, ""]
    lines.append(
        f"pod: cpu {p.pod.cpu}, memory {p.pod.memory} (host {p.pod.host_memory_gib} GiB + /dev/shm), "
        f"shm {p.pod.shm_size}"
    )
    lines += [f"  - {note}" for note in p.pod.notes]
    return "\n".join(lines)
