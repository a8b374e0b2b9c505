"""One road to towerflow's files: local paths and URIs (gs://, memory://, file://) through fsspec.

Every file towerflow reads or writes goes through here, so one set of credentials and endpoint
settings (gcsfs for gs://: application default credentials, STORAGE_EMULATOR_HOST) governs them
all. Writers that need a filesystem path (TensorFlow's checkpoints, summaries, SavedModel) write
to a `Mirror`'s local directory, pushed to its URI file by file; readers that need one get a
`local_copy`. A local URI is its own directory: no staging, no copies.

Failures name the URI in one line: `NotFound`, `Forbidden`, `Unreachable` (all `StorageError`, an
`ExpectedError` and an `OSError` of the matching kind). No TensorFlow, no Prefect.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import posixpath
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import fsspec
from fsspec.compression import compr
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import infer_compression

from trainer.errors import ExpectedError, Resumable

# gcsfs >= 2026.3 exports a GCSFileSystem that first asks Google's Storage Control gRPC API for the
# bucket type; where that API does not answer (an emulator, a closed network) every operation retries
# it for about 60 s. gcsfs reads this variable once, when fsspec first imports it for a gs:// URI,
# which is after this line: fsspec imports filesystems lazily. A value the user set is kept.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

PROBE_TIMEOUT_S = 5.0
READ_BUFFER = 8 * 2**20
GLOB_CHARACTERS = "*?["


class StorageError(ExpectedError, OSError):
    """A file towerflow needs could not be read or written; the message names its URI."""


class NotFound(StorageError, FileNotFoundError):
    """No object or file at the URI (or no such bucket)."""


class Forbidden(StorageError, PermissionError):
    """The credentials in use may not read or write the URI."""


class Unreachable(StorageError, ConnectionError, Resumable):
    """The storage endpoint does not answer (after gcsfs's own retries, about a minute): an outage, not a
    fault of the experiment, which a run that meets it leaves unfinished for the next run to continue."""


def join(*parts: str) -> str:
    """Join path parts; works for local paths and URIs (gs://bucket/a/b)."""
    return posixpath.join(*parts)


def named(uri: str) -> str:
    """`uri` as a message names it: a relative local path with the directory it is read from (a flow run by
    `towerflow serve` reads it from serve's directory, not the submitter's)."""
    uri = str(uri)
    return uri if "://" in uri or os.path.isabs(uri) else f"{uri} (relative to {os.getcwd()})"


def local_path(uri: str) -> str | None:
    """The path on this machine of a plain path or file:// URI (absolute); None for a remote URI."""
    fs, path = filesystem(uri)
    return path if isinstance(fs, LocalFileSystem) else None


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of `uri` and the path on it; Unreachable at once when a remote
    endpoint does not accept connections (instead of gcsfs retrying for half a minute)."""
    fs, path = fsspec.core.url_to_fs(str(uri))
    endpoint = getattr(fs, "_location", None)  # gcsfs: the JSON API endpoint, STORAGE_EMULATOR_HOST if set
    if isinstance(endpoint, str):
        problem = _unreachable(endpoint)
        if problem:
            raise Unreachable(f"{uri}: the storage endpoint {endpoint} {problem}")
    return fs, path


@functools.lru_cache(maxsize=None)
def _probe(host: str, port: int) -> str | None:
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        return f"cannot be reached ({error.strerror or error})"
    return None


def _unreachable(endpoint: str) -> str | None:
    """Why nothing answers at `endpoint` (http[s]://host[:port]), or None; a success is remembered."""
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    problem = _probe(parts.hostname or "", port)
    if problem:
        _probe.cache_clear()  # the endpoint may come up later in a long-lived process
    return problem


def _connection_errors() -> tuple[type[BaseException], ...]:
    try:
        from aiohttp import ClientConnectionError  # what gcsfs raises when a connection fails
    except ImportError:
        return ConnectionError, TimeoutError
    return ConnectionError, TimeoutError, ClientConnectionError


@contextlib.contextmanager
def failing_as_storage_error(uri: str) -> Iterator[None]:
    """Turn what fsspec/gcsfs raise for `uri` into a one-line StorageError naming it."""
    try:
        yield
    except ExpectedError:  # already one line naming what is wrong (a StorageError, a DataError)
        raise
    except FileNotFoundError:
        raise NotFound(f"{named(uri)}: not found") from None
    except Exception as error:
        code = getattr(error, "code", None)  # gcsfs.retry.HttpError
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if isinstance(error, PermissionError) or code in (401, 403) or detail.startswith("Forbidden"):
            raise Forbidden(f"{uri}: permission denied ({detail})") from None
        if isinstance(error, _connection_errors()):
            raise Unreachable(f"{uri}: cannot be reached ({detail})") from None
        if isinstance(error, OSError) or code is not None:
            raise StorageError(f"{uri}: {detail}") from None
        raise


@contextlib.contextmanager
def open_uri(uri: str, mode: str = "rb", *, compression: str | None = None, encoding: str | None = None) -> Iterator:
    """`uri` opened like `fsspec.open(uri, mode, compression=..., encoding=...)`, failing as a StorageError.

    A remote file read is buffered READ_BUFFER at a time: a decompressor's or parser's small reads
    would otherwise cost one request each."""
    with failing_as_storage_error(uri):
        fs, path = filesystem(uri)
        local = isinstance(fs, LocalFileSystem)
        if local or "r" not in mode:
            if local and "w" in mode:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            with fsspec.open(str(uri), mode, compression=compression, encoding=encoding) as handle:
                yield handle
            return
        with fs.open(path, "rb") as raw:
            stream = io.BufferedReader(raw, READ_BUFFER)
            if compression == "infer":
                compression = infer_compression(path)
            if compression:
                stream = compr[compression](stream, mode="rb")
            yield stream if "b" in mode else io.TextIOWrapper(stream, encoding=encoding)


def is_pattern(uri: str) -> bool:
    """Whether `uri` names shards: a glob (`part-*.parquet`) or a folder or prefix ending in `/`."""
    uri = str(uri)
    if urlsplit(uri).scheme in ("http", "https"):  # a query string is not a glob, and http cannot list
        return False
    return uri.endswith("/") or any(character in uri for character in GLOB_CHARACTERS)


def as_pattern(uri: str) -> str:
    """`uri` spelled as `is_pattern` understands it: a folder or prefix named without its trailing `/`
    (`data/tx`, Spark's `events.parquet` folder) gains one; anything else comes back as it is, for
    the read that follows to report what is wrong with it."""
    uri = str(uri)
    if is_pattern(uri) or urlsplit(uri).scheme in ("http", "https"):
        return uri
    try:
        with failing_as_storage_error(uri):
            fs, path = filesystem(uri)
            folder = fs.isdir(path)
    except StorageError:
        return uri
    return uri + "/" if folder else uri


def expand(pattern: str) -> list[str]:
    """The files `pattern` names, sorted and spelled like it (`gs://b/tx/part-0.csv`, `tx/part-0.csv`):
    a glob's matches, or the files directly in a folder or under a prefix ending in `/`. Names
    starting with `_` or `.` (`_SUCCESS`, `.part-0.crc`) are skipped. [] when nothing matches."""
    return sorted(described(pattern))


def described(pattern: str) -> dict[str, dict]:
    """The files `expand(pattern)` names, each with what the one listing of them says (size, times, generation)."""
    pattern = str(pattern)
    wildcard = min((pattern.find(c) for c in GLOB_CHARACTERS if c in pattern), default=len(pattern))
    base = pattern[: pattern.rfind("/", 0, wildcard) + 1]  # the folder the matches lie in, as written
    with failing_as_storage_error(pattern):
        fs, path = filesystem(pattern)
        root = fs._strip_protocol(base).rstrip("/")
        found = fs.ls(path, detail=True) if pattern.endswith("/") else fs.glob(path, detail=True).values()
        files = {base + entry["name"][len(root):].lstrip("/"): entry for entry in found if entry["type"] == "file"}
    return {uri: entry for uri, entry in files.items() if not posixpath.basename(uri).startswith(("_", "."))}


def read_bytes(uri: str) -> bytes:
    with failing_as_storage_error(uri):
        fs, path = filesystem(uri)
        return fs.cat_file(path)


def write_bytes(uri: str, data: bytes) -> None:
    """Write `data` to `uri` whole: a local file is replaced atomically (a kill never leaves half of
    it), an object store's upload is atomic anyway."""
    with failing_as_storage_error(uri):
        fs, path = filesystem(uri)
        if isinstance(fs, LocalFileSystem):
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            partial.write_bytes(data)
            os.replace(partial, target)
        else:
            fs.pipe_file(path, data)


def exists(uri: str) -> bool:
    with failing_as_storage_error(uri):
        fs, path = filesystem(uri)
        return fs.exists(path)


def makedirs(uri: str) -> None:
    """Create the directory `uri` (an object store has none: nothing to do there)."""
    with failing_as_storage_error(uri):
        fs, path = filesystem(uri)
        if isinstance(fs, LocalFileSystem):
            Path(path).mkdir(parents=True, exist_ok=True)


def download(uri: str, local_dir: str | Path, only: str = "") -> None:
    """Copy the tree at `uri` into `local_dir`, or only its files whose path in it starts with `only`;
    NotFound when there is nothing to copy."""
    with failing_as_storage_error(uri):
        fs, root = filesystem(uri)
        files = [remote for remote in fs.find(root) if posixpath.relpath(remote, root).startswith(only)]
        if not files:
            raise FileNotFoundError(uri)
        for remote in files:
            target = Path(local_dir, posixpath.relpath(remote, root))
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(target))


@contextlib.contextmanager
def local_copy(uri: str, only: str = "") -> Iterator[str]:
    """A local path holding the tree at `uri` for the block: the path itself when local, else a
    temporary download (of the files `only` selects, as in `download`) that is removed afterwards."""
    path = local_path(uri)
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="towerflow-") as staging:
        download(uri, staging, only)
        yield staging


class Mirror:
    """A local directory (`path`) for writers that need a filesystem path, mirrored to `uri` by `push`.

    `push` uploads the files that are new or changed since the last push or `pull`, the `last` ones
    after all others (so an index written last never points at a file not yet uploaded), then
    deletes the remote copies of files removed locally. For a local `uri`, `path` is that directory
    and `pull` and `push` do nothing.
    """

    def __init__(self, uri: str, path: str):
        self.uri = str(uri).rstrip("/")
        self.path = path
        own = local_path(self.uri)
        self.staged = own is None or os.path.abspath(own) != os.path.abspath(path)
        self._sent: dict[str, tuple[int, int]] = {}

    def pull(self, subdir: str) -> None:
        """Download `uri/subdir` into `path/subdir`, if there is anything there."""
        if not self.staged or not exists(join(self.uri, subdir)):
            return
        download(join(self.uri, subdir), os.path.join(self.path, subdir))
        self._sent.update(self._changed())

    def push(self, last: Iterable[str] = ()) -> None:
        """Upload what changed under `path` (`last`: relative paths to upload after the rest)."""
        if not self.staged:
            return
        changed = self._changed()
        last = [name for name in last if name in changed]
        for name in [name for name in changed if name not in last] + last:
            self._put(name)
            self._sent[name] = changed[name]
        present = set(self._files())
        for name in [name for name in self._sent if name not in present]:
            uri = join(self.uri, name)
            with failing_as_storage_error(uri):
                fs, path = filesystem(uri)
                fs.rm_file(path)
            del self._sent[name]

    def _files(self) -> dict[str, tuple[int, int]]:
        """Relative path -> (size, mtime) of every file under `path`."""
        found = {}
        for directory, _, names in os.walk(self.path):
            for name in names:
                full = os.path.join(directory, name)
                stat = os.stat(full)
                found[os.path.relpath(full, self.path).replace(os.sep, "/")] = (stat.st_size, stat.st_mtime_ns)
        return found

    def _changed(self) -> dict[str, tuple[int, int]]:
        return {name: stamp for name, stamp in self._files().items() if self._sent.get(name) != stamp}

    def _put(self, name: str) -> None:
        uri = join(self.uri, name)
        with failing_as_storage_error(uri):
            fs, path = filesystem(uri)
            if isinstance(fs, LocalFileSystem):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            fs.put_file(os.path.join(self.path, name), path)


@contextlib.contextmanager
def mirrored(uri: str) -> Iterator[Mirror]:
    """A Mirror of `uri`: the directory itself when local, else a temporary staging directory that is
    removed afterwards (push before leaving the block)."""
    path = local_path(uri)
    if path is not None:
        makedirs(uri)
        yield Mirror(uri, path)
        return
    staging = tempfile.mkdtemp(prefix="towerflow-")
    try:
        yield Mirror(uri, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
