"""Whatever bytes arrive, conversion either succeeds or refuses with ModelRejected; and
archive entry names are accepted only when they stay inside their folder."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import pytest
from conversion_files import keras_mlp, save_keras, zip_bytes
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from layerserve.service.conversion import ConversionLimits, Converted, convert_file
from layerserve.service.errors import ModelRejected, ParityFailed
from layerserve.service.upload_checks import check_zip

pytestmark = pytest.mark.parallel_safe

LIMITS = ConversionLimits(max_unpacked_bytes=1024 * 1024)
# No HDF5 prefix: random bytes after its signature only reach the C library's own checks;
# flipped bytes of a real .h5 (below) go deeper.
PREFIXES = [b"", b"PK\x03\x04", b"PK\x05\x06", b"\x08", b"\x08\x08\x3a", b"{", b"\x00"]
NAMES = [None, "model.onnx", "model.keras", "model.h5", "model.zip", "notes.txt"]


@pytest.fixture(scope="module")
def keras_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("fuzz")
    return save_keras(keras_mlp(), folder / "mlp.keras").read_bytes()


@pytest.fixture(scope="module")
def h5_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("fuzz")
    return save_keras(keras_mlp(), folder / "mlp.h5").read_bytes()


def _flipped(data: bytes, draw: st.DataObject) -> bytes:
    flips = draw.draw(
        st.lists(
            st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), min_size=1, max_size=4
        )
    )
    damaged = bytearray(data)
    for at, mask in flips:
        damaged[at] ^= mask
    return bytes(damaged)


def _convert(folder: Path, data: bytes, filename: str | None) -> Converted | ModelRejected:
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as handle:
        handle.write(data)
    try:
        return convert_file(Path(handle.name), filename, LIMITS)
    except ModelRejected as exc:
        return exc
    finally:
        os.unlink(handle.name)


@hypothesis_settings(max_examples=60)
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=600), name=st.sampled_from(NAMES))
def test_arbitrary_bytes_are_refused_as_model_rejected(
    tmp_path: Path, prefix: bytes, body: bytes, name: str | None
) -> None:
    outcome = _convert(tmp_path, prefix + body, name)
    assert isinstance(outcome, ModelRejected)
    assert str(outcome).startswith(("Expected", "The ")), outcome


@hypothesis_settings(max_examples=40)
@given(data=st.data())
def test_a_keras_archive_with_flipped_bytes_converts_or_is_refused(
    tmp_path: Path, keras_bytes: bytes, data: st.DataObject
) -> None:
    outcome = _convert(tmp_path, _flipped(keras_bytes, data), "model.keras")
    assert isinstance(outcome, Converted | ModelRejected), outcome
    if isinstance(outcome, Converted):
        assert outcome.source_format == "keras"


# The same examples every run: the HDF5 C library parses these bytes, and a crash in it
# must show up as a reproducible failure, not as a flaky one.
@hypothesis_settings(max_examples=40, derandomize=True)
@given(data=st.data())
def test_an_h5_model_with_flipped_bytes_converts_or_is_refused(
    tmp_path: Path, h5_bytes: bytes, data: st.DataObject
) -> None:
    try:
        outcome = _convert(tmp_path, _flipped(h5_bytes, data), "model.h5")
    except ParityFailed:  # flipped weights may be inf or NaN
        return
    assert isinstance(outcome, Converted | ModelRejected), outcome


SEGMENT = st.sampled_from(["a", "b.json", "..", ".", "", "weights", "C:", "x\\y", "..\\z"])


@hypothesis_settings(max_examples=80)
@given(segments=st.lists(SEGMENT, min_size=1, max_size=4), leading_slash=st.booleans())
def test_entry_names_are_accepted_only_inside_their_folder(
    tmp_path: Path, segments: list[str], leading_slash: bool
) -> None:
    name = ("/" if leading_slash else "") + "/".join(segments)
    archive = tmp_path / "entries.zip"
    archive.write_bytes(zip_bytes([(zipfile.ZipInfo(name), b"data")]))
    try:
        names = check_zip(archive, max_unpacked_bytes=1024, max_entries=4)
    except ModelRejected:
        ordinary = name and not name.startswith(("/", "C:")) and ".." not in segments
        assert not (ordinary and "\\" not in name), f"{name!r} was refused"
        return
    base = os.path.realpath(tmp_path / "base")
    target = os.path.normpath(os.path.join(base, *names[0].split("/")))
    assert target == base or target.startswith(base + os.sep)
    assert "\\" not in names[0]
