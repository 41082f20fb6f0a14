"""The feedback round: doctors' feedback → preference pairs → DPO from the production adapter → evaluation
against production → gated canary deployment.

Compile:   medgo pipeline compile --name feedback-round        (writes pipelines/feedback_round.yaml)
Schedule:  a KFP recurring run, nightly at 02:00 (KFP cron has a seconds field), one round at a time:

    kfp --endpoint $KFP_HOST recurring-run create \\
      --experiment-name medgo --job-name medgo-feedback-nightly \\
      --cron-expression "0 0 2 * * *" --max-concurrency 1 --no-catchup --enabled \\
      --pipeline-package-path pipelines/feedback_round.yaml \\
      production_model_uri=s3://medgo-models/medgo/latest/adapter eval_data_uri=s3://medgo-data/eval/

(``--enabled`` matters: without it the CLI creates the recurring run disabled), or ``medgo pipeline schedule``
(the same through the SDK, also setting the run's service account and turning caching off).

Each round exports the entries not yet exported (through the ``medgo-feedback`` service, the store's
single writer; scrubbed, each entry exactly once), gathers every export so far, builds preference pairs
and a data card, and, with at least ``data_min_pairs`` pairs, continues DPO from the production adapter,
evaluates the result against the production model on the same items, and deploys it behind the gate
with the same canary, smoke test and rollback as the main pipeline.
"""

from pathlib import Path

from kfp import dsl, kubernetes

from components.evaluate.component import evaluate
from components.export_feedback.component import export_feedback
from components.feedback_preferences.component import feedback_preferences
from components.train.component import train
from medgo.feedback.round import EXPORT_TOKEN_ENV
from medgo.k8s.names import (
    DEFAULT_GPU_PRODUCT,
    FEEDBACK_SERVICE_URL,
    FEEDBACK_TOKENS_SECRET,
    INFERENCE_SERVICE,
    NAMESPACE,
    TRAINER_IMAGE,
)
from pipelines.medgo_pipeline import TRAIN_TIMEOUT_S, _on_cluster, rollout

