"""Dihedral TTA: exact inverses, distinct views, probability averaging (d3fnet.md §5.3)."""

import numpy as np
import pytest
import torch

from roadx.errors import InputError
from roadx.predict.tta import Dihedral, augment, merge, tta_views

ALL_8 = tta_views("d4")


def equivariant_logits(x: torch.Tensor) -> torch.Tensor:
    """A per-pixel function of the channels: commutes with every dihedral transform."""
    return 0.7 * x[:, 0:1] + 1.3 * x[:, 1:2] - 0.9 * x[:, 2:3]  # (B, 3, H, W) -> (B, 1, H, W)


def test_view_counts_and_identity_first() -> None:
    assert [len(tta_views(m)) for m in ("none", "flip", "d4")] == [1, 4, 8]
    for mode in ("none", "flip", "d4"):
        assert tta_views(mode)[0] == Dihedral()
    assert not any(v.rot90 for v in tta_views("flip"))
    assert set(tta_views("flip")) < set(ALL_8)


@pytest.mark.parametrize("view", ALL_8, ids=str)
def test_inverse_undoes_transform_exactly(view: Dihedral) -> None:
    x = torch.randn(2, 3, 5, 7)  # non-square: rotation swaps H and W
    y = view.apply(x)
    assert y.shape == ((2, 3, 7, 5) if view.rot90 else (2, 3, 5, 7))
    assert torch.equal(view.invert(y), x)


def test_eight_views_are_the_distinct_dihedral_group() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)  # every pixel distinct: no symmetry
    images = {tuple(v.apply(x).flatten().tolist()) for v in ALL_8}
    assert len(images) == 8
    # and they are exactly numpy's rot90 (CCW) / flipud / fliplr combinations
    a = x[0, 0].numpy()
    expected = set()
    for r in (0, 1):
        b = np.rot90(a, r)
        for f in (b, np.flipud(b), np.fliplr(b), np.flipud(np.fliplr(b))):
            expected.add(tuple(f.flatten().tolist()))
    assert images == expected


def test_rot90_is_counter_clockwise() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert Dihedral(rot90=1).apply(x)[0, 0].tolist() == [[2.0, 4.0], [1.0, 3.0]]


@pytest.mark.parametrize("mode", ["none", "flip", "d4"])
def test_tta_of_equivariant_function_equals_the_function(mode: str) -> None:
    x = torch.randn(3, 3, 16, 16)
    expected = torch.sigmoid(equivariant_logits(x))
    views = augment(x, mode)
    assert views.shape == (3 * len(tta_views(mode)), 3, 16, 16)
    got = merge(torch.sigmoid(equivariant_logits(views)), mode)
    assert got.shape == (3, 1, 16, 16)
    assert torch.equal(got, expected)  # bit-exact: pairwise sum of identical values


def test_augment_is_view_major() -> None:
    x = torch.randn(2, 3, 8, 8)
    views = augment(x, "d4")
    for i, v in enumerate(ALL_8):
        assert torch.equal(views[2 * i : 2 * i + 2], v.apply(x))


def test_merge_inverts_each_view_before_averaging() -> None:
    # An orientation-blind "model" that always outputs a column ramp: after inverting the
    # horizontally flipped views the ramp is reversed, so the flip average is constant.
    width = 6
    ramp = torch.arange(width, dtype=torch.float32).expand(1, 1, width, width) / (width - 1)
    out = merge(ramp.repeat(4, 1, 1, 1), "flip")
    assert torch.allclose(out, torch.full_like(out, 0.5))
    # with no TTA the ramp is returned untouched
    assert torch.equal(merge(ramp, "none"), ramp)


def test_unknown_mode_and_non_square_d4_are_rejected() -> None:
    with pytest.raises(InputError, match="'flip4'.*'none', 'flip', 'd4'"):
        tta_views("flip4")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="square"):
        augment(torch.zeros(1, 3, 8, 16), "d4")
    assert augment(torch.zeros(1, 3, 8, 16), "flip").shape == (4, 3, 8, 16)
    with pytest.raises(InputError, match="multiple of 8"):
        merge(torch.zeros(6, 1, 4, 4), "d4")
