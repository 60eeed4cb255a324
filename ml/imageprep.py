"""User input (image bytes or a 28x28 pixel list) -> the dataset's form: (1, 28, 28) float32 in [0, 1).

Images are normalised the way MNIST was made: bright ink on black, the ink's bounding box scaled
so its longer side is 20 px (antialiased), pasted into 28x28 so the centre of mass sits at (14, 14).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ml.errors import InputError, InputTooLarge, NotAnImage

SIZE = 28  # output side
BOX = 20  # longer side of the ink's bounding box after scaling
WORK_SIDE = 512  # larger images are shrunk to this before the float work (the result is 20 px anyway)
INK_THRESHOLD = 0.25  # fraction of the peak ink that counts towards the bounding box
MIN_CONTRAST = 0.1  # ink peak above the background (on a 0..1 scale) below which an image is blank
MAX_VALUE = 255 / 256  # largest value the dataset holds (uint8 / 256)
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# Decoders tried on uploads: common raster formats only (not EPS, which runs Ghostscript, nor exotic ones).
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "PPM", "TGA", "ICO")
# A progressive JPEG decodes every scan over the whole image and a scan can be 14 bytes: a 5 MB upload of
# 350,000 scans of a 4-megapixel picture keeps a core busy for some 20 minutes. Real files have about 10.
MAX_JPEG_SCANS = 200
_JPEG_SOS = b"\xff\xda"  # start-of-scan marker (0xFF inside entropy-coded data is always followed by 0x00)
_PIL_BOMB_SIZE = re.compile(r"\((\d+) pixels\)")


@cache
def _formats() -> tuple[str, ...]:
    """ACCEPTED_FORMATS this Pillow has openers for (naming one it lacks would be a KeyError in Image.open)."""
    Image.init()
    return tuple(f for f in ACCEPTED_FORMATS if f in Image.OPEN)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open and decode the image, refusing oversized ones from the header alone."""
    if not data:
        raise NotAnImage("not an image: the upload is empty")
    try:
        im = Image.open(io.BytesIO(data), formats=_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own guard (twice its MAX_IMAGE_PIXELS): say which limit applies here, as below.
        size = _PIL_BOMB_SIZE.search(str(exc))
        declared = f"{int(size[1])} pixels" if size else "too many pixels"
        raise InputTooLarge(f"image declares {declared}; the limit is {max_pixels}") from None
    except UnidentifiedImageError:
        raise NotAnImage(f"not an image in a format read here ({', '.join(_formats())})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise NotAnImage(f"not an image PIL can read ({type(exc).__name__})") from None
    width, height = im.size
    if width * height > max_pixels:
        raise InputTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if width < 1 or height < 1:
        raise NotAnImage("not an image: it has no pixels")
    if im.format in ("JPEG", "MPO") and (scans := data.count(_JPEG_SOS)) > MAX_JPEG_SCANS:
        raise InputTooLarge(f"JPEG has {scans} scans; the limit is {MAX_JPEG_SCANS} (decoding it would take minutes)")
    try:
        im.draft(None, (WORK_SIDE, WORK_SIDE))  # JPEG only: decode at a reduced scale when it is large
        im.load()  # the first frame of an animation
        im = ImageOps.exif_transpose(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputTooLarge(f"image is too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError) as exc:
        raise NotAnImage(f"not an image: its pixel data cannot be decoded ({type(exc).__name__})") from None
    return im


def _normalise_mode(im: Image.Image) -> Image.Image:
    """One of "RGBA" (has transparency), "F" (wide greyscale, scaled to 0..255) or "L"."""
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        return im.convert("RGBA")
    if im.mode in _WIDE_MODES:
        arr = np.asarray(im, dtype=np.float32)  # (H, W)
        top = float(arr.max()) if arr.size else 0.0
        if im.mode in _SIXTEEN_BIT_MODES:
            scale = 65535.0  # a 16-bit file: 255 is a dark grey, not white
        else:  # 32-bit integers or floats: guess the range from the values
            scale = 1.0 if top <= 1 else 255.0 if top <= 255 else 65535.0
        return Image.fromarray((np.clip(arr, 0, None) * (255.0 / scale)).astype(np.float32))
    try:
        return im.convert("L")
    except ValueError:
        return im.convert("RGB").convert("L")


def _grey(im: Image.Image, background: int) -> np.ndarray:
    """(H, W) float in [0, 1] (1 = white); transparent parts composited on `background` (0 or 255)."""
    if im.mode == "RGBA":
        base = Image.new("RGBA", im.size, (background, background, background, 255))
        im = Image.alpha_composite(base, im).convert("L")
    return np.asarray(im, dtype=np.float32) / 255.0  # (H, W)


def _ink(grey: np.ndarray) -> np.ndarray | None:
    """Bright-ink-on-black version of `grey` scaled to peak 1, or None when it is blank."""
    ring = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])  # border pixels
    border = float(np.median(ring))
    invert = border > float(grey.mean())  # the background is lighter than the image on average
    ink = 1.0 - grey if invert else grey  # (H, W) bright ink
    background = 1.0 - border if invert else border
    ink = np.clip(ink - background, 0.0, None)  # (H, W)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        return None
    return ink / peak


def _fit_box(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink's bounding box and scale so the longer side is BOX px: (h, w) float in [0, 1]."""
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # (h0, w0)
    h0, w0 = crop.shape
    scale = BOX / max(h0, w0)
    w, h = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    patch = Image.fromarray((crop * 255.0).astype(np.float32))
    patch = patch.resize((w, h), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(patch, dtype=np.float32) / 255.0, 0.0, 1.0)  # (h, w)


def _centre(patch: np.ndarray) -> np.ndarray:
    """Paste `patch` into SIZE x SIZE so its centre of mass lands (to the nearest pixel) on (14, 14)."""
    h, w = patch.shape
    total = float(patch.sum())
    ys, xs = np.mgrid[0:h, 0:w]
    cy = float((patch * ys).sum()) / total if total > 0 else (h - 1) / 2
    cx = float((patch * xs).sum()) / total if total > 0 else (w - 1) / 2
    top = int(np.clip(round(SIZE / 2 - cy), 0, SIZE - h))
    left = int(np.clip(round(SIZE / 2 - cx), 0, SIZE - w))
    out = np.zeros((SIZE, SIZE), dtype=np.float32)  # (28, 28)
    out[top : top + h, left : left + w] = patch
    return out


def _quantise(arr: np.ndarray) -> torch.Tensor:
    """(28, 28) in [0, 1] -> (1, 28, 28) float32 on the dataset's uint8 / 256 grid."""
    levels = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)  # (28, 28)
    return torch.from_numpy(levels).to(torch.float32).div_(256.0).unsqueeze(0)  # (1, 28, 28)


def image_bytes_to_tensor(data: bytes, max_pixels: int = 25_000_000) -> torch.Tensor:
    """Any image PIL reads -> (1, 28, 28) float32 in [0, 1), MNIST-style (bright ink, centred)."""
    im = _normalise_mode(_open(data, max_pixels))
    if max(im.size) > WORK_SIDE:
        im.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS)
    ink = _ink(_grey(im, 255))
    if ink is None and im.mode == "RGBA":  # e.g. white strokes on a transparent canvas
        ink = _ink(_grey(im, 0))
    if ink is None:
        raise InputError("image is blank: no strokes stand out from the background")
    return _quantise(_centre(_fit_box(ink)))


def pixels_to_tensor(pixels: Sequence[Sequence[float]] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """A 28x28 grid of numbers (0..1, or 0..255 when any exceeds 1) -> (1, 28, 28) float32 in [0, 1)."""
    try:
        arr = np.asarray(pixels.detach().cpu() if isinstance(pixels, torch.Tensor) else pixels, dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError("pixels must be a 28x28 grid of numbers (rows of equal length)") from None
    if arr.shape == (1, SIZE, SIZE):
        arr = arr[0]
    if arr.shape != (SIZE, SIZE):
        raise InputError(f"pixels must be a 28x28 grid; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError("pixels must be finite numbers (found NaN or infinity)")
    if arr.min() < 0:
        raise InputError(f"pixels must not be negative (found {arr.min():g})")
    if arr.max() > 1:
        if arr.max() > 255:
            raise InputError(f"pixels must be in 0..1 or 0..255 (found {arr.max():g})")
        arr = arr / 256.0
    arr = np.minimum(arr, MAX_VALUE)
    return torch.from_numpy(arr.astype(np.float32)).unsqueeze(0)  # (1, 28, 28)


def tensor_to_png(t: torch.Tensor, scale: int = 1) -> bytes:
    """PNG of the 28x28 image the model sees ((1, 28, 28) or (28, 28) in [0, 1]); `scale` enlarges it."""
    arr = t.detach().cpu().reshape(t.shape[-2], t.shape[-1]).numpy()  # (H, W)
    levels = np.clip(np.rint(arr * 256.0), 0, 255).astype(np.uint8)  # undoes uint8 / 256
    im = Image.fromarray(levels)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