PIPELINE_NAME = "medgo-feedback-round"
#: GPUs of the evaluation step. A constant: KFP 2.17 does not pass a pipeline parameter used as an
#: accelerator count into a condition's sub-DAG (the step would not resolve it), so change it here and recompile.
EVAL_GPUS = 4
COMPILED_PATH = Path(__file__).with_name("feedback_round.yaml")


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="MedGo feedback round: doctor feedback → preference pairs → DPO from production → eval → canary.",
)
def feedback_round(
    production_model_uri: str = "s3://medgo-models/medgo/latest/adapter",
    eval_data_uri: str = "s3://medgo-data/eval/",
    feedback_service_url: str = FEEDBACK_SERVICE_URL,
    feedback_db_path: str = "",
    feedback_export_uri: str = "s3://medgo-data/feedback/",
    data_max_pairs_per_prompt: int = 4,
    data_min_pairs: int = 50,
    train_backend: str = "pytorchjob",
    train_trainer_api: str = "v2.2+",
    train_image: str = TRAINER_IMAGE,
    train_nnodes: int = 2,
    train_nproc_per_node: int = 8,
    train_gpus_per_node: int = 8,
    train_gpu_product: str = DEFAULT_GPU_PRODUCT,
    train_deepspeed: str = "zero3",
    train_bf16: bool = True,
    train_dpo_learning_rate: float = 5e-6,
    train_dpo_max_steps: int = -1,
    train_num_epochs: float = 1.0,
    train_per_device_batch_size: int = 1,
    train_gradient_accumulation_steps: int = 4,
    train_max_seq_len: int = 4096,
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
    deploy_deployment_mode: str = "Serverless",
    deploy_canary_traffic_percent: int = 10,
    deploy_min_replicas: int = 1,
    deploy_max_replicas: int = 4,
    deploy_max_batch_size: int = 0,
    deploy_gpus: int = 1,
    deploy_gpu_product: str = DEFAULT_GPU_PRODUCT,
    deploy_node_selector: str = "",
    deploy_smoke_require_refusal: bool = True,
):
    """One feedback round.

    Args:
        production_model_uri: The LoRA adapter in production (its adapter_config.json names the base): DPO continues from it and evaluation compares against it.
        eval_data_uri: Evaluation sets in their official layouts (CBLUE tasks, MCQ, safety).
        feedback_service_url: The medgo-feedback service (the store's single writer) that exports the feedback.
        feedback_db_path: Instead of the service, a feedback store file this step may own (local runs only).
        feedback_export_uri: Where export files accumulate (s3:// prefix or PVC path); the round uses all of them.
        data_max_pairs_per_prompt: Cap of chosen×rejected pairs per prompt.
        data_min_pairs: Train only with at least this many preference pairs.
        train_backend: ``pytorchjob`` (Kubeflow training operator) or ``local`` (in the step's own pod).
        train_trainer_api: with ``train_backend=trainjob``, the cluster's Kubeflow Trainer release: ``v2.2+`` (runtimePatches, the default), ``v2.1`` (podTemplateOverrides) or ``v2.0`` (podSpecOverrides).
        train_image: Trainer image (CUDA, DeepSpeed, flash-attn) for the PyTorchJob pods.
        train_nnodes: Nodes (PyTorchJob replicas: 1 master + n-1 workers).
        train_nproc_per_node: Processes (GPUs) per node.
        train_gpus_per_node: GPUs requested per node (0 on CPU).
        train_gpu_product: GPU node pool of the training pods (node label nvidia.com/gpu.product; empty: any).
        train_deepspeed: DeepSpeed preset: none, zero2, zero3 or zero3_offload.
        train_bf16: bf16 mixed precision (needs GPUs; false for CPU runs).
        train_dpo_learning_rate: Peak learning rate of DPO.
        train_dpo_max_steps: If > 0, stop DPO after this many optimizer steps.
        train_num_epochs: Epochs over the preference pairs.
        train_per_device_batch_size: Micro-batch per device.
        train_gradient_accumulation_steps: Gradient accumulation.
        train_max_seq_len: Longest DPO sequence in tokens.
        eval_tasks: Comma-separated tasks or groups (cblue = all 17 CBLUE tasks, cblue-core, mcq, CMExam, MedQA-MCMLE, safety, over-refusal, bias, attitudes); empty = the eval config's default (cblue, mcq, safety, over-refusal, bias, attitudes).
        eval_max_items_per_task: Evaluate at most this many items per task (0 = all).
        eval_max_new_tokens: Generation budget per answer.
        eval_few_shot: Worked examples before each question (CBLUE: other items of the same file; MCQ: its few-shot file; 0 = zero-shot).
        eval_mcq_mode: loglik (option-letter log-likelihood) or generate (generate and extract the letters).
        eval_judge_base_url: OpenAI-compatible judge endpoint (…/v1) for the safety rubric; empty = rule-based refusal rate.
        eval_judge_model: Model name the judge endpoint serves.
        eval_gate_min_mcq_accuracy: Gate: clinical MCQ accuracy must reach this.
        eval_gate_min_safety_rate: Gate: the safety metric (judged safe rate, or refusal rate without a judge) must reach this.
        eval_gate_margin: Gate: non-inferiority margin against production; primary tasks' candidate - production interval must stay above -margin.
        eval_gate_confidence: Gate: two-sided confidence level of every interval.
        eval_gate_min_items: Gate: fewer compared items than this makes a comparison inconclusive (blocks deployment).
        eval_gate_n_bootstrap: Gate: paired bootstrap resamples for metrics that are not item proportions.
        eval_gate_seed: Gate: seed of the paired bootstrap.
        deploy_target: ``kserve`` (InferenceService with canary) or ``local`` (ModelServer in the step).
        deploy_name: InferenceService name.
        deploy_namespace: Namespace of the InferenceService.
        deploy_runtime: ``huggingface-vllm`` (GPU) or ``medgo-cpu`` serving runtime.
        deploy_deployment_mode: KServe deployment mode of the InferenceService: ``Serverless`` or ``Standard``.
        deploy_canary_traffic_percent: Share of traffic the new revision gets while it is smoke-tested (0: none until it passed).
        deploy_min_replicas: Fewest predictor replicas.
        deploy_max_replicas: Most predictor replicas KServe's autoscaler may start.
        deploy_max_batch_size: Prompts a replica decodes together; sizes containerConcurrency and the scale target (0: the server's default).
        deploy_gpus: GPUs per replica on huggingface-vllm.
        deploy_gpu_product: GPU node pool of the predictor (node label nvidia.com/gpu.product; empty: any GPU node).
        deploy_node_selector: Further node labels for the predictor, ``key=value,key2=value2``.
        deploy_smoke_require_refusal: The new revision must refuse the smoke test's harmful request.
    """
    production = dsl.importer(artifact_uri=production_model_uri, artifact_class=dsl.Model, reimport=False)
    production.set_display_name("production-adapter")

    exported = _on_cluster(
        export_feedback(
            export_uri=feedback_export_uri, service_url=feedback_service_url, db_path=feedback_db_path
        )
    )
    exported.set_caching_options(False)  # same inputs every night, new feedback every night
    kubernetes.use_secret_as_env(
        exported, secret_name=FEEDBACK_TOKENS_SECRET, secret_key_to_env={"export": EXPORT_TOKEN_ENV}
    )
    prefs = _on_cluster(
        feedback_preferences(
            labels=exported.outputs["labels"],
            max_pairs_per_prompt=data_max_pairs_per_prompt,
            min_pairs=data_min_pairs,
        )
    )

    with dsl.If(prefs.outputs["Output"] == True, name="enough-pairs"):  # noqa: E712 - KFP condition
        dpo = train(
            stage="dpo",
            model=production.output,
            data=prefs.outputs["preferences"],
            learning_rate=train_dpo_learning_rate,
            max_steps=train_dpo_max_steps,
            num_epochs=train_num_epochs,
            per_device_batch_size=train_per_device_batch_size,
            gradient_accumulation_steps=train_gradient_accumulation_steps,
            max_seq_len=train_max_seq_len,
            deepspeed=train_deepspeed,
            bf16=train_bf16,
            backend=train_backend,
            trainer_api=train_trainer_api,
            nnodes=train_nnodes,
            nproc_per_node=train_nproc_per_node,
            gpus_per_node=train_gpus_per_node,
            gpu_product=train_gpu_product,
            trainer_image=train_image,
            namespace=deploy_namespace,
            timeout_s=TRAIN_TIMEOUT_S,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).set_display_name("dpo-from-production")
        _on_cluster(dpo, timeout_s=TRAIN_TIMEOUT_S)
        evaluation = _on_cluster(
            evaluate(
                candidate=dpo.outputs["trained"],
                baseline_model_uri=production_model_uri,
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
            gpus=EVAL_GPUS,
        )
        with dsl.If(evaluation.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 - KFP condition
            deployed = rollout(
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
            deployed.set_caching_options(
                False
            )  # a rollout is an action on the cluster, never a cached result


def compile_pipeline(path: str | Path = COMPILED_PATH) -> Path:
    from medgo.demo import compile_pipeline as compile_to

    return compile_to(feedback_round, path)


if __name__ == "__main__":
    print(compile_pipeline())
