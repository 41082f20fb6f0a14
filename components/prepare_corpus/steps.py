"""The corpus preparation stage as KFP steps, for ``dsl.ParallelFor`` over shard groups.

plan → clean and sign (per shard group) → LSH buckets (per band group) → global clusters → filter
(per shard group) → finalize. Steps share a work directory on the data PVC, ``<work_root>/<run_id>/corpus``;
each call is one library function of :mod:`medgo.data.prepare`, the same ones the local process pool runs.
"""

from kfp.dsl import HTML, Dataset, Metrics, Output

from components._image import medgo_component


@medgo_component
def plan_corpus(
    corpus_uri: str,
    work_root: str,
    run_id: str,
    shard_groups: int,
    eval_data_uri: str = "",
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
) -> list[int]:
    """List the corpus, cut it into shards, index the eval sets; returns the shard group ids."""
    import yaml

    from medgo.components_io import decontamination_settings
    from medgo.config import PrepareConfig, load_config
    from medgo.data.prepare import plan_corpus as plan
    from medgo.data.prepare import run_work_dir

    config = load_config(
        PrepareConfig,
        min_chars=min_chars,
        min_chinese_ratio=min_chinese_ratio,
        scrub_pii=scrub_pii,
        near_dedup={
            "threshold": near_dup_threshold,
            "ngram_chars": near_dup_ngram_chars,
            "bands": near_dup_bands,
            "rows": near_dup_rows,
            "num_perm": near_dup_bands * near_dup_rows,
        },
        decontamination=decontamination_settings(eval_data_uri, decontaminate, decontam_ngram_chars),
        mixture={"target_shares": yaml.safe_load(mixture_target_shares) if mixture_target_shares else {}},
        shard_size_mb=shard_size_mb,
        max_quarantine_share=max_quarantine_share,
        allow_partial=allow_partial,
    )
    work = run_work_dir(work_root, run_id)
    result = plan(corpus_uri, work, config, groups=shard_groups, min_shards=2 * shard_groups)
    return list(range(result.groups))


@medgo_component
def clean_and_sign(work_root: str, run_id: str, group: int):
    """Read, clean, filter and MinHash-sign the shards of one group."""
    from medgo.data.prepare import clean_and_sign as run
    from medgo.data.prepare import run_work_dir

    run(run_work_dir(work_root, run_id), group)


@medgo_component
def lsh_buckets(work_root: str, run_id: str, group: int):
    """Verified duplicate edges of one band group (after every shard is signed)."""
    from medgo.data.prepare import lsh_buckets as run
    from medgo.data.prepare import run_work_dir

    run(run_work_dir(work_root, run_id), group)


@medgo_component
def global_clusters(work_root: str, run_id: str):
    """Union-find over every group's edges; the earliest document of each cluster survives."""
    from medgo.data.prepare import global_clusters as run
    from medgo.data.prepare import run_work_dir

    run(run_work_dir(work_root, run_id))


@medgo_component
def filter_shards(work_root: str, run_id: str, group: int):
    """Drop duplicates and eval overlaps, scrub identifiers, resample, write the group's clean shards."""
    from medgo.data.prepare import filter_shards as run
    from medgo.data.prepare import run_work_dir

    run(run_work_dir(work_root, run_id), group)


@medgo_component
def finalize_corpus(
    work_root: str,
    run_id: str,
    clean: Output[Dataset],
    metrics: Output[Metrics],
    card: Output[HTML],
):
    """Assemble the clean corpus, data card and manifest; fail on unreadable input or too much quarantine."""
    import contextlib

    from medgo.components_io import log_metrics
    from medgo.data.card import publish_card
    from medgo.data.prepare import finalize_corpus as run
    from medgo.data.prepare import run_work_dir

    work = run_work_dir(work_root, run_id)
    try:
        counts = run(work, clean.path, remove_work=True)
        with contextlib.suppress(OSError):
            work.parent.rmdir()  # the run's folder, once empty
    finally:
        publish_card(clean.path, card.path, metrics)
    log_metrics(metrics, counts, prefix="prepare")
