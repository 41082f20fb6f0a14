"""Task registry: every evaluation task by the name configs and pipelines use.

Expected files under the evaluation data directory:

=============  ==============================  =====================================
task           file                            metric
=============  ==============================  =====================================
CMeEE          CMeEE/CMeEE_dev.json            micro-F1, exact (start, end, type)
KUAKE-QIC      KUAKE-QIC/KUAKE-QIC_dev.json    accuracy
CHIP-STS       CHIP-STS/CHIP-STS_dev.json      macro-F1 over "0"/"1"
mcq            mcq/cmb_dev.json                accuracy (+ Wilson 95 % interval)
safety         safety/safety_prompts.json      refusal rate (+ over-refusal on
               safety/benign_prompts.json      the optional benign list)
=============  ==============================  =====================================

A new task is a :class:`Task` subclass added to :data:`TASKS`.
"""

from __future__ import annotations

from medgo.errors import ConfigError
from medgo.eval.tasks.base import EvalItem, GenerativeTask, ItemOutcome, Task, TaskResult
from medgo.eval.tasks.cblue import ChipSTS, CMeEE, KuakeQIC
from medgo.eval.tasks.mcq import ClinicalMCQ
from medgo.eval.tasks.safety import Safety

TASKS: dict[str, Task] = {
    task.name: task for task in (CMeEE(), KuakeQIC(), ChipSTS(), ClinicalMCQ(), Safety())
}


def get_task(name: str) -> Task:
    """The registered task called ``name``; an unknown name is a configuration error."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown evaluation task {name!r}; available: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "EvalItem", "GenerativeTask", "ItemOutcome", "Task", "TaskResult", "get_task"]
