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
