"""Accounting for where every input unit of a data stage went.

A stage that drops data without saying so is the failure this module exists to prevent:
each unit is counted exactly once as kept, filtered, duplicate or quarantined, and the
stage checks that the outcomes add up to the input before it writes its manifest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medgo.data.io import JsonlWriter, Quarantined


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


class Ledger:
    """Records each unit's outcome once, for the stage's total and its slice together, with its entry.

    A slice is what a data card breaks counts down by (a corpus category, an SFT task). Filtered and
    duplicate units are written to ``dropped`` (with their reason, and a duplicate with its
    survivor), quarantined ones to ``quarantine``, so no builder updates two tallies or a file by hand.
    A unit without a slice (a line that is not even a record) counts in the total only.
    """

    def __init__(
        self, stage: str, slices: Iterable[str], *, quarantine: JsonlWriter, dropped: JsonlWriter
    ) -> None:
        self.stage = stage
        self.total = Tally()
        self.slices: dict[str, Tally] = {name: Tally() for name in slices}
        self._quarantine = quarantine
        self._dropped = dropped

    def _tallies(self, slice_: str | None) -> tuple[Tally, ...]:
        return (self.total,) if slice_ is None else (self.total, self.slices[slice_])

    def kept(self, slice_: str | None = None) -> None:
        for tally in self._tallies(slice_):
            tally.add_kept()

    def filtered(self, reason: str, entry: Mapping[str, Any], slice_: str | None = None) -> None:
        """A unit a filter rejected; ``entry`` identifies it in ``dropped`` (no text)."""
        self._dropped.write({**entry, "reason": reason})
        for tally in self._tallies(slice_):
            tally.add_filtered(reason)

    def duplicate(
        self, survivor: str, entry: Mapping[str, Any], slice_: str | None = None, reason: str = "duplicate"
    ) -> None:
        """A unit dropped because ``survivor`` (an id) was kept in its place."""
        self._dropped.write({**entry, "reason": reason, "survivor": survivor})
        for tally in self._tallies(slice_):
            tally.add_duplicate(reason)

    def quarantined(self, item: Quarantined, slice_: str | None = None) -> None:
        self._quarantine.write(item)
        for tally in self._tallies(slice_):
            tally.add_quarantined(item.reason)

    def check(self) -> None:
        """Raise unless every unit is accounted for, overall and within each slice."""
        self.total.check(self.stage)
        for name, tally in self.slices.items():
            tally.check(f"{self.stage}:{name}")

    def slice_counts(self) -> dict[str, dict[str, int]]:
        return {name: tally.as_counts() for name, tally in self.slices.items()}
