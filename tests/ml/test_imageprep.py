"""User images and pixel lists -> the dataset's 28x28 form, checked against real MNIST digits."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.data.idx import read_idx
from ml.errors import InputError, InputTooLarge
from ml.imageprep import image_bytes_to_tensor, pixels_to_tensor, tensor_to_png


@pytest.fixture(scope="module")
def digits(shared_data: Path) -> list[np.ndarray]:
    """The first digit of each class in mnist-8k, uint8 (28, 28)."""
    folder = shared_data / "mnist-8k"
    images = read_idx(folder / "mnist8k-images-idx3-ubyte.gz")
    labels = read_idx(folder / "mnist8k-labels-idx1-ubyte.gz")
    return [images[int(np.flatnonzero(labels == k)[0])] for k in range(10)]


def render(digit: np.ndarray, dark_on_light: bool, fmt: str, size=(200, 150), at=(37, 5)) -> Image.Image:
    """The 28x28 digit enlarged 5x onto a bigger canvas, optionally as dark ink on white."""
    big = Image.fromarray(digit).resize((140, 140), Image.Resampling.BICUBIC)
    canvas = Image.new("L", size, 0)
    canvas.paste(big, at)
    if dark_on_light:
        canvas = Image.eval(canvas, lambda v: 255 - v)
    return canvas


def to_bytes(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def best_shift_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Highest correlation over shifts of up to one pixel (MNIST rounded its centring to whole pixels)."""
    return max(correlation(np.roll(a, (dy, dx), axis=(0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return float((img * ys).sum() / img.sum()), float((img * xs).sum() / img.sum())


def check_output(t: torch.Tensor) -> np.ndarray:
    assert t.shape == (1, 28, 28) and t.dtype == torch.float32
    assert t.min() >= 0 and t.max() < 1
    assert t.max() > 0.9  # the strongest ink is full intensity, as in MNIST
    return t[0].numpy()


@pytest.mark.parametrize(("dark_on_light", "fmt"), [(True, "PNG"), (False, "JPEG")])
def test_enlarged_real_digits_come_back(digits: list[np.ndarray], dark_on_light: bool, fmt: str) -> None:
    plain = []
    for digit in digits:
        out = check_output(image_bytes_to_tensor(to_bytes(render(digit, dark_on_light, fmt), fmt)))
        assert best_shift_correlation(out, digit) > 0.85
        plain.append(correlation(out, digit))
        cy, cx = centre_of_mass(out)
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
        rows = np.flatnonzero((out > 0.25).any(axis=1))
        cols = np.flatnonzero((out > 0.25).any(axis=0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in range(18, 22)  # longer side ~20 px
    assert np.mean(plain) > 0.85


def test_polarity_is_detected(digits: list[np.ndarray]) -> None:
    digit = digits[3]
    dark = image_bytes_to_tensor(to_bytes(render(digit, True, "PNG"), "PNG"))
    light = image_bytes_to_tensor(to_bytes(render(digit, False, "PNG"), "PNG"))
    torch.testing.assert_close(dark, light, atol=2 / 256, rtol=0)


def test_off_centre_and_other_position_give_same_result(digits: list[np.ndarray]) -> None:
    digit = digits[5]
    a = image_bytes_to_tensor(to_bytes(render(digit, True, "PNG"), "PNG"))
    b = image_bytes_to_tensor(to_bytes(render(digit, True, "PNG", size=(400, 300), at=(250, 150)), "PNG"))
    torch.testing.assert_close(a, b, atol=2 / 256, rtol=0)


def test_transparent_backgrounds(digits: list[np.ndarray]) -> None:
    digit = digits[2]
    alpha = render(digit, False, "PNG")  # bright where the ink is
    black_ink = Image.merge("RGBA", [Image.new("L", alpha.size, 0)] * 3 + [alpha])
    white_ink = Image.merge("RGBA", [Image.new("L", alpha.size, 255)] * 3 + [alpha])
    reference = image_bytes_to_tensor(to_bytes(render(digit, True, "PNG"), "PNG"))
    for im in (black_ink, white_ink):
        out = image_bytes_to_tensor(to_bytes(im, "PNG"))
        torch.testing.assert_close(out, reference, atol=3 / 256, rtol=0)


def test_colour_and_sixteen_bit_images(digits: list[np.ndarray]) -> None:
    digit = digits[7]
    grey = render(digit, True, "PNG")
    blue_on_yellow = Image.merge("RGB", [Image.eval(grey, lambda v: 40 + v * 0.8)] * 2 + [grey.point(lambda v: 90)])
    wide = Image.fromarray(np.asarray(render(digit, False, "PNG"), dtype=np.uint16) * 257)
    reference = check_output(image_bytes_to_tensor(to_bytes(grey, "PNG")))
    for im in (blue_on_yellow, wide):
        out = check_output(image_bytes_to_tensor(to_bytes(im, "PNG")))
        assert correlation(out, reference) > 0.95


def test_exif_orientation_is_applied(digits: list[np.ndarray]) -> None:
    upright = render(digits[4], True, "JPEG")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a sideways camera saves
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    with_tag = image_bytes_to_tensor(to_bytes(stored, "JPEG", exif=exif, quality=95))[0].numpy()
    without_tag = image_bytes_to_tensor(to_bytes(stored, "JPEG", quality=95))[0].numpy()
    reference = image_bytes_to_tensor(to_bytes(upright, "JPEG", quality=95))[0].numpy()
    assert correlation(with_tag, reference) > 0.95
    assert correlation(without_tag, reference) < 0.6


@pytest.mark.parametrize(
    "im",
    [Image.new("L", (120, 90), 255), Image.new("RGB", (50, 50), (128, 128, 128)), Image.new("RGBA", (40, 40))],
)
def test_blank_images(im: Image.Image) -> None:
    for fmt in ("PNG", "JPEG") if im.mode != "RGBA" else ("PNG",):
        with pytest.raises(InputError, match="image is blank"):
            image_bytes_to_tensor(to_bytes(im, fmt))


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"%PDF-1.4\n" + bytes(200)])
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(InputError, match="not an image") as info:
        image_bytes_to_tensor(data)
    assert not isinstance(info.value, InputTooLarge)


def test_truncated_image_is_an_input_error(digits: list[np.ndarray]) -> None:
    data = to_bytes(render(digits[0], True, "PNG"), "PNG")
    with pytest.raises(InputError, match="not an image"):
        image_bytes_to_tensor(data[: len(data) // 2])


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but whose pixel data is garbage: decoding it must fail."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"garbage") + chunk(b"IEND", b"")


def test_huge_dimensions_are_refused_before_decoding() -> None:
    # Same garbage pixel data: under the limit it fails while decoding, over it fails before.
    with pytest.raises(InputError, match="not an image") as info:
        image_bytes_to_tensor(png_header_only(400, 300))
    assert not isinstance(info.value, InputTooLarge)
    with pytest.raises(InputTooLarge, match="30000000 pixels"):
        image_bytes_to_tensor(png_header_only(6000, 5000))
    with pytest.raises(InputTooLarge):  # past PIL's own decompression-bomb guard too
        image_bytes_to_tensor(png_header_only(100_000, 100_000))
    with pytest.raises(InputTooLarge, match="the limit is 10000"):
        image_bytes_to_tensor(png_header_only(400, 300), max_pixels=10_000)


def test_large_one_bit_image_is_refused() -> None:
    data = to_bytes(Image.new("1", (6000, 5000), 1), "PNG")
    assert len(data) < 100_000  # tiny file, huge picture
    with pytest.raises(InputTooLarge):
        image_bytes_to_tensor(data)


# ---------------------------------------------------------------- pixel lists


def test_pixels_unit_range_used_as_is(digits: list[np.ndarray]) -> None:
    grid = (digits[6] / 255.0).tolist()  # values in [0, 1], reaching 1.0
    t = pixels_to_tensor(grid)
    assert t.shape == (1, 28, 28) and t.dtype == torch.float32
    expected = np.minimum(digits[6] / 255.0, 255 / 256)
    np.testing.assert_allclose(t[0].numpy(), expected, atol=1e-7)
    assert t.max() < 1


def test_pixels_byte_range_scaled(digits: list[np.ndarray]) -> None:
    t = pixels_to_tensor(digits[8].astype(int).tolist())
    torch.testing.assert_close(t[0], torch.from_numpy(digits[8]).float() / 256)
    torch.testing.assert_close(pixels_to_tensor(np.asarray(digits[8])[None]), t)


@pytest.mark.parametrize(
    ("pixels", "words"),
    [
        ([[0.0] * 28] * 27, "28x28"),
        ([[0.0] * 27] * 28, "28x28"),
        ([[0.0] * 28] * 27 + [[0.0] * 5], "grid of numbers"),
        ([["a"] * 28] * 28, "grid of numbers"),
        ([[float("nan")] * 28] * 28, "NaN"),
        ([[0.5] * 28] * 27 + [[-0.1] + [0.0] * 27], "negative"),
        ([[300.0] * 28] * 28, "0..255"),
        (7, "28x28"),
    ],
)
def test_pixel_errors(pixels, words: str) -> None:
    with pytest.raises(InputError, match=words):
        pixels_to_tensor(pixels)


def test_tensor_to_png_roundtrip(digits: list[np.ndarray]) -> None:
    t = torch.from_numpy(digits[9]).float().div(256).unsqueeze(0)  # (1, 28, 28)
    data = tensor_to_png(t)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    im = Image.open(io.BytesIO(data))
    assert im.size == (28, 28) and im.mode == "L"
    np.testing.assert_array_equal(np.asarray(im), digits[9])
    big = Image.open(io.BytesIO(tensor_to_png(t[0], scale=4)))
    assert big.size == (112, 112)
    np.testing.assert_array_equal(np.asarray(big)[::4, ::4], digits[9])
