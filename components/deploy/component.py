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
    canary_traffic_percent: int = 10,
    smoke_question: str = "高血压患者日常生活中需要注意什么？",
) -> NamedTuple("DeployOutputs", [("endpoint", str), ("answer", str)]):
    """Serve ``model`` and ask it ``smoke_question`` over the OpenAI-compatible chat route."""
    from collections import namedtuple

    from medgo.config import DeployConfig, load_config
    from medgo.deploy import deploy_model

    config = load_config(
        DeployConfig,
        target=target,
        name=name,
        namespace=namespace,
        runtime=runtime,
        canary_traffic_percent=canary_traffic_percent,
        smoke_question=smoke_question,
    )
    record = deploy_model(
        model_path=model.path, model_uri=model.uri, config=config, record_dir=deployment.path
    )
    return namedtuple("DeployOutputs", ["endpoint", "answer"])(record["endpoint"], record["answer"])
