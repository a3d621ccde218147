"""Refused uploads: each gives a typed error whose message names what was expected and
what was received, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
from conversion_files import (
    declare_size,
    entries_of,
    keras_lambda,
    keras_mlp,
    keras_named_lambda,
    keras_unknown_layers,
    matmul_add_onnx,
    mc_dropout_archive,
    save_keras,
    single_node_onnx,
    zip_bytes,
)
from onnx import helper

from layerserve import examples
from layerserve.export import to_onnx
from layerserve.service import upload_hdf5
from layerserve.service.conversion import ConversionLimits, convert_file
from layerserve.service.errors import InvalidInput, ModelRejected, ParityFailed
from layerserve.service.upload_hdf5 import MAX_DEPTH, check_hdf5

pytestmark = pytest.mark.parallel_safe

MIB = 1024 * 1024
LIMITS = ConversionLimits(max_unpacked_bytes=MIB)
BIG_LIMITS = ConversionLimits(max_unpacked_bytes=64 * MIB)
RNG = np.random.default_rng(3)
KERAS22 = Path(__file__).parents[1] / "saving" / "keras22"  # files Keras 2.2.4 wrote
Build = Callable[[Path, dict[str, Path]], tuple[Path, str]]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Valid files the refused ones are made from."""
    folder = tmp_path_factory.mktemp("valid")
    model = keras_mlp()
    onnx_path = folder / "mlp.onnx"
    to_onnx(examples.mlp(), onnx_path)
    return {
        "keras": save_keras(model, folder / "mlp.keras"),
        "h5": save_keras(model, folder / "mlp.h5"),
        "onnx": onnx_path,
    }


@dataclass
class Refusal:
    build: Build
    expected: tuple[str, ...]  # each must appear in the message
    error: type[Exception] = ModelRejected
    limits: ConversionLimits = LIMITS
    opset: int | None = None


def write(name: str, data: bytes) -> Build:
    def build(tmp: Path, _: dict[str, Path]) -> tuple[Path, str]:
        (tmp / name).write_bytes(data)
        return tmp / name, name

    return build


def keras_model(make: Callable, suffix: str = ".keras") -> Build:
    def build(tmp: Path, _: dict[str, Path]) -> tuple[Path, str]:
        path = save_keras(make(), tmp / f"model{suffix}")
        return path, path.name

    return build


def onnx_model(make: Callable[[], onnx.ModelProto], **save: object) -> Build:
    def build(tmp: Path, _: dict[str, Path]) -> tuple[Path, str]:
        onnx.save_model(make(), tmp / "model.onnx", **save)
        return tmp / "model.onnx", "model.onnx"

    return build


