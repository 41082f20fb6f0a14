"""Accounting for where every input unit of a data stage went.

A stage that drops data without saying so is the failure this module exists to prevent:
each unit is counted exactly once as kept, filtered, duplicate or quarantined, and the
stage checks that the outcomes add up to the input before it writes its manifest.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medgo.data.io import JsonlWriter, Quarantined
from medgo.errors import MedgoError
from medgo.logs import fields

log = logging.getLogger(__name__)


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
    #: reason → the outcome it was counted as (filtered, duplicates or quarantined)
    kinds: dict[str, str] = field(default_factory=dict)

    def add_kept(self) -> None:
        self.records_in += 1
        self.kept += 1

    def add_filtered(self, reason: str) -> None:
        self.records_in += 1
        self.filtered += 1
        self.reasons[reason] += 1
        self.kinds[reason] = "filtered"

    def add_duplicate(self, reason: str = "duplicate") -> None:
        self.records_in += 1
        self.duplicates += 1
        self.reasons[reason] += 1
        self.kinds[reason] = "duplicates"

    def add_quarantined(self, reason: str, units: int = 1) -> None:
        self.records_in += units
        self.quarantined += units
        self.reasons[reason] += units
        self.kinds[reason] = "quarantined"

    def merge(self, other: Tally) -> None:
        """Add another tally's counts (a shard's into the stage's)."""
        self.records_in += other.records_in
        self.kept += other.kept
        self.filtered += other.filtered
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.reasons.update(other.reasons)
        self.kinds.update(other.kinds)

    def to_dict(self) -> dict[str, Any]:
        """Counts and reasons, for a shard summary on disk (:meth:`from_dict` reads it back)."""
        return {
            **self.as_counts(),
            "reasons": dict(sorted(self.reasons.items())),
            "kinds": dict(sorted(self.kinds.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tally:
        return cls(
            records_in=data["in"],
            kept=data["kept"],
            filtered=data["filtered"],
            duplicates=data["duplicates"],
            quarantined=data["quarantined"],
            reasons=Counter(data.get("reasons", {})),
            kinds=dict(data.get("kinds", {})),
        )

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
        """A unit (or, for a file quarantined whole, ``item.lines`` units) that cannot be used."""
        self._quarantine.write(item)
        for tally in self._tallies(slice_):
            tally.add_quarantined(item.reason, item.lines)

    def restore(self, total: Tally, slices: Mapping[str, Tally]) -> None:
        """Continue from counts recorded earlier (a shard's first phase), without writing entries again."""
        self.total.merge(total)
        for name, tally in slices.items():
            self.slices.setdefault(name, Tally()).merge(tally)

    def check(self) -> None:
        """Raise unless every unit is accounted for, overall and within each slice."""
        self.total.check(self.stage)
        for name, tally in self.slices.items():
            tally.check(f"{self.stage}:{name}")

    def slice_counts(self) -> dict[str, dict[str, int]]:
        return {name: tally.as_counts() for name, tally in self.slices.items()}


class StepFailed(MedgoError):
    """A data step finished writing but must not count as a success (truncated or undecodable input,
    too much quarantined); ``counts`` are the step's counts, already in its manifest."""

    def __init__(self, message: str, counts: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.counts = dict(counts)


def step_problems(
    stage: str, total: Tally, stream_failures: Iterable[Mapping[str, Any]], max_quarantine_share: float
) -> list[str]:
    """Why a step's outcome should fail it: broken input streams, or too large a quarantined share."""
    problems = []
    failures = list(stream_failures)
    if failures:
        listed = ", ".join(f"{f['source']} ({f['reason']})" for f in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        problems.append(
            f"{len(failures)} input file(s) could not be read to the end or decoded: {listed}{more}"
        )
    if total.records_in and total.quarantined / total.records_in > max_quarantine_share:
        problems.append(
            f"{total.quarantined} of {total.records_in} input units quarantined "
            f"({total.quarantined / total.records_in:.1%} > max_quarantine_share "
            f"{max_quarantine_share:.1%}); see quarantine for the reasons"
        )
    return problems


def fail_or_accept(stage: str, problems: list[str], *, allow_partial: bool, counts: Mapping[str, Any]) -> str:
    """The step's status; raises :class:`StepFailed` when there are problems and partial is not allowed.

    Called after everything is written, so a failed step still leaves its outputs and manifest.
    """
    if not problems:
        return "complete"
    if allow_partial:
        log.warning("partial input accepted", extra=fields(stage=stage, problems=" | ".join(problems)))
        return "accepted_partial"
    raise StepFailed(
        f"{stage} failed: " + "; ".join(problems) + " (outputs were written; pass --allow-partial "
        "(allow_partial=true) to accept them)",
        counts,
    )
