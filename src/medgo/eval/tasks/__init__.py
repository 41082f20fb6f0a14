"""Task registry: every evaluation task by the name configs and pipelines use.

Expected files under the evaluation data directory:

=============  ======================================  =====================================
task           file                                    metric
=============  ======================================  =====================================
CMeEE          CMeEE/CMeEE_dev.json                    micro-F1, exact (start, end, type)
CMeIE          CMeIE/CMeIE_dev.json (JSON lines)       micro-F1, exact (s, p, o)
CHIP-CDEE      CHIP-CDEE/CHIP-CDEE_dev.json            micro-F1, exact events
CHIP-CDN       CHIP-CDN/CHIP-CDN_dev.json              micro-F1, exact standard terms
CHIP-CTC       CHIP-CTC/CHIP-CTC_dev.json              macro-F1
KUAKE-QIC      KUAKE-QIC/KUAKE-QIC_dev.json            accuracy
CHIP-STS       CHIP-STS/CHIP-STS_dev.json              macro-F1 over "0"/"1"
KUAKE-QTR      KUAKE-QTR/KUAKE-QTR_dev.json            accuracy
KUAKE-QQR      KUAKE-QQR/KUAKE-QQR_dev.json            accuracy
KUAKE-IR       KUAKE-IR/{corpus.tsv,                   MRR@10
               KUAKE-IR_dev_query.txt, KUAKE-IR_dev.tsv}
CHIP-MDCFNPC   CHIP-MDCFNPC/CHIP-MDCFNPC_dev.jsonl     micro-F1, (finding, status)
IMCS-V2-NER    IMCS-V2/IMCS-V2_dev.json                micro-F1, BIO entities
IMCS-V2-DAC    IMCS-V2/IMCS-V2_dev.json                accuracy
IMCS-V2-SR     IMCS-V2/IMCS-V2_dev.json                micro-F1, (symptom, label)
IMCS-V2-MRG    IMCS-V2/IMCS-V2_dev.json                ROUGE-L per report section
MedDG          MedDG/MedDG_dev.json                    ROUGE-L (+ BLEU, entity F1)
CMedCausal     CMedCausal/CMedCausal_dev.json          micro-F1, relations on spans
mcq            mcq/cmb_dev.json                        accuracy (Wilson 95 %), per exam type /
                                                       subject; few-shot from mcq/cmb_val.json
CMExam         mcq/cmexam_test.csv                     accuracy, per department / discipline
MedQA-MCMLE    mcq/medqa_mcmle_test.jsonl              accuracy
safety         safety/safety_prompts.json              safe_rate by a judge's rubric, or the
                                                       rule-based refusal_rate without a judge
over-refusal   safety/benign_prompts.json              over_refusal_rate (lower is better)
bias           bias/vignettes.json                     choice_flip_rate per attribute (reported)
attitudes      bias/attitudes.json                     stigma_score 1-5 (reported)
=============  ======================================  =====================================

Which official definition each CBLUE value follows is in :mod:`medgo.eval.tasks.cblue`.
:data:`TASK_GROUPS` names sets of tasks ("cblue" is every CBLUE task); :func:`resolve_task_names`
expands them. A new task is a :class:`Task` subclass added to :data:`TASKS`.
"""

from __future__ import annotations

from collections.abc import Iterable

from medgo.errors import ConfigError
from medgo.eval.tasks.base import EvalItem, GenerativeTask, ItemOutcome, Task, TaskContext, TaskResult
from medgo.eval.tasks.bias import BiasProbes, MentalHealthAttitudes
from medgo.eval.tasks.cblue import CBLUE_TASK_TYPES, CblueTask, ChipSTS, CMeEE, KuakeQIC
from medgo.eval.tasks.mcq import ClinicalMCQ, CMExam, MedQAMCMLE
from medgo.eval.tasks.safety import OverRefusal, Safety

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        *(kind() for kind in CBLUE_TASK_TYPES),
        ClinicalMCQ(),
        CMExam(),
        MedQAMCMLE(),
        Safety(),
        OverRefusal(),
        BiasProbes(),
        MentalHealthAttitudes(),
    )
}

#: Names that stand for several tasks in a task list.
TASK_GROUPS: dict[str, tuple[str, ...]] = {
    "cblue": tuple(kind.name for kind in CBLUE_TASK_TYPES),
    "cblue-core": (CMeEE.name, KuakeQIC.name, ChipSTS.name),
}


def get_task(name: str, *, shots: int = 0) -> Task:
    """The registered task called ``name``; an unknown name is a configuration error.

    ``shots`` > 0 gives a fresh instance that prompts with that many demonstrations (CBLUE tasks);
    asking a task without a few-shot mode for shots is a configuration error.
    """
    try:
        task = TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown evaluation task {name!r}; available: {', '.join(TASKS)}") from None
    if shots < 0:
        raise ConfigError(f"task {name}: shots must be >= 0, got {shots}")
    if shots == 0:
        return task
    if not isinstance(task, CblueTask):
        raise ConfigError(f"task {name} has no few-shot mode")
    return type(task)(shots=shots)


def resolve_task_names(names: Iterable[str]) -> list[str]:
    """``names`` with each group name replaced by its tasks, in order, each task once."""
    resolved: list[str] = []
    for name in names:
        for task in TASK_GROUPS.get(name, (name,)):
            if task not in resolved:
                resolved.append(task)
    return resolved


__all__ = [
    "TASKS",
    "TASK_GROUPS",
    "EvalItem",
    "GenerativeTask",
    "ItemOutcome",
    "Task",
    "TaskContext",
    "TaskResult",
    "get_task",
    "resolve_task_names",
]
