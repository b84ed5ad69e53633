"""The DAVIS-interactive benchmark re-implemented (evaluation/interactive): the robot on synthetic error
masks, the frame it corrects, the curve / AUC / J&F@60s against a hand computation, and the session's
budget rules with a fake method."""
from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.morphology import medial_axis as skimage_medial_axis

from evaluation.interactive import metrics
from evaluation.interactive.metrics import ReportRow, SampleInfo
from evaluation.interactive.robot import Robot, bezier_curve, legacy_argsort, medial_axis, worst_frame
from evaluation.interactive.session import SampleSpec, Session
from tests.eval_fixtures import save_indexed
from util.io import DataError
from util.scribbles import Stroke, dilate3x3, scribbles_on_frame, write_scribbles

H, W = 48, 64


def frame_pair() -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and prediction of one frame: object 1's top half is missed (a 20 x 20 false negative,
    opening radius 0.1 * 20 = 2 px), a 30 x 30 block of background is called object 2 (radius 3 px),
    object 2 itself is right."""
    gt = np.zeros((H, W), np.uint8)
    gt[4:44, 4:24] = 1
    gt[40:48, 30:60] = 2
    pred = gt.copy()
    pred[4:24, 4:24] = 0
    pred[10:40, 30:60] = 2
    return gt, pred


def stroke_pixels(stroke) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(stroke.path) * [W, H]
    return np.floor(p[:, 1] + 1e-6).astype(int), np.floor(p[:, 0] + 1e-6).astype(int)


def test_robot_scribbles_lie_in_each_labels_false_negatives():
    gt, pred = frame_pair()
    scribbles = Robot(clock=lambda: 7.0).interact(gt[None], pred[None], 0, 2, "v")
    strokes = scribbles.frames[0]
    assert scribbles.num_frames == 1 and scribbles.sequence == "v"
    assert sorted({s.object_id for s in strokes}) == [0, 1]  # object 2 has no error: no stroke
    for s in strokes:
        assert len(s.path) == 1000 and s.start_time == 7.0 and s.end_time == 7.0
        p = np.asarray(s.path)
        assert (p >= 0).all() and (p < 1).all()
        ys, xs = stroke_pixels(s)
        region = (gt == s.object_id) & (pred != s.object_id)
        assert region[ys, xs].all()


def test_robot_with_a_fractional_radius_strays_at_most_a_pixel():
    # area 30 x 7 = 210 -> radius 0.1 * sqrt(210) = 1.45 px: skimage's disk of a fractional radius is off
    # centre (arange(-r, r + 1)), so the benchmark's opening shifts the region by up to a pixel
    gt = np.zeros((40, 64), np.uint8)
    gt[5:35, 5:30] = 1
    pred = gt.copy()
    pred[5:35, 5:12] = 0
    (stroke,) = Robot().frame_strokes(gt, pred, 1)
    p = np.asarray(stroke.path) * [64, 40]
    ys, xs = np.floor(p[:, 1] + 1e-6).astype(int), np.floor(p[:, 0] + 1e-6).astype(int)
    assert dilate3x3((gt == 1) & (pred != 1))[ys, xs].all()


def test_robot_is_deterministic_and_silent_on_a_perfect_prediction():
    gt, pred = frame_pair()
    a = Robot(clock=lambda: 0.0).interact(gt[None], pred[None], 0, 2)
    b = Robot(clock=lambda: 0.0).interact(gt[None], pred[None], 0, 2)
    assert a == b
    assert Robot().interact(np.stack([gt, gt]), np.stack([gt, gt]), 1, 2).is_empty()


def original_frames() -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Four frames made of discs, boxes and ellipses: a crescent of object 1; every label wrong; a missed
    disc and a false band, whose skeletons tie where networkx 2 and 3 order their searches differently;
    two objects shifted sideways (wrapping round the right edge), where two background skeletons have
    cycles with tied heaviest edges, so the edge cut follows the neighbour order of scikit-learn's
    `radius_neighbors_graph` (with neighbours in ascending order another edge goes and both strokes end
    elsewhere)."""
    yy, xx = np.mgrid[:60, :80]

    def disc(cy, cx, r):
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r

    gt1 = np.zeros((60, 80), np.uint8)
    gt1[disc(30, 40, 20)] = 1
    pred1 = np.zeros_like(gt1)
    pred1[disc(33, 44, 13)] = 1
    gt2 = np.zeros((60, 80), np.uint8)
    gt2[disc(25, 25, 14)] = 1
    gt2[10:50, 50:70] = 2
    pred2 = np.zeros_like(gt2)
    pred2[disc(25, 30, 16)] = 1
    pred2[20:58, 45:70] = 2
    gt3 = np.zeros((60, 80), np.uint8)
    gt3[disc(30, 40, 25)] = 1
    pred3 = gt3.copy()
    pred3[disc(30, 40, 12)] = 0
    pred3[5:12, 5:75] = 1
    yy4, xx4 = np.ogrid[:96, :128]

    def ellipse(cy, cx, ry, rx):
        return ((yy4 - cy) / ry) ** 2 + ((xx4 - cx) / rx) ** 2 <= 1

    gt4 = np.zeros((96, 128), np.uint8)
    gt4[ellipse(21, 16, 13, 15)] = 1
    gt4[ellipse(7, 92, 19, 18) | ellipse(47, 126, 17, 23)] = 2
    pred4 = gt4.copy()
    for obj, shift in ((1, 4), (2, 8)):
        moved = np.roll(gt4 == obj, shift, axis=1)
        pred4[(pred4 == obj) & ~moved] = 0
        pred4[moved] = obj
    return [(gt1, pred1, 1), (gt2, pred2, 2), (gt3, pred3, 1), (gt4, pred4, 2)]


