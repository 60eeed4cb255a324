"""Hostile input to the serving routes of the real app (tiny trained CNN and seq2seq models).

Every bad image or text gets a documented 4xx (400, 413, 415 or 422) with a JSON {"detail": ...} body, or
a correct 200 answer; never a 5xx and never a long wait. docs/operations.md lists what each input gets.
"""
# ruff: noqa: F811  (fixtures imported from tests.api.trained are parameters of the tests)

from __future__ import annotations

import base64
import io
import json
import string
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from api.main import create_app
from core.migrate import upgrade_head
from core.settings import Settings
from ml.inference import load_predictor
from tests.api.trained import (  # noqa: F401  (fixtures are used by name)
    UNUSED_BROKER,
    Serving,
    TrainedModels,
    digit_levels,
    encode,
    serving,
    trained,
)
from tests.support import TEST_PROCESS, free_port

SECONDS = 10  # the most any single hostile request may take (they are all refused or answered at once)
IMAGE_ROUTES = ("/predict", "/activation-maps?format=json")


def timed_post(serving: Serving, url: str, **kwargs) -> httpx.Response:
    started = time.monotonic()
    response = serving.client.post(url, **kwargs)
    took = time.monotonic() - started
    assert took < SECONDS, f"{url} took {took:.1f} s"
    return response


def check_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail, detail


def upload(serving: Serving, url: str, data: bytes, name: str = "x.png", mime: str = "image/png") -> httpx.Response:
    return timed_post(serving, url, files={"file": (name, data, mime)})


def seen_by_model(body: dict) -> np.ndarray:
    """The 28x28 input the model saw, from include_input's PNG data URL (uint8)."""
    png = base64.b64decode(body["input_png"].split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)))


# ---------------------------------------------------------------- the image corpus


