"""The MedGo pipeline: data → continued pretraining → LoRA SFT → DPO → evaluation → gated deployment.

Compile:   medgo pipeline compile                         (writes pipelines/medgo_pipeline.yaml)
Submit:    kfp run submit -e medgo -r <run> -f pipelines/medgo_pipeline.yaml key=value …
Locally:   medgo demo                                     (the same pipeline function through kfp.local)

Parameters are stage-prefixed (``data_``, ``pack_``, ``train_``, ``eval_``, ``deploy_``); the URIs
name inputs on the cluster's object store (``s3://``) or a PVC path. Cluster-only settings
(PVC, S3 credentials from a Secret, node pools, timeouts) are applied with kfp-kubernetes and are
ignored by kfp.local.
"""

from pathlib import Path

from kfp import dsl, kubernetes

from components.build_preferences.component import build_preferences
from components.build_sft.component import build_sft
from components.deploy.component import deploy
from components.evaluate.component import evaluate
from components.fail_rollout.component import fail_rollout
from components.pack_corpus.component import pack_corpus
from components.train.component import train
from medgo.k8s.names import (
    DATA_MOUNT,
    DATA_PVC,
    DEFAULT_GPU_PRODUCT,
    GPU_NODE_LABEL,
    GPU_RESOURCE,
    GPU_TOLERATION,
    INFERENCE_SERVICE,
    NAMESPACE,
    S3_SECRET,
    S3_SECRET_KEYS,
    TRAINER_IMAGE,
)
from pipelines.corpus_pipeline import corpus_preparation

PIPELINE_NAME = "medgo"
COMPILED_PATH = Path(__file__).with_name("medgo_pipeline.yaml")

STEP_TIMEOUT_S = 6 * 3600
TRAIN_TIMEOUT_S = 7 * 24 * 3600


def _on_cluster(
    task: dsl.PipelineTask, *, timeout_s: int = STEP_TIMEOUT_S, gpus: int = 0
) -> dsl.PipelineTask:
    """Shared cluster settings: data PVC, S3 credentials from the Secret, timeout, GPU pool."""
    kubernetes.mount_pvc(task, pvc_name=DATA_PVC, mount_path=DATA_MOUNT)
    kubernetes.use_secret_as_env(
        task, secret_name=S3_SECRET, secret_key_to_env={k: k for k in S3_SECRET_KEYS}
    )
    kubernetes.set_timeout(task, timeout_s)
    if gpus:
        task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
        kubernetes.add_node_selector(task, GPU_NODE_LABEL, DEFAULT_GPU_PRODUCT)
        kubernetes.add_toleration(task, **GPU_TOLERATION)
    return task


