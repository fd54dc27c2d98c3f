import numpy as np
import pytest
from PIL import Image

from xreid.data.images import ImageError, load_image


def test_modes_are_converted_to_rgb(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (20, 10, 3), dtype=np.uint8)
    cases = {
        "gray.png": Image.fromarray(arr[..., 0]),
        "rgba.png": Image.fromarray(np.dstack([arr, np.full((20, 10), 128, np.uint8)])),
        "cmyk.jpg": Image.fromarray(arr).convert("CMYK"),
        "palette.png": Image.fromarray(arr).convert("P"),
        "gray16.png": Image.fromarray((arr[..., 0].astype(np.uint16) * 200)),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        out = load_image(tmp_path / name)
        assert out.shape == (20, 10, 3) and out.dtype == np.uint8, name


@pytest.mark.parametrize("name,content,problem", [
    ("empty.jpg", b"", "empty file"),
    ("text.jpg", b"this is not an image at all", "not an image"),
])
def test_bad_files_name_the_file_and_problem(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as exc:
        load_image(path)
    assert str(path) in str(exc.value) and problem in str(exc.value)


def test_truncated_and_missing(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(cut)
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