# Computed by davisinteractive 1.0.4 (InteractiveScribblesRobot with the evaluation service's parameters) on
# numpy 1.23.5, networkx 2.8.8, scikit-learn 1.2.2, scikit-image 0.21 given the RandomState(0) medial-axis
# tie-break of the scikit-image releases it was written for.
ORIGINAL = [  # davisinteractive 1.0.4's robot on `original_frames()`: (object_id, points, first, last, mean)
    [
        (1, 1000, [0.7375, 0.45], [0.4875, 0.8166666666666667],
         [0.4680019150141977, 0.4565263628760727]),
    ],
    [
        (0, 1000, [0.4375, 0.2], [0.875, 0.9666666666666667],
         [0.6292577884615401, 0.6655587179487172]),
        (1, 1000, [0.25, 0.2], [0.25, 0.6333333333333333],
         [0.19014617908138035, 0.4166666666666669]),
        (2, 1000, [0.6375, 0.18333333333333332], [0.875, 0.3333333333333333],
         [0.7562499999999985, 0.2598469696969697]),
    ],
    [
        (0, 1000, [0.0625, 0.08333333333333333], [0.375, 0.08333333333333333],
         [0.21875000000000006, 0.1211159561273877]),
        (0, 1000, [0.625, 0.08333333333333333], [0.925, 0.18333333333333332],
         [0.7750000000000002, 0.12867133333361505]),
    ],
    [
        (0, 1000, [0.8671875, 0.0], [0.828125, 0.2604166666666667],
         [0.8791751477037926, 0.13020833333333323]),
        (0, 1000, [0.25, 0.1875], [0.25, 0.21875], [0.2578046809830651, 0.20312500000000008]),
        (0, 1000, [0.25, 0.23958333333333334], [0.25, 0.2708333333333333],
         [0.2578046809830651, 0.2552083333333335]),
        (0, 1000, [0.0, 0.3333333333333333], [0.0, 0.6666666666666666],
         [0.026488594655261325, 0.5000000000000001]),
        (1, 1000, [0.109375, 0.11458333333333333], [0.1015625, 0.34375],
         [0.06142804858429864, 0.22619345238095245]),
        (2, 1000, [0.65625, 0.0], [0.6875, 0.2604166666666667], [0.6374765963880538, 0.12616145833310696]),
        (2, 1000, [0.921875, 0.3541666666666667], [0.9140625, 0.6458333333333334], [0.8734282423137931, 0.5]),
    ],
]


