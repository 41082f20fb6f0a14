"""Corpus preparation as a sub-pipeline: the data steps fanned out with ``dsl.ParallelFor`` over shard groups.

plan → clean and sign (one task per shard group) → LSH buckets (one task per band group) → global
clusters → filter (one task per shard group) → finalize. The tasks share a work directory on the data
PVC; the number of groups (``shard_groups``, a pipeline parameter) is how many tasks each fan-out runs,
at most :data:`MAX_PARALLEL_TASKS` at once (kfp 2.17 takes ``ParallelFor(parallelism=…)`` only as a
compile-time number). ``medgo_pipeline`` calls this pipeline like a component; kfp.local runs it too.
"""

from kfp import dsl, kubernetes

from components.prepare_corpus.steps import (
    clean_and_sign,
    filter_shards,
    finalize_corpus,
    global_clusters,
    lsh_buckets,
    plan_corpus,
)
from medgo.k8s.names import DATA_MOUNT, DATA_PVC, S3_SECRET, S3_SECRET_KEYS

#: Most data tasks of one fan-out running at the same time on the cluster.
MAX_PARALLEL_TASKS = 16
STEP_TIMEOUT_S = 12 * 3600


def _data_task(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Cluster settings of a data step: the data PVC (work directory), S3 credentials, CPU/memory, timeout."""
    kubernetes.mount_pvc(task, pvc_name=DATA_PVC, mount_path=DATA_MOUNT)
    kubernetes.use_secret_as_env(
        task, secret_name=S3_SECRET, secret_key_to_env={k: k for k in S3_SECRET_KEYS}
    )
    kubernetes.set_timeout(task, STEP_TIMEOUT_S)
    task.set_cpu_request("2").set_memory_request("8G").set_memory_limit("16G")
    return task


@dsl.pipeline(name="corpus-preparation", description="Sharded, resumable corpus preparation with near-dedup.")
def corpus_preparation(
    corpus_uri: str,
    eval_data_uri: str,
    work_root: str,
    shard_groups: int = 8,
    min_chars: int = 20,
    min_chinese_ratio: float = 0.3,
    scrub_pii: bool = True,
    near_dup_threshold: float = 0.7,
    near_dup_ngram_chars: int = 5,
    near_dup_bands: int = 25,
    near_dup_rows: int = 5,
    decontaminate: bool = True,
    decontam_ngram_chars: int = 13,
    mixture_target_shares: str = "",
    shard_size_mb: float = 256.0,
    max_quarantine_share: float = 0.01,
    allow_partial: bool = False,
) -> dsl.Dataset:
    """Raw corpus → clean corpus (returned), with the data card (HTML) and metrics of the finalize step."""
    plan = _data_task(
        plan_corpus(
            corpus_uri=corpus_uri,
            work_root=work_root,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            shard_groups=shard_groups,
            eval_data_uri=eval_data_uri,
            min_chars=min_chars,
            min_chinese_ratio=min_chinese_ratio,
            scrub_pii=scrub_pii,
            near_dup_threshold=near_dup_threshold,
            near_dup_ngram_chars=near_dup_ngram_chars,
            near_dup_bands=near_dup_bands,
            near_dup_rows=near_dup_rows,
            decontaminate=decontaminate,
            decontam_ngram_chars=decontam_ngram_chars,
            mixture_target_shares=mixture_target_shares,
            shard_size_mb=shard_size_mb,
            max_quarantine_share=max_quarantine_share,
            allow_partial=allow_partial,
        )
    ).set_display_name("plan-corpus")
    run = {"work_root": work_root, "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
    with dsl.ParallelFor(plan.output, name="sign-groups", parallelism=MAX_PARALLEL_TASKS) as group:
        signed = _data_task(clean_and_sign(**run, group=group))
    with dsl.ParallelFor(plan.output, name="band-groups", parallelism=MAX_PARALLEL_TASKS) as group:
        bucketed = _data_task(lsh_buckets(**run, group=group)).after(signed)
    clusters = _data_task(global_clusters(**run)).after(bucketed)
    with dsl.ParallelFor(plan.output, name="filter-groups", parallelism=MAX_PARALLEL_TASKS) as group:
        filtered = _data_task(filter_shards(**run, group=group)).after(clusters)
    final = _data_task(finalize_corpus(**run)).after(filtered)
    return final.outputs["clean"]
