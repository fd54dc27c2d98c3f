"""Robust image reading: every failure becomes an ImageError naming the file and the problem."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageError(ValueError):
    """An image that cannot be used, with the file and the reason in the message."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def load_image(path: str | Path) -> np.ndarray:
    """Read any image file as an H x W x 3 uint8 RGB array.

    Grayscale, palette, CMYK, 16-bit and RGBA images are converted (alpha composited on black is
    not wanted for crops, so alpha is simply dropped). Missing, empty, truncated or non-image files
    raise ImageError.
    """
    path = Path(path)
    if not path.is_file():
        if path.is_symlink():
            raise ImageError(path, "symbolic link that leads nowhere (a loop or a missing target)")
        raise ImageError(path, "file not found" if not path.is_dir() else "a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()  # forces a full decode: truncated files fail here
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im, dtype=np.float32)
                    arr = (255.0 * arr / max(float(arr.max()), 1.0)).astype(np.uint8)
                    im = Image.fromarray(arr)
                rgb = im.convert("RGB")
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(path, f"image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(path, f"corrupt or truncated image ({exc})") from None
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageError(path, f"image too small ({arr.shape[1]}x{arr.shape[0]})")
    return arr
