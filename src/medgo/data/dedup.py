"""Exact and near-duplicate detection across all shards: LSH buckets, verified edges, global clusters.

Documents are keyed ``(shard << 32) | row``, so a smaller key is an earlier document. Two phases
after every shard has its band keys and digests:

1. :func:`bucket_edges` (one call per *band group*, in parallel): for each band of the group, sort
   every document's key for that band (in hash-range passes when there are more than
   ``max_index_rows``), and within each bucket verify members against a pivot — the earliest
   member not yet joined — by their **true** n-gram Jaccard, repeating with the next unjoined
   member up to ``max_pivots_per_bucket`` times. A local union-find skips pairs already joined.
   A pair belongs to the group of the *first* band it collides in: another group that meets it
   in a later band leaves it alone, so a pair that collides in many bands is verified once in
   all, not once per group, and adding workers divides the verification work instead of
   repeating it. Identical 128-bit digests are joined without reading texts (the group owning
   ``digest % groups``). Equal record-id hashes are reported for the id check. Only verified
   edges leave the group.
2. :func:`cluster_decisions` (one call): union-find over every group's edges with the smaller root
   always winning, so each cluster's survivor is its earliest document, whatever order edges came
   in. Every other member is ``duplicate`` (same text as its survivor) or ``near_duplicate``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from medgo.data.minhash import comparison_text, jaccard, ngram_hashes
from medgo.data.shards import DocStore, split_key
from medgo.logs import fields

log = logging.getLogger(__name__)

_TEXT_CACHE = 4096


class UnionFind:
    """Disjoint sets of integer keys; the root of a set is always its smallest key."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> bool:
        """Join the sets of ``a`` and ``b``; False when they were already one set."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.parent.setdefault(ra, ra)
        return True

    def members(self) -> Iterable[int]:
        return self.parent.keys()


@dataclass
class BucketStats:
    """What one band group did: candidates looked at, verified, rejected, left unverified."""

    buckets: int = 0
    candidate_pairs: int = 0
    verified_pairs: int = 0
    rejected_pairs: int = 0
    exact_pairs: int = 0
    skipped_joined: int = 0
    skipped_other_group: int = 0
    unverified_members: int = 0
    passes: int = 0
    jaccard_hist: list[int] = field(default_factory=lambda: [0] * 10)

    def as_dict(self) -> dict:
        return dict(vars(self))


class ShingleCache:
    """n-gram hash sets of documents read from the :class:`DocStore`, kept for recently used keys."""

    def __init__(self, store: DocStore, n: int) -> None:
        self.store, self.n = store, n
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, key: int) -> np.ndarray:
        hashes = self._cache.get(key)
        if hashes is None:
            text = comparison_text(self.store.record(key)["text"])
            hashes = np.unique(ngram_hashes(text, self.n))
            self._cache[key] = hashes
            if len(self._cache) > _TEXT_CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return hashes

    def jaccard(self, a: int, b: int) -> float:
        """The true n-gram Jaccard of documents ``a`` and ``b``."""
        return jaccard(self.get(a), self.get(b), unique=True)


def _runs(sorted_values: np.ndarray) -> Iterable[tuple[int, int]]:
    """``(start, stop)`` of each run of two or more equal values in a sorted array."""
    if sorted_values.size < 2:
        return []
    change = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [sorted_values.size]))
    long = stops - starts >= 2
    return zip(starts[long].tolist(), stops[long].tolist(), strict=True)


def _partitioned(
    columns: list[np.ndarray], shards: list[int], passes: int, select: Callable[[np.ndarray], np.ndarray]
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """``(values, doc keys)`` sorted by value, one hash-range pass at a time (bounded memory).

    ``columns[i]`` holds one value per row of shard ``shards[i]`` (memory-mapped: only the selected
    values of a pass are read into memory, with their document keys made on the fly).
    """
    for p in range(passes):
        vals, ks = [], []
        for column, shard in zip(columns, shards, strict=True):
            column = np.asarray(column)
            mask = select(column) if passes == 1 else (select(column) & ((column % passes) == p))
            rows = np.flatnonzero(mask).astype(np.uint64)
            vals.append(column[rows])
            ks.append(rows | (np.uint64(shard) << np.uint64(32)))
        values = np.concatenate(vals) if vals else np.empty(0, dtype=np.uint64)
        doc_keys = np.concatenate(ks) if ks else np.empty(0, dtype=np.uint64)
        order = np.argsort(values, kind="stable")  # equal values keep document order
        yield values[order], doc_keys[order]


def bucket_edges(
    *,
    band_keys: list[np.ndarray],
    shards: list[int],
    digests: list[np.ndarray],
    id_hashes: list[np.ndarray],
    bands: Iterable[int],
    group: int,
    groups: int,
    threshold: float,
    max_pivots: int,
    max_index_rows: int,
    shingles: ShingleCache | None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], BucketStats]:
    """The verified duplicate edges of one band group.

    ``band_keys[i]`` is shard ``shards[i]``'s ``uint64[band, row]`` array of every band (all
    groups'); with more than one group, a document's keys across bands decide which group owns a
    pair (the group of the first band the two collide in). Returns ``(edges uint64[m, 2], jaccards float64[m], id_groups, stats)``;
    ``id_groups`` are arrays of document keys sharing a record-id hash (this group's share of them).
    """
    total = sum(d.shape[0] for d in digests)
    passes = max(1, -(-total // max_index_rows))
    uf = UnionFind()
    edges: list[tuple[int, int]] = []
    sims: list[float] = []
    stats = BucketStats(passes=passes)
    digest_lookup = _DigestLookup(digests)

    # exact duplicates: this group owns digests with d0 % groups == group
    first_halves = [np.asarray(d[:, 0]) for d in digests]
    for values, keys in _partitioned(first_halves, shards, passes, lambda c: (c % groups) == group):
        for start, stop in _runs(values):
            members = keys[start:stop].tolist()
            by_digest: dict[tuple[int, int], int] = {}
            for member in members:
                d = digest_lookup(member)
                if d in by_digest:
                    if uf.union(by_digest[d], member):
                        edges.append((by_digest[d], member))
                        sims.append(1.0)
                        stats.exact_pairs += 1
                else:
                    by_digest[d] = member

    owns = None
    if groups > 1:

        def owns(a: int, b: int) -> bool:
            (sa, ra), (sb, rb) = split_key(a), split_key(b)
            first = int(np.flatnonzero(band_keys[sa][:, ra] == band_keys[sb][:, rb])[0])
            return first % groups == group

    if shingles is not None:
        for band in bands:
            for values, keys in _partitioned(
                [keys[band] for keys in band_keys], shards, passes, lambda c: c == c
            ):
                for start, stop in _runs(values):
                    stats.buckets += 1
                    _verify_bucket(
                        keys[start:stop].tolist(),
                        uf,
                        edges,
                        sims,
                        stats,
                        threshold,
                        max_pivots,
                        shingles,
                        digest_lookup,
                        owns,
                    )

    id_groups: list[np.ndarray] = []
    for values, keys in _partitioned(list(id_hashes), shards, passes, lambda c: (c % groups) == group):
        id_groups.extend(keys[start:stop].copy() for start, stop in _runs(values))

    edge_array = np.array(edges, dtype=np.uint64).reshape(-1, 2)
    return edge_array, np.array(sims, dtype=np.float64), id_groups, stats


class _DigestLookup:
    def __init__(self, digests: list[np.ndarray]) -> None:
        self._digests = digests

    def __call__(self, key: int) -> tuple[int, int]:
        shard, row = split_key(key)
        d = self._digests[shard][row]
        return int(d[0]), int(d[1])


def _verify_bucket(
    members: list[int],
    uf: UnionFind,
    edges: list[tuple[int, int]],
    sims: list[float],
    stats: BucketStats,
    threshold: float,
    max_pivots: int,
    shingles: ShingleCache,
    digest_of: _DigestLookup,
    owns: Callable[[int, int], bool] | None = None,
) -> None:
    """Verify one bucket's members against successive pivots (see the module docstring).

    ``owns(a, b)``: whether this group verifies the pair. A pair another group owns is left to it
    (it collides there first) and the member is treated as joined to the pivot here, as a single
    group's union-find would have it after verifying that earlier band.
    """
    remaining = members
    pivots = 0
    while len(remaining) >= 2 and pivots < max_pivots:
        pivot, rest = remaining[0], []
        pivots += 1
        pivot_root = uf.find(pivot)
        for member in remaining[1:]:
            if uf.find(member) == pivot_root:
                stats.skipped_joined += 1
                continue
            if owns is not None and not owns(pivot, member):
                stats.skipped_other_group += 1  # as if joined: it collides with the pivot in an earlier band
                continue
            stats.candidate_pairs += 1
            if digest_of(member) == digest_of(pivot):
                similarity = 1.0
            else:
                similarity = shingles.jaccard(pivot, member)
            stats.jaccard_hist[min(int(similarity * 10), 9)] += 1
            if similarity >= threshold:
                stats.verified_pairs += 1
                if uf.union(pivot, member):
                    edges.append((pivot, member))
                    sims.append(similarity)
                pivot_root = uf.find(pivot)
            else:
                stats.rejected_pairs += 1
                rest.append(member)
        remaining = rest
    if len(remaining) >= 2:
        stats.unverified_members += len(remaining) - 1


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one candidate document after clustering."""

    outcome: str  # duplicate | near_duplicate | duplicate_id
    survivor: int | None = None
    similarity: float | None = None


def cluster_decisions(
    edge_sets: Iterable[tuple[np.ndarray, np.ndarray]],
    id_groups: Iterable[np.ndarray],
    digest_of: Callable[[int], tuple[int, int]],
    record_id: Callable[[int], str],
    similarity_to: Callable[[int, int], float],
) -> tuple[dict[int, Decision], dict[str, int]]:
    """Every non-surviving document's decision, keyed by document key, and cluster statistics.

    A near-duplicate's recorded Jaccard is to its survivor, so it does not depend on which edges
    joined them (that varies with the number of band groups): the similarity of the edge between
    the two where there is one (most clusters are pairs), else computed here (``similarity_to``).

    A document whose id an earlier document already has, with a different text, is a
    ``duplicate_id`` (quarantined: two records claim one identity) and takes no part in clustering.
    The same id with the same text is an ordinary duplicate.
    """
    decisions: dict[int, Decision] = {}
    for group in id_groups:
        first_with_id: dict[str, int] = {}
        for key in sorted(int(k) for k in group.tolist()):
            rid = record_id(key)
            owner = first_with_id.setdefault(rid, key)
            if owner != key and digest_of(owner) != digest_of(key):
                decisions[key] = Decision("duplicate_id", owner)
    id_conflicts = len(decisions)
    uf = UnionFind()
    edges_total = 0
    measured: dict[tuple[int, int], float] = {}
    for edges, similarities in edge_sets:
        for (a, b), similarity in zip(edges.tolist(), similarities.tolist(), strict=True):
            if a in decisions or b in decisions:
                continue
            edges_total += 1
            uf.union(a, b)
            measured[(a, b) if a < b else (b, a)] = similarity
    cluster_sizes: dict[int, int] = {}
    for node in list(uf.members()):
        root = uf.find(node)
        cluster_sizes[root] = cluster_sizes.get(root, 0) + 1
        if root == node:
            continue
        exact = digest_of(node) == digest_of(root)
        if exact:
            similarity = 1.0
        elif (similarity := measured.get((root, node))) is None:  # root < node: the root is earliest
            similarity = similarity_to(node, root)
        decisions[node] = Decision("duplicate" if exact else "near_duplicate", root, similarity)
    stats = {
        "edges": edges_total,
        "clusters": sum(1 for size in cluster_sizes.values() if size > 1),
        "largest_cluster": max(cluster_sizes.values(), default=0),
        "duplicate_id_conflicts": id_conflicts,
    }
    log.info("duplicate clusters built", extra=fields(**stats))
    return decisions, stats