@pytest.mark.parametrize("index", range(4))
def test_robot_equals_the_original_package(index):
    gt, pred, k = original_frames()[index]
    strokes = Robot(clock=lambda: 0.0).frame_strokes(gt, pred, k)
    assert [(s.object_id, len(s.path)) for s in strokes] == [(o, n) for o, n, *_ in ORIGINAL[index]]
    for s, (_, _, first, last, mean) in zip(strokes, ORIGINAL[index]):
        np.testing.assert_allclose(s.path[0], first, atol=1e-12)
        np.testing.assert_allclose(s.path[-1], last, atol=1e-12)
        np.testing.assert_allclose(np.mean(s.path, axis=0), mean, atol=1e-12)


def test_medial_axis_is_scikit_images_with_the_benchmarks_tie_break():
    class Legacy(np.random.Generator):  # scikit-image < 0.19 drew the tie-break from RandomState(0)
        def permutation(self, x):
            return np.random.RandomState(0).permutation(x)

    rng = np.random.default_rng(3)
    for _ in range(5):
        image = np.zeros((30, 40), bool)
        for _ in range(4):
            top, left = rng.integers(0, 20), rng.integers(0, 30)
            image[top:top + rng.integers(3, 12), left:left + rng.integers(3, 12)] = True
        expected = skimage_medial_axis(image, rng=Legacy(np.random.PCG64(0)))
        np.testing.assert_array_equal(medial_axis(image), expected)


def test_bezier_curve_runs_from_the_last_control_point_to_the_first():
    curve = bezier_curve(np.array([[0, 0], [2, 4], [4, 0]]), 5)
    np.testing.assert_allclose(curve, [[4, 0], [3, 1.5], [2, 2], [1, 1.5], [0, 0]])  # quadratic: t = 0, .25, ...
    long = np.arange(2002).reshape(1001, 2)
    assert bezier_curve(long) is not long and bezier_curve(long).shape == (1001, 2)  # more than 1000: kept


def test_worst_frame_among_candidates_skipping_corrected_frames():
    scores = [0.9, 0.2, 0.5, 0.7]
    assert worst_frame(scores) == 1
    assert worst_frame(scores, candidates=[0, 2]) == 2
    assert worst_frame(scores, used={1}) == 2
    assert worst_frame(scores, candidates=[1], used={1}) == 1  # every candidate used: all of them again
    assert worst_frame(scores, candidates=[1, 9]) == 1  # frames outside the video are ignored
    with pytest.raises(ValueError):
        worst_frame(scores, candidates=[9])


def test_ties_follow_numpy_1_argsort():
    # np.argsort(v) of numpy 1.23.5 (introsort), which the benchmark ran on; a stable sort would start at 1
    v = [0.5, 0.25, 0.5, 0.25, 1, 0.25, 0.5, 0.25, 0.5, 0.25, 0.25,
         1, 0.5, 0.25, 0.25, 0.5, 0.25, 0.5, 0.25, 0.25, 0.25]
    expected = [10, 18, 16, 14, 13, 19, 9, 20, 5, 3, 1, 7, 8, 6, 12, 15, 2, 17, 0, 11, 4]
    assert legacy_argsort(v) == expected
    assert worst_frame(v) == 10
    values = np.random.default_rng(0).random(50)  # no ties: any correct sort
    assert legacy_argsort(values) == np.argsort(values).tolist()


