"""A feature's vocabulary from a file: one value per line (local, file://, memory://, gs://).

No TensorFlow import here: validation reads the file to check it, the model to build its lookup.
"""

from __future__ import annotations

from trainer.rules import data_uri_problem
from trainer.storage import StorageError, open_uri


class VocabularyError(ValueError):
    """A vocabulary file that cannot be read or holds no value; the message names the file."""


def read_vocabulary(uri: str) -> list[str]:
    """The file's distinct values in file order, each line stripped; blank lines are skipped. A URI
    that data may not come from (`rules.data_uri_problem`: http without opting in) is never opened."""
    problem = data_uri_problem(uri)
    if problem:
        raise VocabularyError(f"{uri}: {problem}")
    try:
        with open_uri(uri, "rt", compression="infer", encoding="utf-8") as handle:
            values = list(dict.fromkeys(line.strip() for line in handle))
    except FileNotFoundError:
        raise VocabularyError(f"{uri}: file not found") from None
    except StorageError as exc:
        raise VocabularyError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VocabularyError(f"{uri}: cannot be read as text lines ({exc})") from None
    values = [value for value in values if value]
    if not values:
        raise VocabularyError(f"{uri}: holds no value (one per line expected)")
    return values
