"""The CBLUE tasks, asked generatively and scored by their official definitions.

Files are the published CBLUE releases under ``<data_dir>/<TASK>/`` (IMCS-V2's four tasks share
``IMCS-V2/IMCS-V2_dev.json``). Prompts follow PromptCBLUE's wording (instruction, the text, the
options, "答："); parsers read the shapes models really produce back into the official layout.
Each result says in ``metric_definition`` which scorer its value follows and carries the other
definition's value in ``secondary`` where CBLUE and PromptCBLUE differ:

==============  ============================  ===========================  ===============
task            value (``metric``)            definition                   secondary
==============  ============================  ===========================  ===============
CMeEE           micro_f1 (start, end, type)   CBLUE                        PromptCBLUE f1
CMeIE           micro_f1 (s, p, o)            CBLUE = PromptCBLUE
CHIP-CDEE       micro_f1 exact events         PromptCBLUE
CHIP-CDN        micro_f1 (text, term)         CBLUE
CHIP-CTC        macro_f1                      CBLUE                        PromptCBLUE macro
KUAKE-QIC       accuracy                      CBLUE                        PromptCBLUE macro
CHIP-STS        macro_f1                      CBLUE                        PromptCBLUE weighted
KUAKE-QTR       accuracy                      CBLUE                        PromptCBLUE weighted
KUAKE-QQR       accuracy                      CBLUE                        PromptCBLUE weighted
KUAKE-IR        mrr_at_10                     CBLUE
CHIP-MDCFNPC    micro_f1 (finding, attr)      CBLUE submission keys        PromptCBLUE f1
IMCS-V2-NER     micro_f1 BIO entities         IMCS-V2 scorer               PromptCBLUE f1
IMCS-V2-DAC     accuracy                      IMCS-V2 scorer               macro, PromptCBLUE macro
IMCS-V2-SR      micro_f1 utterance level      IMCS-V2 scorer               dialogue level
IMCS-V2-MRG     rouge_l per section           PromptCBLUE                  IMCS-V2 scorer
MedDG           rouge_l                       PromptCBLUE                  BLEU-1/2/4, entity F1
CMedCausal      micro_f1 on spans             CBLUE submission layout      PromptCBLUE f1
==============  ============================  ===========================  ===============

Text2DT (tree edit-distance ratio) is not implemented yet.
"""

from medgo.eval.tasks.cblue.classification import (
    CTC_NAMES,
    DAC_NAMES,
    QIC_LABELS,
    STS_LABELS,
    ChipCTC,
    ChipSTS,
    ImcsDAC,
    KuakeQIC,
    KuakeQQR,
    KuakeQTR,
    parse_single_label,
)
from medgo.eval.tasks.cblue.common import CblueResult, CblueTask
from medgo.eval.tasks.cblue.dialogues import ChipMDCFNPC, ImcsMRG, ImcsSR, MedDG
from medgo.eval.tasks.cblue.extraction import ChipCDEE, ChipCDN, CMedCausal, CMeIE
from medgo.eval.tasks.cblue.ner import (
    CMEEE_TYPES,
    CMeEE,
    ImcsNER,
    entity_spans,
    locate_entities,
    parse_entity_lines,
)
from medgo.eval.tasks.cblue.parsing import parse_same_meaning
from medgo.eval.tasks.cblue.retrieval import KuakeIR

#: Every CBLUE task class, in CBLUE's order.
CBLUE_TASK_TYPES: tuple[type[CblueTask], ...] = (
    CMeEE,
    CMeIE,
    ChipCDEE,
    ChipCDN,
    ChipCTC,
    KuakeQIC,
    ChipSTS,
    KuakeQTR,
    KuakeQQR,
    KuakeIR,
    ChipMDCFNPC,
    ImcsNER,
    ImcsDAC,
    ImcsSR,
    ImcsMRG,
    MedDG,
    CMedCausal,
)

__all__ = [
    "CBLUE_TASK_TYPES",
    "CMEEE_TYPES",
    "CTC_NAMES",
    "DAC_NAMES",
    "QIC_LABELS",
    "STS_LABELS",
    "CMeEE",
    "CMeIE",
    "CMedCausal",
    "CblueResult",
    "CblueTask",
    "ChipCDEE",
    "ChipCDN",
    "ChipCTC",
    "ChipMDCFNPC",
    "ChipSTS",
    "ImcsDAC",
    "ImcsMRG",
    "ImcsNER",
    "ImcsSR",
    "KuakeIR",
    "KuakeQIC",
    "KuakeQQR",
    "KuakeQTR",
    "MedDG",
    "entity_spans",
    "locate_entities",
    "parse_entity_lines",
    "parse_same_meaning",
    "parse_single_label",
]
