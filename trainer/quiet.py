"""TensorFlow's start-up chatter kept out of the user's terminal.

TensorFlow 2.21 logs through absl before anything has set absl's logging up, so TF_CPP_MIN_LOG_LEVEL
does not reach those lines (tensorflow/tensorflow#100442): each `import tensorflow` prints, twice, that
oneDNN is on and that no CUDA driver was found, and the first look for a GPU prints
`E0000 ... failed call to cuInit: INTERNAL: CUDA error` on every machine without one. After
`quiet_tensorflow_import()`, the first `import tensorflow` runs with the process's stderr (file
descriptor 2) pointed at /dev/null, and looks for GPUs before it lets go. Python's own exceptions are
raised as usual; TOWERFLOW_DEBUG=1 shows everything. No TensorFlow import here.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Iterator

DEBUG_ENV = "TOWERFLOW_DEBUG"


def quiet_tensorflow_import() -> None:
    """Make this process's first `import tensorflow` quiet (nothing to do once it is imported)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the other finders do, with a loader that runs it quietly; then steps aside."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with fd 2 silenced; anything else it is asked goes to that loader."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def __getattr__(self, name: str):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        if os.environ.get(DEBUG_ENV):
            self._loader.exec_module(module)
            return
        with _stderr_silenced():
            self._loader.exec_module(module)
            module.config.list_physical_devices("GPU")  # where cuInit complains on a machine without a GPU


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null for the block (what Python writes to sys.stderr too)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