def keras_with(*extra: tuple[str | zipfile.ZipInfo, bytes], lie: tuple[str, int] | None = None):
    """The valid .keras archive with more entries, optionally one whose size lies."""

    def build(tmp: Path, files: dict[str, Path]) -> tuple[Path, str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about duplicate names
            data = zip_bytes([*entries_of(files["keras"]), *extra])
        if lie is not None:
            data = declare_size(data, *lie)
        (tmp / "model.keras").write_bytes(data)
        return tmp / "model.keras", "model.keras"

    return build


def changed(kind: str, change: Callable[[bytes], bytes], name: str) -> Build:
    def build(tmp: Path, files: dict[str, Path]) -> tuple[Path, str]:
        (tmp / name).write_bytes(change(files[kind].read_bytes()))
        return tmp / name, name

    return build


def keras_replacing(name: str, data: bytes) -> Build:
    def build(tmp: Path, files: dict[str, Path]) -> tuple[Path, str]:
        entries = dict(entries_of(files["keras"]))
        entries[name] = data
        (tmp / "model.keras").write_bytes(zip_bytes(list(entries.items())))
        return tmp / "model.keras", "model.keras"

    return build


def keras_config_bomb(tmp: Path, files: dict[str, Path]) -> tuple[Path, str]:
    """The valid .keras archive whose config asks for Dense layers of 100,000 units: a
    few bytes of JSON that would allocate 40 GB of weights before any are read."""
    entries = dict(entries_of(files["keras"]))
    config = json.loads(entries["config.json"])

    def inflate(node: object) -> None:
        if isinstance(node, dict):
            if "units" in node:
                node["units"] = 100_000
            for value in node.values():
                inflate(value)
        elif isinstance(node, list):
            for value in node:
                inflate(value)

    inflate(config)
    entries["config.json"] = json.dumps(config).encode()
    (tmp / "model.keras").write_bytes(zip_bytes(list(entries.items())))
    return tmp / "model.keras", "model.keras"


def h5_with(edit: Callable[[h5py.File], None]) -> Build:
    def build(tmp: Path, files: dict[str, Path]) -> tuple[Path, str]:
        shutil.copy(files["h5"], tmp / "model.h5")
        with h5py.File(tmp / "model.h5", "a") as handle:
            edit(handle)
        return tmp / "model.h5", "model.h5"

    return build


def keras_weights_with(edit: Callable[[h5py.File], None]) -> Build:
    def build(tmp: Path, files: dict[str, Path]) -> tuple[Path, str]:
        entries = dict(entries_of(files["keras"]))
        (tmp / "w.h5").write_bytes(entries["model.weights.h5"])
        with h5py.File(tmp / "w.h5", "a") as handle:
            edit(handle)
        entries["model.weights.h5"] = (tmp / "w.h5").read_bytes()
        (tmp / "w.h5").unlink()
        (tmp / "model.keras").write_bytes(zip_bytes(list(entries.items())))
        return tmp / "model.keras", "model.keras"

    return build


def weights_only(tmp: Path, _: dict[str, Path]) -> tuple[Path, str]:
    keras_mlp().save_weights(tmp / "mlp.weights.h5")
    return tmp / "mlp.weights.h5", "mlp.weights.h5"


def native_mlp(tmp: Path, _: dict[str, Path]) -> tuple[Path, str]:
    examples.mlp().save(tmp / "mlp.zip")
    return tmp / "mlp.zip", "mlp.zip"


def native_with_huge_npy_header(tmp: Path, _: dict[str, Path]) -> tuple[Path, str]:
    """The saved MLP whose first weight file declares a 3.6 TiB array in its header."""
    examples.mlp().save(tmp / "saved.zip")
    entries = dict(entries_of(tmp / "saved.zip"))
    (tmp / "saved.zip").unlink()
    npy = entries["weights/00000.npy"]
    shape = npy[: npy.index(b"\n")].split(b"'shape': ")[1].split(b")")[0] + b")"
    entries["weights/00000.npy"] = npy.replace(shape, b"(9999999, 99999)".ljust(len(shape)))
    (tmp / "mlp.zip").write_bytes(zip_bytes(list(entries.items())))
    return tmp / "mlp.zip", "mlp.zip"


def zip64_with_70000_entries(tmp: Path, files: dict[str, Path]) -> tuple[Path, str]:
    """Past 65535 entries zipfile writes the zip64 end records."""
    entries = [*entries_of(files["keras"]), *((f"e/{i}", b"") for i in range(70_000))]
    (tmp / "model.keras").write_bytes(zip_bytes(entries, deflate=False))
    return tmp / "model.keras", "model.keras"


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def external_link(handle: h5py.File) -> None:
    handle["leak"] = h5py.ExternalLink("/etc/passwd", "/")


def external_raw(handle: h5py.File) -> None:
    handle.create_dataset("leak", shape=(4,), dtype="f4", external=[("/etc/hostname", 0, 16)])


def virtual(handle: h5py.File) -> None:
    layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
    layout[:] = h5py.VirtualSource("/etc/other.h5", "data", shape=(4,))
    handle.create_virtual_dataset("leak", layout)


def deep_groups(handle: h5py.File) -> None:
    group = handle["/"]
    for _ in range(MAX_DEPTH + 1):  # 3,000 levels took HDF5's own visit 16 s
        group = group.create_group("g")


def oversized_kernel(handle: h5py.File) -> None:
    """The first kernel stored 1,000,000 times longer than the config says: a few KB of
    file (its chunks are never written), 80 MB once read here, gigabytes for a larger
    layer."""
    kernels: list[str] = []
    handle["model_weights"].visititems(
        lambda name, item: (
            kernels.append(name) if isinstance(item, h5py.Dataset) and item.ndim == 2 else None
        )
    )
    path = f"model_weights/{kernels[0]}"
    rows, columns = handle[path].shape
    del handle[path]
    handle.create_dataset(
        path,
        shape=(rows * 1_000_000, columns),
        dtype="f4",
        chunks=(4096, columns),
        compression="gzip",
    )


def compressed_zeros(handle: h5py.File) -> None:
    handle.create_dataset("bomb", data=np.zeros(2 * MIB // 4 * 2, "f4"), compression="gzip")


def custom_domain() -> onnx.ModelProto:
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example", name="frob")
    return single_node_onnx(
        node,
        {"x": [2]},
        [2],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )


def unknown_contrib_op() -> onnx.ModelProto:
    node = helper.make_node("NoSuchKernel", ["x"], ["y"], domain="com.microsoft")
    return single_node_onnx(
        node,
        {"x": [2]},
        [2],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )


def dangling_input() -> onnx.ModelProto:
    return single_node_onnx(helper.make_node("Add", ["x", "missing"], ["y"]), {"x": [2]}, [2])


def matmul_add() -> onnx.ModelProto:
    return matmul_add_onnx(RNG.normal(size=(3, 2)).astype("f4"), np.ones(2, "f4"))


def flip_weights_byte(data: bytes) -> bytes:
    at = data.find(b"\x89HDF") + 2000  # inside the stored model.weights.h5
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


LAMBDA = ("Python bytecode", "never executes", "layerserve export", "--unsafe", "model.onnx")
ACCEPTED = (".onnx", ".keras", ".h5", ".zip")
ZEROS = bytes(2 * MIB)
RANDOM = RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes()
REFUSALS: dict[str, Refusal] = {
    "lambda-.keras": Refusal(keras_model(keras_lambda), LAMBDA),
    "lambda-.h5": Refusal(keras_model(keras_lambda, ".h5"), LAMBDA),
    "onnx-external-data": Refusal(
        onnx_model(
            matmul_add, save_as_external_data=True, location="weights.bin", size_threshold=0
        ),
        ("external data", "'weights.bin'", "save_as_external_data=False"),
    ),
    "onnx-custom-domain": Refusal(
        onnx_model(custom_domain), ("'Frobnicate'", "'com.example'", "'frob'", "com.microsoft")
    ),
    "onnx-no-kernel-in-onnxruntime": Refusal(
        onnx_model(unknown_contrib_op), ("onnxruntime can load", "NoSuchKernel")
    ),
    "onnx-invalid-graph": Refusal(
        onnx_model(dangling_input), ("valid ONNX model", "checker", "missing")
    ),
    "onnx-truncated": Refusal(
        changed("onnx", lambda d: d[: len(d) // 2], "cut.onnx"),
        ("'cut.onnx'", "ONNX"),
    ),
    "zip-slip": Refusal(keras_with(("../evil", b"x")), ("'../evil'", "'..'", "escapes")),
    "zip-absolute-entry": Refusal(keras_with(("/tmp/evil", b"x")), ("'/tmp/evil'", "absolute")),
    "zip-backslash-entry": Refusal(keras_with(("..\\evil", b"x")), ("'..\\\\evil'", "backslash")),
    "zip-symlink-entry": Refusal(
        keras_with((symlink("link"), b"/etc/passwd")), ("'link'", "symbolic link")
    ),
    "zip-duplicate-entry": Refusal(
        keras_with(("config.json", b"{}")), ("unique", "'config.json' twice")
    ),
    "zip-bomb": Refusal(
        keras_with(("padding.bin", ZEROS)), (f"at most {MIB} bytes", "declare", "Received")
    ),
    "zip-lying-header": Refusal(
        keras_with(("padding.bin", ZEROS), lie=("padding.bin", 100)),
        ("'padding.bin'", "the 100 bytes its header declares", "expands to more"),
    ),
    "zip-too-many-entries": Refusal(
        keras_with(*[(f"extra/{i}", b"") for i in range(30)]),
        ("at most 20 entries", "more than 20"),
        limits=ConversionLimits(max_unpacked_bytes=MIB, max_archive_entries=20),
    ),
    "zip64-past-the-default-entry-cap": Refusal(
        zip64_with_70000_entries,
        ("at most 10000 entries",),
        limits=ConversionLimits(max_unpacked_bytes=MIB),
    ),
    "keras-truncated": Refusal(
        changed("keras", lambda d: d[:-200], "model.keras"), ("truncated or corrupt zip",)
    ),
    "keras-flipped-byte": Refusal(
        changed("keras", flip_weights_byte, "model.keras"), ("'model.weights.h5'", "checksum")
    ),
    "keras-random-entries": Refusal(
        write(
            "model.keras",
            zip_bytes([(n, RANDOM) for n in ("config.json", "metadata.json", "model.weights.h5")]),
        ),
        ("model.weights.h5", "HDF5", "Received"),
    ),
    "keras-random-config": Refusal(
        keras_replacing("config.json", RANDOM), ("'model.keras'", "cannot be loaded")
    ),
    "keras-weights-external-link": Refusal(
        keras_weights_with(external_link), ("model.weights.h5", "'/etc/passwd'", "another file")
    ),
    "keras-config-bomb": Refusal(
        keras_config_bomb, ("'model.keras'", "cannot be loaded", f"limit of {MIB} bytes")
    ),
    "layerserve-huge-npy-header": Refusal(
        native_with_huge_npy_header, ("'mlp.zip'", "cannot be loaded"), limits=BIG_LIMITS
    ),
    "keras-lambda-by-name": Refusal(
        keras_model(keras_named_lambda),
        ("'double' from module 'builtins'", "--function double=your_module:double"),
    ),
    "keras-unknown-layer": Refusal(
        keras_model(keras_unknown_layers),
        ("2 layer class(es)", "'ConvLSTM1D', 'Discretization'", "upload the .onnx"),
    ),
    "keras-layer-without-converter": Refusal(
        lambda tmp, _: (mc_dropout_archive(tmp / "mc.zip"), "mc.zip"),
        ("exported to ONNX", "'dropout'", "training=True"),
    ),
    "h5-random-bytes": Refusal(
        write("model.h5", b"\x89HDF\r\n\x1a\n" + RANDOM), ("HDF5", "Received")
    ),
    "h5-weights-only": Refusal(weights_only, ("weights only", "model_config")),
    "h5-theano-same-padding-even-window": Refusal(
        write("conv.h5", (KERAS22 / "theano" / "conv2d-same-even.h5").read_bytes()),
        ("Theano", "padding='same'", "Received: size=(2, 3), strides=(1, 1)"),
    ),
    "h5-external-link": Refusal(h5_with(external_link), ("'/etc/passwd'", "another file")),
    "h5-external-raw-data": Refusal(h5_with(external_raw), ("'/leak'", "external raw files")),
    "h5-virtual-dataset": Refusal(h5_with(virtual), ("'/leak'", "virtual dataset")),
    "h5-compressed-bomb": Refusal(h5_with(compressed_zeros), (f"at most {MIB} bytes", "'/bomb'")),
    "h5-oversized-stored-weight": Refusal(
        h5_with(oversized_kernel),
        ("expected about", "values stored (shapes [(", "000000, "),
        limits=ConversionLimits(max_unpacked_bytes=64 << 30),  # past the archive cap
    ),
    "h5-deep-groups": Refusal(
        h5_with(deep_groups), (f"groups nested more than {MAX_DEPTH} deep", "'/g/g/g")
    ),
    "empty-file": Refusal(write("model.onnx", b""), ("an empty file", *ACCEPTED)),
    "text-file": Refusal(
        write("notes.txt", b"hello world\nmore text\n"),
        ("'notes.txt'", "a text file starting with 'hello world", *ACCEPTED),
    ),
    "json-config": Refusal(
        write("model.json", json.dumps({"class_name": "Sequential"}).encode()),
        ("JSON", "no weights", "model.keras"),
    ),
    "unknown-zip": Refusal(
        write("model.zip", zip_bytes([("readme.txt", b"hi")])), ("'readme.txt'", "layerserve.json")
    ),
    "unknown-binary": Refusal(write("model.bin", b"\xff\xfe" + RANDOM), ("the bytes", *ACCEPTED)),
    "parity-beyond-tolerance": Refusal(
        native_mlp,
        ("max |onnxruntime - reference|", "masks equal: True", "batch sizes [1, 7]"),
        error=ParityFailed,
        limits=ConversionLimits(max_unpacked_bytes=8 * MIB, parity_atol=0.0),
    ),
    "opset-out-of-range": Refusal(
        keras_model(keras_mlp), ("opset", "Received: opset=5"), error=InvalidInput, opset=5
    ),
}


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_uploads_name_what_was_expected_and_leave_nothing_behind(
    case: str, tmp_path: Path, scratch: Path, base: dict[str, Path]
) -> None:
    refusal = REFUSALS[case]
    upload = tmp_path / "upload"
    upload.mkdir()
    path, filename = refusal.build(upload, base)
    before = sorted(os.listdir(upload))

    with pytest.raises(Exception) as info:  # the exact type is asserted below
        convert_file(path, filename, refusal.limits, opset=refusal.opset)

    assert type(info.value) is refusal.error, info.value
    message = str(info.value)
    for expected in refusal.expected:
        assert expected in message, f"{expected!r} not in {message!r}"
    assert str(tmp_path) not in message  # no server paths in what a client reads
    assert list(scratch.iterdir()) == []
    assert sorted(os.listdir(upload)) == before
    assert not (tmp_path / "evil").exists() and not (upload.parent.parent / "evil").exists()


def test_the_hdf5_walk_bounds_the_objects_and_ends_on_link_cycles(tmp_path, monkeypatch):
    path = tmp_path / "walk.h5"
    with h5py.File(path, "w") as handle:
        group = handle.create_group("layer")
        group["kernel"] = np.ones((3, 2), "f4")
        group["itself"] = group  # a hard link cycle: each object is visited once
        handle["soft"] = h5py.SoftLink("/layer/kernel")
        for index in range(40):
            handle.create_dataset(f"extra/{index}", data=index)
    check_hdf5(path, max_unpacked_bytes=MIB, label="'walk.h5'")  # 44 objects
    monkeypatch.setattr(upload_hdf5, "MAX_OBJECTS", 40)
    with pytest.raises(ModelRejected, match="more than 40 groups and datasets"):
        check_hdf5(path, max_unpacked_bytes=MIB, label="'walk.h5'")
