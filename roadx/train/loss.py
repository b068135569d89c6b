"""The D-LinkNet / D3FNet training loss on logits, restricted to valid pixels (d3fnet.md §4.1).

The reference ``dice_bce_loss`` is ``BCE(p, y) + (1 - Dice)`` on probabilities, with the Dice
computed once over all pixels of the batch. Here the same loss is computed from logits (the
numerically stable ``binary_cross_entropy_with_logits``) and both terms ignore pixels that are
no-data (``valid == False``), so white survey gaps and warp borders teach nothing.

References:
    Zhou, Zhang, Wu. "D-LinkNet", CVPR-W 2018, ``loss.py``.
"""

import torch
import torch.nn.functional as F


def dice_bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    eps: float = 1e-6,
) -> torch.Tensor:
    """BCE-with-logits (mean over valid pixels) + 1 − batch soft Dice over valid pixels.

    Args:
        logits: (B, 1, H, W) float logits.
        target: (B, 1, H, W) float in {0, 1}, 1 = road.
        valid: (B, 1, H, W) bool or float in {0, 1}; None = every pixel counts.
        eps: added to the Dice denominator only (the reference uses 0), so a batch without
            road and without predicted road has Dice 0 rather than NaN.

    Returns:
        Scalar float32 tensor. A batch without any valid pixel gives 0 (with a graph).
    """
    logits = logits.float()
    target = target.float()
    weight = torch.ones_like(target) if valid is None else valid.float()
    n_valid = weight.sum()
    if n_valid.item() == 0:
        return logits.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
    bce = bce / n_valid
    prob = torch.sigmoid(logits) * weight
    inter = (prob * target).sum()
    dice = 2.0 * inter / ((target * weight).sum() + prob.sum() + eps)
    return bce + (1.0 - dice)


def osm_tolerant_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    tolerance_px: int = 3,
    unlabelled_weight: float = 0.2,
    eps: float = 1.0,
) -> torch.Tensor:
    """BCE + soft Dice for OpenStreetMap-style labels: offsets tolerated, missing roads spared.

    OSM lines buffered into masks are shifted by a few metres and miss roads (driveways,
    tracks, new streets). Three changes to :func:`dice_bce_loss` make such labels teach less
    noise (after the relaxed losses of Mnih & Hinton, "Learning to label aerial images from
    noisy data", ICML 2012: omission and registration noise):

    1. **Offsets, road pixels**: a labelled road pixel is scored by the *best* logit within
       ``tolerance_px`` (a max-pool), so a prediction a few pixels off the label still counts.
    2. **Offsets, the band beside a label** (within ``tolerance_px`` of a road pixel, not
       labelled road) counts neither as road nor as background (weight 0).
    3. **Unlabelled roads**: background pixels farther than ``tolerance_px`` from any label on
       which the model is confident of road (p > 0.5, not differentiated) weigh
       ``unlabelled_weight`` instead of 1, so a road missing from OSM is not a hard negative.

    Args:
        logits: (B, 1, H, W) float logits.
        target: (B, 1, H, W) float in {0, 1}, 1 = labelled road.
        valid: (B, 1, H, W) bool or float in {0, 1}; None = every pixel counts.
        tolerance_px: label offset tolerated, in pixels (>= 0; 0 keeps only change 3).
        unlabelled_weight: weight of confident road predictions far from any label, 0..1.
        eps: added to the Dice denominator.

    Returns:
        Scalar float32 tensor; a batch without any weighted pixel gives 0 (with a graph).

    Raises:
        ValueError: ``tolerance_px < 0`` or ``unlabelled_weight`` outside [0, 1].
    """
    if tolerance_px < 0 or not 0.0 <= unlabelled_weight <= 1.0:
        raise ValueError(
            f"tolerance_px={tolerance_px} must be >= 0 and unlabelled_weight="
            f"{unlabelled_weight} in [0, 1]"
        )
    logits = logits.float()
    target = target.float()
    road = target > 0.5
    weight = torch.ones_like(target) if valid is None else valid.float()
    if tolerance_px > 0:
        size = 2 * tolerance_px + 1
        near = F.max_pool2d(target, size, stride=1, padding=tolerance_px) > 0.5
        best = F.max_pool2d(logits, size, stride=1, padding=tolerance_px)
        scored = torch.where(road, best, logits)
        weight = weight * torch.where(near & ~road, 0.0, 1.0)
    else:
        near, scored = road, logits
    confident = torch.sigmoid(logits.detach()) > 0.5
    weight = weight * torch.where(~near & confident, unlabelled_weight, 1.0)
    total = weight.sum()
    if total.item() == 0:
        return logits.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(scored, target, weight=weight, reduction="sum")
    prob = torch.sigmoid(scored) * weight
    dice = 2.0 * (prob * target).sum() / ((target * weight).sum() + prob.sum() + eps)
    return bce / total + (1.0 - dice)
