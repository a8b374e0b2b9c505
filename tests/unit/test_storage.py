"""trainer.storage: one road for local paths and URIs, mirrors whose index goes last, one-line errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import fsspec
import pytest

from trainer import storage
from trainer.errors import ExpectedError
from trainer.data import DataError, load_table


@pytest.fixture
def memory_root():
    """A fresh memory:// prefix, removed afterwards."""
    root = f"memory://test-storage-{time.monotonic_ns()}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_bytes_round_trip_locally_and_remotely(tmp_path, memory_root):
    for uri in (str(tmp_path / "a" / "b.json"), f"{memory_root}/a/b.json"):
        assert not storage.exists(uri)
        storage.write_bytes(uri, b'{"x": 1}')
        assert storage.exists(uri)
        assert storage.read_bytes(uri) == b'{"x": 1}'


def test_a_local_write_replaces_the_file_whole_and_leaves_no_partial(tmp_path):
    target = tmp_path / "result.json"
    storage.write_bytes(str(target), b"old")
    storage.write_bytes(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_local_path_is_none_only_for_remote_uris(tmp_path):
    assert storage.local_path(str(tmp_path)) == str(tmp_path)
    assert storage.local_path(f"file://{tmp_path}") == str(tmp_path)
    assert storage.local_path("memory://bucket/x") is None


def test_a_missing_object_is_one_line_naming_the_uri(memory_root, tmp_path):
    for uri in (f"{memory_root}/nothing.csv", str(tmp_path / "nothing.csv")):
        with pytest.raises(storage.NotFound) as raised:
            storage.read_bytes(uri)
        assert str(raised.value) == f"{uri}: not found"
        assert isinstance(raised.value, ExpectedError) and isinstance(raised.value, FileNotFoundError)


def test_a_missing_relative_path_names_the_directory_it_was_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where `towerflow serve` runs, say: not where the config was submitted from
    with pytest.raises(storage.NotFound, match=f"^data/tx.csv \\(relative to {tmp_path}\\): not found$"):
        storage.read_bytes("data/tx.csv")
    with pytest.raises(DataError, match=f"^data/tx.csv \\(relative to {tmp_path}\\): file not found$"):
        load_table("data/tx.csv")


class _Refusing(Exception):
    """What gcsfs raises for an HTTP error (gcsfs.retry.HttpError carries `code`)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (OSError("Forbidden: b/o/x\nanon caller does not have storage.objects.get access"), storage.Forbidden),
        (_Refusing(401, "Anonymous caller"), storage.Forbidden),
        (PermissionError(13, "Permission denied"), storage.Forbidden),
        (ConnectionRefusedError(111, "Connection refused"), storage.Unreachable),
        (_Refusing(500, "backend error"), storage.StorageError),
    ],
)
def test_storage_failures_become_one_line_errors_naming_the_uri(raised, expected):
    with pytest.raises(expected) as caught:
        with storage.failing_as_storage_error("gs://bucket/x.csv"):
            raise raised
    message = str(caught.value)
    assert message.startswith("gs://bucket/x.csv: ") and "\n" not in message


def test_other_exceptions_pass_through_untouched():
    with pytest.raises(KeyError):
        with storage.failing_as_storage_error("gs://bucket/x"):
            raise KeyError("not a storage problem")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_gcs_endpoint_fails_at_once_naming_the_uri(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{_free_port()}")
    started = time.monotonic()
    with pytest.raises(storage.Unreachable) as raised:
        storage.read_bytes("gs://no-such-bucket/configs/x.yaml")
    assert time.monotonic() - started < 5
    assert str(raised.value).startswith("gs://no-such-bucket/configs/x.yaml: the storage endpoint http://127.0.0.1:")


def test_gcsfs_is_imported_with_the_storage_control_probe_off_unless_the_user_set_it():
    code = "import os, trainer.storage, gcsfs; print(os.environ['GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT'], gcsfs.GCSFileSystem.__name__)"
    env = {k: v for k, v in os.environ.items() if k != "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert plain.stdout.split() == ["false", "GCSFileSystem"]
    chosen = subprocess.run([sys.executable, "-c", code], env=env | {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "true"},
                            capture_output=True, text=True, check=True)
    assert chosen.stdout.split() == ["true", "ExtendedGcsFileSystem"]


def _tree(fs, root: str) -> dict[str, bytes]:
    return {path[len(root) + 1:]: fs.cat_file(path) for path in fs.find(root)}


def test_a_mirror_pushes_what_changed_with_the_index_last_and_deletes_what_went(memory_root, monkeypatch):
    uri = f"{memory_root}/attempt-1"
    order: list[str] = []
    put = storage.Mirror._put
    monkeypatch.setattr(storage.Mirror, "_put", lambda self, name: (order.append(name), put(self, name)))
    with storage.mirrored(uri) as mirror:
        assert mirror.staged
        ckpt = os.path.join(mirror.path, "checkpoints")
        os.makedirs(ckpt)
        for name in ("checkpoint", "ckpt-1.index", "ckpt-1.data-00000-of-00001"):
            with open(os.path.join(ckpt, name), "w") as handle:
                handle.write(f"{name} of epoch 1")
        mirror.push(last=["checkpoints/checkpoint"])
        assert order[-1] == "checkpoints/checkpoint" and len(order) == 3

        order.clear()
        os.remove(os.path.join(ckpt, "ckpt-1.index"))
        os.remove(os.path.join(ckpt, "ckpt-1.data-00000-of-00001"))
        for name in ("ckpt-2.index", "ckpt-2.data-00000-of-00001", "checkpoint"):
            with open(os.path.join(ckpt, name), "w") as handle:
                handle.write(f"{name} of epoch 2")
        mirror.push(last=["checkpoints/checkpoint"])
        assert order[-1] == "checkpoints/checkpoint" and len(order) == 3  # unchanged files are not sent again
        staging = mirror.path
    assert not os.path.exists(staging)
    fs = fsspec.filesystem("memory")
    assert _tree(fs, fs._strip_protocol(uri)) == {
        "checkpoints/checkpoint": b"checkpoint of epoch 2",
        "checkpoints/ckpt-2.index": b"ckpt-2.index of epoch 2",
        "checkpoints/ckpt-2.data-00000-of-00001": b"ckpt-2.data-00000-of-00001 of epoch 2",
    }


def test_a_pulled_mirror_holds_the_remote_checkpoints_and_does_not_send_them_back(memory_root, monkeypatch):
    uri = f"{memory_root}/attempt-1"
    storage.write_bytes(f"{uri}/checkpoints/checkpoint", b"index")
    storage.write_bytes(f"{uri}/checkpoints/ckpt-3.index", b"three")
    storage.write_bytes(f"{uri}/tb/events", b"not pulled")
    sent: list[str] = []
    monkeypatch.setattr(storage.Mirror, "_put", lambda self, name: sent.append(name))
    with storage.mirrored(uri) as mirror:
        mirror.pull("checkpoints")
        assert sorted(os.listdir(os.path.join(mirror.path, "checkpoints"))) == ["checkpoint", "ckpt-3.index"]
        assert not os.path.exists(os.path.join(mirror.path, "tb"))
        mirror.push()
    assert sent == []


def test_a_local_mirror_is_the_directory_itself_and_never_copies(tmp_path, monkeypatch):
    monkeypatch.setattr(storage.Mirror, "_put", lambda self, name: pytest.fail("a local mirror uploaded"))
    workdir = tmp_path / "attempt-1"
    with storage.mirrored(str(workdir)) as mirror:
        assert not mirror.staged and mirror.path == str(workdir)
        (workdir / "checkpoint").write_text("index")
        mirror.pull("checkpoints")
        mirror.push(last=["checkpoint"])
    assert (workdir / "checkpoint").read_text() == "index"


def test_local_copy_of_a_remote_tree_is_removed_afterwards(memory_root, tmp_path):
    storage.write_bytes(f"{memory_root}/model/saved_model/saved_model.pb", b"graph")
    storage.write_bytes(f"{memory_root}/model/saved_model/variables/variables.index", b"vars")
    with storage.local_copy(f"{memory_root}/model/saved_model") as path:
        assert open(os.path.join(path, "variables", "variables.index"), "rb").read() == b"vars"
    assert not os.path.exists(path)
    with storage.local_copy(str(tmp_path)) as path:
        assert path == str(tmp_path)
    assert tmp_path.exists()
    with pytest.raises(storage.NotFound, match="nothing-here: not found"):
        with storage.local_copy(f"{memory_root}/nothing-here"):
            pass


def test_a_local_copy_can_take_only_the_files_one_checkpoint_needs(memory_root):
    for name in ("ckpt-2.index", "ckpt-2.data-00000-of-00001", "ckpt-12.index", "ckpt-3.index", "checkpoint"):
        storage.write_bytes(f"{memory_root}/ckpts/{name}", name.encode())
    with storage.local_copy(f"{memory_root}/ckpts", only="ckpt-2.") as path:
        assert sorted(os.listdir(path)) == ["ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    with pytest.raises(storage.NotFound):
        with storage.local_copy(f"{memory_root}/ckpts", only="ckpt-9."):
            pass


def test_a_remote_compressed_file_reads_through_a_large_buffer_in_few_requests(memory_root, monkeypatch):
    import gzip

    rows = "".join(f"{i},product-{i % 7}\n" for i in range(50_000)).encode()
    uri = f"{memory_root}/data/tx.csv.gz"
    storage.write_bytes(uri, gzip.compress(rows))
    fetched = []  # bytes each read of the remote file returned (a request each on GCS)
    memory_file = fsspec.implementations.memory.MemoryFile

    def counting(original):
        def read(self, *args):
            out = original(self, *args)
            fetched.append(out if isinstance(out, int) else len(out))
            return out
        return read

    for method in ("read", "readinto"):
        monkeypatch.setattr(memory_file, method, counting(getattr(memory_file, method)))
    with storage.open_uri(uri, "rb", compression="infer") as handle:
        assert b"".join(iter(lambda: handle.read(8192), b"")) == rows
    assert [size for size in fetched if size] == [len(gzip.compress(rows))]  # one read, not one per 8 KiB
    with storage.open_uri(uri, "r", compression="infer", encoding="utf-8") as handle:
        assert handle.readline() == "0,product-0\n"


def test_is_pattern_knows_globs_and_folders_from_files():
    assert storage.is_pattern("gs://b/tx/part-*.parquet") and storage.is_pattern("tx/part-[0-3].csv")
    assert storage.is_pattern("gs://b/tx/") and storage.is_pattern("/data/tx/")
    assert not storage.is_pattern("gs://b/tx/part-0.parquet")
    assert not storage.is_pattern("https://example.com/tx.csv?sig=a*b")  # a query string, not a glob


def test_a_folder_named_without_its_slash_is_spelled_as_a_folder(tmp_path, memory_root):
    storage.write_bytes(str(tmp_path / "events.parquet" / "part-0.parquet"), b"x")  # a folder as Spark names it
    storage.write_bytes(f"{memory_root}/tx/part-0.csv", b"a\n")
    storage.write_bytes(str(tmp_path / "one.csv"), b"a\n")
    assert storage.as_pattern(str(tmp_path / "events.parquet")) == f"{tmp_path}/events.parquet/"
    assert storage.as_pattern(f"{memory_root}/tx") == f"{memory_root}/tx/"
    for unchanged in (str(tmp_path / "one.csv"), str(tmp_path / "missing"), f"{tmp_path}/*.csv", f"{memory_root}/tx/"):
        assert storage.as_pattern(unchanged) == unchanged


def test_expand_lists_shards_sorted_and_spelled_as_written(tmp_path, memory_root, monkeypatch):
    for name in ("part-1.csv", "part-0.csv", "_SUCCESS", ".part-0.csv.crc", "notes.txt", "sub/part-9.csv"):
        storage.write_bytes(str(tmp_path / "tx" / name), b"a\n")
        storage.write_bytes(f"{memory_root}/tx/{name}", b"a\n")
    monkeypatch.chdir(tmp_path)
    assert storage.expand("tx/part-*.csv") == ["tx/part-0.csv", "tx/part-1.csv"]
    assert storage.expand("tx/") == ["tx/notes.txt", "tx/part-0.csv", "tx/part-1.csv"]  # not sub/, not markers
    assert storage.expand(f"{memory_root}/tx/*") == [f"{memory_root}/tx/{n}" for n in ("notes.txt", "part-0.csv", "part-1.csv")]
    assert storage.expand(f"{memory_root}/tx/part-?.parquet") == []


def test_expanding_a_missing_folder_names_it(tmp_path):
    with pytest.raises(storage.NotFound, match=f"^{tmp_path}/absent/: not found"):
        storage.expand(f"{tmp_path}/absent/")
