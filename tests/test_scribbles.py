"""The DAVIS scribble files (util/scribbles.py): reading and writing, the benchmark's rasteriser on
hand-drawn strokes against hand-computed pixels, the S2M input maps, clicks, and bad files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from util.io import DataError
from util.scribbles import (
    Scribbles,
    Stroke,
    background_stroke,
    click_stroke,
    line_pixels,
    rasterise,
    read_scribbles,
    s2m_maps,
    scribbles_on_frame,
    write_scribbles,
)

HUMAN = {  # the shape of a DAVIS 2017 scribble file (times in ms, as the human ones)
    "scribbles": [
        [],
        [{"path": [[0.25, 0.5], [0.2501, 0.49], [0.3, 0.4]], "object_id": 1, "start_time": 0, "end_time": 1712},
         {"path": [[0.9, 0.1]], "object_id": 0, "start_time": 2275, "end_time": 2518}],
        [],
    ],
    "sequence": "bear",
}


def write_json(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_round_trip_keeps_every_value(tmp_path):
    src = write_json(tmp_path / "001.json", HUMAN)
    scribbles = read_scribbles(src, num_frames=3, num_objects=1)
    assert scribbles.sequence == "bear" and scribbles.num_frames == 3 and scribbles.annotated_frames() == [1]
    assert scribbles.frames[1][0] == Stroke(((0.25, 0.5), (0.2501, 0.49), (0.3, 0.4)), 1, 0, 1712)
    out = write_scribbles(scribbles, tmp_path / "out" / "copy.json")
    assert json.loads(out.read_text()) == HUMAN
    assert read_scribbles(out) == scribbles
    assert not list(out.parent.glob(".partial-*"))  # written through the atomic helper


def test_annotated_frame_and_padding(tmp_path):
    data = dict(HUMAN, annotated_frame=1, scribbles=HUMAN["scribbles"][:2])
    scribbles = read_scribbles(write_json(tmp_path / "s.json", data), num_frames=4)
    assert scribbles.num_frames == 4 and scribbles.annotated_frame == 1  # padded to the video's length
    assert json.loads(write_scribbles(scribbles, tmp_path / "o.json").read_text())["annotated_frame"] == 1


def test_bresenham_matches_hand_computed_pixels():
    # the benchmark's variant: the shorter coordinate advances after a pixel whose error 2*minor - major (+ ...) >= 0
    assert line_pixels(0, 0, 4, 1) == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 1)]
    assert line_pixels(4, 1, 8, 4) == [(4, 1), (5, 2), (6, 3), (7, 3), (8, 4)]
    assert line_pixels(0, 0, 2, 1) == [(0, 0), (1, 1), (2, 1)]
    assert line_pixels(0, 0, 0, -3) == [(0, 0), (0, -1), (0, -2), (0, -3)]
    assert line_pixels(3, 3, 0, 0) == [(3, 3), (2, 2), (1, 1), (0, 0)]  # equal axes: steps along y
    assert line_pixels(5, 5, 5, 5) == [(5, 5)]


def test_rasterise_hand_drawn_strokes():
    h, w = 5, 9  # points scale by (w - 1, h - 1) = (8, 4), then truncate
    strokes = [
        Stroke(((0.0, 0.0), (0.5, 0.25), (1.0, 1.0)), 1),  # pixels (0,0) (4,1) (8,4), joined
        Stroke(((0.99, 0.6),), 0),  # 7.92, 2.4 -> (7, 2): a one-point background stroke
        Stroke(((0.0, 0.0),), 2),  # a later stroke wins the pixel (0, 0)
    ]
    got = rasterise(scribbles_on_frame(strokes, 1, 2), 1, h, w)
    expected = np.full((h, w), -1)
    for x, y in [(1, 0), (2, 1), (3, 1), (4, 1), (5, 2), (6, 3), (7, 3), (8, 4)]:
        expected[y, x] = 1
    expected[2, 7] = 0
    expected[0, 0] = 2
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int64
    assert (rasterise(scribbles_on_frame(strokes, 1, 2), 0, h, w) == -1).all()  # the other frame is empty


def test_s2m_maps_dilate_by_3x3_and_split_positive_from_negative():
    stroke_map = np.full((4, 5), -1)
    stroke_map[0, 0] = 1  # the object's stroke
    stroke_map[3, 4] = 0  # a background stroke
    stroke_map[0, 4] = 2  # another object's stroke
    pos, neg = s2m_maps(stroke_map, 1)
    np.testing.assert_array_equal(pos, [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(neg, [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 1, 1]])
    assert pos.dtype == np.float32 and neg.dtype == np.float32
    pos2, neg2 = s2m_maps(stroke_map, 2)
    assert pos2[0, 3] == 1 and neg2[0, 0] == 1 and neg2[3, 3] == 1


def test_clicks_and_background_strokes():
    click = click_stroke(0.5, 0.5, 3)
    assert click == Stroke(((0.5, 0.5),), 3)
    got = rasterise([click], None, 5, 5)
    assert list(zip(*np.nonzero(got != -1))) == [(2, 2)]
    short = click_stroke(0.0, 0.5, 1, height=5, width=9, length_px=4)  # clipped at the left edge
    assert rasterise([short], None, 5, 9)[2].tolist() == [1, 1, 1, -1, -1, -1, -1, -1, -1]
    assert background_stroke([[0, 0], [1, 1]]).object_id == 0
    with pytest.raises(ValueError):
        click_stroke(1.5, 0.5, 1)


def test_fused_scribbles_keep_order():
    a = scribbles_on_frame([Stroke(((0.1, 0.1),), 1)], 0, 2, "v")
    b = scribbles_on_frame([Stroke(((0.2, 0.2),), 0)], 0, 2, "v")
    assert [s.object_id for s in a.fused(b).frames[0]] == [1, 0]
    with pytest.raises(ValueError):
        a.fused(Scribbles.empty(3))


BAD_FILES = {
    "not JSON": ('{"scribbles": [[', {}),
    "no scribbles list": ({"sequence": "x"}, {}),
    "a frame that is not a list": ({"scribbles": [{}]}, {}),
    "a stroke without a path": ({"scribbles": [[{"object_id": 1}]]}, {}),
    "coordinate above 1": ({"scribbles": [[{"path": [[1.5, 0.2]], "object_id": 1}]]}, {}),
    "negative coordinate": ({"scribbles": [[{"path": [[0.5, -0.01]], "object_id": 1}]]}, {}),
    "NaN coordinate": ('{"scribbles": [[{"path": [[NaN, 0.2]], "object_id": 1}]]}', {}),
    "a point that is not a pair": ({"scribbles": [[{"path": [[0.5]], "object_id": 1}]]}, {}),
    "an object id that is not a label": ({"scribbles": [[{"path": [[0.5, 0.5]], "object_id": "1"}]]}, {}),
    "unknown object": ({"scribbles": [[{"path": [[0.5, 0.5]], "object_id": 3}]]}, {"num_objects": 2}),
    "unknown frame": ({"scribbles": [[], [], [], [{"path": [[0.5, 0.5]], "object_id": 1}]]}, {"num_frames": 3}),
    "annotated frame outside": ({"scribbles": [[]], "annotated_frame": 4}, {}),
    "times that are not numbers": ({"scribbles": [[{"path": [[0.5, 0.5]], "object_id": 1, "start_time": "x"}]]},
                                   {}),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_scribble_file_is_one_error_naming_it(name, tmp_path):
    data, kwargs = BAD_FILES[name]
    path = write_json(tmp_path / "001.json", data)
    with pytest.raises(DataError) as info:
        read_scribbles(path, **kwargs)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and info.value.fix


def test_missing_scribble_file(tmp_path):
    with pytest.raises(DataError, match="no such scribble file"):
        read_scribbles(tmp_path / "nothing.json")
