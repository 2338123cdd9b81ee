"""The tensors of a TorchScript archive (OpenAI's CLIP files), read without running anything.

``torch.jit.load`` compiles the archive's code and unpickles its objects; a crafted file can run
code that way, and ``torch.load(weights_only=True)`` refuses TorchScript archives. This reader
opens the zip, unpickles ``<root>/data.pkl`` with an unpickler that knows only how to rebuild
tensors (every TorchScript class becomes an inert attribute holder; any other global is refused)
and reads the storages from ``<root>/data/<key>``. The module tree is flattened into a state dict
(``visual.conv1.weight``, ...). The archive's ``code/`` is never looked at.
"""

from __future__ import annotations

import collections
import pickle
import warnings
import zipfile

import torch


class TorchScriptError(ValueError):
    """An archive this reader cannot take apart (names what it found)."""


class _Object:
    """A TorchScript object: its attributes only."""

    def __init__(self, *args):
        self.attrs: dict = {}

    def __setstate__(self, state):
        self.attrs = state if isinstance(state, dict) else {}


def _typed_list(items, *_):
    return list(items)


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "build_intlist"): _typed_list,
    ("torch.jit._pickle", "build_doublelist"): _typed_list,
    ("torch.jit._pickle", "build_boollist"): _typed_list,
    ("torch.jit._pickle", "build_tensorlist"): _typed_list,
    ("torch.jit._pickle", "restore_type_tag"): lambda value, *_: value,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, root: str):
        super().__init__(file)
        self.archive = archive
        self.root = root

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return _Object
        if module == "torch" and name.endswith("Storage") and hasattr(torch, name):
            return getattr(torch, name)  # a storage type (its dtype), never called
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        dtype = getattr(storage_type, "dtype", None)
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
        try:
            data = self.archive.read(f"{self.root}/data/{key}")
        except KeyError:
            raise pickle.UnpicklingError(f"storage {key} is missing from the archive") from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        if len(data) != numel * itemsize:
            raise pickle.UnpicklingError(f"storage {key} holds {len(data)} bytes, not {numel} x {itemsize}")
        untyped = (
            torch.UntypedStorage.from_buffer(data, dtype=torch.uint8) if data else torch.UntypedStorage(0)
        )
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _flatten(obj: _Object, prefix: str, out: dict, depth: int = 0) -> None:
    if depth > 64:
        raise TorchScriptError("module tree deeper than 64 levels")
    for name, value in obj.attrs.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _Object):
            _flatten(value, f"{prefix}{name}.", out, depth + 1)


def is_torchscript(path) -> bool:
    """A zip archive with TorchScript's layout (``<root>/data.pkl`` beside ``<root>/code/``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def read_torchscript_tensors(path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive's module, by their state-dict names."""
    with zipfile.ZipFile(path) as z:
        roots = [
            n[: -len("/data.pkl")] for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1
        ]
        if len(roots) != 1:
            raise TorchScriptError(f"expected one <root>/data.pkl in the archive, found {len(roots)}")
        with z.open(f"{roots[0]}/data.pkl") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # TypedStorage is deprecated
            try:
                root = _Unpickler(f, z, roots[0]).load()
            except (pickle.UnpicklingError, EOFError, TypeError, ValueError, RuntimeError) as exc:
                raise TorchScriptError(f"cannot read the archive's module: {exc}") from None
    if not isinstance(root, _Object):
        raise TorchScriptError(f"the archive holds a {type(root).__name__}, not a module")
    out: dict[str, torch.Tensor] = {}
    _flatten(root, "", out)
    return out
