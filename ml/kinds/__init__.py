"""Model kinds: `get_kind("cnn")` answers everything api/, core/, worker/ and the CLI need to know.

The built-in kinds are declared in `ml/kinds/cnn.py` and `ml/kinds/seq2seq.py`; more can be registered
with `register_kind` (or by a module named in INKWELL_KIND_MODULES). Importing this package loads no torch.
"""

from ml.kinds import cnn as _cnn  # noqa: F401 - registers the built-in kinds, in this order
from ml.kinds import seq2seq as _seq2seq  # noqa: F401
from ml.kinds.registry import (
    DATA_KINDS,
    ModelKind,
    UnknownKind,
    all_kinds,
    find_kind,
    get_kind,
    kind_names,
    kind_of_checkpoint,
    kinds_for_data,
    kinds_serving,
    load_kind_modules,
    register_kind,
    registered,
    unregister_kind,
)

__all__ = [
    "DATA_KINDS", "ModelKind", "UnknownKind", "all_kinds", "find_kind", "get_kind", "kind_names",
    "kind_of_checkpoint", "kinds_for_data", "kinds_serving", "load_kind_modules", "register_kind", "registered",
    "unregister_kind",
]
