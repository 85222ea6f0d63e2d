"""data/csr.py (offsets, run expansion, sorted unique keys) against hand-worked values and
brute-force loops."""

import numpy as np
import pytest

from wilddet.data.csr import (
    csr_from_lists,
    expand_rows,
    offsets_from_counts,
    offsets_of_codes,
    sorted_unique,
)


def test_offsets_hand_worked():
    np.testing.assert_array_equal(offsets_from_counts([2, 0, 3]), [0, 2, 2, 5])
    assert offsets_from_counts([]).tolist() == [0]
    # codes 0..3; code 1 never occurs, code 3 twice
    offs = offsets_of_codes(np.array([3, 0, 2, 3, 0, 0]), 4)
    assert offs.dtype == np.int64 and offs.tolist() == [0, 3, 3, 4, 6]


@pytest.mark.parametrize("seed", [0, 1])
def test_offsets_of_codes_slice_the_sorted_entries(seed):
    codes = np.random.default_rng(seed).integers(0, 9, 200)
    offs = offsets_of_codes(codes, 12)  # rows 9..11 are empty
    ordered = np.sort(codes, kind="stable")
    for c in range(12):
        assert (ordered[offs[c]:offs[c + 1]] == c).all()
        assert offs[c + 1] - offs[c] == (codes == c).sum()


def test_csr_from_lists_and_empty_rows():
    offs, vals = csr_from_lists([np.array([4, 5]), np.array([], np.int32), np.array([7])])
    assert offs.tolist() == [0, 2, 2, 3] and vals.tolist() == [4, 5, 7]
    assert vals.dtype == np.int32
    offs, vals = csr_from_lists([np.array([], np.int32)] * 2)
    assert offs.tolist() == [0, 0, 0] and vals.dtype == np.int32 and len(vals) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expand_rows_equals_a_loop(seed):
    rng = np.random.default_rng(seed)
    lists = [rng.integers(0, 50, rng.integers(0, 4)) for _ in range(6)]
    offsets, values = csr_from_lists(lists)
    codes = rng.integers(0, 6, 40)
    source, out = expand_rows(codes, offsets, values)
    want_source = [k for k, c in enumerate(codes) for _ in lists[c]]
    want_values = [int(v) for c in codes for v in lists[c]]
    assert source.tolist() == want_source and out.tolist() == want_values


def test_sorted_unique_equals_np_unique():
    keys = np.random.default_rng(3).integers(-5, 40, 500)
    np.testing.assert_array_equal(sorted_unique(keys), np.unique(keys))
    assert sorted_unique(np.zeros(0, np.int64)).tolist() == []
