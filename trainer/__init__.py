"""towerflow's TensorFlow side: spec, validation rules, data, model, training attempts, recall.

Importing this package never imports TensorFlow or Prefect; it only makes sure that when
TensorFlow is imported later it uses tf-keras (Keras 2), which TensorFlow Recommenders needs,
and that TensorFlow's start-up chatter (oneDNN, CUDA probing) stays out of the user's terminal.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
