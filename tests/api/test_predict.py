"""POST /predict and /activation-maps against a real trained CNN."""
# ruff: noqa: F811  (fixtures imported from tests.api.trained are parameters of the tests)

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from ml.imageprep import image_bytes_to_tensor, pixels_to_tensor
from ml.inference import Classifier, load_predictor
from tests.api.trained import (  # noqa: F401  (fixtures are used by name)
    Serving,
    TrainedModels,
    digit_jpeg_light_on_dark,
    digit_levels,
    digit_png_dark_on_light,
    encode,
    make_serving,
    serving,
    trained,
)


@pytest.fixture(scope="module")
def classifier(trained: TrainedModels) -> Classifier:
    loaded = load_predictor(trained.cnn, device="cpu")
    assert isinstance(loaded, Classifier)
    return loaded


def pixels_of(image: torch.Tensor) -> list[list[int]]:
    return digit_levels(image).astype(int).tolist()


def check_prediction(body: dict, classes: list[str], k: int = 3) -> None:
    probs = np.array(body["probabilities"])
    assert probs.shape == (len(classes),)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert body["label"] == int(probs.argmax())
    assert body["class_name"] == classes[body["label"]]
    top = body["top_k"]
    assert len(top) == k
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
    assert top[0]["label"] == body["label"]
    for t in top:
        assert t["probability"] == pytest.approx(probs[t["label"]])
        assert t["class_name"] == classes[t["label"]]
    assert "input_png" not in body


@pytest.mark.parametrize("render", [digit_png_dark_on_light, digit_jpeg_light_on_dark])
def test_uploaded_digits_are_recognised(serving: Serving, trained: TrainedModels, render) -> None:
    correct = 0
    for image, label in zip(trained.digits.images[:10], trained.digits.labels[:10], strict=True):
        response = serving.client.post(
            "/predict", files={"file": ("digit", render(image), "application/octet-stream")}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        check_prediction(body, trained.classes)
        assert body["run_id"] == serving.run_ids["cnn"]
        correct += body["label"] == int(label)
    assert correct >= 8, f"only {correct}/10 rendered digits recognised"


def test_pixels_json_gives_the_models_own_probabilities(
    serving: Serving, trained: TrainedModels, classifier: Classifier
) -> None:
    image = trained.digits.images[3]
    response = serving.client.post("/predict", json={"pixels": pixels_of(image), "top_k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    check_prediction(body, trained.classes, k=5)
    expected = classifier.predict(image)[0]  # the dataset tensor itself, no HTTP involved
    assert np.allclose(body["probabilities"], expected.probabilities, atol=1e-6)
    assert body["label"] == expected.label


def test_pixels_in_unit_range_are_accepted(
    serving: Serving, trained: TrainedModels, classifier: Classifier
) -> None:
    image = trained.digits.images[4]
    response = serving.client.post("/predict", json={"pixels": image[0].tolist()})
    assert response.status_code == 200, response.text
    assert np.allclose(
        response.json()["probabilities"], classifier.predict(image)[0].probabilities, atol=1e-6
    )


def test_include_input_returns_the_image_the_model_saw(
    serving: Serving, trained: TrainedModels, classifier: Classifier
) -> None:
    data = digit_png_dark_on_light(trained.digits.images[5])
    response = serving.client.post(
        "/predict?include_input=true&top_k=2", files={"file": ("d.png", data, "image/png")}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    check_prediction({k: v for k, v in body.items() if k != "input_png"}, trained.classes, k=2)
    prefix = "data:image/png;base64,"
    assert body["input_png"].startswith(prefix)
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["input_png"][len(prefix) :]))))
    expected = image_bytes_to_tensor(data)  # (1, 28, 28), computed without the API
    assert seen.shape == (28, 28)
    assert np.array_equal(seen, digit_levels(expected))
    assert np.allclose(body["probabilities"], classifier.predict(expected)[0].probabilities, atol=1e-6)


