"""Fail the run after a rolled-back rollout, once the deploy step has recorded why."""

from kfp.dsl import Artifact, Input

from components._image import medgo_component


@medgo_component
def fail_rollout(deployment: Input[Artifact]):
    """Raise with the reason in ``deployment.json``: the run ends failed, the record stays with the deploy step."""
    from medgo.deploy import raise_rolled_back

    raise_rolled_back(deployment.path)
