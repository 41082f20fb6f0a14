"""Accounting for where every input unit of a data stage went.

A stage that drops data without saying so is the failure this module exists to prevent:
each unit is counted exactly once as kept, filtered, duplicate or quarantined, and the
stage checks that the outcomes add up to the input before it writes its manifest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    """Outcome counts of one stage (or one slice of it, e.g. a category or an SFT task).

    ``reasons`` counts why units were quarantined, filtered or dropped as duplicates, so a
    data card can say what happened without anyone reading the quarantine file.
    """

    records_in: int = 0
    kept: int = 0
    filtered: int = 0
    duplicates: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add_kept(self) -> None:
        self.records_in += 1
        self.kept += 1

    def add_filtered(self, reason: str) -> None:
        self.records_in += 1
        self.filtered += 1
        self.reasons[reason] += 1

    def add_duplicate(self, reason: str = "duplicate") -> None:
        self.records_in += 1
        self.duplicates += 1
        self.reasons[reason] += 1

    def add_quarantined(self, reason: str) -> None:
        self.records_in += 1
        self.quarantined += 1
        self.reasons[reason] += 1

    def reconciles(self) -> bool:
        return self.records_in == self.kept + self.filtered + self.duplicates + self.quarantined

    def check(self, stage: str) -> None:
        """Raise if a unit is unaccounted for; that is a bug in the stage, never a data problem."""
        if not self.reconciles():
            raise RuntimeError(
                f"{stage}: counts do not reconcile: in={self.records_in} != kept={self.kept} + "
                f"filtered={self.filtered} + duplicates={self.duplicates} + quarantined={self.quarantined}"
            )

    def as_counts(self) -> dict[str, int]:
        """``in``/``kept``/``filtered``/``duplicates``/``quarantined``, the keys manifests use."""
        return {
            "in": self.records_in,
            "kept": self.kept,
            "filtered": self.filtered,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
        }
