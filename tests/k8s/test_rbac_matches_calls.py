"""The pipeline's Role grants exactly the API calls medgo's launcher and deployer make (least privilege).

Runs the cluster paths against the API stand-in of conftest.py (no API server can run in this sandbox for
this stage), records each request as the (apiGroup, resource, verb) RBAC would check, and compares the
set with the Role in manifests/base/rbac.yaml.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from medgo.config import DeployConfig, LaunchConfig, TrainConfig
from medgo.deploy import deploy_model
from medgo.errors import MedgoError
from medgo.k8s._common import Poller
from medgo.k8s.inference_service import PLURAL as ISVC_PLURAL
from medgo.k8s.inference_service import InferenceServiceDeployer
from medgo.k8s.pytorchjob import GROUP, PLURAL, VERSION, PyTorchJobLauncher
from medgo.k8s.trainjob import TrainJobLauncher
from medgo.train.launch import launch

ROLE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "rbac.yaml"


def role_grants() -> set[tuple[str, str, str]]:
    (role,) = [d for d in yaml.safe_load_all(ROLE.read_text()) if d["kind"] == "Role"]
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_role_is_exactly_what_the_code_calls(server, custom_api, core_api, fake_clock, tmp_path):
    poller = Poller(fake_clock.clock, fake_clock.sleep)
    # Training: a failed attempt (reason + master log), then the retry that replaces it.
    cfg = TrainConfig(stage="sft", model_uri="s3://m/pt", data_uri="s3://d/sft", output_uri="s3://o/sft")
    where = LaunchConfig(
        backend="pytorchjob",
        image="ghcr.io/medgo/medgo-trainer:0.1.0",
        job_name="medgo-sft-1",
        timeout_s=100,
        cpu="4",
        memory="16Gi",
        shm_size="4Gi",
    )
    launcher = PyTorchJobLauncher(custom_api, core_api, poller=poller)
    server.add_pod(
        "medgo",
        "medgo-sft-1-master-0",
        {"training.kubeflow.org/job-name": "medgo-sft-1", "training.kubeflow.org/replica-type": "master"},
        logs={"pytorch": "boom\n"},
    )

    def operator(kind):
        return lambda: server.set_status(
            GROUP, VERSION, "medgo", PLURAL, "medgo-sft-1", {"conditions": [{"type": kind, "status": "True"}]}
        )

    fake_clock.steps = [operator("Failed")]
    with pytest.raises(MedgoError):
        launch(cfg, where, launcher=launcher)
    fake_clock.steps = [operator("Succeeded")]
    launch(cfg, where, launcher=launcher)
    # The same on Kubeflow Trainer v2: a failed attempt, then the retry that replaces it.
    trainer = TrainJobLauncher(custom_api, core_api, poller=poller)

    def trainer_sets(kind):
        return lambda: server.set_status(
            "trainer.kubeflow.org",
            "v1alpha1",
            "medgo",
            "trainjobs",
            "medgo-sft-1",
            {"conditions": [{"type": kind, "status": "True"}]},
        )

    on_trainer = where.model_copy(update={"backend": "trainjob"})
    fake_clock.steps = [trainer_sets("Failed")]
    with pytest.raises(MedgoError):
        launch(cfg, on_trainer, launcher=trainer)
    fake_clock.steps = [trainer_sets("Complete")]
    launch(cfg, on_trainer, launcher=trainer)
    # Deployment: an existing service, a canary that fails its smoke test, a rollback.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"

    def kserve(obj):
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "url": dead,
            "conditions": [{"type": "Ready", "status": "True"}],
            "components": {"predictor": {"latestRolledoutRevision": "r1"}},
        }

    server.controllers[ISVC_PLURAL] = kserve
    deployer = InferenceServiceDeployer(custom_api, poller=poller)
    config = DeployConfig(target="kserve", ready_timeout_s=10)
    for _ in range(2):  # first the create, then a rollout onto the existing service
        try:
            deploy_model(
                model_path="unused",
                model_uri="s3://m/v",
                config=config,
                record_dir=tmp_path / "r",
                deployer=deployer,
            )
        except MedgoError:
            pass
    deployer.delete("medgo", "medgo")
    assert server.rbac_requests() == role_grants()
