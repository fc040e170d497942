"""The pointing game and energy-in-box, on hand-made heatmaps and boxes."""

import numpy as np
import pytest

from training.localization import Box, energy_in_box, peak, pointing_hit, read_boxes


def heatmap_with_peak(row: int, column: int, shape=(512, 512)) -> np.ndarray:
    heatmap = np.zeros(shape, dtype=np.float32)
    heatmap[row, column] = 1.0
    heatmap[row - 1 : row + 2, column - 1 : column + 2] += 0.5  # a blob, peak in the middle
    return heatmap / heatmap.max()


BOX = Box(x0=200, y0=100, x1=260, y1=140)  # columns 200-260, rows 100-140


def test_peak_inside_the_box_is_a_hit():
    assert peak(heatmap_with_peak(120, 230)) == (120, 230)
    assert pointing_hit(heatmap_with_peak(120, 230), BOX)


def test_peak_far_outside_is_a_miss():
    assert not pointing_hit(heatmap_with_peak(400, 400), BOX)
    assert not pointing_hit(heatmap_with_peak(120, 100), BOX)


@pytest.mark.parametrize(
    ("row", "column", "hit"),
    [
        (120, 274, True),  # centre x = 274.5: 14.5 px right of the box (x1 = 260)
        (120, 275, False),  # 15.5 px right
        (85, 230, True),  # centre y = 85.5: 14.5 px above (y0 = 100)
        (84, 230, False),  # 15.5 px above
    ],
)
def test_tolerance_is_fifteen_pixels_around_the_box(row, column, hit):
    # A peak in pixel (r, c) sits at (r + 0.5, c + 0.5).
    assert pointing_hit(heatmap_with_peak(row, column), BOX) == hit


def test_no_tolerance_and_an_empty_map():
    assert not pointing_hit(heatmap_with_peak(120, 265), BOX, tolerance=0)
    assert pointing_hit(heatmap_with_peak(120, 265), BOX, tolerance=15)
    assert not pointing_hit(np.zeros((64, 64)), Box(0, 0, 64, 64))


def test_energy_in_box_is_the_share_of_mass_inside():
    heatmap = np.zeros((100, 100), dtype=np.float32)
    heatmap[10:20, 10:20] = 1.0  # 100 inside
    heatmap[50:60, 50:55] = 2.0  # 100 outside
    assert energy_in_box(heatmap, Box(10, 10, 20, 20)) == pytest.approx(0.5)
    assert energy_in_box(heatmap, Box(0, 0, 100, 100)) == pytest.approx(1.0)
    assert energy_in_box(heatmap, Box(80, 80, 90, 90)) == 0.0
    assert energy_in_box(np.zeros((10, 10)), Box(0, 0, 5, 5)) == 0.0


def test_yolo_boxes_scale_to_the_scan_and_the_file_reads(tmp_path):
    box = Box.from_yolo(0.5, 0.25, 0.2, 0.1, width=400, height=200)
    assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx((160, 40, 240, 60))
    csv = tmp_path / "boxes.csv"
    csv.write_text("file,label,xc,yc,w,h\nglioma/a.jpg,glioma,0.5,0.25,0.2,0.1\n")
    (row,) = read_boxes(csv).values()
    assert (row.key, row.label, row.w) == ("glioma/a.jpg", "glioma", 0.2)
