"""Task registry: every evaluation task by the name configs and pipelines use.

Expected files under the evaluation data directory:

=============  ================================  ==========================================
task           file                              metric
=============  ================================  ==========================================
CMeEE          CMeEE/CMeEE_dev.json              micro-F1, exact (start, end, type)
KUAKE-QIC      KUAKE-QIC/KUAKE-QIC_dev.json      accuracy
CHIP-STS       CHIP-STS/CHIP-STS_dev.json        macro-F1 over "0"/"1"
mcq            mcq/cmb_dev.json                  accuracy (Wilson 95 %), per exam type /
                                                 subject; few-shot from mcq/cmb_val.json
CMExam         mcq/cmexam_test.csv               accuracy, per department / discipline
MedQA-MCMLE    mcq/medqa_mcmle_test.jsonl        accuracy
safety         safety/safety_prompts.json        safe_rate by a judge's rubric, or the
                                                 rule-based refusal_rate without a judge
over-refusal   safety/benign_prompts.json        over_refusal_rate (lower is better)
bias           bias/vignettes.json               choice_flip_rate per attribute (reported)
attitudes      bias/attitudes.json               stigma_score 1-5 (reported)
=============  ================================  ==========================================

A new task is a :class:`Task` subclass added to :data:`TASKS`.
"""

from __future__ import annotations

from medgo.errors import ConfigError
from medgo.eval.tasks.base import EvalItem, GenerativeTask, ItemOutcome, Task, TaskContext, TaskResult
from medgo.eval.tasks.bias import BiasProbes, MentalHealthAttitudes
from medgo.eval.tasks.cblue import ChipSTS, CMeEE, KuakeQIC
from medgo.eval.tasks.mcq import ClinicalMCQ, CMExam, MedQAMCMLE
from medgo.eval.tasks.safety import OverRefusal, Safety

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        CMeEE(),
        KuakeQIC(),
        ChipSTS(),
        ClinicalMCQ(),
        CMExam(),
        MedQAMCMLE(),
        Safety(),
        OverRefusal(),
        BiasProbes(),
        MentalHealthAttitudes(),
    )
}


def get_task(name: str) -> Task:
    """The registered task called ``name``; an unknown name is a configuration error."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown evaluation task {name!r}; available: {', '.join(TASKS)}") from None


__all__ = [
    "TASKS",
    "EvalItem",
    "GenerativeTask",
    "ItemOutcome",
    "Task",
    "TaskContext",
    "TaskResult",
    "get_task",
]
