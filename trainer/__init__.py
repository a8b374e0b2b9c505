"""towerflow's TensorFlow side: spec, validation rules, data, model, training attempts, recall.

Importing this package never imports TensorFlow or Prefect; it only makes sure that when
TensorFlow is imported later it uses tf-keras (Keras 2), which TensorFlow Recommenders needs,
and that TensorFlow's start-up chatter (oneDNN, CUDA probing) stays out of the user's terminal.
Python's csv module (which reads a CSV's header and first row) takes fields as long as pandas does.
"""

import csv
import os

from trainer.quiet import quiet_tensorflow_import

csv.field_size_limit(2**31 - 1)  # its default, 128 KiB, failed a long text field in a CSV's first row

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
quiet_tensorflow_import()  # what TF_CPP_MIN_LOG_LEVEL no longer silences (trainer/quiet.py)
