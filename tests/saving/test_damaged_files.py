"""A damaged or hand-edited model file is a typed error (ModelFormatError naming the file,
whatever h5py, zipfile or json raise reading it); the CLI says so in one line (exit 2), never with a
traceback. Files that Keras 2.2.4 wrote, with one thing changed."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from layerserve.cli import app
from layerserve.errors import LayerserveError, ModelFormatError, WeightsError
from layerserve.models import load_model

WRITTEN = Path(__file__).parent / "keras22" / "tensorflow" / "dense-linear.h5"


def _attribute(name: str, value: object) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        with h5py.File(path, "r+") as handle:
            del handle.attrs[name]
            handle.attrs[name] = value

    return change


def _config(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        with h5py.File(path, "r+") as handle:
            document = json.loads(handle.attrs["model_config"])
            edit(document)
            del handle.attrs["model_config"]
            handle.attrs["model_config"] = json.dumps(document)

    return change


def _first_layer(document: dict) -> dict:
    layers = document["config"]
    return (layers["layers"] if isinstance(layers, dict) else layers)[0]


def _weight_names(path: Path) -> None:
    with h5py.File(path, "r+") as handle:
        group = handle["model_weights"][handle["model_weights"].attrs["layer_names"][0]]
        group.attrs["weight_names"] = np.array([b"\xff\xfe"] * len(group.attrs["weight_names"]))


CHANGES = {
    "model_config not UTF-8": _attribute("model_config", np.bytes_(b"\xff{")),
    "keras_version an int array": _attribute("keras_version", np.array([2, 2, 4])),
    "weight_names not UTF-8": _weight_names,
    "layer name a list": _config(lambda d: _first_layer(d)["config"].__setitem__("name", [1])),
    "layer config a number": _config(lambda d: _first_layer(d).__setitem__("config", 7)),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_damaged_h5_is_a_model_format_error_and_the_cli_says_so(tmp_path, change):
    path = tmp_path / "model.h5"
    shutil.copy(WRITTEN, path)
    load_model(path)  # as written, it loads
    CHANGES[change](path)
    with pytest.raises(LayerserveError):  # ModelFormatError, or the config's own error
        load_model(path)
    result = CliRunner().invoke(app, ["summary", str(path)])
    assert result.exit_code == 2, result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )


def test_a_keras_archive_whose_metadata_is_a_list_is_a_model_format_error(tmp_path):
    from layerserve.layers import Dense
    from layerserve.models import Sequential

    model = Sequential([Dense(2, input_shape=(3,))])
    config = {"class_name": "Sequential", "config": json.loads(model.to_json())["config"]}
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", "[]")
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(ModelFormatError, match="model.keras"):
        load_model(path)


def test_export_to_a_directory_is_refused_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["export", str(WRITTEN), "-o", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "is a directory" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []


def test_a_config_asking_for_more_weights_than_its_file_holds_is_refused_before_allocating(
    tmp_path,
):
    """The kernel a Dense of 10**9 units asks for (some 30 GB) is refused from the config,
    against what the file's bytes can fill, before NumPy is asked for it."""
    path = tmp_path / "model.h5"
    shutil.copy(WRITTEN, path)
    _config(lambda d: _first_layer(d)["config"].__setitem__("units", 10**9))(path)
    with pytest.raises(WeightsError, match="past the limit"):
        load_model(path)
