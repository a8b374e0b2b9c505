"""trainer.quiet: TensorFlow's start-up chatter (which TF_CPP_MIN_LOG_LEVEL no longer reaches) stays out of
the terminal, and nothing else does."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = "import trainer, tensorflow as tf, tf_keras; print(float(tf.constant(1.5) + 1))"


def run(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_importing_tensorflow_after_trainer_prints_nothing_on_stderr():
    done = run(SCRIPT)
    assert done.returncode == 0 and done.stdout.strip() == "2.5"
    assert done.stderr == "", done.stderr


def test_what_python_writes_to_stderr_afterwards_still_shows():
    done = run(SCRIPT + "; import sys, os; print('after', file=sys.stderr, flush=True); os.write(2, b'fd2\\n')")
    assert done.stderr == "after\nfd2\n", done.stderr
