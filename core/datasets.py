"""Uploaded datasets: recorded in SQL, their canonical archive stored content-addressed in the artifact store.

The built-in sets (ml.data.catalog) and the folders of a data directory are still datasets too; an upload may
not take one of their names. A run on an uploaded dataset records its sha256, and the worker that trains it
fetches exactly those bytes (ArtifactStore.fetch_dataset), on any machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.dataset_files import DatasetContent, extract_dataset
from core.db import FRESH
from core.models import Dataset, Run
from core.storage import ArtifactStore, dataset_key
from ml.data.catalog import list_datasets
from ml.data.specs import NAME, folder_kind


class DatasetConflict(ValueError):
    """The name is taken (a built-in, a data folder or another upload), or runs still use the dataset (409)."""


def validate_name(name: str) -> str:
    """`name` if it can name a dataset (letters, digits, `_ . -`, at most 100); ValueError otherwise."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None or ".." in name:
        raise ValueError(f"invalid dataset name {str(name)[:40]!r}: 1-100 letters, digits, '_', '.', '-', "
                         "starting with a letter or digit")
    return name


def get_dataset(session: Session, name: str) -> Dataset | None:
    """The uploaded dataset called `name`, or None (also for a string that cannot be a name: never queried)."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        return None
    return session.get(Dataset, name, populate_existing=True)


def list_uploaded(session: Session) -> list[Dataset]:
    """Every uploaded dataset, by name."""
    return list(session.scalars(select(Dataset).order_by(Dataset.name), execution_options=FRESH))


def runs_using(session: Session, dataset: Dataset) -> int:
    """How many runs train (or trained) on this upload."""
    stmt = select(func.count()).select_from(Run).where(Run.dataset == dataset.name,
                                                       Run.dataset_sha256 == dataset.sha256)
    return int(session.scalar(stmt) or 0)


def register_dataset(session: Session, store: ArtifactStore, name: str, content: DatasetContent,
                     data_dir: Path) -> tuple[Dataset, bool]:
    """(the dataset, created?) for an upload of `content` as `name`.

    The archive is stored first (under its hash: storing it again is harmless), then the row. The same
    name with the same content is the existing dataset (created False: a retried upload is safe); a name
    taken by other content, a built-in or a data folder is a DatasetConflict.
    """
    validate_name(name)
    existing = get_dataset(session, name)
    if existing is not None:
        if existing.sha256 == content.sha256:
            return existing, False
        raise DatasetConflict(f"dataset {name!r} exists with other content (sha256 {existing.sha256[:12]}…); "
                              "upload under another name or delete it first")
    if any(d.name == name for d in list_datasets(data_dir)):
        raise DatasetConflict(f"dataset name {name!r} is taken by a built-in dataset or a data folder")
    key = dataset_key(content.sha256)
    if not store.objects.exists(key):
        store.objects.put_file(key, content.archive)
    row = Dataset(name=name, kind=content.kind, sha256=content.sha256, size_bytes=content.bytes,
                  counts=dict(content.counts), files=dict(content.files))
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # a concurrent upload of the same name won
        session.rollback()
        winner = get_dataset(session, name)
        if winner is not None and winner.sha256 == content.sha256:
            return winner, False
        raise DatasetConflict(f"dataset {name!r} was just uploaded with other content") from None
    return row, True


def delete_dataset(session: Session, store: ArtifactStore, name: str) -> bool:
    """Delete an upload (its archive too, unless another name holds the same content); False if unknown.
    DatasetConflict when runs reference it (their records, resumes and evaluations need its bytes)."""
    found = get_dataset(session, name)
    if found is None:
        return False
    used = runs_using(session, found)
    if used:
        raise DatasetConflict(f"dataset {name!r} is used by {used} run(s); it cannot be deleted")
    sha = found.sha256
    session.delete(found)
    session.commit()
    others = session.scalar(select(func.count()).select_from(Dataset).where(Dataset.sha256 == sha))
    if not others:
        store.objects.delete(dataset_key(sha))
    return True


def materialize(store: ArtifactStore, sha256: str, kind: str) -> str:
    """The dataset spec (`pairs:DIR` / `idx:DIR`) of an upload, fetched and unpacked in the local cache by hash
    (the archive's hash is checked before it is used)."""
    archive = store.fetch_dataset(sha256)
    folder = store.cache_dir / "datasets" / sha256
    try:
        extract_dataset(archive, folder, expected_sha256=sha256)
    except ValueError:
        archive.unlink(missing_ok=True)  # a corrupt download: fetched again next time
        shutil.rmtree(folder, ignore_errors=True)
        raise
    holds = folder_kind(folder)
    if holds != kind:
        raise ValueError(f"dataset archive {sha256[:12]}… holds {holds or 'no recognisable data'}, not {kind}")
    return f"{'pairs' if kind == 'pairs' else 'idx'}:{folder}"
