"""Sparse skeleton pixels of one band → a pixel graph of nodes and ordered edge paths.

Why not skan: ``skan.Skeleton`` builds its graph from a dense skeleton *image* and decides
by itself which pixels are nodes. Stitching bands needs two things it does not offer: pixels
on a band seam that continue into the next band must become nodes (so the pieces can be
joined by exact global pixel coordinates), and pixels of the rows just outside the band must
count towards degrees without being traced. This module does that walk on the sparse pixel
list with numpy and ``scipy.sparse.csgraph`` (no per-pixel Python loop; one Python step per
traced edge).

Notation (``n`` pixels, all sorted by ``key = row * W + col``):

=============  ==============================================================================
pixel graph    8-neighbour adjacency, except that a diagonal step is dropped when one of the
               two pixels it cuts the corner of is also skeleton (so an L-corner is a path,
               not a triangle, and junction degrees are not inflated).
owned pixel    row in ``[own_start, own_stop)``; pixels of rows ``own_start - 1`` and
               ``own_stop`` are context: they count for degrees but are not traced.
junction       owned pixel of degree >= 3. Adjacent junction pixels form one node (cluster).
node pixel     owned pixel of degree != 2, or with a neighbour in a context row (seam node).
chain pixel    every other owned pixel (degree exactly 2).
edge           a maximal run of chain pixels between two node pixels, both node pixels
               included in its path; a ring of chain pixels gets a node at its first pixel.
=============  ==============================================================================
"""

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from roadx.vectorize.skeleton import SkeletonPixels

_FORWARD = ((0, 1), (1, -1), (1, 0), (1, 1))


@dataclass(frozen=True, slots=True)
class BandGraph:
    """The traced graph of one band; node labels are local (``0 .. n_nodes - 1``).

    Attributes:
        node_row_sum: ``(K,)`` float64 sum of the rows of each node's pixels.
        node_col_sum: ``(K,)`` float64 sum of the columns.
        node_px: ``(K,)`` int64 number of pixels in each node (junction clusters > 1).
        node_cut: ``(K,)`` bool, a pixel of the node is a cut end (scene edge / nodata).
        edges: ``(u, v, path)`` per edge; ``path`` indexes the band's pixel list, from the
            node pixel of ``u`` to the node pixel of ``v``.
        top_links: ``(L, 4)`` int64 ``(context pixel index in row own_start - 1, owned pixel
            index, owned node label, owned pixel is a junction)`` per step across the upper
            seam (pixel indices into the band's pixel list).
        bottom: ``(B, 3)`` int64 ``(col, node label, is junction pixel)`` of the node pixels
            in the last owned row, sorted by col, for the next band's ``top_links``.
    """

    node_row_sum: np.ndarray
    node_col_sum: np.ndarray
    node_px: np.ndarray
    node_cut: np.ndarray
    edges: list[tuple[int, int, np.ndarray]]
    top_links: np.ndarray
    bottom: np.ndarray


