"""Reading an image request (multipart upload, raw image body or pixels JSON) within the size limits.

Only the bytes: the request's options (run_id, top_k, ...) are validated by the pydantic models of
api/inference_schemas.py, from the query and the body's fields together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import torch
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import UploadFile

from api.limits import counting_body
from ml.errors import InputError, NotAnImage
from ml.imageprep import image_bytes_to_tensor, pixels_to_tensor

CHUNK = 64 * 1024
# Room for the multipart framing and the small form fields around the file itself.
FORM_OVERHEAD = 64 * 1024
MAX_FORM_FIELDS = 16

def too_large(limit: int) -> HTTPException:
    return HTTPException(
        413, detail=f"upload is larger than the limit of {limit} bytes (INKWELL_MAX_UPLOAD_BYTES)"
    )


@dataclass
class ImageRequest:
    """An image request as read from the wire: image bytes or a pixel grid, plus its other fields."""

    data: bytes | None = None  # an uploaded image file
    pixels: Any = None  # a JSON pixel grid
    fields: dict[str, Any] = field(default_factory=dict)  # run_id, top_k, ... from the body
    text_fields: bool = False  # the fields are a form's text ("3" for 3); JSON fields have their JSON types
    may_hold_booleans: bool = False  # the JSON body has a `true` or `false` somewhere

    def tensor(self, max_pixels: int) -> torch.Tensor:
        """The image the model sees, (1, 28, 28) in [0, 1); 415 for bytes that are not an image.

        Too many pixels raise ml InputTooLarge (413), a blank image ml InputError (422), and a pixel grid
        that is not what the schema says a 422 listing `pixels` in `errors`, like any invalid field.
        """
        if self.data is not None:
            try:
                return image_bytes_to_tensor(self.data, max_pixels=max_pixels)
            except NotAnImage as exc:
                raise HTTPException(415, detail=str(exc)) from None
        try:
            return pixels_to_tensor(_numbers_only(self.pixels, self.may_hold_booleans))
        except InputError as exc:
            error = {"type": "value_error", "loc": ("body", "pixels"), "msg": str(exc)}
            raise RequestValidationError([error]) from None


def _numbers_only(pixels: Any, may_hold_booleans: bool) -> np.ndarray:
    """`pixels` as an array, refused when the nested lists hold anything but JSON numbers.

    numpy builds the array in C and its dtype says what it holds: strings, nulls, objects or ragged rows
    give no numeric dtype. Only booleans mixed with numbers would pass as numbers (numpy reads true as 1),
    so when the body has a `true` or `false` anywhere the values are also checked one by one (rare).
    """
    invalid = InputError("pixels must be a 28x28 grid of numbers (rows of equal length)")
    if may_hold_booleans:
        stack = [pixels]
        while stack:
            value = stack.pop()
            if isinstance(value, list):
                stack.extend(value)
            elif value is not pixels and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise invalid
    try:
        array = np.asarray(pixels)
    except (ValueError, TypeError, OverflowError):
        raise invalid from None
    if array.dtype.kind not in "iuf":
        raise invalid
    return array


async def _read_upload(upload: UploadFile, limit: int) -> bytes:
    """The file's bytes, read in chunks; 413 as soon as it passes `limit`."""
    parts: list[bytes] = []
    total = 0
    while chunk := await upload.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


async def _read_body(request: Request) -> bytes:
    parts = [chunk async for chunk in request.stream()]
    return b"".join(parts)


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)  # several times faster than json.loads on a pixel grid
    except (ValueError, RecursionError):
        raise HTTPException(422, detail="the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise HTTPException(422, detail='the JSON body must be an object like {"pixels": [[...], ...]}')
    if "pixels" not in value:
        raise HTTPException(422, detail='the JSON body needs "pixels": 28 rows of 28 numbers')
    return value


async def read_image_request(request: Request, max_upload_bytes: int) -> ImageRequest:
    """Read a multipart upload (`file` + fields), a raw `image/*` body or JSON `{"pixels": ...}`.

    The declared Content-Length is checked first, then the bytes actually received are counted,
    so an oversized body is refused (413) without reading all of it.
    """
    allowed = max_upload_bytes + FORM_OVERHEAD
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > allowed:
        raise too_large(max_upload_bytes)
    counted = counting_body(request, allowed, lambda: too_large(max_upload_bytes))
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()

    if content_type == "multipart/form-data":
        async with counted.form(max_files=1, max_fields=MAX_FORM_FIELDS) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise HTTPException(422, detail="file: send the image as a multipart file field named 'file'")
            data = await _read_upload(upload, max_upload_bytes)
            # an empty field counts as absent (HTML forms send their empty inputs)
            fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str) and v != ""}
        return ImageRequest(data=data, fields=fields, text_fields=True)
    if content_type == "application/json" or content_type.endswith("+json"):
        body = await _read_body(counted)
        if len(body) > max_upload_bytes:
            raise too_large(max_upload_bytes)
        value = _parse_json(body)
        booleans = b"true" in body or b"false" in body
        return ImageRequest(pixels=value.pop("pixels"), fields=value, may_hold_booleans=booleans)
    if content_type.startswith("image/"):
        body = await _read_body(counted)
        if len(body) > max_upload_bytes:
            raise too_large(max_upload_bytes)
        return ImageRequest(data=body)
    raise HTTPException(
        415,
        detail="send the image as multipart/form-data with a 'file' field, as an image/* body, "
        'or JSON {"pixels": 28x28 numbers}',
    )
