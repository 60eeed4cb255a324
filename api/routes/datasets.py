"""Datasets: the built-in ones, the API's data folders, and uploads (POST /datasets) kept in the artifact store.

An upload is read with its own limit (INKWELL_MAX_DATASET_BYTES: 413 before the rest is read), copied into a
private temp folder of the cache, validated and made into one canonical archive by core/dataset_files.py
(422 with the reason), stored under its sha256 and recorded in SQL (core/datasets.py).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import SessionDep, SettingsDep
from api.limits import counting_body
from api.openapi import request_body
from api.schemas import DatasetInfo, DatasetList
from core.dataset_files import DatasetRejected, UploadLimits, inspect_upload
from core.datasets import DatasetConflict, delete_dataset, get_dataset, list_uploaded, register_dataset, runs_using
from core.models import Dataset
from core.settings import Settings
from core.storage import ArtifactStore
from ml.data.catalog import list_datasets
from ml.kinds import kinds_for_data

router = APIRouter(tags=["datasets"])

MAX_PARTS = 16  # file parts in one upload
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and headers on top of the files' bytes
PART_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
NameParam = Annotated[str, PathParam(max_length=100, description="the dataset's name")]


def _info(name: str, kind: str, builtin: bool, available: bool, source: str, **extra: Any) -> DatasetInfo | None:
    models = [k.name for k in kinds_for_data(kind)]
    if not models:
        return None
    return DatasetInfo(name=name, kind=kind, model=models[0], models=models, builtin=builtin, available=available,
                       source=source, **extra)


def _upload_info(session: SessionDep, row: Dataset) -> DatasetInfo | None:
    return _info(row.name, row.kind, False, True, "upload", sha256=row.sha256, size_bytes=row.size_bytes,
                 counts=row.counts, files=row.files, created_at=row.created_at, runs=runs_using(session, row))


@router.get("/datasets", summary="Datasets a run can train on: built-in, data folders and uploads",
            response_model=DatasetList, response_model_exclude_none=True)
def datasets(settings: SettingsDep, session: SessionDep) -> DatasetList:
    found = [_info(e.name, e.data_kind, e.builtin, e.available, "builtin" if e.builtin else "folder")
             for e in list_datasets(settings.data_dir)]
    found += [_upload_info(session, row) for row in list_uploaded(session)]
    return DatasetList(datasets=[d for d in found if d is not None])


@router.get("/datasets/{name}", summary="One dataset", response_model=DatasetInfo,
            response_model_exclude_none=True, responses={404: {"description": "no such dataset"}})
def dataset(name: NameParam, settings: SettingsDep, session: SessionDep) -> DatasetInfo:
    row = get_dataset(session, name)
    if row is not None:
        info = _upload_info(session, row)
    else:
        entry = next((e for e in list_datasets(settings.data_dir) if e.name == name), None)
        info = entry and _info(entry.name, entry.data_kind, entry.builtin, entry.available,
                               "builtin" if entry.builtin else "folder")
    if info is None:
        raise HTTPException(404, f"no dataset {name[:100]!r}; GET /datasets lists them")
    return info


@router.delete("/datasets/{name}", status_code=204, summary="Delete an uploaded dataset no run uses",
               response_class=Response,
               responses={204: {"description": "deleted"}, 404: {"description": "no such uploaded dataset"},
                          409: {"description": "runs use it (or it is built in / a data folder)"}})
def remove_dataset(name: NameParam, settings: SettingsDep, session: SessionDep, request: Request) -> Response:
    try:
        deleted = delete_dataset(session, request.app.state.store, name)
    except DatasetConflict as exc:
        raise HTTPException(409, str(exc)) from None
    if not deleted:
        if any(e.name == name for e in list_datasets(settings.data_dir)):
            raise HTTPException(409, f"dataset {name!r} is built in or a data folder; only uploads can be deleted")
        raise HTTPException(404, f"no uploaded dataset {name[:100]!r}")
    return Response(status_code=204)


def _upload_body() -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["name", "file"], "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
                     "description": "the dataset's name (what POST /train's `dataset` takes)"},
            "file": {"type": "array", "minItems": 1, "maxItems": MAX_PARTS, "items": binary,
                     "description": "sentence pairs train-*.txt, val-*.txt (test-*.txt optional); IDX images and "
                                    "labels (*-images-idx3-ubyte, *-labels-idx1-ubyte, .gz allowed); or one .zip "
                                    "or .tar.gz of them"},
        },
    }}}}


@router.post(
    "/datasets",
    status_code=201,
    summary="Upload a dataset (sentence pairs or IDX images), stored by content hash in the artifact store",
    response_model=DatasetInfo,
    response_model_exclude_none=True,
    openapi_extra=request_body("datasets", _upload_body),
    responses={
        200: {"description": "the same name with the same content existed already: that dataset",
              "model": DatasetInfo},
        409: {"description": "the name is taken by other content, a built-in or a data folder"},
        413: {"description": "the upload is larger than INKWELL_MAX_DATASET_BYTES"},
        415: {"description": "not multipart/form-data"},
        422: {"description": "the files are not a dataset: the reason says which file and why"},
        503: {"description": "the artifact store is unreachable"},
    },
)
async def upload_dataset(request: Request, response: Response) -> DatasetInfo:
    settings: Settings = request.app.state.settings
    limit = settings.max_dataset_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise _too_large(limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):  # the latter: no files
        raise HTTPException(415, "send the dataset as multipart/form-data: a `name` field and `file` parts")
    store: ArtifactStore = request.app.state.store
    workdir = Path(tempfile.mkdtemp(prefix=f"upload-{uuid.uuid4().hex[:8]}-", dir=_uploads_dir(store)))
    try:
        counted = counting_body(request, limit + FORM_OVERHEAD, lambda: _too_large(limit))
        name, parts = await _read_form(counted, workdir, limit)
        info, created = await run_in_threadpool(_store_upload, request, name, parts, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not created:
        response.status_code = 200
    return info


def _uploads_dir(store: ArtifactStore) -> Path:
    folder = store.cache_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the upload is larger than {limit} bytes (INKWELL_MAX_DATASET_BYTES)")


async def _read_form(request: Request, workdir: Path, limit: int) -> tuple[str, list[tuple[str, Path]]]:
    """(name, [(file name, local copy)]) of the multipart upload; 422 for a missing or bad field."""
    async with request.form(max_files=MAX_PARTS, max_fields=MAX_PARTS) as form:
        unknown = sorted({key for key in form if key not in ("name", "file")})
        if unknown:
            raise HTTPException(422, f"unknown form field(s) {', '.join(repr(k[:40]) for k in unknown[:5])}: "
                                     "send `name` and `file` parts only")
        name = form.get("name")
        if not isinstance(name, str) or not name.strip():
            raise HTTPException(422, "name: give the dataset a name (a form field `name`)")
        uploads = [u for u in form.getlist("file") if isinstance(u, UploadFile)]
        if not uploads:
            raise HTTPException(422, "file: send the dataset's files as multipart parts named `file`")
        parts, total = [], 0
        for upload in uploads:
            filename = Path((upload.filename or "").replace("\\", "/")).name
            if not PART_NAME.fullmatch(filename) or ".." in filename:
                raise HTTPException(422, f"file: {str(upload.filename)[:80]!r} is not a plain file name")
            if any(filename == seen for seen, _ in parts):
                raise HTTPException(422, f"file: {filename!r} was sent twice")
            path = workdir / filename
            with path.open("wb") as out:
                while chunk := await upload.read(1024 * 1024):
                    total += len(chunk)
                    if total > limit:
                        raise _too_large(limit)
                    out.write(chunk)
            parts.append((filename, path))
    return name.strip(), parts


def _store_upload(request: Request, name: str, parts: list[tuple[str, Path]], workdir: Path,
                  ) -> tuple[DatasetInfo, bool]:
    settings: Settings = request.app.state.settings
    limits = UploadLimits(max_upload_bytes=settings.max_dataset_bytes,
                          max_total_bytes=max(UploadLimits().max_total_bytes, settings.max_dataset_bytes))
    (workdir / "canonical").mkdir()
    try:
        content = inspect_upload(parts, workdir / "canonical", limits)
    except DatasetRejected as exc:
        raise HTTPException(422, str(exc)) from None
    with request.app.state.sessionmaker() as session:
        try:
            row, created = register_dataset(session, request.app.state.store, name, content, settings.data_dir)
        except ValueError as exc:  # DatasetConflict is one; an invalid name another
            raise HTTPException(409 if isinstance(exc, DatasetConflict) else 422, str(exc)) from None
        info = _upload_info(session, row)
    if info is None:
        raise HTTPException(422, f"no registered model trains on {content.kind} data")
    return info, created
