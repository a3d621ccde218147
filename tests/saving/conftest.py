"""Keras 3 is the oracle here: keep its settings file out of the user's home."""

import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
if "keras" not in sys.modules and "KERAS_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="layerserve-keras-home-")
    os.environ["KERAS_HOME"] = _home
    atexit.register(shutil.rmtree, _home, ignore_errors=True)
