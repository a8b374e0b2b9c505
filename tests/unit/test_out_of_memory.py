"""TensorFlow's out-of-memory dump becomes one line naming the tensor, the device when given, and what to lower;
a full disk (which TensorFlow reports as resource exhaustion too) becomes one line naming the workdir,
and storage that stopped answering says how to continue."""

import errno

import pytest

import trainer  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf

from trainer.attempt import _failures_named
from trainer.errors import NoSpaceLeft, OutOfMemory

ADVICE = "; lower embedding_dim, hash_buckets, the layers' units or batch_size"


@pytest.mark.parametrize(
    ("dump", "line"),
    [
        ("Exception encountered when calling layer 'customer_id_id'.\n\n{{function_node __wrapped__}} OOM when "
         "allocating tensor with shape[294,100000000] and type float on /job:localhost/device:CPU:0 by allocator "
         "mklcpu [Op:StatelessRandomUniformV2]",
         "attempt 2: out of memory allocating a float tensor of shape [294,100000000] on /job:localhost/device:CPU:0"),
        ("OOM when allocating tensor with shape[8,4] and type half", "attempt 2: out of memory allocating a half "
         "tensor of shape [8,4]"),
        ("failed to allocate memory", "attempt 2: out of memory"),
    ],
    ids=["with its device", "without a device", "no tensor named"],
)
def test_an_out_of_memory_dump_becomes_one_line(dump, line):
    with pytest.raises(OutOfMemory) as raised:
        with _failures_named("attempt 2", "/runs/a/attempt-2"):
            raise tf.errors.ResourceExhaustedError(None, None, dump)
    assert str(raised.value) == line + ADVICE and raised.value.__cause__ is None


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (tf.errors.ResourceExhaustedError(None, None, "{{function_node __wrapped__SaveV2}} /runs/a/attempt-2/"
                                          "checkpoints/ckpt-3_temp/part-00000; No space left on device [Op:SaveV2]"),
         "No space left on device"),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "Disk quota exceeded"),
    ],
    ids=["tensorflow's checkpoint", "python's write", "quota"],
)
def test_a_full_disk_is_no_space_left_not_out_of_memory(error, reason):
    with pytest.raises(NoSpaceLeft) as raised:
        with _failures_named("attempt 2", "/runs/a/attempt-2"):
            raise error
    assert str(raised.value) == (f"attempt 2: cannot write /runs/a/attempt-2: {reason}; make room and run the same "
                                 "config again: it continues from the last checkpoint")


def test_other_os_errors_pass_through():
    with pytest.raises(PermissionError):
        with _failures_named("attempt 2", "/runs/a/attempt-2"):
            raise PermissionError(errno.EACCES, "Permission denied")


def test_storage_that_stopped_answering_is_resumable_and_says_what_to_do():
    from trainer.errors import Resumable
    from trainer.storage import Unreachable

    with pytest.raises(Unreachable) as raised:
        with _failures_named("attempt 2", "gs://b/a/attempt-2"):
            raise Unreachable("gs://b/a/attempt-2/checkpoints/ckpt-3.index: cannot be reached (Connection refused)")
    assert isinstance(raised.value, Resumable)  # the run stops; the experiment is left for the next run, not failed
    assert str(raised.value) == ("attempt 2: gs://b/a/attempt-2/checkpoints/ckpt-3.index: cannot be reached "
                                 "(Connection refused); run the same config again once it answers: it continues "
                                 "from the last checkpoint")
