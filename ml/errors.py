"""Errors the ml package raises for bad input; each message is one readable line."""


class MLError(Exception):
    """Base class: the message is shown to a user as it is (no traceback)."""


class DataError(MLError):
    """A dataset spec is unknown, or its files are missing or malformed."""


class InputError(MLError):
    """A user's input (image, pixels, text) cannot be used."""


class NotAnImage(InputError):
    """Uploaded bytes are not an image that can be decoded."""


class InputTooLarge(InputError):
    """An image has more pixels than allowed."""


class CheckpointError(MLError):
    """A checkpoint file is missing, unreadable or of the wrong kind."""


class Cancelled(MLError):
    """Training stopped because the cancel check said so."""
