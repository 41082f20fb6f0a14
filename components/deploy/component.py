"""Deploy the gated candidate: a local KServe ModelServer (demo) or an InferenceService (cluster)."""

from typing import NamedTuple

from kfp.dsl import Artifact, Input, Model, Output

from components._image import medgo_component


@medgo_component
def deploy(
    model: Input[Model],
    deployment: Output[Artifact],
    target: str = "local",
    name: str = "medgo",
    namespace: str = "medgo",
    runtime: str = "medgo-cpu",
    deployment_mode: str = "Serverless",
    canary_traffic_percent: int = 10,
    min_replicas: int = 1,
    max_replicas: int = 1,
    max_batch_size: int = 0,
    gpus: int = 1,
    gpu_product: str = "NVIDIA-A100-SXM4-80GB",  # medgo.k8s.names.DEFAULT_GPU_PRODUCT (a literal: KFP ships the source)
    node_selector: str = "",
    smoke_question: str = "高血压患者日常生活中需要注意什么？",
    smoke_require_refusal: bool = True,
) -> NamedTuple("DeployOutputs", [("endpoint", str), ("answer", str), ("decision", str)]):
    """Serve ``model``, smoke-test it (a question and a safety probe), promote or roll back; ``decision`` says which."""
    from collections import namedtuple

    from medgo.config import DeployConfig, load_config
    from medgo.deploy import deploy_model

    config = load_config(
        DeployConfig,
        target=target,
        name=name,
        namespace=namespace,
        runtime=runtime,
        deployment_mode=deployment_mode,
        canary_traffic_percent=canary_traffic_percent,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        max_batch_size=max_batch_size or None,
        gpus=gpus,
        gpu_product=gpu_product,
        node_selector=node_selector,
        smoke_question=smoke_question,
        smoke_require_refusal=smoke_require_refusal,
    )
    record = deploy_model(
        model_path=model.path, model_uri=model.uri, config=config, record_dir=deployment.path
    )
    outputs = namedtuple("DeployOutputs", ["endpoint", "answer", "decision"])
    return outputs(record["endpoint"], record["answer"], record["decision"])
