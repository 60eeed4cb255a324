"""POST/GET/DELETE /datasets: uploads validated, stored by content hash, listed with the built-ins, protected
while runs use them; POST /train on an upload records its hash."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.storage import dataset_key

TRAIN = "go .\tve .\thttps://tatoeba.org\nhi .\thola .\tx\nrun !\tcorre !\tx\n"
VAL = "wait .\tespera .\tx\n"


def pairs_files(train: str = TRAIN, val: str = VAL) -> list[tuple[str, tuple[str, bytes]]]:
    return [("file", ("train-small.txt", train.encode())), ("file", ("val-small.txt", val.encode()))]


def upload(client: TestClient, name: str, files: list) -> object:
    return client.post("/datasets", data={"name": name}, files=files)


def test_an_upload_is_stored_by_hash_and_listed(client: TestClient, app) -> None:
    r = upload(client, "tiny-pairs", pairs_files())
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["name"], body["kind"], body["source"], body["model"]) == ("tiny-pairs", "pairs", "upload", "seq2seq")
    assert body["counts"] == {"train": 3, "val": 1} and body["runs"] == 0
    assert set(body["files"]) == {"train-small.txt", "val-small.txt"}
    stored = app.state.store.objects.get_bytes(dataset_key(body["sha256"]))
    assert hashlib.sha256(stored).hexdigest() == body["sha256"] and len(stored) == body["size_bytes"]

    listed = {d["name"]: d for d in client.get("/datasets").json()["datasets"]}
    assert listed["tiny-pairs"]["sha256"] == body["sha256"]
    assert listed["mnist"]["source"] == "builtin" and listed["mnist-8k"]["source"] == "folder"
    assert client.get("/datasets/tiny-pairs").json() == body
    assert client.get("/datasets/mnist-8k").json()["source"] == "folder"
    assert client.get("/datasets/nothing-here").status_code == 404
    assert client.get("/datasets/a%00b").status_code == 404  # never reaches SQL (PostgreSQL refuses NUL)
    assert client.delete("/datasets/a%00b").status_code == 404


def test_the_same_content_again_is_the_same_dataset_and_a_zip_hashes_like_loose_files(client: TestClient) -> None:
    first = upload(client, "again", pairs_files()).json()
    again = upload(client, "again", pairs_files())
    assert again.status_code == 200 and again.json()["sha256"] == first["sha256"]
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("data/train-small.txt", TRAIN)
        archive.writestr("data/val-small.txt", VAL)
    zipped = upload(client, "zipped", [("file", ("pairs.zip", packed.getvalue()))])
    assert zipped.status_code == 201, zipped.text
    assert zipped.json()["sha256"] == first["sha256"]


@pytest.mark.parametrize(("name", "files", "status", "words"), [
    ("mnist", pairs_files(), 409, "built-in"),
    ("mnist-8k", pairs_files(), 409, "data folder"),
    ("../up", pairs_files(), 422, "invalid dataset name"),
    ("no-val", [("file", ("train-a.txt", TRAIN.encode()))], 422, "val"),
    ("bad-name", [("file", ("notes.txt", b"x\ty\n")), *pairs_files()], 422, "notes.txt"),
    ("one-field", [("file", ("train-a.txt", b"only one field\n")), ("file", ("val-a.txt", VAL.encode()))], 422, ""),
])
def test_bad_uploads_are_refused_with_the_reason(client: TestClient, name, files, status, words) -> None:
    r = upload(client, name, files)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert name not in {d["name"] for d in client.get("/datasets").json()["datasets"] if d["source"] == "upload"}


def test_a_path_in_a_part_name_is_reduced_to_the_file_name(client: TestClient, app) -> None:
    files = [("file", ("../../train-a.txt", TRAIN.encode())), ("file", ("/etc/val-a.txt", VAL.encode()))]
    r = upload(client, "paths", files)
    assert r.status_code == 201, r.text
    assert set(r.json()["files"]) == {"train-a.txt", "val-a.txt"}
    assert not list(Path(app.state.store.cache_dir).glob("**/train-a.txt"))  # the upload's temp folder is gone


def test_other_content_under_a_taken_name_is_a_conflict(client: TestClient) -> None:
    assert upload(client, "taken", pairs_files()).status_code == 201
    r = upload(client, "taken", pairs_files(val="other .\totro .\n"))
    assert r.status_code == 409 and "other content" in r.json()["detail"]


def test_not_multipart_and_too_large_are_refused_before_reading(make_app) -> None:
    with TestClient(make_app(max_dataset_bytes=1000)) as client:
        assert client.post("/datasets", json={"name": "x"}).status_code == 415
        r = upload(client, "big", pairs_files(train=TRAIN * 200))
        assert r.status_code == 413 and "INKWELL_MAX_DATASET_BYTES" in r.json()["detail"]
        assert upload(client, "small", pairs_files()).status_code == 201
        r = client.post("/datasets", data={"name": "nofile"})
        assert r.status_code == 422 and "file" in r.json()["detail"]


def test_training_on_an_upload_records_its_hash_and_protects_it(client: TestClient, app, fake_worker,
                                                                shared_data: Path) -> None:
    body = upload(client, "words", pairs_files()).json()
    r = client.post("/train", json={"model": "cnn", "dataset": "words"})
    assert r.status_code == 422 and "holds text pairs" in r.json()["detail"]
    r = client.post("/train", json={"model": "seq2seq", "dataset": "words", "epochs": 1})
    assert r.status_code == 202, r.text
    run = fake_worker.run(r.json()["run_id"])
    assert (run.dataset, run.dataset_sha256) == ("words", body["sha256"])
    assert client.get("/datasets/words").json()["runs"] == 1

    r = client.delete("/datasets/words")
    assert r.status_code == 409 and "1 run" in r.json()["detail"]
    assert client.delete("/datasets/mnist").status_code == 409
    assert client.delete("/datasets/nothing-here").status_code == 404

    unused = upload(client, "unused", pairs_files(val="one .\tuno .\n")).json()
    assert client.delete("/datasets/unused").status_code == 204
    assert client.get("/datasets/unused").status_code == 404
    assert not app.state.store.objects.exists(dataset_key(unused["sha256"]))


def test_deleting_one_of_two_names_of_the_same_content_keeps_the_archive(client: TestClient, app) -> None:
    first = upload(client, "name-a", pairs_files()).json()
    assert upload(client, "name-b", pairs_files()).json()["sha256"] == first["sha256"]
    assert client.delete("/datasets/name-a").status_code == 204
    assert app.state.store.objects.exists(dataset_key(first["sha256"]))
    assert client.delete("/datasets/name-b").status_code == 204
    assert not app.state.store.objects.exists(dataset_key(first["sha256"]))


def test_idx_files_upload_as_an_image_dataset(client: TestClient, shared_data: Path) -> None:
    files = [("file", (p.name, p.read_bytes())) for p in sorted((shared_data / "mnist-8k").iterdir())]
    r = upload(client, "digits", files)
    assert r.status_code == 201, r.text
    assert (r.json()["kind"], r.json()["counts"]["images"], r.json()["model"]) == ("images", 8000, "cnn")