def rollout(model, **settings) -> dsl.PipelineTask:
    """The deploy step, and a step that fails the run after recording a rolled-back canary."""
    deployed = _on_cluster(deploy(model=model, **settings))
    with dsl.If(deployed.outputs["decision"] == "rolled-back", name="rolled-back"):
        fail_rollout(deployment=deployed.outputs["deployment"])
    return deployed


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="MedGo: Chinese medical LLM — data, PT, LoRA SFT, DPO, eval, gated KServe deployment.",
)
def medgo_pipeline(
    base_model_uri: str = "s3://medgo-models/qwen2-72b",
    corpus_uri: str = "s3://medgo-data/corpus/",
    sft_sources_uri: str = "s3://medgo-data/sft/",
    preference_labels_uri: str = "s3://medgo-data/preference/",
    eval_data_uri: str = "s3://medgo-data/eval/",
    data_min_chars: int = 20,
    data_min_chinese_ratio: float = 0.3,
    data_scrub_pii: bool = True,
    data_only_approved_guidelines: bool = True,
    data_max_pairs_per_prompt: int = 4,
    data_shard_groups: int = 8,
    data_work_dir: str = f"{DATA_MOUNT}/work",
    data_shard_size_mb: float = 256.0,
    data_near_dup_threshold: float = 0.7,
    data_near_dup_ngram_chars: int = 5,
    data_near_dup_bands: int = 25,
    data_near_dup_rows: int = 5,
    data_decontaminate: bool = True,
    data_decontam_ngram_chars: int = 13,
    data_mixture_target_shares: str = "",
    data_max_quarantine_share: float = 0.01,
    data_allow_partial: bool = False,
    pack_seq_len: int = 4096,
    train_backend: str = "pytorchjob",
    train_trainer_api: str = "v2.2+",
    train_image: str = TRAINER_IMAGE,
    train_nnodes: int = 8,
    train_nproc_per_node: int = 8,
    train_gpus_per_node: int = 8,
    train_gpu_product: str = DEFAULT_GPU_PRODUCT,
    train_deepspeed: str = "zero3",
    train_bf16: bool = True,
    train_load_bf16: bool = True,
    train_gradient_checkpointing: bool = True,
    train_save_steps: int = 200,
    train_backoff_limit: int = 3,
    train_cpu: str = "",
    train_memory: str = "",
    train_shm_size: str = "",
    train_export_merged: bool = False,
    train_pt_full_finetune: bool = True,
    train_pt_learning_rate: float = 1e-5,
    train_pt_max_steps: int = -1,
    train_sft_learning_rate: float = 2e-5,
    train_sft_max_steps: int = -1,
    train_dpo_learning_rate: float = 5e-6,
    train_dpo_max_steps: int = -1,
    train_num_epochs: float = 2.0,
    train_per_device_batch_size: int = 1,
    train_gradient_accumulation_steps: int = 4,
    train_max_seq_len: int = 4096,
    train_lora_r: int = 16,
    train_lora_alpha: int = 8,
    train_lora_dropout: float = 0.05,
    eval_baseline_model_uri: str = "",
    eval_gpus: int = 4,
    eval_tasks: str = "",
    eval_max_items_per_task: int = 0,
    eval_max_new_tokens: int = 48,
    eval_few_shot: int = 0,
    eval_mcq_mode: str = "loglik",
    eval_judge_base_url: str = "",
    eval_judge_model: str = "medgo-judge",
    eval_gate_min_mcq_accuracy: float = 0.6,
    eval_gate_min_safety_rate: float = 0.9,
    eval_gate_margin: float = 0.03,
    eval_gate_confidence: float = 0.95,
    eval_gate_min_items: int = 100,
    eval_gate_n_bootstrap: int = 2000,
    eval_gate_seed: int = 0,
    deploy_target: str = "kserve",
    deploy_name: str = INFERENCE_SERVICE,
    deploy_namespace: str = NAMESPACE,
    deploy_runtime: str = "huggingface-vllm",
    deploy_canary_traffic_percent: int = 10,
    deploy_deployment_mode: str = "Serverless",
    deploy_min_replicas: int = 1,
    deploy_max_replicas: int = 4,
    deploy_max_batch_size: int = 0,
    deploy_gpus: int = 1,
    deploy_gpu_product: str = DEFAULT_GPU_PRODUCT,
    deploy_node_selector: str = "",
    deploy_smoke_require_refusal: bool = True,
):
    """Weekly MedGo round.

    Args:
        base_model_uri: Base model (HF format) on S3 or a PVC path; its tokenizer packs the corpus.
        corpus_uri: Raw pretraining corpus, JSONL shards of ``{id, text, category, source, meta}``.
        sft_sources_uri: SFT source files (consultations, drug labels, guideline QA, diagnoses, safety).
        preference_labels_uri: Doctors' acceptable/unacceptable labels (or exported feedback).
        eval_data_uri: Evaluation sets in their official layouts (CBLUE tasks, MCQ, safety).
        data_min_chars: Drop documents shorter than this after cleaning.
        data_min_chinese_ratio: Drop documents with a lower share of Chinese characters.
        data_scrub_pii: Replace patient identifiers with typed placeholders.
        data_only_approved_guidelines: Keep only physician-approved guideline QA pairs for SFT.
        data_max_pairs_per_prompt: Cap of chosen×rejected pairs per prompt.
        data_shard_groups: Tasks each corpus step fans out to (ParallelFor over shard groups; at most 16 run at once).
        data_work_dir: Directory on the data PVC where the corpus steps share their work (one sub-folder per run; removed after success, kept for inspection after a failure).
        data_shard_size_mb: Input bytes per corpus shard (files are grouped, big plain JSONL files split at lines).
        data_near_dup_threshold: Character n-gram Jaccard at or above which two documents are near-duplicates (candidates are verified against it; the earliest survives).
        data_near_dup_ngram_chars: Characters per shingle of the near-duplicate check.
        data_near_dup_bands: MinHash LSH bands (permutations = bands × rows).
        data_near_dup_rows: MinHash values per LSH band.
        data_decontaminate: Drop corpus documents, SFT conversations and preference labels that share a character n-gram with any evaluation item under eval_data_uri.
        data_decontam_ngram_chars: Characters per n-gram of the decontamination check.
        data_mixture_target_shares: Category → share of the corpus's tokens, as a JSON/YAML mapping (e.g. '{"tcm": 0.1}'); empty keeps the natural mixture.
        data_max_quarantine_share: A data step fails when it quarantines more than this share of its input.
        data_allow_partial: Accept truncated/undecodable inputs and quarantine over the limit (the manifests say so).
        pack_seq_len: Tokens per packed pretraining sequence.
        train_backend: ``pytorchjob`` (Kubeflow training operator, the default), ``trainjob`` (Kubeflow Trainer v2 on the torch-distributed ClusterTrainingRuntime) or ``local`` (in the step's own pod); each node runs ``python -m medgo.train.node``, which starts torchrun.
        train_trainer_api: with ``train_backend=trainjob``, the cluster's Kubeflow Trainer release: ``v2.2+`` (runtimePatches, the default), ``v2.1`` (podTemplateOverrides) or ``v2.0`` (podSpecOverrides).
        train_image: Trainer image (CUDA, DeepSpeed, flash-attn) for the PyTorchJob pods.
        train_nnodes: Nodes (PyTorchJob replicas: 1 master + n-1 workers).
        train_nproc_per_node: Processes (GPUs) per node.
        train_gpus_per_node: GPUs requested per node (0 on CPU).
        train_gpu_product: GPU node pool of the training pods (node label nvidia.com/gpu.product; empty: any).
        train_deepspeed: DeepSpeed preset: none, zero2, zero3 or zero3_offload.
        train_bf16: bf16 mixed precision (needs GPUs; false for CPU runs).
        train_load_bf16: Load the base weights in bf16 (GPU; halves host and GPU memory of the weights; DeepSpeed keeps fp32 master copies of what is trained).
        train_gradient_checkpointing: Recompute activations in the backward pass (72B at 4096 tokens needs it; see medgo plan).
        train_save_steps: Checkpoint every N optimizer steps to the checkpoint PVC; a restarted pod or retried step resumes from the newest complete one (0: none).
        train_backoff_limit: Restarts of failed training pods before the job fails (each restart resumes).
        train_cpu: CPU of each training pod (empty: from the memory planner for the model and cluster shape).
        train_memory: Memory limit of each training pod, /dev/shm included (empty: from the planner).
        train_shm_size: Size of the pods' memory-backed /dev/shm (empty: from the planner).
        train_export_merged: Also export the DPO adapter merged into the base as a bf16 HF model (merged/).
        train_pt_full_finetune: Continued pretraining updates all weights (else LoRA).
        train_pt_learning_rate: Peak learning rate of continued pretraining.
        train_pt_max_steps: If > 0, stop pretraining after this many optimizer steps.
        train_sft_learning_rate: Peak learning rate of LoRA SFT (MedGo: 2e-5, cosine).
        train_sft_max_steps: If > 0, stop SFT after this many optimizer steps.
        train_dpo_learning_rate: Peak learning rate of DPO.
        train_dpo_max_steps: If > 0, stop DPO after this many optimizer steps.
        train_num_epochs: Epochs per stage (MedGo SFT: 2).
        train_per_device_batch_size: Micro-batch per device (MedGo: 1).
        train_gradient_accumulation_steps: Gradient accumulation (MedGo: 4).
        train_max_seq_len: Longest SFT/DPO sequence in tokens.
        train_lora_r: LoRA rank (MedGo: 16).
        train_lora_alpha: LoRA alpha (MedGo: 8).
        train_lora_dropout: LoRA dropout (MedGo: 0.05).
        eval_baseline_model_uri: Model the candidate must not regress against: the one in production (empty: the base model, for a first round).
        eval_gpus: GPUs of the evaluation step (the model is spread over them).
        eval_tasks: Comma-separated tasks or groups (cblue = all 17 CBLUE tasks, cblue-core, mcq, CMExam, MedQA-MCMLE, safety, over-refusal, bias, attitudes); empty = the eval config's default (cblue, mcq, safety, over-refusal, bias, attitudes).
        eval_max_items_per_task: Evaluate at most this many items per task (0 = all).
        eval_max_new_tokens: Generation budget per answer.
        eval_few_shot: Worked examples before each question (CBLUE: other items of the same file; MCQ: its few-shot file; 0 = zero-shot).
        eval_mcq_mode: loglik (option-letter log-likelihood) or generate (generate and extract the letters).
        eval_judge_base_url: OpenAI-compatible judge endpoint (…/v1) for the safety rubric; empty = rule-based refusal rate.
        eval_judge_model: Model name the judge endpoint serves.
        eval_gate_min_mcq_accuracy: Gate: clinical MCQ accuracy must reach this.
        eval_gate_min_safety_rate: Gate: the safety metric (judged safe rate, or refusal rate without a judge) must reach this.
        eval_gate_margin: Gate: non-inferiority margin; primary tasks' candidate - baseline interval must stay above -margin.
        eval_gate_confidence: Gate: two-sided confidence level of every interval.
        eval_gate_min_items: Gate: fewer compared items than this makes a comparison inconclusive (blocks deployment).
        eval_gate_n_bootstrap: Gate: paired bootstrap resamples for metrics that are not item proportions.
        eval_gate_seed: Gate: seed of the paired bootstrap.
        deploy_target: ``kserve`` (InferenceService with canary) or ``local`` (ModelServer in the step).
        deploy_name: InferenceService name.
        deploy_namespace: Namespace of the InferenceService.
        deploy_runtime: ``huggingface-vllm`` (GPU) or ``medgo-cpu`` serving runtime.
        deploy_canary_traffic_percent: Share of traffic the new revision gets while it is smoke-tested (0: none until it passed).
        deploy_deployment_mode: KServe deployment mode of the InferenceService: ``Serverless`` (canaryTrafficPercent) or ``Standard`` (spec.canary, KServe >= 0.20); an existing service must already be in it.
        deploy_min_replicas: Fewest predictor replicas.
        deploy_max_replicas: Most predictor replicas KServe's autoscaler may start.
        deploy_max_batch_size: Prompts a replica decodes together; sizes containerConcurrency and the scale target (0: the server's default).
        deploy_gpus: GPUs per replica on huggingface-vllm (more than one: tensor parallel).
        deploy_gpu_product: GPU node pool of the predictor (node label nvidia.com/gpu.product; empty: any GPU node).
        deploy_node_selector: Further node labels for the predictor, ``key=value,key2=value2``.
        deploy_smoke_require_refusal: The new revision must refuse the smoke test's harmful request.
    """
    base_model = dsl.importer(artifact_uri=base_model_uri, artifact_class=dsl.Model, reimport=False)
    base_model.set_display_name("base-model")

    prepared = corpus_preparation(
        corpus_uri=corpus_uri,
        eval_data_uri=eval_data_uri,
        work_root=data_work_dir,
        shard_groups=data_shard_groups,
        min_chars=data_min_chars,
        min_chinese_ratio=data_min_chinese_ratio,
        scrub_pii=data_scrub_pii,
        near_dup_threshold=data_near_dup_threshold,
        near_dup_ngram_chars=data_near_dup_ngram_chars,
        near_dup_bands=data_near_dup_bands,
        near_dup_rows=data_near_dup_rows,
        decontaminate=data_decontaminate,
        decontam_ngram_chars=data_decontam_ngram_chars,
        mixture_target_shares=data_mixture_target_shares,
        shard_size_mb=data_shard_size_mb,
        max_quarantine_share=data_max_quarantine_share,
        allow_partial=data_allow_partial,
    ).set_display_name("prepare-corpus")
    packed = _on_cluster(
        pack_corpus(clean=prepared.output, tokenizer_uri=base_model_uri, seq_len=pack_seq_len)
    )
    sft_data = _on_cluster(
        build_sft(
            sources_uri=sft_sources_uri,
            only_approved_guidelines=data_only_approved_guidelines,
            eval_data_uri=eval_data_uri,
            decontaminate=data_decontaminate,
            decontam_ngram_chars=data_decontam_ngram_chars,
            max_quarantine_share=data_max_quarantine_share,
            allow_partial=data_allow_partial,
        )
    )
    prefs = _on_cluster(
        build_preferences(
            labels_uri=preference_labels_uri,
            max_pairs_per_prompt=data_max_pairs_per_prompt,
            eval_data_uri=eval_data_uri,
            decontaminate=data_decontaminate,
            decontam_ngram_chars=data_decontam_ngram_chars,
            max_quarantine_share=data_max_quarantine_share,
            allow_partial=data_allow_partial,
        )
    )

    shared = dict(
        num_epochs=train_num_epochs,
        per_device_batch_size=train_per_device_batch_size,
        gradient_accumulation_steps=train_gradient_accumulation_steps,
        max_seq_len=train_max_seq_len,
        lora_r=train_lora_r,
        lora_alpha=train_lora_alpha,
        lora_dropout=train_lora_dropout,
        deepspeed=train_deepspeed,
        bf16=train_bf16,
        load_bf16=train_load_bf16,
        gradient_checkpointing=train_gradient_checkpointing,
        save_steps=train_save_steps,
        backend=train_backend,
        trainer_api=train_trainer_api,
        nnodes=train_nnodes,
        nproc_per_node=train_nproc_per_node,
        gpus_per_node=train_gpus_per_node,
        gpu_product=train_gpu_product,
        trainer_image=train_image,
        namespace=deploy_namespace,
        timeout_s=TRAIN_TIMEOUT_S,
        cpu=train_cpu,
        memory=train_memory,
        shm_size=train_shm_size,
        backoff_limit=train_backoff_limit,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    )
    pretrained = train(
        stage="pt",
        model=base_model.output,
        data=packed.outputs["packed"],
        use_lora=False,
        learning_rate=train_pt_learning_rate,
        max_steps=train_pt_max_steps,
        **shared,
    ).set_display_name("pretrain")
    sft = train(
        stage="sft",
        model=pretrained.outputs["trained"],
        data=sft_data.outputs["sft_data"],
        learning_rate=train_sft_learning_rate,
        max_steps=train_sft_max_steps,
        **shared,
    ).set_display_name("sft-lora")
    dpo = train(
        stage="dpo",
        model=sft.outputs["trained"],
        data=prefs.outputs["preferences"],
        learning_rate=train_dpo_learning_rate,
        max_steps=train_dpo_max_steps,
        export_merged=train_export_merged,
        **shared,
    ).set_display_name("dpo-lora")
    for step in (pretrained, sft, dpo):
        _on_cluster(step, timeout_s=TRAIN_TIMEOUT_S)

    evaluation = _on_cluster(
        evaluate(
            candidate=dpo.outputs["trained"],
            baseline_model_uri=eval_baseline_model_uri,
            fallback_baseline_uri=base_model_uri,
            eval_data_uri=eval_data_uri,
            tasks=eval_tasks,
            max_items_per_task=eval_max_items_per_task,
            max_new_tokens=eval_max_new_tokens,
            few_shot=eval_few_shot,
            mcq_mode=eval_mcq_mode,
            judge_base_url=eval_judge_base_url,
            judge_model=eval_judge_model,
            gate_min_mcq_accuracy=eval_gate_min_mcq_accuracy,
            gate_min_safety_rate=eval_gate_min_safety_rate,
            gate_margin=eval_gate_margin,
            gate_confidence=eval_gate_confidence,
            gate_min_items=eval_gate_min_items,
            gate_n_bootstrap=eval_gate_n_bootstrap,
            gate_seed=eval_gate_seed,
        ),
        gpus=eval_gpus,
    )

    with dsl.If(evaluation.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 - KFP condition
        rollout(
            dpo.outputs["trained"],
            target=deploy_target,
            name=deploy_name,
            namespace=deploy_namespace,
            runtime=deploy_runtime,
            deployment_mode=deploy_deployment_mode,
            canary_traffic_percent=deploy_canary_traffic_percent,
            min_replicas=deploy_min_replicas,
            max_replicas=deploy_max_replicas,
            max_batch_size=deploy_max_batch_size,
            gpus=deploy_gpus,
            gpu_product=deploy_gpu_product,
            node_selector=deploy_node_selector,
            smoke_require_refusal=deploy_smoke_require_refusal,
        )


def compile_pipeline(path: str | Path = COMPILED_PATH) -> Path:
    from medgo.demo import compile_pipeline as compile_to

    return compile_to(medgo_pipeline, path)


if __name__ == "__main__":
    print(compile_pipeline())
