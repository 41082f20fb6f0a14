"""Data stage: raw corpora, SFT sources and doctor labels → training-ready artifacts.

Each builder reads JSONL shards (local, PVC or ``s3://``), quarantines what it cannot use
with a reason, writes its outputs plus a ``manifest.json`` and returns the counts that are
also in the manifest:

- :func:`prepare_corpus` — clean, filter, deduplicate and scrub the pretraining corpus;
- :func:`pack_corpus` — tokenise and pack the clean corpus into fixed-length sequences;
- :func:`build_sft` — chat-format SFT conversations from the five source types;
- :func:`build_preferences` — DPO preference pairs from doctors' labels.
"""

from medgo.data.normalize import normalize_text
from medgo.data.pack import pack_corpus
from medgo.data.pii import scrub_pii
from medgo.data.prefs import build_preferences
from medgo.data.prepare import prepare_corpus
from medgo.data.sft import build_sft

__all__ = ["build_preferences", "build_sft", "normalize_text", "pack_corpus", "prepare_corpus", "scrub_pii"]
