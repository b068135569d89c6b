"""Benchmark APLS (and the other network metrics) on a synthetic 2 km x 2 km street network.

The ground truth is a jittered street grid (blocks of about 150 m, a few hundred edges); the
"prediction" is a perturbed copy: vertices moved by up to 1.5 m, about 6 % of the street
segments dropped, each remaining segment cut with a 15 m gap with probability 3 %, and a few
spurious dead-end roads added. Prints graph sizes, timings and scores.

Usage (from the repository root, with roadx installed or PYTHONPATH=.):
    python benchmarks/bench_apls.py [--size-m 2000] [--block-m 150] [--seed 0] [--repeat 3]
        [--max-nodes 1000]
"""

import argparse
import time

import numpy as np
from shapely.geometry import LineString

from roadx.metrics.apls import AplsParams, apls
from roadx.metrics.graph import lines_to_graph
from roadx.metrics.network import compare_networks


def street_grid(size_m: float, block_m: float, rng: np.random.Generator) -> list[LineString]:
    """Return street segments (one per block side) of a jittered grid, metres."""
    n = int(size_m // block_m) + 1
    ticks = np.arange(n) * block_m
    jitter = rng.uniform(-0.2, 0.2, size=(n, n, 2)) * block_m
    nodes = np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1) + jitter  # (n, n, 2)
    lines = []
    for i in range(n):
        for j in range(n):
            if i + 1 < n:
                lines.append(LineString([nodes[i, j], nodes[i + 1, j]]))
            if j + 1 < n:
                lines.append(LineString([nodes[i, j], nodes[i, j + 1]]))
    return lines


def perturb(lines: list[LineString], rng: np.random.Generator) -> list[LineString]:
    """A plausible prediction: jitter, dropped roads, gaps and spurious spurs."""
    out = []
    for line in lines:
        if rng.random() < 0.06:
            continue
        coords = np.asarray(line.coords)
        # densify to 10 m vertices and jitter them by up to 1.5 m
        n = max(2, int(line.length // 10) + 1)
        ts = np.linspace(0, 1, n)
        pts = np.array([line.interpolate(t, normalized=True).coords[0] for t in ts])
        pts[1:-1] += rng.uniform(-1.5, 1.5, size=pts[1:-1].shape)
        pts[[0, -1]] = coords[[0, -1]]
        if rng.random() < 0.03 and line.length > 60:  # a 15 m gap in the middle
            mid = len(pts) // 2
            out.append(LineString(pts[: mid]))
            out.append(LineString(pts[mid + 1 :]))
        else:
            out.append(LineString(pts))
    for _ in range(len(lines) // 30):  # spurious spurs from existing vertices
        base = np.asarray(lines[rng.integers(len(lines))].coords[0])
        angle = rng.uniform(0, 2 * np.pi)
        out.append(LineString([base, base + 40 * np.array([np.cos(angle), np.sin(angle)])]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-m", type=float, default=2000.0)
    parser.add_argument("--block-m", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-nodes", type=int, default=AplsParams().max_nodes,
                        help="APLS node budget (raise it to score every control node)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    gt_lines = street_grid(args.size_m, args.block_m, rng)
    pred_lines = perturb(gt_lines, rng)
    t0 = time.perf_counter()
    g_gt, g_pred = lines_to_graph(gt_lines), lines_to_graph(pred_lines)
    t_graph = time.perf_counter() - t0
    print(f"network {args.size_m / 1000:.1f} km x {args.size_m / 1000:.1f} km: GT "
          f"{g_gt.number_of_edges()} edges / {g_gt.number_of_nodes()} nodes, prediction "
          f"{g_pred.number_of_edges()} edges / {g_pred.number_of_nodes()} nodes "
          f"(graphs built in {t_graph:.2f} s)")
    params = AplsParams(max_nodes=args.max_nodes)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = apls(g_gt, g_pred, params)
        times.append(time.perf_counter() - t0)
    print(f"APLS {result.apls:.4f} (gt->prop {result.gt_to_prop:.4f}, prop->gt "
          f"{result.prop_to_gt:.4f}); control nodes {result.n_control_nodes_gt} / "
          f"{result.n_control_nodes_prop}, pairs {result.n_pairs_gt} / {result.n_pairs_prop}, "
          f"sampled {result.sampled}")
    print(f"APLS time: best {min(times):.2f} s, mean {np.mean(times):.2f} s over {args.repeat} "
          f"runs (step {params.step_m} m, snap {params.snap_m} m, max_nodes {params.max_nodes})")
    t0 = time.perf_counter()
    full = compare_networks(gt_lines, pred_lines)
    print(f"all network metrics (graphs, CCQ, diff, APLS, junctions): "
          f"{time.perf_counter() - t0:.2f} s; CCQ quality {full.ccq.quality:.4f}, "
          f"junction F1 {full.junctions.f1:.4f}")


if __name__ == "__main__":
    main()
