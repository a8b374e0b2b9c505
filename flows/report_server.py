"""HTML reports over http on loopback, so the Prefect UI's report link opens in a browser.

A browser refuses `file://` links from a web page, and a path on a worker's disk never opens on a
laptop. `towerflow serve` serves the artifacts root's reports here and tells its flow runs the base
URL (TOWERFLOW_REPORT_URL); `towerflow report NAME --serve` does the same for one report. Only
`.html` files under the root are served: never checkpoints, configs or anything outside it. A gs://
report links to the Cloud Storage console instead.
"""

from __future__ import annotations

import functools
import os
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

REPORT_URL_ENV = "TOWERFLOW_REPORT_URL"


class _ReportsOnly(SimpleHTTPRequestHandler):
    """GET and HEAD of .html files under the served directory; 404 for anything else."""

    def send_head(self):
        path = urlsplit(self.path).path
        target = Path(self.translate_path(path)).resolve()
        root = Path(self.directory).resolve()
        if not unquote(path).endswith(".html") or root not in target.parents or not target.is_file():
            self.send_error(HTTPStatus.NOT_FOUND, "only reports are served here")
            return None
        return super().send_head()

    def log_message(self, format: str, *args) -> None:  # a quiet server: the terminal belongs to serve
        pass


class ReportServer:
    """A threaded HTTP server on 127.0.0.1 serving the reports under `root`."""

    def __init__(self, root: str | Path, port: int = 0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_ReportsOnly, directory=str(self.root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="towerflow-reports", daemon=True)

    def __enter__(self) -> ReportServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url_of(self, path: str | Path) -> str | None:
        return report_url(str(path), str(self.root), self.url)


def report_url(report: str, root: str, base_url: str | None) -> str | None:
    """Where a browser opens `report`: https for gs://, `base_url` + its path under `root` for a local
    file served from `root`, else None (nothing serves it)."""
    parts = urlsplit(report)
    if parts.scheme == "gs":
        return f"https://storage.cloud.google.com/{parts.netloc}{quote(parts.path)}"
    if not base_url or parts.scheme not in ("", "file"):
        return None
    path, served = Path(unquote(parts.path)).resolve(), Path(root).resolve()
    if served not in path.parents:
        return None
    return f"{base_url.rstrip('/')}/{quote(path.relative_to(served).as_posix())}"


def served_report_url(report: str, root: str) -> str | None:
    """`report_url` against the report server this process was told about (TOWERFLOW_REPORT_URL)."""
    return report_url(report, root, os.environ.get(REPORT_URL_ENV))