def pixel_pairs(rows: np.ndarray, cols: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the undirected edges of the pixel graph as index pairs ``(i, j)``, ``i < j``.

    Args:
        rows: ``(n,)`` int64 rows; together with ``cols`` sorted by ``row * width + col``.
        cols: ``(n,)`` int64 columns in ``[0, width)``.
        width: scene width in pixels.

    Returns:
        Two ``(E,)`` int64 index arrays.
    """
    n = rows.shape[0]
    key = rows * width + cols

    def lookup(target: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.minimum(np.searchsorted(key, target), max(n - 1, 0))
        return idx, valid & (key[idx] == target)

    everywhere = np.ones(n, dtype=bool)
    src, dst = [], []
    for dr, dc in _FORWARD:
        inside = (cols + dc >= 0) & (cols + dc < width)
        j, found = lookup(key + dr * width + dc, inside)
        if dr and dc:  # drop the diagonal when a 4-neighbour path around the corner exists
            _, below = lookup(key + dr * width, everywhere)
            _, beside = lookup(key + dc, inside)
            found &= ~(below | beside)
        i = np.nonzero(found)[0]
        src.append(i)
        dst.append(j[i])
    return np.concatenate(src), np.concatenate(dst)


def trace_band(px: SkeletonPixels, *, own_start: int, own_stop: int, width: int) -> BandGraph:
    """Trace the skeleton pixels of rows ``[own_start, own_stop)`` into nodes and edges.

    Args:
        px: skeleton pixels of rows ``[own_start - 1, own_stop]`` (context rows optional),
            sorted by (row, col).
        own_start: first owned row.
        own_stop: one past the last owned row.
        width: scene width in pixels.

    Returns:
        The band's graph; see :class:`BandGraph`.
    """
    n = len(px)
    i, j = pixel_pairs(px.rows, px.cols, width)
    deg = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
    owned = (px.rows >= own_start) & (px.rows < own_stop)
    inner = owned[i] & owned[j]
    cross = owned[i] ^ owned[j]
    seam = np.zeros(n, dtype=bool)
    seam[i[cross]] = True
    seam[j[cross]] = True
    junction = owned & (deg >= 3)
    node = owned & (deg > 0) & ((deg != 2) | seam)
    chain = owned & (deg == 2) & ~node

    # Node labels: junction clusters merge, every other node pixel is its own node.
    node_idx = np.nonzero(node)[0]
    k = node_idx.size
    slot = np.full(n, -1, dtype=np.int64)
    slot[node_idx] = np.arange(k)
    jj = inner & junction[i] & junction[j]
    links = sparse.coo_matrix((np.ones(int(jj.sum())), (slot[i[jj]], slot[j[jj]])), shape=(k, k))
    n_nodes, cluster = csgraph.connected_components(links, directed=False)
    label = np.full(n, -1, dtype=np.int64)
    label[node_idx] = cluster

    edges: list[tuple[int, int, np.ndarray]] = []
    direct = inner & node[i] & node[j] & ~(junction[i] & junction[j])
    for a, b in zip(i[direct], j[direct], strict=True):
        edges.append((int(label[a]), int(label[b]), np.array([a, b], dtype=np.int64)))
    rings = _trace_chains(i, j, inner, chain, label, edges)

    ring_px = np.array(rings, dtype=np.int64)
    all_px = np.concatenate([node_idx, ring_px])
    all_label = np.concatenate([cluster, n_nodes + np.arange(ring_px.size)])
    total = n_nodes + ring_px.size
    up = cross & ~owned[i]  # pair (context pixel above, owned pixel)
    top_links = np.column_stack([i[up], j[up], label[j[up]], junction[j[up]]])
    last = node & (px.rows == own_stop - 1)
    bottom = np.column_stack([px.cols[last], label[last], junction[last]]).astype(np.int64)
    return BandGraph(
        node_row_sum=np.bincount(all_label, weights=px.rows[all_px], minlength=total),
        node_col_sum=np.bincount(all_label, weights=px.cols[all_px], minlength=total),
        node_px=np.bincount(all_label, minlength=total).astype(np.int64),
        node_cut=np.bincount(all_label, weights=px.cut[all_px], minlength=total) > 0,
        edges=edges,
        top_links=top_links.astype(np.int64).reshape(-1, 4),
        bottom=bottom.reshape(-1, 3),
    )


def _trace_chains(
    i: np.ndarray,
    j: np.ndarray,
    inner: np.ndarray,
    chain: np.ndarray,
    label: np.ndarray,
    edges: list[tuple[int, int, np.ndarray]],
) -> list[int]:
    """Order every run of chain pixels and append it to ``edges``; new ring nodes are labelled.

    Runs are ordered without a per-pixel loop: each run gets one start pixel (an end of the
    run, or for a ring its first pixel with one ring step removed), all starts hang off a
    virtual source, and one breadth-first search from it ranks every pixel by its distance
    along its run.

    Returns:
        The pixel index of each ring's new node, in label order after the existing nodes
        (``label`` is updated in place for those pixels).
    """
    ci = np.nonzero(chain)[0]
    m = ci.size
    if m == 0:
        return []
    loc = np.full(chain.shape[0], -1, dtype=np.int64)
    loc[ci] = np.arange(m)
    cc = inner & chain[i] & chain[j]
    a, b = loc[i[cc]], loc[j[cc]]
    graph = sparse.coo_matrix((np.ones(a.size), (a, b)), shape=(m, m))
    n_runs, run = csgraph.connected_components(graph, directed=False)
    run_deg = np.bincount(a, minlength=m) + np.bincount(b, minlength=m)
    is_end = run_deg <= 1
    open_run = np.zeros(n_runs, dtype=bool)
    open_run[run[is_end]] = True
    candidate = np.nonzero(is_end | ~open_run[run])[0]
    start = np.full(n_runs, m, dtype=np.int64)
    np.minimum.at(start, run[candidate], candidate)

    ring_start = start[~open_run]
    if ring_start.size:  # cut one step next to each ring's start so the ring becomes a path
        is_start = np.zeros(m, dtype=bool)
        is_start[ring_start] = True
        touching = np.nonzero(is_start[a] | is_start[b])[0]
        owner = np.where(is_start[a[touching]], a[touching], b[touching])
        _, first = np.unique(owner, return_index=True)
        keep = np.ones(a.size, dtype=bool)
        keep[touching[first]] = False
        a, b = a[keep], b[keep]
    src = np.concatenate([a, np.full(n_runs, m)])
    dst = np.concatenate([b, start])
    walk = sparse.coo_matrix((np.ones(src.size), (src, dst)), shape=(m + 1, m + 1)).tocsr()
    order = csgraph.breadth_first_order(walk, m, directed=False, return_predecessors=False)
    rank = np.empty(m + 1, dtype=np.int64)
    rank[order] = np.arange(order.size)
    perm = np.lexsort((rank[:m], run))
    bounds = np.concatenate([[0], np.cumsum(np.bincount(run, minlength=n_runs))])

    # The node pixel(s) next to each chain pixel, grouped by chain pixel.
    cn = inner & (chain[i] ^ chain[j])
    chain_side = np.where(chain[i[cn]], i[cn], j[cn])
    node_side = np.where(chain[i[cn]], j[cn], i[cn])
    by_chain = np.argsort(loc[chain_side], kind="stable")
    nn_chain, nn_node = loc[chain_side][by_chain], node_side[by_chain]
    first_nn = np.searchsorted(nn_chain, np.arange(m))

    rings: list[int] = []
    next_label = int(label.max()) + 1 if label.size else 0
    for r in range(n_runs):
        lo, hi = bounds[r], bounds[r + 1]
        seq = ci[perm[lo:hi]]
        if open_run[r]:
            s, e = perm[lo], perm[hi - 1]
            u_px = nn_node[first_nn[s]]
            v_px = nn_node[first_nn[s] + 1] if s == e else nn_node[first_nn[e]]
            path = np.concatenate([[u_px], seq, [v_px]])
            edges.append((int(label[u_px]), int(label[v_px]), path))
        else:
            label[seq[0]] = next_label
            next_label += 1
            rings.append(int(seq[0]))
            edges.append((int(label[seq[0]]), int(label[seq[0]]), np.append(seq, seq[0])))
    return rings
