"""Run ONNX files on the onnxruntime of the interpreter that runs this script.

    python onnxruntime_runner.py DIRECTORY

For each ``<name>.onnx`` in DIRECTORY it feeds ``<name>.inputs.npz`` (arrays by input
name) and writes ``<name>.outputs.npz`` (arrays by output name), or ``<name>.error.txt``
where onnxruntime refuses the file or fails to run it. It prints the onnxruntime and
NumPy versions as JSON. It imports only NumPy and onnxruntime, so that it runs in a venv
holding nothing else (``lowest_onnxruntime.py``).
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def run(model: Path) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        with np.load(model.with_suffix(".inputs.npz")) as inputs:
            feeds = {name: inputs[name] for name in inputs.files}
        names = [output.name for output in session.get_outputs()]
        outputs = dict(zip(names, session.run(None, feeds), strict=True))
    except Exception as exc:  # onnxruntime raises many kinds; each is the answer here
        model.with_suffix(".error.txt").write_text(f"{type(exc).__name__}: {exc}")
        return
    np.savez(model.with_suffix(".outputs.npz"), **outputs)


def main(directory: Path) -> None:
    for model in sorted(directory.glob("*.onnx")):
        run(model)
    print(json.dumps({"onnxruntime": ort.__version__, "numpy": np.__version__}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
