"""The distributed environment contract shared by local runs and PyTorchJobs.

A node (a PyTorchJob pod, a Kubeflow Trainer v2 TrainJob pod, or a simulated node on 127.0.0.1) sees
``MASTER_ADDR`` (Trainer v2: ``PET_MASTER_ADDR``), ``MASTER_PORT`` (``PET_MASTER_PORT``),
``PET_NNODES``, ``PET_NPROC_PER_NODE`` (Trainer v2 may say ``auto``: one process per visible GPU, one on
a CPU node) and ``PET_NODE_RANK`` (a *node* index, which PyTorchJob also exports as ``RANK``). The node starts ``torchrun`` from those variables and
torchrun assigns per-process ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``. The trainer never reads the
node-level ``RANK``; it only runs under torchrun.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from medgo.errors import MedgoError

log = logging.getLogger(__name__)

TRAINER_MODULE = "medgo.train"
#: Set by the local launcher: the trainer writes its result there and the launcher commits it once every
#: node exited 0 (unset on a cluster, where rank 0 commits after the final barrier).
STAGING_ENV = "MEDGO_TRAIN_STAGING"
#: The command every node runs (PyTorchJob pod or local simulated node); it execs torchrun.
NODE_MODULE = "medgo.train.node"


@dataclass(frozen=True)
class NodeEnv:
    """What one node needs to start its share of a distributed run."""

    master_addr: str
    master_port: int
    nnodes: int
    nproc_per_node: int
    node_rank: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NodeEnv:
        """Read the contract (PyTorchJob variables); missing values mean a single local node."""
        env = os.environ if env is None else env

        def get_int(*names: str, default: int) -> int:
            for name in names:
                if name == "PET_NPROC_PER_NODE" and env.get(name) == "auto":
                    return auto_nproc_per_node()
                if env.get(name):
                    try:
                        return int(env[name])
                    except ValueError:
                        raise MedgoError(
                            f"environment variable {name}={env[name]!r} is not an integer"
                        ) from None
            return default

        node = cls(
            master_addr=env.get("MASTER_ADDR") or env.get("PET_MASTER_ADDR") or "127.0.0.1",
            master_port=get_int("MASTER_PORT", "PET_MASTER_PORT", default=29500),
            nnodes=get_int("PET_NNODES", default=1),
            nproc_per_node=get_int("PET_NPROC_PER_NODE", default=1),
            node_rank=get_int("PET_NODE_RANK", default=0),
        )
        if not 0 <= node.node_rank < node.nnodes:
            raise MedgoError(f"PET_NODE_RANK={node.node_rank} is outside 0..{node.nnodes - 1} (PET_NNODES)")
        return node

    def torchrun_command(self, trainer_args: list[str], python: str | None = None) -> list[str]:
        """The command this node runs: torchrun (as a module of this interpreter) + the trainer."""
        return [
            python or sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nnodes={self.nnodes}",
            f"--nproc_per_node={self.nproc_per_node}",
            f"--node_rank={self.node_rank}",
            f"--master_addr={self.master_addr}",
            f"--master_port={self.master_port}",
            "-m",
            TRAINER_MODULE,
            *trainer_args,
        ]

    def as_env(self) -> dict[str, str]:
        """The variables a PyTorchJob would set for this node."""
        return {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "PET_NNODES": str(self.nnodes),
            "PET_NPROC_PER_NODE": str(self.nproc_per_node),
            "PET_NODE_RANK": str(self.node_rank),
        }


def auto_nproc_per_node() -> int:
    """``PET_NPROC_PER_NODE=auto``: one process per visible GPU, or one on a node without GPUs
    (torchrun's own ``auto`` would start one per CPU core there)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent exits (Linux ``PR_SET_PDEATHSIG``).

    A trainer worker whose torchrun was killed must not train on and publish; a node whose launcher
    was killed must not leave torchrun behind. The setting survives ``exec`` (the node entry execs
    torchrun). If the parent is already gone by the time it is set, exit at once.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(sig), 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            log.warning("prctl(PR_SET_PDEATHSIG) failed", extra={"errno": ctypes.get_errno()})
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    """Wait until every rank is here (no-op outside a process group). Raises if a rank died."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def process_rank() -> int:
    """This process's global rank as assigned by torchrun (0 when not distributed)."""
    return int(os.environ.get("RANK", "0")) if "LOCAL_RANK" in os.environ else 0


def is_main_process() -> bool:
    return process_rank() == 0
