"""Safety checks of uploaded HDF5 files (Keras ``.h5`` models, a ``.keras`` archive's
``model.weights.h5``) before their weights are read.

h5py runs no code from a file, but HDF5 can point outside it: external links, datasets
stored in external raw files and virtual datasets read other files on this machine,
whose contents would end up in the served weights. A compressed dataset can also expand
far past the file's size, so the datasets' total in-memory size is capped like an
archive's. The model's JSON config, an attribute of the root group, has its own cap:
it is parsed whole in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from layerserve.service.errors import ModelRejected
from layerserve.service.upload_checks import check_config_size

# Bounds on an HDF5 file's structure (a Keras file nests a few levels, with a dataset or
# two per weight).
MAX_DEPTH = 64
MAX_OBJECTS = 50_000
# Root attributes of a Keras .h5 model that hold JSON.
CONFIG_ATTRIBUTES = ("model_config", "training_config")


def check_hdf5(
    path: Path, *, max_unpacked_bytes: int, label: str, max_config_bytes: int | None = None
) -> None:
    """Refuses links to other files, datasets whose total size passes the cap, and JSON
    config attributes past ``max_config_bytes`` (None: not checked)."""
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ModelRejected(
            f"Expected {label} to be an HDF5 file. Received: a file HDF5 cannot open ({exc})."
        ) from exc
    walker = _Walker(label, max_unpacked_bytes)
    try:
        with handle:
            if max_config_bytes is not None:
                _check_config_attributes(handle, path, label, max_config_bytes)
            walker.walk(handle)
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        raise ModelRejected(f"{label} is a corrupt HDF5 file: {exc}") from exc


def _check_config_attributes(
    handle: h5py.File, path: Path, label: str, max_config_bytes: int
) -> None:
    """HDF5 attributes are never compressed, so none holds more than the file's size. A
    fixed-length string's size is known before it is read; a variable-length one's is
    not, so it is read only when the file is larger than the cap (the file's size then
    bounds what reading it costs)."""
    for key in CONFIG_ATTRIBUTES:
        if key not in handle.attrs:
            continue
        attribute = h5py.h5a.open(handle.id, key.encode())
        kind = attribute.get_type()
        if not (isinstance(kind, h5py.h5t.TypeStringID) and kind.is_variable_str()):
            size = attribute.get_storage_size()
        elif path.stat().st_size <= max_config_bytes:
            continue
        else:
            size = _text_size(handle.attrs[key])
        check_config_size(f"attribute {key!r} of {label}", size, max_config_bytes)


def _text_size(value: Any) -> int:
    """Bytes of a variable-length string attribute (one string or an array of them)."""
    items = value.ravel().tolist() if isinstance(value, np.ndarray) else [value]
    return sum(len(v.encode("utf-8") if isinstance(v, str) else bytes(v)) for v in items)


def _address(item: h5py.HLObject) -> tuple[int, int]:
    info = h5py.h5o.get_info(item.id)
    return info.fileno, info.addr


class _Walker:
    """Visits every object once, as HDF5's own visit does (through hard links, each
    object once, so link cycles end), with bounds on the groups' depth and the number of
    objects: HDF5's visit costs time quadratic in the depth (3,000 nested empty groups,
    3 MB of file, took 16 s), and no Keras file nests more than a few levels."""

    def __init__(self, label: str, limit: int) -> None:
        self.label = label
        self.limit = limit
        self.total = 0

    def walk(self, root: h5py.Group) -> None:
        # objects by their place in the file, not their open handles (a few KB each)
        seen = {_address(root)}
        pending: list[tuple[str, int]] = [("/", 0)]
        while pending:
            name, depth = pending.pop()
            group = root[name]
            links = [(key, group.get(key, getlink=True)) for key in group]
            for key, link in links:  # a group's links to other files, before its objects
                if isinstance(link, h5py.ExternalLink):
                    where = f"{name.rstrip('/')}/{key}"
                    self._refuse(f"{where!r}, a link to {link.filename!r}", "another file")
            for key, link in links:
                if not isinstance(link, h5py.HardLink):
                    continue  # soft links name objects reached through their hard links
                item, where = group[key], f"{name.rstrip('/')}/{key}"
                address = _address(item)
                if address in seen:
                    continue
                seen.add(address)
                if len(seen) > MAX_OBJECTS:
                    self._too_large(f"more than {MAX_OBJECTS} groups and datasets")
                if isinstance(item, h5py.Dataset):
                    self.dataset(where, item)
                elif isinstance(item, h5py.Group):
                    if depth + 1 > MAX_DEPTH:
                        self._too_large(f"groups nested more than {MAX_DEPTH} deep, at {where!r}")
                    pending.append((where, depth + 1))

    def _too_large(self, what: str) -> None:
        raise ModelRejected(
            f"Expected {self.label} to hold a Keras model's groups and datasets. Received: {what}."
        )

    def dataset(self, name: str, dataset: h5py.Dataset) -> None:
        if dataset.is_virtual:
            self._refuse(f"dataset {name!r}, a virtual dataset", "other files")
        if dataset.external:
            self._refuse(f"dataset {name!r}, stored in external raw files", "other files")
        self.total += (dataset.size or 0) * dataset.dtype.itemsize
        if self.total > self.limit:
            raise ModelRejected(
                f"Expected the datasets of {self.label} to hold at most {self.limit} bytes in "
                f"all. Received: datasets that hold more (at least {self.total} bytes, "
                f"reached at {name!r})."
            )

    def _refuse(self, what: str, where: str) -> None:
        raise ModelRejected(
            f"Expected {self.label} to keep all its data inside the file. Received: {what}, "
            f"which would make the service read {where} on its own disk."
        )
