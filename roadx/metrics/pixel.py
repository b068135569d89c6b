"""Pixel metrics: confusion counts, IoU / precision / recall / F1, relaxed (buffered) scores.

Two ways of aggregating over many images are used in the road-extraction literature and both
are offered here, named distinctly:

* **dataset-level** ("micro"): add the :class:`Confusion` of every image (``sum(cs,
  Confusion())``) and read the scores of the total. Large images weigh more.
* **per-image mean** ("macro"): compute the scores of each image and average them, as the
  D-LinkNet / D3FNet evaluation scripts do (:func:`per_image_mean`).

Only numpy is imported at module import; scipy is imported inside :func:`relaxed_scores`.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from roadx.errors import InputError


def _ratio(num: int, den: int) -> float:
    return float(num) / float(den) if den > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Confusion:
    """Pixel confusion counts of a binary road mask against ground truth.

    Counts add up (``a + b``) so dataset-level scores are the scores of the summed counts.
    Every score is 0.0 when its denominator is 0 (e.g. IoU of an image with neither predicted
    nor true road pixels); use :func:`per_image_mean` to skip such images instead.

    Example:
        >>> c = Confusion(tp=3, fp=1, fn=1, tn=5)
        >>> round(c.iou, 3), c.precision, c.recall, c.f1
        (0.6, 0.75, 0.75, 0.75)
        >>> (c + c).tp
        6
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: "Confusion") -> "Confusion":
        if not isinstance(other, Confusion):
            return NotImplemented
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def total(self) -> int:
        """Number of pixels counted (valid pixels)."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def iou(self) -> float:
        """Intersection over union of the road class, TP / (TP + FP + FN)."""
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        """TP / (TP + FP): share of predicted road pixels that are road."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """TP / (TP + FN): share of true road pixels that were predicted."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall, 2TP / (2TP + FP + FN) (= Dice)."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def to_dict(self) -> dict[str, float | int]:
        """Counts and scores as a JSON-able dict."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "iou": self.iou,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def _as_mask(name: str, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == bool:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        return arr != 0
    raise InputError(
        f"{name} has dtype {arr.dtype}; expected a bool (or integer 0/non-zero) mask. "
        "Threshold probabilities first, e.g. `prob >= 0.5`."
    )


def _check_shapes(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None) -> None:
    if pred.shape != gt.shape or (valid is not None and valid.shape != gt.shape):
        shapes = f"pred {pred.shape}, gt {gt.shape}" + (
            f", valid {valid.shape}" if valid is not None else ""
        )
        raise InputError(f"mask shapes differ ({shapes}); expected identical shapes.")


def confusion(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> Confusion:
    """Count TP/FP/FN/TN of a predicted road mask against the true mask.

    Args:
        pred: (H, W) bool predicted road mask (any shape equal to ``gt``; integer masks count
            non-zero as road).
        gt: (H, W) bool true road mask.
        valid: (H, W) bool, pixels to count (default: all). Use it for no-data, watermarks,
            image borders.

    Returns:
        The counts over valid pixels.

    Raises:
        InputError: shapes differ, or a float array was passed instead of a mask.

    Example:
        >>> p = np.array([[1, 1, 0, 0]], bool); g = np.array([[1, 0, 1, 0]], bool)
        >>> confusion(p, g)
        Confusion(tp=1, fp=1, fn=1, tn=1)
        >>> confusion(p, g, valid=np.array([[1, 1, 0, 0]], bool))
        Confusion(tp=1, fp=1, fn=0, tn=0)
    """
    p = _as_mask("pred", pred)
    g = _as_mask("gt", gt)
    v = None if valid is None else _as_mask("valid", valid)
    _check_shapes(p, g, v)
    if v is not None:
        p = p & v
        g = g & v
        n = int(np.count_nonzero(v))
    else:
        n = int(p.size)
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(g)) - tp
    return Confusion(tp=tp, fp=fp, fn=fn, tn=n - tp - fp - fn)


@dataclass(frozen=True, slots=True)
class PixelScores:
    """Averaged pixel scores (e.g. the per-image mean), with the number of images averaged."""

    iou: float
    precision: float
    recall: float
    f1: float
    n_images: int


def per_image_mean(confusions: Iterable[Confusion], *, skip_empty: bool = True) -> PixelScores:
    """Average IoU / precision / recall / F1 over images (macro average).

    This is the per-image mean of the D-LinkNet / D3FNet evaluation scripts; it differs from
    the dataset-level scores of ``sum(confusions, Confusion())`` whenever images differ in
    size or road content.

    Args:
        confusions: one :class:`Confusion` per image.
        skip_empty: leave out images with neither predicted nor true road pixels
            (TP + FP + FN = 0), whose scores are undefined; when False they score 0.

    Returns:
        Mean scores and the number of images averaged (all 0.0 when no image is left).

    Example:
        >>> per_image_mean([Confusion(1, 0, 0, 3), Confusion(1, 1, 2, 0), Confusion(0, 0, 0, 9)])
        PixelScores(iou=0.625, precision=0.75, recall=0.6666666666666666, f1=0.7, n_images=2)
    """
    kept = [c for c in confusions if not (skip_empty and c.tp + c.fp + c.fn == 0)]
    if not kept:
        return PixelScores(0.0, 0.0, 0.0, 0.0, 0)
    return PixelScores(
        iou=float(np.mean([c.iou for c in kept])),
        precision=float(np.mean([c.precision for c in kept])),
        recall=float(np.mean([c.recall for c in kept])),
        f1=float(np.mean([c.f1 for c in kept])),
        n_images=len(kept),
    )


@dataclass(frozen=True, slots=True)
class RelaxedCounts:
    """Counts behind relaxed precision / recall with a pixel tolerance (Mnih & Hinton 2010).

    ``pred_matched`` of ``pred_total`` predicted road pixels lie within ρ px of a true road
    pixel; ``gt_matched`` of ``gt_total`` true road pixels lie within ρ px of a predicted one.
    Counts add up across images (dataset-level relaxed scores).
    """

    pred_matched: int = 0
    pred_total: int = 0
    gt_matched: int = 0
    gt_total: int = 0

    def __add__(self, other: "RelaxedCounts") -> "RelaxedCounts":
        if not isinstance(other, RelaxedCounts):
            return NotImplemented
        return RelaxedCounts(
            self.pred_matched + other.pred_matched,
            self.pred_total + other.pred_total,
            self.gt_matched + other.gt_matched,
            self.gt_total + other.gt_total,
        )

    @property
    def precision(self) -> float:
        """Relaxed precision: matched predicted pixels / predicted pixels."""
        return _ratio(self.pred_matched, self.pred_total)

    @property
    def recall(self) -> float:
        """Relaxed recall: matched true pixels / true pixels."""
        return _ratio(self.gt_matched, self.gt_total)

    @property
    def f1(self) -> float:
        """Harmonic mean of relaxed precision and recall (0.0 when both are 0)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        """Counts and scores as a JSON-able dict."""
        return {
            "pred_matched": self.pred_matched,
            "pred_total": self.pred_total,
            "gt_matched": self.gt_matched,
            "gt_total": self.gt_total,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def relaxed_scores(
    pred: np.ndarray, gt: np.ndarray, *, rho_px: float = 3.0, valid: np.ndarray | None = None
) -> RelaxedCounts:
    """Relaxed precision / recall counts: a road pixel counts when the other mask is near.

    A predicted road pixel is correct when a true road pixel lies within ``rho_px`` (Euclidean
    distance, pixels) and vice versa. With ``rho_px = 0`` this is ordinary precision/recall.
    Pixels outside ``valid`` are removed from both masks first. Cost: two Euclidean distance
    transforms of the (H, W) mask.

    Args:
        pred: (H, W) bool predicted road mask (often thin: a skeleton or a thresholded map).
        gt: (H, W) bool true road mask (Mnih's labels are centrelines rasterised a few px wide).
        rho_px: tolerance ρ in pixels (default 3, as in Mnih & Hinton 2010 and solaris).
        valid: (H, W) bool, pixels to count (default: all).

    Returns:
        :class:`RelaxedCounts` (``.precision``, ``.recall``, ``.f1``).

    Raises:
        InputError: shapes differ, float arrays, or negative ``rho_px``.

    References:
        V. Mnih and G. E. Hinton, "Learning to detect roads in high-resolution aerial images",
        ECCV 2010, §4 (relaxed precision and recall, slack ρ = 3 px).

    Example:
        >>> g = np.zeros((5, 9), bool); g[2, :] = True
        >>> p = np.zeros((5, 9), bool); p[4, :3] = True; p[0, 6:] = True
        >>> r = relaxed_scores(p, g, rho_px=2)
        >>> r.precision, round(r.recall, 3)
        (1.0, 0.667)
    """
    if rho_px < 0:
        raise InputError(f"rho_px is {rho_px}; expected a tolerance >= 0 pixels.")
    p = _as_mask("pred", pred)
    g = _as_mask("gt", gt)
    v = None if valid is None else _as_mask("valid", valid)
    _check_shapes(p, g, v)
    if v is not None:
        p = p & v
        g = g & v
    n_p, n_g = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    if n_p == 0 or n_g == 0:
        return RelaxedCounts(0, n_p, 0, n_g)
    from scipy.ndimage import distance_transform_edt

    dist_to_g = distance_transform_edt(~g)  # (H, W) px to the nearest true road pixel
    dist_to_p = distance_transform_edt(~p)
    return RelaxedCounts(
        pred_matched=int(np.count_nonzero(p & (dist_to_g <= rho_px))),
        pred_total=n_p,
        gt_matched=int(np.count_nonzero(g & (dist_to_p <= rho_px))),
        gt_total=n_g,
    )


@dataclass(frozen=True, slots=True)
class PixelReport:
    """Pixel and relaxed scores of one image at a threshold (``valid_px`` pixels counted)."""

    threshold: float
    rho_px: float
    valid_px: int
    confusion: Confusion
    relaxed: RelaxedCounts

    def to_dict(self) -> dict[str, object]:
        """JSON-able dict: ``dataset``-level, ``per_image_mean`` and ``relaxed`` scores."""
        return {
            "threshold": self.threshold,
            "valid_px": self.valid_px,
            "dataset": self.confusion.to_dict(),
            "per_image_mean": asdict(per_image_mean([self.confusion])),
            "relaxed": {"rho_px": self.rho_px, **self.relaxed.to_dict()},
        }


def pixel_report(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    threshold: float = 0.5,
    rho_px: float = 3.0,
) -> PixelReport:
    """Score a probability map (or mask) against a true mask: IoU/P/R/F1 and relaxed P/R/F1.

    Args:
        pred: (H, W) float32 probabilities in [0, 1] (NaN = nodata, not counted) or bool mask.
        gt: (H, W) bool true road mask.
        valid: (H, W) bool, pixels to count (default: all non-NaN).
        threshold: road where ``pred >= threshold`` (float input only).
        rho_px: relaxed tolerance ρ, pixels.

    Returns:
        :class:`PixelReport`.

    Raises:
        InputError: shapes differ or invalid ``rho_px``.

    Example:
        >>> r = pixel_report(np.array([[0.9, 0.2, np.nan]]), np.array([[1, 0, 1]], bool))
        >>> r.valid_px, r.confusion.iou
        (2, 1.0)
    """
    pred = np.asarray(pred)
    ok = np.ones(pred.shape, bool) if valid is None else _as_mask("valid", valid).copy()
    if np.issubdtype(pred.dtype, np.floating):
        ok &= np.isfinite(pred)
        with np.errstate(invalid="ignore"):
            mask = pred >= threshold
    else:
        mask = _as_mask("pred", pred)
    return PixelReport(
        threshold=threshold,
        rho_px=rho_px,
        valid_px=int(np.count_nonzero(ok)),
        confusion=confusion(mask, gt, ok),
        relaxed=relaxed_scores(mask, gt, rho_px=rho_px, valid=ok),
    )
