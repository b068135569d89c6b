"""The OSM-tolerant loss (issue #9 item 3) on hand-made cases: a prediction a few pixels off
the label, a road the labels miss, a road the model misses, and its gradients."""

import pytest
import torch

from roadx.train.loss import dice_bce_loss, osm_tolerant_loss

H = 64


def _logits(mask: torch.Tensor) -> torch.Tensor:
    return (mask * 2 - 1) * 6.0  # confident: p = 0.9975 on road, 0.0025 elsewhere


@pytest.fixture
def label() -> torch.Tensor:
    y = torch.zeros(1, 1, H, H)
    y[..., 30:34, :] = 1  # a 4 px wide road along rows 30-33
    return y


def test_offset_prediction_costs_what_an_exact_one_does(label: torch.Tensor) -> None:
    exact = osm_tolerant_loss(_logits(label), label, tolerance_px=3)
    shifted = torch.roll(label, 2, dims=2)
    assert float(osm_tolerant_loss(_logits(shifted), label, tolerance_px=3)) == pytest.approx(
        float(exact), abs=1e-3)
    assert float(dice_bce_loss(_logits(shifted), label)) > 20 * float(exact)  # the plain loss
    # beyond the tolerance the offset is an error again
    far = torch.roll(label, 6, dims=2)
    assert float(osm_tolerant_loss(_logits(far), label, tolerance_px=3)) > 0.5


def test_unlabelled_roads_are_soft_negatives_and_missed_roads_still_hurt(label: torch.Tensor) -> None:
    extra = label.clone()
    extra[..., :, 10:14] = 1  # a crossing road that the labels leave out
    plain = float(dice_bce_loss(_logits(extra), label))
    for weight in (0.0, 0.2, 1.0):
        tolerant = float(osm_tolerant_loss(_logits(extra), label, tolerance_px=3,
                                           unlabelled_weight=weight))
        if weight == 1.0:
            assert tolerant == pytest.approx(plain, rel=0.3)
        else:
            assert tolerant < 0.35 * plain
    assert float(osm_tolerant_loss(_logits(extra), label, unlabelled_weight=0.0)) < 0.05
    missed = float(osm_tolerant_loss(_logits(torch.zeros_like(label)), label, tolerance_px=3))
    assert missed > 1.0  # a labelled road the model does not see is never forgiven


def test_gradients_are_finite_and_push_the_right_way(label: torch.Tensor) -> None:
    logits = torch.zeros(2, 1, H, H, requires_grad=True)
    valid = torch.ones_like(label).repeat(2, 1, 1, 1)
    valid[1, :, :, :8] = 0
    loss = osm_tolerant_loss(logits, label.repeat(2, 1, 1, 1), valid, tolerance_px=2)
    loss.backward()
    grad = logits.grad
    assert torch.isfinite(grad).all()
    assert float(grad[0, 0, 31, 20]) < 0  # on the road: raise the logit
    assert float(grad[0, 0, 5, 20]) > 0  # far background: lower it
    # the tolerance band beside the road is never pushed towards background (it may carry the
    # relaxed positive of a road pixel whose best logit it holds)
    assert (grad[0, 0, 28:30] <= 0).all() and (grad[0, 0, 34:36] <= 0).all()
    assert float(grad[1, 0, 5, 3]) == 0  # no-data: no opinion
    with pytest.raises(ValueError):
        osm_tolerant_loss(logits, label, tolerance_px=-1)
