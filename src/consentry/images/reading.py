"""Reading untrusted images: bounded, sniffed by bytes, one clear error, RGB pixels out.

:func:`load_image` accepts a path or the bytes of a file and returns its pixels as an RGB
``uint8`` array of shape ``(height, width, 3)``, or raises :class:`ImageError` (exit status 2)
whose message names the file and the problem in one line. What it guarantees:

* **Only six formats reach a decoder**: JPEG, PNG, WebP, GIF, BMP and TIFF, recognised by their
  magic bytes (:mod:`consentry.images.sniff`), and Pillow is told to use that one plugin
  (``Image.open(..., formats=[...])``), so a file cannot steer Pillow to another decoder (EPS
  would run Ghostscript).
* **Bounded memory**: at most ``max_bytes`` are read (50 MiB by default), and the pixel count is
  checked from the header *before* anything is decoded: an image over ``max_pixels`` (40
  million by default, e.g. 8000x5000) is refused as a decompression bomb, whatever its file
  size. Pillow's own process-wide guard (``Image.MAX_IMAGE_PIXELS``, ~89 million pixels) is left
  alone; when it fires first (images over ~179 million pixels) the message is the same.
* **Every pixel layout becomes RGB**: the first frame of an animation (GIF, APNG, WebP) or the
  first page of a TIFF; greyscale and 1-bit replicated; palette expanded; alpha (RGBA, LA,
  palette transparency) composited on white, as a viewer shows it on a white page; CMYK,
  YCbCr and LAB converted by Pillow; 16-bit samples scaled to 8 bits by their high byte (Pillow's
  own ``convert("L")`` clips them at 255 instead); float samples scaled from [0, 1]. The EXIF
  orientation is applied (a broken EXIF block is ignored: the pixels are still the image).
* **Truncated or corrupt files** are refused (Pillow's ``LOAD_TRUNCATED_IMAGES`` stays off),
  with the decoder's reason.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Union

from consentry.errors import ConsentryError
from consentry.images.sniff import HEAD_BYTES, IMAGE_FORMATS, image_format

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

MAX_PIXELS = 40_000_000
MAX_BYTES = 50 << 20

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]


class ImageError(ConsentryError):
    """An image that cannot be read: not an image, too large, a decompression bomb, corrupt."""

    exit_code = 2

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


def source_label(source: ImageSource, name: str | None = None) -> str:
    """How an image is named in messages: ``name``, else its path, else ``image``."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return "image"


def read_source(source: ImageSource, label: str, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of ``source`` (a path or bytes), at most ``max_bytes`` of them."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise ImageError(label, f"too large: {len(data)} bytes over the {max_bytes}-byte limit")
        return data
    path = Path(source)
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(label, "is a folder, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(label, "not a regular file")  # a FIFO or device would block or never end
        if st.st_size > max_bytes:
            raise ImageError(label, f"too large: {st.st_size} bytes over the {max_bytes}-byte limit")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ImageError(label, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # it grew while we looked
        raise ImageError(label, f"too large: over the {max_bytes}-byte limit")
    return data


def load_image(source: ImageSource, *, name: str | None = None, max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_BYTES) -> np.ndarray:  # fmt: skip
    """The RGB pixels (``uint8``, ``(height, width, 3)``) of an image file or its bytes.

    Raises :class:`ImageError` naming the image (``name``, else the path) and the problem."""
    label = source_label(source, name)
    data = read_source(source, label, max_bytes)
    return decode_image(data, label, max_pixels=max_pixels)


def decode_image(data: bytes, label: str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """:func:`load_image` on bytes already read (``label`` names them in errors)."""
    fmt = image_format(data[:HEAD_BYTES])
    if fmt is None:
        if not data:
            raise ImageError(label, "empty file, not an image")
        raise ImageError(label, "not an image (no JPEG, PNG, WebP, GIF, BMP or TIFF signature)")
    im = _open(data, fmt, label, max_pixels)
    try:
        return _to_rgb(_oriented(im), label)
    finally:
        im.close()


def _open(data: bytes, fmt: str, label: str, max_pixels: int) -> PILImage.Image:
    from PIL import Image, UnidentifiedImageError

    assert fmt in IMAGE_FORMATS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit decides
            im = Image.open(BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageError(label, _bomb_message(data, fmt, str(exc), max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageError(label, f"corrupt {fmt} file, or a variant of it that Pillow cannot decode") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error... on bad headers
        raise ImageError(label, f"corrupt {fmt} file: {_reason(exc)}") from None
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise ImageError(label, f"decompression bomb: {width}x{height} pixels over the {max_pixels} limit")
    if width <= 0 or height <= 0:
        im.close()
        raise ImageError(label, f"{fmt} file with no pixels ({width}x{height})")
    try:
        im.load()  # the first frame or page only
    except Exception as exc:
        im.close()
        raise ImageError(label, f"corrupt or truncated {fmt} file: {_reason(exc)}") from None
    return im


def _bomb_message(data: bytes, fmt: str, pillow_message: str, max_pixels: int) -> str:
    """Pillow refused the header before we saw it: give the size if the plugin can read it."""
    import importlib

    module, cls = _PLUGINS[fmt]
    try:
        image_cls = getattr(importlib.import_module(f"PIL.{module}"), cls)
        with image_cls(BytesIO(data)) as im:  # reads the header only, without Image.open's guard
            width, height = im.size
        return f"decompression bomb: {width}x{height} pixels over the {max_pixels} limit"
    except Exception:
        found = re.search(r"\((\d+) pixels\)", pillow_message)
        pixels = found.group(1) if found else "more than Pillow's limit of"
        return f"decompression bomb: {pixels} pixels over the {max_pixels} limit"


_PLUGINS = {"JPEG": ("JpegImagePlugin", "JpegImageFile"), "PNG": ("PngImagePlugin", "PngImageFile"),
            "GIF": ("GifImagePlugin", "GifImageFile"), "WEBP": ("WebPImagePlugin", "WebPImageFile"),
            "BMP": ("BmpImagePlugin", "BmpImageFile"), "TIFF": ("TiffImagePlugin", "TiffImageFile")}  # fmt: skip


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _oriented(im: PILImage.Image) -> PILImage.Image:
    """The image turned upright by its EXIF orientation (unchanged if it has none or it is broken)."""
    from PIL import ImageOps

    try:
        turned = ImageOps.exif_transpose(im)
    except Exception:
        return im
    return im if turned is None else turned


def _to_rgb(im: PILImage.Image, label: str) -> np.ndarray:
    import numpy as np
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode == "L":
        return _grey(np.asarray(im, dtype=np.uint8))
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        samples = np.asarray(im)
        if mode == "I" and samples.size and int(samples.max()) <= 255 and int(samples.min()) >= 0:
            return _grey(samples.astype(np.uint8))  # 8-bit values in a 32-bit container
        wide = np.clip(samples.astype(np.int64), 0, 65535)
        return _grey((wide >> 8).astype(np.uint8))
    if mode == "F":
        samples = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if samples.size and float(samples.max()) <= 1.0:
            samples = samples * 255.0
        return _grey(np.clip(np.rint(samples), 0, 255).astype(np.uint8))
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))  # alpha-composited on white
        return np.asarray(flat, dtype=np.uint8).copy()
    try:
        converted = im.convert("RGB")  # 1, P, CMYK, YCbCr, LAB, HSV, RGBX
    except Exception as exc:
        raise ImageError(label, f"unsupported pixel mode {mode!r}: {_reason(exc)}") from None
    return np.asarray(converted, dtype=np.uint8).copy()


def _grey(plane: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(np.repeat(plane[:, :, None], 3, axis=2))
