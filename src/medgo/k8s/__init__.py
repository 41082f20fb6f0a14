"""Kubernetes integration: PyTorchJob training launches and KServe InferenceService deployment.

Builders return plain dicts (validated against the published CRD schemas in the tests); the launcher and
deployer take ``kubernetes.client`` API objects so that callers choose how to authenticate
(``config.load_incluster_config()`` inside a pipeline pod, a kubeconfig on a laptop).
"""

from medgo.k8s._common import Poller
from medgo.k8s.inference_service import InferenceServiceDeployer, build_inference_service
from medgo.k8s.pytorchjob import (
    JobSpecConflict,
    PyTorchJobFailed,
    PyTorchJobLauncher,
    build_pytorchjob,
    trainer_command,
)

__all__ = [
    "InferenceServiceDeployer",
    "JobSpecConflict",
    "Poller",
    "PyTorchJobFailed",
    "PyTorchJobLauncher",
    "build_inference_service",
    "build_pytorchjob",
    "trainer_command",
]