# ------------------------------------------------------------------------------------- metrics
def rows_for(sequence, idx, interaction, timing, per_object_frames):
    """Report rows with j = f = the given values (so j_and_f is that value)."""
    rows = []
    for frame, values in enumerate(per_object_frames):
        for obj, v in enumerate(values, start=1):
            rows.append(ReportRow(sequence, idx, interaction, obj, frame, v, v, v, timing))
    return rows


def test_curve_auc_and_jf_at_threshold_by_hand():
    samples = [SampleInfo("a", 1, 1), SampleInfo("b", 1, 2)]
    rows = (rows_for("a", 1, 1, 2.0, [[1.0], [0.5]])  # a: 0.75 at interaction 1, 2 s; interaction 2 missing
            + rows_for("b", 1, 1, 4.0, [[0.5, 0.25]])  # b: 0.5 / 0.25, 4 s
            + rows_for("b", 1, 2, 6.0, [[1.0, 0.5]]))  # b: 1.0 / 0.5, 6 s
    time, metric = metrics.curve(rows, samples, 2, time_per_object=10.0)
    # interaction 1: mean of (.75, .5, .25) = .5 at mean time (2 + 4) / 2 = 3;
    # interaction 2: a repeats .75 at no cost: mean (.75, 1, .5) = .75 at 3 + (0 + 6) / 2 = 6;
    # budget: (1 + 2) / 2 objects per video x 10 s = 15
    np.testing.assert_allclose(time, [0, 3, 6, 15])
    np.testing.assert_allclose(metric, [0, 0.5, 0.75, 0.75])
    # (3 (0 + .5) / 2 + 3 (.5 + .75) / 2 + 9 (.75 + .75) / 2) / 15 = (.75 + 1.875 + 6.75) / 15
    assert metrics.area_under_curve(time, metric) == pytest.approx(0.625, abs=1e-15)
    assert metrics.metric_at(time, metric, 4.5) == pytest.approx(0.625, abs=1e-15)
    summary = metrics.summary(rows, samples, 2, 10.0)
    assert list(summary) == ["auc", "metric_at_threshold", "curve"]
    assert summary["metric_at_threshold"] == {"threshold": 60, "J_AND_F": 0.75}  # past the budget: the last value
    assert summary["curve"]["time"] == time.tolist()


def test_report_and_summary_files(tmp_path):
    rows = rows_for("a", 1, 1, 2.0, [[1.0], [0.5]])
    path = metrics.write_report(rows, tmp_path / "report.csv")
    assert path.read_text().splitlines()[0] == ",".join(metrics.REPORT_COLUMNS)
    assert metrics.read_report(path) == rows
    data = metrics.summary(rows, [SampleInfo("a", 1, 1)], 1, 10.0)
    assert json.loads(metrics.write_summary(data, tmp_path / "summary.json").read_text()) == data


def test_frame_scores_per_object():
    gt, pred = frame_pair()
    jaccard, contour = metrics.frame_scores(gt[None], pred[None], 2)
    assert jaccard.shape == (1, 2) and jaccard[0, 0] == pytest.approx(400 / 800)
    assert jaccard[0, 1] == pytest.approx(240 / 1140)  # 8 x 30 true pixels inside 38 x 30 predicted
    assert contour[0, 0] < 1


# ------------------------------------------------------------------------------------- session
class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make_session(tmp_path, **kwargs):
    gt, pred = frame_pair()
    video = np.stack([gt, gt, gt])
    first = scribbles_on_frame([Stroke(((0.1, 0.5), (0.3, 0.5)), 1)], 0, 3, "v")
    specs = [SampleSpec("v", 1, write_scribbles(first, tmp_path / "001.json")),
             SampleSpec("v", 2, write_scribbles(first, tmp_path / "002.json"))]
    clock = FakeClock()
    session = Session(specs, lambda seq: video, clock=clock, robot=Robot(clock=lambda: 0.0), **kwargs)
    return session, clock, np.stack([pred, gt, pred])


