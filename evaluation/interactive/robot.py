"""The DAVIS-interactive robot: the scribbles a simulated user draws where a prediction is wrong.

The benchmark (Caelles et al., "The 2018 DAVIS Challenge on Video Object Segmentation", interactive track;
the `davisinteractive` package's `InteractiveScribblesRobot` with the evaluation service's parameters)
corrects one frame per interaction. For every label of the frame, background included, it

1. takes the false-negative region (ground truth is the label, prediction is not); an empty one is skipped;
2. opens it (grey minimum then maximum, `skimage.filters.rank`) with a disk of radius
   `kernel_size / 2 * sqrt(area)` (kernel_size 0.2, so a tenth of the side of a square of that area),
   capped at `max_kernel_radius` (16 px); a radius of 1 px or less leaves the region as it is, and while
   the opening empties the region the radius shrinks by 10 % (the last, empty, opening is kept if the
   radius falls to 1 px). The disk is skimage's `disk` of that fractional radius, whose offsets
   arange(-r, r + 1) are off centre, so the opening can shift the region by a pixel (and the scribble
   stray that far outside it);
3. skeletonises it with the medial axis (padded by one pixel), whose pixels become the nodes of a graph
   joining pixels at most sqrt(2) apart (8-neighbours), weighted by their distance: scikit-learn's
   `radius_neighbors_graph` read into networkx, as the benchmark builds it;
4. splits the graph into connected parts, and in each removes cycles one at a time (`networkx.find_cycle`)
   by deleting the heaviest edge of the cycle (the first one on ties); parts of fewer than `min_nb_nodes`
   (4) pixels are dropped;
5. takes the longest path of each tree by two breadth-first searches (hop counts): the node farthest
   from the part's first node, then the longest shortest path from that node;
6. fits a Bezier curve of `nb_points` (1000) points to the path's pixels (x, y) (Bernstein weights
   C(n, i) t^(n-i) (1-t)^i, so the curve runs from the path's last pixel to its first; a path of more than
   1000 pixels is kept as it is) and divides by (W, H), giving normalised coordinates in [0, 1).
   Note the benchmark normalises by (W, H) here while its rasteriser scales by (W - 1, H - 1).

Each path becomes one stroke of that label on the corrected frame, stamped with the clock before the
label's work began and after it ended (`start_time`, `end_time`, seconds since the epoch by default).

Randomness and order. The medial axis breaks ties between pixels of equal distance and cornerness with a
random permutation; the scikit-image releases of the benchmark's time drew it from
`numpy.random.RandomState(0)` (fixed), current ones from an unseeded generator. `medial_axis` here is
our own implementation of the same algorithm that draws the permutation from `RandomState(tie_seed)`,
`tie_seed=0` being the benchmark's: the robot is deterministic. Where a cycle has several heaviest edges
or several leaves tie for the farthest, the choice follows the graph's orders. The benchmark ran on
networkx 2, whose connected components and hop counts keep each breadth-first level as a Python set;
`_reached` and `_hops` build those sets the same way (networkx 3 uses lists, which orders ties
differently), and the rest (`subgraph`, `find_cycle`, `single_source_shortest_path`) is unchanged in
networkx 3. The graph's nodes are the pixels in raster order and each node's neighbours come in the
order scikit-learn's KD-tree lists them, read row by row as networkx 2 read the sparse matrix: the
benchmark's graph, so its ties fall the same way.

The frame to correct is the method's candidate frame with the worst mean J&F (`worst_frame`), ties
resolved in the order of numpy 1.x's default argsort (`legacy_argsort`), as the benchmark.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence

import networkx as nx
import numpy as np
from scipy import ndimage
from scipy.special import comb
from skimage.filters import rank
from skimage.morphology import disk
from sklearn.neighbors import radius_neighbors_graph

from util.scribbles import Scribbles, Stroke

KERNEL_SIZE = 0.2  # evaluation service: opening disk radius = KERNEL_SIZE / 2 * sqrt(region area)
MAX_KERNEL_RADIUS = 16  # px
MIN_NB_NODES = 4  # skeleton parts with fewer pixels are dropped
NB_POINTS = 1000  # points of each Bezier-fitted scribble
SHRINK = 0.9  # the radius shrinks by this factor while the opening empties the region
NEIGHBOUR_RADIUS = math.sqrt(2)  # skeleton pixels at most this far apart are joined


class Robot:
    """The benchmark's scribble robot (see the module docstring). `clock` stamps the strokes' times;
    `tie_seed` seeds the medial axis' tie-break (0: the benchmark's)."""

    def __init__(self, kernel_size: float = KERNEL_SIZE, max_kernel_radius: float = MAX_KERNEL_RADIUS,
                 min_nb_nodes: int = MIN_NB_NODES, nb_points: int = NB_POINTS, tie_seed: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        if not 0 <= kernel_size < 1:
            raise ValueError("kernel_size must lie in [0, 1)")
        self.kernel_size, self.max_kernel_radius = kernel_size, max_kernel_radius
        self.min_nb_nodes, self.nb_points, self.tie_seed, self.clock = min_nb_nodes, nb_points, tie_seed, clock

    def interact(self, gt: np.ndarray, pred: np.ndarray, frame: int, num_objects: int,
                 sequence: str = "") -> Scribbles:
        """The robot's scribbles for frame `frame` of a video: `gt` and `pred` are (T, H, W) label maps
        (or one (H, W) frame, then `frame` only places it). Labels 0..num_objects are corrected."""
        gt, pred = np.asarray(gt), np.asarray(pred)
        if gt.shape != pred.shape:
            raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
        num_frames = gt.shape[0] if gt.ndim == 3 else frame + 1
        gt_f, pred_f = (gt[frame], pred[frame]) if gt.ndim == 3 else (gt, pred)
        out = Scribbles.empty(num_frames, sequence)
        out.frames[frame] = self.frame_strokes(gt_f, pred_f, num_objects)
        return out

    def frame_strokes(self, gt: np.ndarray, pred: np.ndarray, num_objects: int) -> list[Stroke]:
        """The strokes for one (H, W) frame, label 0 (background) first, then 1..num_objects."""
        h, w = gt.shape
        size = np.asarray([w, h], dtype=np.float64)
        strokes = []
        for obj in range(num_objects + 1):
            start = self.clock()
            error = (gt == obj) & (pred != obj)
            if not error.any():
                continue
            skeleton = self.skeleton(error)
            if not skeleton.any():
                continue
            graph, points = skeleton_graph(skeleton)
            trees = acyclic_parts(graph, self.min_nb_nodes)
            curves = [bezier_curve(points[longest_path(tree)], self.nb_points) for tree in trees]
            end = self.clock()
            strokes += [Stroke(tuple(map(tuple, (c / size).tolist())), obj, start, end) for c in curves]
        return strokes

    def correct(self, gt: np.ndarray, pred: np.ndarray, jaccard: np.ndarray, contour: np.ndarray,
                num_objects: int, candidates: Collection[int] | None = None, used: Collection[int] = (),
                sequence: str = "") -> tuple[int, Scribbles]:
        """The benchmark's answer to a submission: the frame to correct (`worst_frame` of the (T, K)
        per-frame J and F among `candidates`, skipping the `used` ones) and the scribbles drawn on it."""
        frame = worst_frame(mean_j_and_f(jaccard, contour), candidates, used)
        return frame, self.interact(gt, pred, frame, num_objects, sequence)

    def kernel_radius(self, area: int) -> float:
        return min(self.kernel_size * math.sqrt(area) * 0.5, self.max_kernel_radius)

    def skeleton(self, region: np.ndarray) -> np.ndarray:
        """The medial axis of `region` after the opening (steps 2 and 3)."""
        region = np.asarray(region, dtype=np.uint8)
        radius = self.kernel_radius(int(np.count_nonzero(region)))
        opened = region
        while radius > 1:
            footprint = disk(radius)
            opened = rank.maximum(rank.minimum(region.copy(), footprint), footprint)
            if opened.any():
                break
            radius *= SHRINK
        padded = np.pad(opened.astype(bool), 1)
        return medial_axis(padded, self.tie_seed)[1:-1, 1:-1]


# ------------------------------------------------------------------------------------- medial axis
def _pattern(code: int) -> np.ndarray:
    return np.array([[code >> (3 * r + c) & 1 for c in range(3)] for r in range(3)], dtype=bool)


def _keep_table() -> np.ndarray:
    """For every 3x3 code, whether the centre pixel must stay: it is foreground and either removing it
    changes the number of 8-connected parts of the neighbourhood or it has at most one neighbour."""
    eight = np.ones((3, 3), dtype=bool)
    keep = np.zeros(512, dtype=bool)
    for code in range(512):
        if not code & 16:
            continue
        pattern = _pattern(code)
        without = _pattern(code & ~16)
        changes = ndimage.label(pattern, eight)[1] != ndimage.label(without, eight)[1]
        keep[code] = changes or pattern.sum() < 3
    return keep


_KEEP: np.ndarray | None = None


def medial_axis(image: np.ndarray, tie_seed: int = 0) -> np.ndarray:
    """The medial axis of a boolean image as scikit-image computes it: the foreground pixels are visited
    by increasing distance to the background (Euclidean), then increasing cornerness (the number of
    background pixels in the 3x3 neighbourhood: corners last), then a random permutation drawn from
    `numpy.random.RandomState(tie_seed)`; each visited pixel is removed unless `_keep_table` says its
    current neighbourhood needs it. One pass."""
    global _KEEP
    if _KEEP is None:
        _KEEP = _keep_table()
    image = np.asarray(image, dtype=bool)
    distance = ndimage.distance_transform_edt(image)
    padded = np.pad(image, 1).astype(np.int32)
    h, w = image.shape
    foreground = sum(padded[r:r + h, c:c + w] for r in range(3) for c in range(3))
    rows, cols = np.nonzero(image)
    tiebreak = np.random.RandomState(tie_seed).permutation(np.arange(rows.size))
    order = np.lexsort((tiebreak, 9 - foreground[image], distance[image]))
    grid = np.pad(image, 1).astype(np.uint8).ravel().tolist()
    stride = w + 2
    offsets = [(r - 1) * stride + (c - 1) for r in range(3) for c in range(3)]
    keep = _KEEP.tolist()
    for k in order.tolist():
        p = (int(rows[k]) + 1) * stride + int(cols[k]) + 1
        code = 16
        for bit, off in enumerate(offsets):
            if bit != 4 and grid[p + off]:
                code |= 1 << bit
        grid[p] = 1 if keep[code] else 0
    return np.asarray(grid, dtype=bool).reshape(h + 2, w + 2)[1:-1, 1:-1]


# ------------------------------------------------------------------------------------- graph
def skeleton_graph(skeleton: np.ndarray) -> tuple[nx.Graph, np.ndarray]:
    """The skeleton's pixels as nodes 0..N-1 in raster order, pixels at most sqrt(2) apart (8-neighbours)
    joined by edges weighted by their distance, built as the benchmark builds it: scikit-learn's
    `radius_neighbors_graph` (its KD-tree orders each row's neighbours) read row by row into networkx
    (`from_scipy_sparse_array`, networkx 2's `from_scipy_sparse_matrix`), so that each node's neighbours
    come in the benchmark's order; and the (N, 2) pixel (x, y) of each node."""
    ys, xs = np.nonzero(skeleton)
    points = np.stack([xs, ys], axis=1)
    return nx.from_scipy_sparse_array(radius_neighbors_graph(points, NEIGHBOUR_RADIUS, mode="distance")), points


def acyclic_parts(graph: nx.Graph, min_nodes: int = MIN_NB_NODES) -> list[nx.Graph]:
    """The connected parts of `graph` (in the order of their first node), each made a tree by removing,
    cycle after cycle, the cycle's heaviest edge (the first on ties, `networkx.find_cycle`'s order); parts
    of fewer than `min_nodes` nodes are dropped. Each part is `graph.subgraph(nodes).copy()` of the set of
    nodes found as networkx 2 finds it (`_reached`): networkx orders a part's nodes by that set when the
    part is under half the graph, so the set's construction decides ties."""
    parts, seen = [], set()
    for start in graph:
        if start in seen:
            continue
        nodes = _reached(graph.adj, start)
        seen.update(nodes)
        part = graph.subgraph(nodes).copy()
        while True:
            try:
                cycle = nx.find_cycle(part)
            except nx.NetworkXNoCycle:
                break
            weights = [graph[u][v]["weight"] for u, v in cycle]
            part.remove_edge(*cycle[int(np.argmax(weights))])
        if len(part) >= min_nodes:
            parts.append(part)
    return parts


def _reached(adj, start) -> set:
    """The nodes reachable from `start`, as a set built level by level (each level a set), the way
    networkx 2's connected components build it."""
    reached, level = set(), {start}
    while level:
        current, level = level, set()
        for node in current:
            if node not in reached:
                reached.add(node)
                level.update(adj[node])
    return reached


def _hops(adj, start) -> dict:
    """Hop counts from `start` in the order networkx 2's `single_source_shortest_path_length` lists them:
    breadth first, each level a set (iterated in set order), the next level the union of the neighbours
    of the nodes first met in this one."""
    hops, level, depth = {}, {start}, 0
    while level:
        met = []
        for node in level:
            if node not in hops:
                hops[node] = depth
                met.append(node)
        if len(hops) == len(adj):
            break
        level = set()
        for node in met:
            level.update(adj[node])
        depth += 1
    return hops


def longest_path(tree: nx.Graph) -> list[int]:
    """The nodes of a longest path (in hops) of a tree: from the node farthest from the tree's first node
    (the first such in `_hops`' order) to the first farthest node from it in breadth-first order."""
    first = next(iter(tree.nodes()))
    far = max(_hops(tree.adj, first).items(), key=lambda item: item[1])[0]
    return list(max(nx.single_source_shortest_path(tree, far).values(), key=len))


def bezier_curve(points: np.ndarray, nb_points: int = NB_POINTS) -> np.ndarray:
    """`nb_points` (at most 1000) points of the Bezier curve with control points `points` (N, 2), from
    the last control point (t = 0) to the first; more control points than that are returned unchanged."""
    nb_points = min(nb_points, NB_POINTS)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError("points must have shape (N, 2)")
    if len(points) > nb_points:
        return points
    t = np.linspace(0.0, 1.0, nb_points).reshape(1, -1)
    i = np.arange(len(points)).reshape(-1, 1)
    n = len(points) - 1
    weights = comb(n, i) * (t ** (n - i)) * (1 - t) ** i
    return weights.T.dot(points)


# ------------------------------------------------------------------------------------- frame choice
def mean_j_and_f(jaccard: np.ndarray, contour: np.ndarray) -> np.ndarray:
    """Per frame, the mean over objects of 0.5 J + 0.5 F ((T, K) arrays in, (T,) out): the score the
    frame choice ranks by."""
    return (0.5 * np.asarray(jaccard) + 0.5 * np.asarray(contour)).mean(axis=1)


def worst_frame(scores: np.ndarray, candidates: Collection[int] | None = None,
                used: Collection[int] = ()) -> int:
    """The frame to correct: the lowest-scoring of `candidates` (None or empty: every frame) that the
    robot has not corrected yet (`used`), or of all `candidates` when it has corrected them all. Equal
    scores are ordered as numpy 1.x's default argsort orders them (`legacy_argsort`). Candidates outside
    the video are ignored; ValueError when none is left."""
    scores = np.asarray(scores, dtype=np.float64)
    everything = set(range(len(scores)))
    wanted = set(candidates) if candidates else everything
    fresh = wanted - set(used)
    pool = (fresh or wanted) & everything
    for t in legacy_argsort(scores):
        if t in pool:
            return int(t)
    raise ValueError(f"no candidate frame inside the video (0..{len(scores) - 1}): {sorted(wanted)}")


def legacy_argsort(values: Sequence[float]) -> list[int]:
    """The indices that sort `values` ascending, in the order numpy 1.x's default `np.argsort` (introsort:
    median-of-three quicksort, insertion sort below 16 elements, heapsort past 2 log2(n) levels) gives,
    equal values included. Newer numpy may order ties differently (vectorised sorts)."""
    v = [float(x) for x in values]
    a = list(range(len(v)))
    n = len(a)

    def less(x: float, y: float) -> bool:
        return x < y or (y != y and x == x)

    stack: list[tuple[int, int, int]] = []
    lo, hi = 0, n - 1
    depth = 2 * (n.bit_length() - 1) if n else 0
    while True:
        if depth < 0:
            a[lo:hi + 1] = _heap_argsort(v, a[lo:hi + 1], less)
        else:
            while hi - lo > 15:
                mid = lo + ((hi - lo) >> 1)
                if less(v[a[mid]], v[a[lo]]):
                    a[mid], a[lo] = a[lo], a[mid]
                if less(v[a[hi]], v[a[mid]]):
                    a[hi], a[mid] = a[mid], a[hi]
                if less(v[a[mid]], v[a[lo]]):
                    a[mid], a[lo] = a[lo], a[mid]
                pivot = v[a[mid]]
                i, j = lo, hi - 1
                a[mid], a[j] = a[j], a[mid]
                while True:
                    i += 1
                    while less(v[a[i]], pivot):
                        i += 1
                    j -= 1
                    while less(pivot, v[a[j]]):
                        j -= 1
                    if i >= j:
                        break
                    a[i], a[j] = a[j], a[i]
                a[i], a[hi - 1] = a[hi - 1], a[i]
                depth -= 1
                if i - lo < hi - i:
                    stack.append((i + 1, hi, depth))
                    hi = i - 1
                else:
                    stack.append((lo, i - 1, depth))
                    lo = i + 1
            for i in range(lo + 1, hi + 1):
                item = a[i]
                j = i
                while j > lo and less(v[item], v[a[j - 1]]):
                    a[j] = a[j - 1]
                    j -= 1
                a[j] = item
        if not stack:
            return a
        lo, hi, depth = stack.pop()


def _heap_argsort(v: list[float], idx: list[int], less) -> list[int]:
    """numpy's heapsort of the indices `idx` by `v` (1-based heap)."""
    a = [0, *idx]
    n = len(idx)

    def sift_down(item: int, i: int, n: int) -> None:
        """Put `item` at heap position i of a[1..n], moving larger children up."""
        j = i << 1
        while j <= n:
            if j < n and less(v[a[j]], v[a[j + 1]]):
                j += 1
            if less(v[item], v[a[j]]):
                a[i], i, j = a[j], j, j + j
            else:
                break
        a[i] = item

    for start in range(n >> 1, 0, -1):
        sift_down(a[start], start, n)
    while n > 1:
        item = a[n]
        a[n] = a[1]
        n -= 1
        sift_down(item, 1, n)
    return a[1:]
