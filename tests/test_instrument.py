"""Instrument files: pixels, the pixel size each vendor writes, and the data bar."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from segsem_lite.dataset import real_samples
from segsem_lite.errors import SegSEMError
from segsem_lite.instrument import find_data_bar, read_sem


def _noise(shape=(120, 160), seed=0):
    return np.random.default_rng(seed).integers(40, 200, shape, dtype=np.uint8)


def test_zeiss_palette_tiff_gives_grey_pixels_and_its_pixel_size():
    sem = read_sem(real_samples() / "Ctest1.tif")
    with tifffile.TiffFile(real_samples() / "Ctest1.tif") as tif:
        index = tif.pages[0].asarray()
        grey = tif.pages[0].tags["ColorMap"].value[0] // 257
    np.testing.assert_array_equal(sem.image, grey[index])
    assert sem.pixel_size_nm == pytest.approx(0.9009) and sem.pixel_size_source.startswith("Zeiss CZ_SEM")
    assert "palette with a grey map" in sem.notes


def test_hitachi_comment_gives_the_pixel_size():
    sem = read_sem(real_samples() / "Test02.tif")
    assert sem.pixel_size_nm == pytest.approx(0.8241992) and sem.pixel_size_source.startswith("Hitachi")


def test_fei_tag_sidecars_and_resolution_tags(tmp_path):
    img = _noise()
    tifffile.imwrite(tmp_path / "fei.tif", img, extratags=[(34682, "s", 0, "[Scan]\r\nPixelWidth=2.5e-09\r\n", True)])
    assert read_sem(tmp_path / "fei.tif").pixel_size_nm == pytest.approx(2.5)
    Image.fromarray(img).save(tmp_path / "hitachi.png")
    (tmp_path / "hitachi.txt").write_text("SerialNumber=1\nPixelSize=1.25\n")
    found = read_sem(tmp_path / "hitachi.png")
    assert found.pixel_size_nm == pytest.approx(1.25) and "hitachi.txt" in found.pixel_size_source
    Image.fromarray(img).save(tmp_path / "jeol.bmp")
    (tmp_path / "jeol.txt").write_text("$CM_MAG 50000\n$$SM_MICRON_BAR 200\n$$SM_MICRON_MARKER 1um\n")
    assert read_sem(tmp_path / "jeol.bmp").pixel_size_nm == pytest.approx(5.0)
    tifffile.imwrite(tmp_path / "cm.tif", img, resolution=(1e6, 1e6), resolutionunit="CENTIMETER")
    assert read_sem(tmp_path / "cm.tif").pixel_size_nm == pytest.approx(10.0)
    tifffile.imwrite(tmp_path / "screen.tif", img, resolution=(72, 72), resolutionunit="INCH")
    assert read_sem(tmp_path / "screen.tif").pixel_size_nm is None  # 72 dpi is a screen, not a microscope


def test_pages_colour_and_depth(tmp_path):
    img = _noise()
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([img, 255 - img]))
    sem = read_sem(tmp_path / "stack.tif")
    np.testing.assert_array_equal(sem.image, img)
    assert "first of 2 pages" in sem.notes
    Image.fromarray(np.repeat(img[..., None], 3, axis=2)).save(tmp_path / "grey_rgb.png")
    np.testing.assert_array_equal(read_sem(tmp_path / "grey_rgb.png").image, img)  # silently: it is grey
    colour = np.zeros(img.shape + (3,), np.uint8)
    colour[..., 0] = img
    Image.fromarray(colour).save(tmp_path / "colour.jpg", quality=95)
    with pytest.warns(UserWarning, match="colour image converted"):
        assert read_sem(tmp_path / "colour.jpg").image.ndim == 2
    deep = (img.astype(np.uint16) * 257)
    tifffile.imwrite(tmp_path / "deep.tif", deep)
    assert read_sem(tmp_path / "deep.tif").image.dtype == np.uint16
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(SegSEMError, match=r"broken\.tif: unreadable image"):
        read_sem(tmp_path / "broken.tif")


def test_data_bar_at_the_bottom_or_top_and_none_in_a_field():
    img = _noise((200, 300))
    assert find_data_bar(img) == (0, 200)
    bar = img.copy()
    bar[170:] = 0
    bar[178:190, 20:120:3] = 255  # text on the bar
    assert find_data_bar(bar) == (0, 170)
    top = img.copy()
    top[:12] = 255
    assert find_data_bar(top) == (12, 200)
    line = img.copy()
    line[100] = 0  # a dead scan line is not a bar
    assert find_data_bar(line) == (0, 200)


def test_data_bars_of_the_shipped_real_images():
    rows = {"Ctest1.tif": 676, "Ctest2.tif": 699, "Test02.tif": 896, "resist_lines_stack1.jpg": 2048,
            "logic_case3_reference.tif": 480}
    for name, first in rows.items():
        assert find_data_bar(read_sem(real_samples() / name).image)[1] == first, name
