"""Duplicate clusters: verified edges only, earliest document survives, whatever the order of edges."""

from __future__ import annotations

import random

import numpy as np

from medgo.data.dedup import BucketStats, UnionFind, _verify_bucket, bucket_edges, cluster_decisions
from medgo.data.minhash import jaccard


def test_union_find_roots_are_the_smallest_key_in_any_union_order():
    for seed in range(20):
        pairs = [(1, 5), (5, 9), (3, 9), (20, 21), (2, 20)]
        random.Random(seed).shuffle(pairs)
        uf = UnionFind()
        for a, b in pairs:
            uf.union(*((b, a) if seed % 2 else (a, b)))
        assert {uf.find(x) for x in (1, 3, 5, 9)} == {1} and {uf.find(x) for x in (2, 20, 21)} == {2}


class _Sets:
    def __init__(self, sets):
        self.sets = {k: np.array(sorted(v), dtype=np.uint64) for k, v in sets.items()}

    def get(self, key):
        return self.sets[key]

    def jaccard(self, a, b):
        return jaccard(self.get(a), self.get(b), unique=True)


def test_bucket_members_merge_only_when_verified_and_unmatched_ones_get_their_own_pivot():
    sets = _Sets(
        {
            10: range(0, 100),
            11: range(5, 100),  # J(10, 11) = 0.95
            12: range(200, 300),  # unrelated to 10
            13: range(205, 300),  # J(12, 13) = 0.95
            14: range(50, 150),  # J(10, 14) = 0.33
        }
    )
    uf, edges, sims, stats = UnionFind(), [], [], BucketStats()
    _verify_bucket([10, 11, 12, 13, 14], uf, edges, sims, stats, 0.7, 8, sets, lambda k: (k, 0))
    assert sorted(edges) == [(10, 11), (12, 13)]
    assert stats.rejected_pairs >= 3 and stats.verified_pairs == 2


def test_the_pivot_limit_bounds_work_and_counts_what_was_left():
    sets = _Sets({k: range(k * 1000, k * 1000 + 50) for k in range(10)})  # all unrelated
    uf, edges, sims, stats = UnionFind(), [], [], BucketStats()
    _verify_bucket(list(range(10)), uf, edges, sims, stats, 0.7, 3, sets, lambda k: (k, 0))
    assert edges == [] and stats.candidate_pairs == 9 + 8 + 7 and stats.unverified_members == 6


def test_band_groups_split_the_verification_work_instead_of_repeating_it():
    """A pair colliding in many bands is verified once in all, by the group of its first band."""
    sets = _Sets(
        {
            0: range(0, 100),
            1: range(5, 100),  # J(0, 1) = 0.95
            2: range(200, 300),
            3: range(205, 300),  # J(2, 3) = 0.95
            4: range(50, 150),  # J(0, 4) = 0.33
            5: range(900, 950),
        }
    )
    # bands[b][row]: 0~1 and 2~3 collide in every band; 0, 1 and 4 share band 3 only
    bands = np.array(
        [
            [10, 10, 20, 20, 30, 40],
            [11, 11, 21, 21, 31, 41],
            [12, 12, 22, 22, 32, 42],
            [13, 13, 23, 23, 13, 43],
        ],
        dtype=np.uint64,
    )
    digests = np.arange(12, dtype=np.uint64).reshape(6, 2)

    def run(group, groups):
        return bucket_edges(**_bucket_args(bands, digests, sets, group, groups))

    edges, sims, _, one = run(0, 1)
    assert sorted(map(tuple, edges.tolist())) == [(0, 1), (2, 3)] and one.candidate_pairs == 3
    split = [run(g, 2) for g in (0, 1)]
    assert sorted(tuple(e) for r in split for e in r[0].tolist()) == [(0, 1), (2, 3)]
    stats = [r[3] for r in split]
    # group 0 (bands 0, 2) owns both duplicate pairs; group 1 (bands 1, 3) verifies only 0 vs 4
    assert [s.candidate_pairs for s in stats] == [2, 1] and sum(s.candidate_pairs for s in stats) == 3
    assert stats[1].skipped_other_group >= 2 and stats[1].rejected_pairs == 1
    assert sorted(split[0][1].tolist()) == sorted(sims.tolist())


def _bucket_args(bands, digests, sets, group, groups):
    return dict(
        band_keys=[bands],
        shards=[0],
        digests=[digests],
        id_hashes=[np.arange(digests.shape[0], dtype=np.uint64)],
        bands=[b for b in range(bands.shape[0]) if b % groups == group],
        group=group,
        groups=groups,
        threshold=0.7,
        max_pivots=8,
        max_index_rows=1000,
        shingles=sets,
    )


def test_cluster_decisions_keep_the_earliest_and_tell_exact_from_near():
    digests = {1: (1, 1), 2: (1, 1), 3: (3, 3), 4: (4, 4), 7: (7, 7), 8: (8, 8)}
    ids = {1: "a", 2: "b", 3: "c", 4: "d", 7: "x", 8: "x"}
    edges = [
        (np.array([[3, 1], [4, 3]], dtype=np.uint64), np.ones(2, np.float32)),
        (np.array([[2, 1]], dtype=np.uint64), np.ones(1, np.float32)),
    ]
    decisions, stats = cluster_decisions(
        edges, [np.array([8, 7], dtype=np.uint64)], digests.get, ids.get, lambda a, b: 0.8
    )
    assert {k: (d.outcome, d.survivor) for k, d in decisions.items()} == {
        2: ("duplicate", 1),
        3: ("near_duplicate", 1),
        4: ("near_duplicate", 1),
        8: ("duplicate_id", 7),
    }
    assert stats["clusters"] == 1 and stats["largest_cluster"] == 4 and stats["duplicate_id_conflicts"] == 1


def test_a_duplicate_id_takes_no_part_in_clustering():
    digests = {1: (1, 0), 2: (2, 0), 3: (2, 0)}
    ids = {1: "same", 2: "same", 3: "other"}
    edges = [(np.array([[2, 3]], dtype=np.uint64), np.ones(1, np.float32))]
    decisions, _ = cluster_decisions(
        edges, [np.array([1, 2], dtype=np.uint64)], digests.get, ids.get, lambda a, b: 1
    )
    assert {k: d.outcome for k, d in decisions.items()} == {2: "duplicate_id"}  # 3 survives
