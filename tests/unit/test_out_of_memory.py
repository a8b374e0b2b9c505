"""TensorFlow's out-of-memory dump becomes one line naming the tensor, the device when given, and what to lower."""

import pytest

import trainer  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf

from trainer.attempt import _out_of_memory_named
from trainer.errors import OutOfMemory

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
        with _out_of_memory_named("attempt 2"):
            raise tf.errors.ResourceExhaustedError(None, None, dump)
    assert str(raised.value) == line + ADVICE and raised.value.__cause__ is None
