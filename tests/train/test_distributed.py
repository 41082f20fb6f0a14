"""The distributed env contract: PyTorchJob variables → the torchrun command a node runs."""

import pytest

from medgo.errors import MedgoError
from medgo.train.distributed import NodeEnv


def test_pytorchjob_worker_env_becomes_torchrun_flags():
    env = {
        "MASTER_ADDR": "medgo-sft-master-0",
        "MASTER_PORT": "23456",
        "PET_NNODES": "8",
        "PET_NPROC_PER_NODE": "8",
        "PET_NODE_RANK": "3",
        "RANK": "3",
        "WORLD_SIZE": "64",
    }
    node = NodeEnv.from_env(env)
    cmd = node.torchrun_command(["--config", "/c.yaml"], python="python3")
    assert cmd[:3] == ["python3", "-m", "torch.distributed.run"]
    assert "--nnodes=8" in cmd and "--nproc_per_node=8" in cmd and "--node_rank=3" in cmd
    assert "--master_addr=medgo-sft-master-0" in cmd and "--master_port=23456" in cmd
    assert cmd[-4:] == ["-m", "medgo.train", "--config", "/c.yaml"]
    assert NodeEnv.from_env(node.as_env()) == node


def test_defaults_are_one_local_node():
    assert NodeEnv.from_env({}) == NodeEnv("127.0.0.1", 29500, 1, 1, 0)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PET_NNODES": "2", "PET_NODE_RANK": "2"}, "outside 0..1"),
        ({"PET_NNODES": "two"}, "PET_NNODES='two' is not an integer"),
    ],
)
def test_bad_env_is_a_clear_error(env, message):
    with pytest.raises(MedgoError, match=message):
        NodeEnv.from_env(env)


def test_trainer_v2_env_with_auto_processes_per_node():
    """Kubeflow Trainer v2's torch plugin sets PET_MASTER_* and may say PET_NPROC_PER_NODE=auto."""
    env = {
        "PET_MASTER_ADDR": "medgo-sft-node-0-0.medgo-sft",
        "PET_MASTER_PORT": "29400",
        "PET_NNODES": "2",
        "PET_NPROC_PER_NODE": "auto",
        "PET_NODE_RANK": "1",
    }
    node = NodeEnv.from_env(env)
    assert node == NodeEnv("medgo-sft-node-0-0.medgo-sft", 29400, 2, 1, 1)  # no GPU here: one process