def test_form_fields_choose_top_k_and_run(serving: Serving, trained: TrainedModels) -> None:
    data = digit_png_dark_on_light(trained.digits.images[0])
    response = serving.client.post(
        "/predict",
        files={"file": ("d.png", data, "image/png")},
        data={"top_k": "4", "run_id": serving.run_ids["cnn"]},
    )
    assert response.status_code == 200, response.text
    check_prediction(response.json(), trained.classes, k=4)
    raw = serving.client.post("/predict?top_k=1", content=data, headers={"content-type": "image/png"})
    assert raw.status_code == 200, raw.text
    assert raw.json()["probabilities"] == response.json()["probabilities"]
    assert len(raw.json()["top_k"]) == 1


@pytest.mark.parametrize("layer, shape", [("conv1", [8, 28, 28]), ("conv2", [16, 12, 12])])
def test_activation_maps_json_are_the_models_activations(
    serving: Serving, trained: TrainedModels, classifier: Classifier, layer: str, shape: list
) -> None:
    image = trained.digits.images[1]
    response = serving.client.post(
        "/activation-maps", json={"pixels": pixels_of(image), "layer": layer, "format": "json"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_id"] == serving.run_ids["cnn"] and body["layer"] == layer and body["shape"] == shape
    maps = np.array(body["maps"])
    assert list(maps.shape) == shape
    with torch.no_grad():
        expected = classifier.model.activations(pixels_to_tensor(pixels_of(image)).unsqueeze(0))[layer][0]
    assert np.allclose(maps, expected.numpy(), atol=6e-5)
    assert maps.max() > 0 and maps.min() >= 0  # after ReLU, and not all dead


def test_activation_maps_of_an_upload(
    serving: Serving, trained: TrainedModels, classifier: Classifier
) -> None:
    data = digit_jpeg_light_on_dark(trained.digits.images[2])
    response = serving.client.post(
        "/activation-maps?layer=conv2&format=json", files={"file": ("d.jpg", data, "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    with torch.no_grad():
        expected = classifier.model.activations(image_bytes_to_tensor(data).unsqueeze(0))["conv2"][0]
    assert np.allclose(np.array(response.json()["maps"]), expected.numpy(), atol=6e-5)


def test_activation_maps_png(serving: Serving, trained: TrainedModels) -> None:
    data = digit_png_dark_on_light(trained.digits.images[1])
    for layer in ("conv1", "conv2"):
        response = serving.client.post(
            "/activation-maps", files={"file": ("d.png", data, "image/png")}, data={"layer": layer}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.headers["x-run-id"] == serving.run_ids["cnn"]
        picture = Image.open(io.BytesIO(response.content))
        assert picture.format == "PNG" and picture.width > 200 and picture.height > 100


@pytest.mark.parametrize(
    "query, status", [("layer=conv3", 422), ("format=xml", 422), ("layer=fc1&format=json", 422)]
)
def test_activation_maps_bad_options(
    serving: Serving, trained: TrainedModels, query: str, status: int
) -> None:
    response = serving.client.post(
        f"/activation-maps?{query}", json={"pixels": pixels_of(trained.digits.images[0])}
    )
    assert response.status_code == status
    assert "conv1" in response.json()["detail"] or "png" in response.json()["detail"]


def test_upload_over_the_byte_limit_is_413(serving: Serving) -> None:
    limit = serving.settings.max_upload_bytes
    # Just over the limit: the request's Content-Length passes, the file's own bytes are counted.
    just_over = serving.client.post(
        "/predict", files={"file": ("big.png", b"\x89PNG" + bytes(limit), "image/png")}
    )
    assert just_over.status_code == 413
    assert str(limit) in just_over.json()["detail"]
    # Far over: refused from the Content-Length header.
    declared = serving.client.post("/predict", files={"file": ("big.png", bytes(3 * limit), "image/png")})
    assert declared.status_code == 413
    # No Content-Length (chunked): refused while the body streams in.
    chunks = (bytes(50_000) for _ in range(3 * limit // 50_000))
    streamed = serving.client.post("/predict", content=chunks, headers={"content-type": "image/png"})
    assert streamed.status_code == 413
    assert str(limit) in streamed.json()["detail"]
    pixels = serving.client.post(
        "/predict",
        content=b'{"pixels": [' + b"0," * limit + b"0]}",
        headers={"content-type": "application/json"},
    )
    assert pixels.status_code == 413


def test_image_with_too_many_pixels_is_413(serving: Serving) -> None:
    side = int(serving.settings.max_image_pixels**0.5) + 10
    data = encode(Image.new("L", (side, side), 255), "PNG")
    assert len(data) < serving.settings.max_upload_bytes  # small in bytes, large in pixels
    response = serving.client.post("/predict", files={"file": ("huge.png", data, "image/png")})
    assert response.status_code == 413
    assert str(serving.settings.max_image_pixels) in response.json()["detail"]


@pytest.mark.parametrize("payload", [b"hello, not an image", b"%PDF-1.4\n" + bytes(300), b""])
def test_not_an_image_is_415(serving: Serving, payload: bytes) -> None:
    response = serving.client.post("/predict", files={"file": ("x.png", payload, "image/png")})
    assert response.status_code == 415
    assert "not an image" in response.json()["detail"]


def test_unsupported_body_type_is_415(serving: Serving) -> None:
    response = serving.client.post("/predict", content=b"1,2,3", headers={"content-type": "text/csv"})
    assert response.status_code == 415
    assert "multipart" in response.json()["detail"]


@pytest.mark.parametrize(
    "body, words",
    [
        ({"pixels": [[0] * 27] * 28}, "28x28"),
        ({"pixels": [[0] * 28] * 27}, "28x28"),
        ({"pixels": [["a"] * 28] * 28}, "28x28"),
        ({"pixels": [[-1] * 28] * 28}, "negative"),
        ({"pixels": [[300] * 28] * 28}, "0..255"),
        ({"pixels": None}, "28x28"),
        # numpy would read each of these as numbers: the grid must hold JSON numbers only
        ({"pixels": [[True] + [1] * 27] + [[0] * 28] * 27}, "numbers"),
        ({"pixels": [[0.5] * 27 + [False]] + [[0] * 28] * 27}, "numbers"),
        ({"pixels": [["5"] + [1] * 27] + [[0] * 28] * 27}, "numbers"),
        ({"pixels": [[None] + [1] * 27] + [[0] * 28] * 27}, "numbers"),
        ({"pixels": [[10**30] + [1] * 27] + [[0] * 28] * 27}, "0..255"),
        ({"image": []}, "pixels"),
        ({"pixels": [[0] * 28] * 28, "top_k": 0}, "top_k"),
        ({"pixels": [[0] * 28] * 28, "top_k": "many"}, "top_k"),
        ({"pixels": [[0] * 28] * 28, "run_id": 5}, "run_id"),
        ({"pixels": [[0] * 28] * 28, "topk": 3}, "topk"),
    ],
)
def test_bad_pixel_requests_are_422(serving: Serving, body: dict, words: str) -> None:
    response = serving.client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


def test_other_422_cases(serving: Serving) -> None:
    assert (
        serving.client.post(
            "/predict", content=b"[1, 2]", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert (
        serving.client.post(
            "/predict", content=b"{nope", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert serving.client.post("/predict", files={"image": ("d.png", b"abc", "image/png")}).status_code == 422
    assert serving.client.post("/predict?top_k=0", json={"pixels": [[0] * 28] * 28}).status_code == 422
    blank = serving.client.post(
        "/predict", files={"file": ("b.png", encode(Image.new("L", (50, 50), 255), "PNG"), "image/png")}
    )
    assert blank.status_code == 422 and "blank" in blank.json()["detail"]


def test_api_key_is_required_when_set(make_serving, trained: TrainedModels) -> None:
    guarded = make_serving(api_key="s3cret")
    guarded.add_run("cnn", trained.cnn, [0.8])
    pixels = {"pixels": pixels_of(trained.digits.images[0])}
    for path in ("/predict", "/activation-maps"):
        assert guarded.client.post(path, json=pixels).status_code == 401
        assert guarded.client.post(path, json=pixels, headers={"X-API-Key": "wrong"}).status_code == 401
    assert guarded.client.post("/transliterate", json={"text": "hola"}).status_code == 401
    ok = guarded.client.post("/predict", json=pixels, headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200, ok.text
    maps = guarded.client.post(
        "/activation-maps?format=json", json=pixels, headers={"Authorization": "Bearer s3cret"}
    )
    assert maps.status_code == 200, maps.text