def test_session_budget_drops_a_late_submission_and_fills_the_rest_at_no_cost(tmp_path):
    session, clock, masks = make_session(tmp_path, max_interactions=3, seconds_per_interaction=1.0)
    samples = iter(session)
    sample = next(samples)
    assert sample.num_objects == 2 and sample.budget == 6.0  # 1 s x 3 interactions x 2 objects
    assert sample.first().annotated_frames() == [0]
    # frames 0 and 2 are equally wrong, frame 1 is right: the tie goes to frame 0
    assert sample.submit(masks, seconds=2.0).annotated_frames() == [0]
    assert sample.submit(masks, seconds=3.5, candidates=[2]).annotated_frames() == [2]  # the method's candidate
    assert sample.scribbles.annotated_frames() == [0, 2]
    assert sample.submit(masks, seconds=1.0) is None  # 2 + 3.5 + 1 > 6: dropped, the sample is over
    assert session.dropped == 1 and sample.interaction == 2 and sample.finished

    sample = next(samples)  # measured by the session's clock this time
    sample.first()
    clock.now += 1.5
    assert sample.submit(masks).annotated_frames() == [0]
    clock.now += 0.5
    assert sample.submit(masks).annotated_frames() == [2]  # frame 0 was corrected already
    clock.now += 0.25
    assert sample.submit(masks) is None  # the third and last interaction
    assert next(samples, None) is None

    assert len(session.rows) == 2 * 3 * 2 + 3 * 3 * 2  # interactions x frames x objects
    assert [r.timing for r in session.rows[::6]] == [2.0, 3.5, 1.5, 0.5, 0.25]
    time = session.summary()["curve"]["time"]
    # interaction 3 of the first sample is filled in at no cost: (0 + 0.25) / 2; budget 2 objects x 3 s
    assert time == pytest.approx([0, 1.75, 3.75, 3.875, 6.0])
    values = session.summary()["curve"]["J_AND_F"]
    assert values[1] == values[2] == values[3] == values[4] > 0  # same masks: same scores, the fill repeats them


def test_session_rejects_misuse(tmp_path):
    session, _, masks = make_session(tmp_path)
    sample = next(iter(session))
    with pytest.raises(RuntimeError):
        sample.submit(masks)  # no scribble handed out yet
    sample.first()
    with pytest.raises(ValueError):
        sample.submit(masks[:2])


def test_session_on_a_davis_layout(tmp_path):
    gt, pred = frame_pair()
    root = tmp_path / "trainval"
    for t in range(2):
        save_indexed(root / "Annotations/480p/v" / f"{t:05d}.png", gt)
    first = scribbles_on_frame([Stroke(((0.1, 0.5), (0.3, 0.5)), 1)], 1, 2, "v")
    write_scribbles(first, root / "Scribbles/v/001.json")
    (root / "Scribbles/v/notes.txt").write_text("not a scribble")
    session = Session.from_davis(root, ["v"], max_interactions=1)
    assert [(s.sequence, s.scribble_idx) for s in session.specs] == [("v", 1)]
    for sample in session:
        assert sample.first() == first
        assert sample.submit(np.stack([pred, gt]), seconds=0.5) is None
    report = session.write_report(tmp_path / "out" / "report.csv")
    assert len(metrics.read_report(report)) == 2 * 2
    summary = json.loads(session.write_summary(tmp_path / "out" / "summary.json").read_text())
    assert summary["curve"]["time"] == [0.0, 0.5, 2 * 240.0 / 8]  # 2 objects x 30 s x 1 interaction
    with pytest.raises(DataError, match="no scribbles for this video"):
        Session.from_davis(root, ["w"])
    write_scribbles(scribbles_on_frame([], 0, 2, "other"), root / "Scribbles/v/002.json")
    with pytest.raises(DataError, match="is a scribble of 'other'"):
        for sample in Session.from_davis(root, ["v"]):
            sample.first()
