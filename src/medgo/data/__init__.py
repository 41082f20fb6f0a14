"""Data stage: raw corpora, SFT sources and doctor labels → training-ready artifacts.

Each builder reads its input (local, PVC or ``s3://``; JSONL, JSONL.gz, JSONL.zst, Parquet; encoding
decided per file), quarantines what it cannot use with a reason, writes its outputs plus a data card and
a ``manifest.json``, and returns the counts that are also in the manifest. A builder fails — after
writing — on truncated or undecodable input or too much quarantine, unless partial input is allowed:

- :func:`prepare_corpus` — clean, filter, deduplicate (exact + verified MinHash near-duplicates),
  decontaminate, scrub and mix the pretraining corpus; sharded, parallel and resumable
  (:mod:`medgo.data.prepare` holds the phases the KFP fan-out runs);
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
