"""MinHash signatures over character n-grams, LSH band keys, and exact n-gram Jaccard.

Chinese has no spaces to split words on, so documents are compared as sets of character n-grams
of their *comparison text* (:func:`comparison_text`: the normalised text without whitespace,
lower-cased). N-grams are hashed in numpy with a rolling polynomial hash over the text's code
points (one pass for a whole batch of documents); signatures come from rensa's R-MinHash
(``rensa`` 0.5.0, Rust), which turns a flat array of n-gram hashes into a signature matrix. Measured
in ``benchmarks/data_prep.py`` on its documents with 125 permutations: about 1.7× the signatures per
second of a numpy min-over-permutations and 18× datasketch 2.0.0 (rensa's kernel alone is ~50× numpy;
exporting its rows to numpy takes most of the time). Its per-slot and per-band collision rates match
J and J^rows (``tests/data/test_minhash.py``). Band keys hash each band's ``rows`` values into one
64-bit number, so an LSH bucket is a run of equal keys after a sort.

Candidate pairs are always checked with :func:`jaccard` on the n-gram sets themselves, so what the
signatures estimate only decides which pairs are looked at, never which merge.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence

import numpy as np

# One Rayon thread per process: the stage parallelises over processes; rensa's own thread pool on
# top of that only adds contention (it is set before rensa is first imported).
os.environ.setdefault("RAYON_NUM_THREADS", "1")

_BASE = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_PAD = "\x00"


def comparison_text(text: str) -> str:
    """The text near-duplicates are compared on: whitespace removed, lower-cased."""
    return "".join(text.split()).lower()


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every output bit depends on every input bit."""
    h ^= h >> _S30
    h *= _MIX1
    h ^= h >> _S27
    h *= _MIX2
    h ^= h >> _S31
    return h


def batch_ngram_hashes(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, offsets)``: the 64-bit hashes of every character n-gram of each text, concatenated.

    Text ``i``'s hashes are ``hashes[offsets[i]:offsets[i + 1]]``. A text shorter than ``n`` is one
    n-gram (padded), so it still has a signature.
    """
    padded = [t if len(t) >= n else t + _PAD * (n - len(t)) for t in texts]
    lens = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
    counts = lens - n + 1
    offsets = np.zeros(len(padded) + 1, dtype=np.uint64)
    np.cumsum(counts, out=offsets[1:])
    if not padded:
        return np.empty(0, dtype=np.uint64), offsets
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32)
    windows = codes.size - n + 1
    h = codes[:windows].astype(np.uint64)
    for k in range(1, n):
        h *= _BASE
        h += codes[k : k + windows]
    _mix(h)
    ends = np.cumsum(lens)
    # Windows starting in the last n-1 characters of a text run into the next text: drop them.
    crossing = np.zeros(codes.size + 1, dtype=np.int8)
    crossing[ends - lens + counts] += 1
    crossing[ends] -= 1
    keep = ~np.cumsum(crossing[:windows], dtype=np.int8).view(bool)
    return h[keep], offsets


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """The 64-bit hashes of the character n-grams of one text (with repeats, in text order)."""
    return batch_ngram_hashes([text], n)[0]


def jaccard(a: np.ndarray, b: np.ndarray, *, unique: bool = False) -> float:
    """Exact Jaccard similarity of two n-gram hash arrays taken as sets.

    ``unique``: both arrays already hold each hash once (as :class:`~medgo.data.dedup.ShingleCache`
    returns them), so they are not de-duplicated again.
    """
    if not unique:
        a, b = np.unique(a), np.unique(b)
    if not a.size and not b.size:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def signatures(texts: Sequence[str], *, n: int, num_perm: int, seed: int) -> np.ndarray:
    """R-MinHash signatures (``uint32``, one row per text) of the texts' character n-gram sets."""
    import rensa

    hashes, offsets = batch_ngram_hashes(texts, n)
    if not len(texts):
        return np.empty((0, num_perm), dtype=np.uint32)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, num_perm, seed)
    values = itertools.chain.from_iterable(matrix.to_rows())  # rensa exports rows as lists only
    flat = np.fromiter(values, dtype=np.uint32, count=len(texts) * num_perm)
    return flat.reshape(len(texts), num_perm)


def band_keys(sigs: np.ndarray, *, bands: int, rows: int) -> np.ndarray:
    """``uint64[bands, docs]``: one key per band per document; equal keys mean the band collides."""
    docs = sigs.shape[0]
    view = sigs[:, : bands * rows].reshape(docs, bands, rows).astype(np.uint64)
    keys = np.full((docs, bands), np.uint64(bands * rows), dtype=np.uint64)
    for r in range(rows):
        keys *= _BASE
        keys ^= view[:, :, r]
        _mix(keys)
    keys += np.arange(bands, dtype=np.uint64)[None, :] * _MIX1  # bands never share keys
    return np.ascontiguousarray(keys.T)


def text_digest(text: str) -> tuple[int, int]:
    """A 128-bit digest of a text as two ``uint64`` halves (exact-duplicate key)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")


def key_hash(value: str) -> int:
    """A 64-bit hash of a short string (record ids), for partitioning and grouping."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little")