def png_bomb(side: int = 30_000, rows_per_block: int = 2_000) -> bytes:
    """A valid 1-bit black PNG of side x side pixels in about 110 KB (for 30000): 900 million pixels.

    The rows are deflated in identical blocks, each ended by a full flush (which resets the compressor, so
    every block after the first compresses to the same bytes); the Adler-32 of the whole stream is
    computed separately.
    """
    block = (b"\x00" + bytes((side + 7) // 8)) * rows_per_block  # filter byte "none" + a row of 0 bits
    blocks, rest = divmod(side, rows_per_block)
    assert rest == 0
    deflate = zlib.compressobj(9)
    first = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)  # the zlib header + one block
    again = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()  # the empty final block + an Adler-32 of two blocks only
    adler = 1
    for _ in range(blocks):
        adler = zlib.adler32(block, adler)
    stream = first + again * (blocks - 1) + end[:-4] + struct.pack(">I", adler)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def test_the_png_bomb_is_a_valid_png() -> None:
    small = png_bomb(side=4_000, rows_per_block=1_000)  # the same construction, small enough to decode
    with Image.open(io.BytesIO(small)) as im:
        im.load()
        assert im.size == (4_000, 4_000) and im.getextrema() == (0, 0)
    big = png_bomb()
    assert len(big) < 150_000
    assert struct.unpack(">II", big[16:24]) == (30_000, 30_000)


def many_scan_jpeg(scans: int = 1_000, side: int = 2_000) -> bytes:
    """A progressive JPEG of side x side with `scans` more copies of its smallest scan (14 bytes each):
    libjpeg decodes every scan over the whole picture (about 3 ms each here, so 5 MB of them: 20 minutes)."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, format="JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]  # start-of-scan markers
    ends = [*starts[1:], len(data) - 2]  # the last scan ends at the end-of-image marker
    smallest = min((data[a:b] for a, b in zip(starts, ends, strict=True)), key=len)
    return data[:-2] + smallest * scans + b"\xff\xd9"


HOSTILE_IMAGES = {  # name -> (bytes, status, words in the detail)
    "empty": (b"", 415, "empty"),
    "text named .png": (b"hello, I am a PNG, honestly", 415, "not an image"),
    "PDF named .png": (b"%PDF-1.4\n" + bytes(300), 415, "not an image"),
    "PostScript named .png": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", 415, "not an image"),
    "PNG signature only": (b"\x89PNG\r\n\x1a\n", 415, "not an image"),
    "1x1 white": (encode(Image.new("L", (1, 1), 255), "PNG"), 422, "blank"),
    "1x1 black": (encode(Image.new("L", (1, 1), 0), "PNG"), 422, "blank"),
    "30000x30000 bomb": (png_bomb(), 413, "900000000 pixels; the limit is 4000000"),
    "JPEG of 1000 progressive scans": (many_scan_jpeg(), 413, "1006 scans; the limit is 200"),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("route", IMAGE_ROUTES)
@pytest.mark.parametrize("name", list(HOSTILE_IMAGES))
def test_hostile_images_get_a_4xx(serving: Serving, route: str, name: str) -> None:
    data, status, words = HOSTILE_IMAGES[name]
    assert len(data) < serving.settings.max_upload_bytes  # refused for what it is, not for its size
    check_error(upload(serving, route, data), status, words)
    # The same bytes as a raw image body.
    check_error(timed_post(serving, route, content=data, headers={"content-type": "image/png"}), status, words)


def test_truncated_pngs_are_415(serving: Serving, trained: TrainedModels) -> None:
    whole = encode(Image.fromarray(255 - digit_levels(trained.digits.images[0])).resize((200, 200)), "PNG")
    complete = upload(serving, "/predict", whole)
    assert complete.status_code == 200
    pixels_end = whole.index(b"IEND") - 4  # the pixel data (IDAT) ends where the IEND chunk starts
    for cut in (8, 20, 33, 50, pixels_end // 4, pixels_end // 2, pixels_end * 3 // 4):
        check_error(upload(serving, "/predict", whole[:cut]), 415, "not an image")
    # Cut after the last pixel (only checksums and the end marker missing): the picture is whole.
    assert upload(serving, "/predict", whole[:pixels_end]).json() == complete.json()


def test_a_tiny_image_with_ink_is_classified(serving: Serving) -> None:
    two = Image.fromarray(np.array([[0, 255], [0, 0]], dtype=np.uint8))
    response = upload(serving, "/predict?include_input=true", encode(two, "PNG"))
    assert response.status_code == 200, response.text
    seen = seen_by_model(response.json())
    assert seen.shape == (28, 28) and seen.max() >= 250  # one bright square, scaled up and centred


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])  # an animated GIF, an APNG
def test_animations_use_their_first_frame(serving: Serving, trained: TrainedModels, fmt: str) -> None:
    labels = [int(v) for v in trained.digits.labels]
    first, second = 0, next(i for i, v in enumerate(labels) if v != labels[0])
    frames = [Image.fromarray(digit_levels(trained.digits.images[i])).resize((112, 112)) for i in (first, second)]
    animation = io.BytesIO()
    frames[0].save(animation, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(animation.getvalue())) as check:
        assert check.n_frames == 2
    answers = [upload(serving, "/predict?include_input=true", data, f"d.{fmt.lower()}", f"image/{fmt.lower()}").json()
               for data in (animation.getvalue(), encode(frames[0], "PNG"), encode(frames[1], "PNG"))]
    animated, still_first, still_second = answers
    assert np.array_equal(seen_by_model(animated), seen_by_model(still_first))
    assert animated["probabilities"] == still_first["probabilities"]
    assert not np.array_equal(seen_by_model(animated), seen_by_model(still_second))


def test_cmyk_jpeg_is_converted(serving: Serving, trained: TrainedModels) -> None:
    for image in trained.digits.images[:4]:
        grey = Image.fromarray(255 - digit_levels(image)).resize((140, 140), Image.Resampling.BILINEAR)
        cmyk = grey.convert("CMYK")
        assert cmyk.mode == "CMYK"
        as_cmyk = upload(serving, "/predict?include_input=true", encode(cmyk, "JPEG"), "d.jpg", "image/jpeg")
        as_grey = upload(serving, "/predict?include_input=true", encode(grey, "JPEG"), "d.jpg", "image/jpeg")
        assert as_cmyk.status_code == as_grey.status_code == 200, as_cmyk.text
        a, b = (seen_by_model(r.json()).astype(int) for r in (as_cmyk, as_grey))
        assert np.abs(a - b).max() <= 8  # the same picture, up to JPEG's rounding in another colour space
        assert as_cmyk.json()["label"] == as_grey.json()["label"]


def test_sixteen_bit_png_is_read_on_its_own_scale(serving: Serving, trained: TrainedModels) -> None:
    levels = (255 - digit_levels(trained.digits.images[1])).astype(np.uint16)  # dark ink on white
    levels = np.kron(levels, np.ones((5, 5), dtype=np.uint16))  # 140x140
    eight = encode(Image.fromarray(levels.astype(np.uint8)), "PNG")
    sixteen = encode(Image.fromarray(levels * 257), "PNG")  # the same picture with 16 bits per pixel
    with Image.open(io.BytesIO(sixteen)) as check:
        assert check.mode == "I;16"
    a, b = (upload(serving, "/predict?include_input=true", data) for data in (eight, sixteen))
    assert a.status_code == b.status_code == 200, b.text
    assert np.array_equal(seen_by_model(a.json()), seen_by_model(b.json()))
    assert np.allclose(a.json()["probabilities"], b.json()["probabilities"], atol=1e-6)
    # Values 0..255 in a 16-bit file are at most 0.4 % of white: a black picture, not a bright digit.
    check_error(upload(serving, "/predict", encode(Image.fromarray(levels), "PNG")), 422, "blank")


def test_hostile_form_fields_are_4xx(serving: Serving, trained: TrainedModels) -> None:
    png = encode(Image.fromarray(digit_levels(trained.digits.images[0])), "PNG")
    for fields in ({"run_id": "\x00"}, {"run_id": "é" * 70}, {"top_k": "9" * 400}, {"top_k": "-1"},
                   {"model": "🙂"}, {"layer": "x" * 10_000}):
        response = timed_post(serving, "/predict", files={"file": ("d.png", png, "image/png")}, data=fields)
        assert 400 <= response.status_code < 500, (fields, response.status_code, response.text)
        assert response.json()["detail"]
    pixels = digit_levels(trained.digits.images[0]).tolist()
    for fields in ({"run_id": "\ud800"}, {"model": "\udfff"}, {"\ud800": 1}, {"top_k": 1e400}):
        raw = json.dumps({"pixels": pixels, **fields}).encode()  # \ud800 stays an escape in the JSON text
        response = timed_post(serving, "/predict", content=raw, headers={"content-type": "application/json"})
        check_error(response, 422, "")
    boundary = "hostile"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"run_id\"\r\n\r\n").encode() + b"\xff\xfe\xfd" + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    response = timed_post(serving, "/predict", content=body,
                          headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert 400 <= response.status_code < 500, response.text


# ---------------------------------------------------------------- the byte limit, over a real socket


@pytest.fixture(scope="module")
def real_server(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """The app with the default upload limit, served by uvicorn on a loopback port in a thread."""
    default_limit = Settings.model_fields["max_upload_bytes"].default
    assert default_limit == 5_000_000  # INKWELL_MAX_UPLOAD_BYTES's default, as documented
    root = tmp_path_factory.mktemp("limits")
    url = f"sqlite:///{root / 'inkwell.db'}"
    upgrade_head(url)
    settings = Settings(database_url=url, broker_url=UNUSED_BROKER, artifacts_dir=root / "artifacts",
                        cache_dir=root / "cache",
                        data_dir=shared_data, api_key=None, max_upload_bytes=default_limit, **TEST_PROCESS)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", settings
    server.should_exit = True
    thread.join(15)
    app.state.engine.dispose()


def test_six_megabytes_get_a_413_response_not_a_broken_connection(real_server: tuple[str, Settings]) -> None:
    base, settings = real_server
    six_mb = b"\x89PNG\r\n\x1a\n" + bytes(6_000_000)
    just_over = b"\x89PNG\r\n\x1a\n" + bytes(settings.max_upload_bytes)  # passes the Content-Length check
    raw = {"content-type": "image/png"}
    sends = {
        "multipart": lambda: {"files": {"file": ("big.png", six_mb, "image/png")}},
        "multipart, just over": lambda: {"files": {"file": ("big.png", just_over, "image/png")}},
        "raw body": lambda: {"content": six_mb, "headers": raw},
        "raw body, chunked": lambda: {"content": (six_mb[i : i + 65_536] for i in range(0, len(six_mb), 65_536)),
                                      "headers": raw},  # no Content-Length: counted as it arrives
    }
    with httpx.Client(base_url=base, timeout=SECONDS) as client:
        for how, request in sends.items():
            for route in IMAGE_ROUTES:
                response = client.post(route, **request())  # an httpx error here is the broken connection
                assert response.status_code == 413, (how, route, response.text)
                assert "5000000 bytes (INKWELL_MAX_UPLOAD_BYTES)" in response.json()["detail"], how
        assert client.get("/healthz").status_code == 200  # and the server is fine afterwards


# ---------------------------------------------------------------- texts


HOSTILE_TEXTS = {  # name -> (text, status, words in the detail)
    "empty": ("", 422, "empty"),
    "whitespace only": (" \t\n\u3000\u00a0 ", 422, "empty"),
    "100k characters": ("hola " * 20_000, 422, "the limit is 200"),
    "only NUL characters": ("\x00\x00\x00", 422, "nothing to translate"),
    "only emoji": ("😀🙃👍🏽👨‍👩‍👧", 422, "nothing to translate"),
    "Arabic": ("مرحبا بالعالم", 422, "nothing to translate"),
    "Hebrew": ("שלום עולם", 422, "nothing to translate"),
    "Chinese and maths": ("你好 ∑∫√ ²³", 422, "nothing to translate"),
    "only digits and symbols": ("123 456 #$%&*", 422, "nothing to translate"),
}

HOSTILE_BUT_TRANSLATABLE = {  # name -> (text, the characters the encoder must read)
    "NUL inside": ("hola\x00mundo", "hola mundo"),
    "emoji inside": ("hola 😀 amigo", "hola amigo"),
    "right-to-left override": ("\u202ehola\u202c", "hola"),
    "Hebrew and Spanish": ("שלום hola", "hola"),
    "Arabic and Spanish": ("hola مرحبا amigo", "hola amigo"),
    "combining marks": ("n\u0303an\u0303a", "nana"),
    "zero-width characters": ("ho\u200bla\ufeff", "hola"),
    "200 characters": ("¿qué? " * 33 + "hi", ("que ? " * 33 + "hi").strip()),
}


@pytest.mark.parametrize("name", list(HOSTILE_TEXTS))
def test_hostile_texts_get_a_422(serving: Serving, name: str) -> None:
    text, status, words = HOSTILE_TEXTS[name]
    check_error(timed_post(serving, "/transliterate", json={"text": text}), status, words)
    batch = timed_post(serving, "/transliterate", json={"texts": ["hola", text]})
    check_error(batch, status, "text 2")


@pytest.mark.parametrize("name", list(HOSTILE_BUT_TRANSLATABLE))
def test_hostile_but_translatable_texts_are_answered(serving: Serving, name: str) -> None:
    text, normalised = HOSTILE_BUT_TRANSLATABLE[name]
    response = timed_post(serving, "/transliterate", json={"text": text, "return_attention": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["input"] == text
    assert "".join(body["input_chars"]) == normalised
    assert body["output"] == body["hypotheses"][0]["text"]
    assert np.asarray(body["attention"]).shape == (len(body["output_chars"]), len(normalised))


def test_characters_the_model_does_not_know(serving: Serving, trained: TrainedModels) -> None:
    # Normalising keeps a-z, space and . ! ? only: letters outside a-z never reach the model.
    check_error(timed_post(serving, "/transliterate", json={"text": "ÆØ ßþð œĳ ﬁ"}), 422, "nothing to translate")
    vocab = load_predictor(trained.seq2seq_attention, device="cpu").src_vocab  # the served run's model
    unknown = sorted(set(string.ascii_lowercase) - set(vocab.itos))
    if unknown:  # this training data lacked some letters: a text of only those has nothing the model knows
        check_error(timed_post(serving, "/transliterate", json={"text": "".join(unknown) * 3}), 422,
                    "no characters the model knows")
    # Letters it never saw next to ones it did: read as <unk>, still answered.
    mixed = "hola " + "".join(unknown or ["q"]) + " amigo"
    assert timed_post(serving, "/transliterate", json={"text": mixed}).status_code == 200


def test_largest_accepted_batch_is_answered_in_bounded_time(serving: Serving) -> None:
    texts = ["¡" + "ab!" * 66 + "c"] * 256  # 256 texts of 200 characters, 330 after normalising
    response = timed_post(serving, "/transliterate", json={"texts": texts, "decoding": "beam", "beam_size": 4})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 256


def test_huge_json_body_is_a_413_before_it_is_parsed(serving: Serving) -> None:
    body = b'{"texts": [' + b",".join([b'"' + b"a" * 10_000 + b'"'] * 500) + b"]}"  # 5 MB
    check_error(timed_post(serving, "/transliterate", content=body, headers={"content-type": "application/json"}),
                413, "INKWELL_MAX_BODY_BYTES")
    for raw in (b'{"text": "hola', b'{"text": "\xff\xfe"}', b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        response = timed_post(serving, "/transliterate", content=raw, headers={"content-type": "application/json"})
        assert response.status_code in (400, 422), (raw[:20], response.status_code, response.text)
        assert response.json()["detail"]


@pytest.mark.parametrize("raw", [b'{"text": "hola \\ud800"}', b'{"texts": ["hola", "\\udfff amigo"]}'])
def test_lone_surrogates_are_a_422(serving: Serving, raw: bytes) -> None:
    response = timed_post(serving, "/transliterate", content=raw, headers={"content-type": "application/json"})
    check_error(response, 422, "surrogate")
