"""One training stage (pt | sft | dpo), launched under torchrun locally, as a Kubeflow PyTorchJob or as a
Kubeflow Trainer v2 TrainJob."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._image import medgo_component


@medgo_component
def train(
    stage: str,
    model: Input[Model],
    data: Input[Dataset],
    trained: Output[Model],
    metrics: Output[Metrics],
    use_lora: bool = True,
    learning_rate: float = 2e-5,
    num_epochs: float = 2.0,
    max_steps: int = -1,
    per_device_batch_size: int = 1,
    gradient_accumulation_steps: int = 4,
    max_seq_len: int = 4096,
    lora_r: int = 16,
    lora_alpha: int = 8,
    lora_dropout: float = 0.05,
    deepspeed: str = "zero3",
    bf16: bool = False,
    load_bf16: bool = False,
    gradient_checkpointing: bool = False,
    save_steps: int = 0,
    export_merged: bool = False,
    backend: str = "local",
    trainer_api: str = "v2.2+",
    nnodes: int = 1,
    nproc_per_node: int = 1,
    gpus_per_node: int = 0,
    gpu_product: str = "",
    trainer_image: str = "",
    namespace: str = "medgo",
    timeout_s: int = 172800,
    cpu: str = "",
    memory: str = "",
    shm_size: str = "",
    backoff_limit: int = 3,
    pending_timeout_s: int = 1800,
    run_id: str = "",
):
    """``model`` is the base model (pt, sft) or the SFT adapter (dpo); ``trained`` a loadable model dir."""
    from medgo.components_io import artifact_location, log_metrics, run_name
    from medgo.config import LaunchConfig, TrainConfig, load_config
    from medgo.storage import read_manifest
    from medgo.train.launch import launch

    remote = backend != "local"
    config = load_config(
        TrainConfig,
        stage=stage,
        model_uri=artifact_location(model, remote),
        data_uri=artifact_location(data, remote),
        output_uri=artifact_location(trained, remote),
        use_lora=use_lora,
        learning_rate=learning_rate,
        num_epochs=num_epochs,
        max_steps=max_steps,
        per_device_batch_size=per_device_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        max_seq_len=max_seq_len,
        deepspeed=deepspeed,
        bf16=bf16,
        load_dtype="bfloat16" if load_bf16 else "float32",
        gradient_checkpointing=gradient_checkpointing,
        save_steps=save_steps,
        export_merged=export_merged,
        lora={"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout},
    )
    where = load_config(
        LaunchConfig,
        backend=backend,
        trainer_api=trainer_api,
        nnodes=nnodes,
        nproc_per_node=nproc_per_node,
        gpus_per_node=gpus_per_node,
        gpu_product=gpu_product,
        image=trainer_image,
        namespace=namespace,
        job_name=run_name(f"medgo-{stage}", run_id),
        timeout_s=timeout_s,
        cpu=cpu,
        memory=memory,
        shm_size=shm_size,
        backoff_limit=backoff_limit,
        pending_timeout_s=pending_timeout_s,
    )
    launch(config, where)
    manifest = read_manifest(trained.path) if not remote else None
    if manifest:
        log_metrics(metrics, manifest["counts"], prefix=stage)
