"""A small threaded HTTP/1.1 server that runs ``git http-backend`` as CGI (stdlib only).

The benchmark's reference for "plain git over smart HTTP". Python's own
``CGIHTTPRequestHandler`` cannot serve git: it neither decodes chunked request bodies
(git sends bodies over 1 MiB chunked) nor passes ``Content-Encoding`` and
``Git-Protocol`` on, so this server does the few CGI/1.1 steps git needs itself:
every request header becomes ``HTTP_*``, the body is de-chunked into the CGI's stdin,
and the CGI's ``Status:`` and headers become the HTTP answer, streamed back with a
``Content-Length`` or chunked so connections stay alive as they do under gunicorn.

Run: ``python bench/_cgi_server.py --port PORT --root DIR`` (repositories under DIR,
all exported, anonymous push allowed: it only ever listens on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
_COPY = 64 * 1024
#: Headers that CGI passes as CONTENT_* or that describe the hop, not the request.
_NOT_PASSED = {"content-type", "content-length", "transfer-encoding", "connection"}


def _read_chunked(rfile):
    """Yield the decoded pieces of a chunked request body."""
    while True:
        size = int(rfile.readline().split(b";", 1)[0].strip(), 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        remaining = size
        while remaining:
            data = rfile.read(min(remaining, _COPY))
            if not data:
                raise ConnectionError("truncated chunked body")
            remaining -= len(data)
            yield data
        rfile.readline()


def _read_length(rfile, length: int):
    while length:
        data = rfile.read(min(length, _COPY))
        if not data:
            raise ConnectionError("truncated body")
        length -= len(data)
        yield data


class GitCGIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bench-cgi"
    root = ""

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._run_cgi()

    do_POST = do_GET

    def _environ(self, path: str, query: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.root,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            # Anonymous push: http-backend refuses receive-pack without REMOTE_USER otherwise.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": self.request_version,
            "SERVER_SOFTWARE": self.server_version,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(self.server.server_address[1]),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
        }
        if self.headers.get("Content-Length"):
            env["CONTENT_LENGTH"] = self.headers["Content-Length"]
        for name, value in self.headers.items():
            if name.lower() not in _NOT_PASSED:
                env["HTTP_" + name.upper().replace("-", "_")] = value
        return env

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _read_chunked(self.rfile)
        return _read_length(self.rfile, int(self.headers.get("Content-Length") or 0))

    def _run_cgi(self) -> None:
        path, _, query = self.path.partition("?")
        process = subprocess.Popen(
            [HTTP_BACKEND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self._environ(path, query),
        )
        body = self._body()

        def feed() -> None:
            # Always read the whole body, even if the CGI stops early: the next request
            # on this connection starts right after it.
            broken = False
            for data in body:
                if not broken:
                    try:
                        process.stdin.write(data)
                    except BrokenPipeError:
                        broken = True
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            self._relay(process)
        finally:
            feeder.join()
            process.stdout.close()
            process.wait()

    def _relay(self, process: subprocess.Popen) -> None:
        status = "200 OK"
        headers: list[tuple[str, str]] = []
        while True:
            line = process.stdout.readline().rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "status":
                status = value.strip()
            else:
                headers.append((name, value.strip()))
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason or None)
        length = next((v for n, v in headers if n.lower() == "content-length"), None)
        for name, value in headers:
            self.send_header(name, value)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            data = process.stdout.read1(_COPY)
            if not data:
                break
            if length is None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
        if length is None:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True)
    args = parser.parse_args()
    if not os.access(HTTP_BACKEND, os.X_OK) or shutil.which("git") is None:
        raise SystemExit(f"needs git and {HTTP_BACKEND}: apt-get install -y git")
    GitCGIHandler.root = os.path.abspath(args.root)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), GitCGIHandler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
