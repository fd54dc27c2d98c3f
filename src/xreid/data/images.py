"""Robust image reading: every failure becomes an ImageError naming the file and the problem."""

from __future__ import annotations

import io
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
    return _decode(path, path)[0]


def decode_image(data: bytes, name: str, max_pixels: int | None = None,
                 formats: tuple[str, ...] | None = None) -> tuple[np.ndarray, str]:
    """Decode image bytes (an upload) as ``load_image`` reads a file: H x W x 3 uint8 RGB and the
    format found in the content (never taken from a file name). ``max_pixels`` refuses larger images
    from their header, before decoding; ``formats`` (PIL names, e.g. "JPEG") limits what is accepted.
    ImageError names ``name`` and the problem."""
    if not data:
        raise ImageError(name, "empty file")
    return _decode(io.BytesIO(data), name, max_pixels, formats)


def _decode(source, name, max_pixels: int | None = None, formats: tuple[str, ...] | None = None
            ) -> tuple[np.ndarray, str]:
    """(H x W x 3 uint8 RGB, the format PIL found) of a file or a byte stream; ImageError names ``name``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                fmt = im.format or "unknown"
                if formats is not None and fmt not in formats:
                    raise ImageError(name, f"{fmt} images are not accepted (accepted: {', '.join(formats)})")
                if max_pixels is not None and im.width * im.height > max_pixels:
                    raise ImageError(name, f"too many pixels ({im.width}x{im.height}; at most {max_pixels:,})")
                im.load()  # forces a full decode: truncated files fail here
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im, dtype=np.float32)
                    arr = (255.0 * arr / max(float(arr.max()), 1.0)).astype(np.uint8)
                    im = Image.fromarray(arr)
                rgb = im.convert("RGB")
    except UnidentifiedImageError:
        raise ImageError(name, "not an image (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(name, f"image too large to decode safely ({exc})") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(name, f"corrupt or truncated image ({exc})") from None
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageError(name, f"image too small ({arr.shape[1]}x{arr.shape[0]})")
    return arr, fmt
