"""The helper's own secret file: one record per line, 0600, replaced atomically under a lock.

Why a line format and not JSON: ``json`` pulls in ``re`` and costs more than the rest of
the helper's start-up, and git starts the helper several times per operation. Values can
never contain a control character (the protocol refuses them, and so does ``write``), so
a TAB between fields and a newline between records are unambiguous without escaping.

Why the lock and the atomic replace: git may run two helpers at once (two terminals, a
parallel fetch); each read-modify-write holds ``fcntl.flock`` on a separate lock file and
swaps in a complete new file with ``os.replace``, so no update is lost and no reader ever
sees half a file.
"""

import os
import stat

HEADER = "hfgit-credentials 1"
FILE_NAME = "credentials"
LOCK_NAME = ".credentials.lock"

Record = dict[str, str]  # includes "kind": "entry" (stored by git) or "login" (hfgit login)


class StoreError(Exception):
    """The secret file cannot be used; the message says which file and what to do."""


def config_dir() -> str:
    """``$HFGIT_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/hfgit``, else ``~/.config/hfgit``."""
    explicit = os.environ.get("HFGIT_CONFIG_DIR")
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(xdg, "hfgit")


def store_path() -> str:
    return os.path.join(config_dir(), FILE_NAME)


def _refuse_symlink(path: str) -> bool:
    """Return whether ``path`` exists; raise if it is a symlink or not a regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(f"{path} is a symbolic link; refusing to use it (replace it with a file)")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path} is not a regular file; refusing to use it")
    return True


def parse(text: str, path: str) -> list[Record]:
    """Parse the file's text; raise StoreError (naming the line) on anything unexpected."""
    lines = text.split("\n")
    if lines[0] != HEADER:
        raise StoreError(
            f"{path} is not an hfgit credential file (first line is not {HEADER!r}); "
            "nothing was changed: move it away or fix it"
        )
    records = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t")
        kind = fields[0]
        if kind not in ("entry", "login"):
            raise StoreError(f"{path}:{number}: unknown record type; nothing was changed")
        record = {"kind": kind}
        for field in fields[1:]:
            key, sep, value = field.partition("=")
            if not sep or not key:
                raise StoreError(f"{path}:{number}: malformed field; nothing was changed")
            record[key] = value
        records.append(record)
    return records


def serialize(records: list[Record]) -> str:
    """Render records; refuse values that would break the line format."""
    out = [HEADER]
    for record in records:
        fields = [record["kind"]]
        for key, value in record.items():
            if key == "kind":
                continue
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key + value) or "=" in key:
                raise StoreError(f"refusing to store a {key!r} value with a control character")
            fields.append(f"{key}={value}")
        out.append("\t".join(fields))
    return "\n".join(out) + "\n"


def read(path: str | None = None) -> list[Record]:
    """Read every record; a missing file is an empty store."""
    path = path or store_path()
    if not _refuse_symlink(path):
        return []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise StoreError(f"{path} is not UTF-8; nothing was changed") from None
    return parse(text, path)


def _write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, f".{FILE_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        _refuse_symlink(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Update:
    """``with Update() as records:`` edit the list in place; it is saved on a clean exit.

    The lock is held from the read to the replace, so concurrent updates serialize.
    Nothing is written when the block raises or leaves the records unchanged.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path or store_path()
        self._lock_fd = -1
        self._before = ""
        self.records: list[Record] = []

    def __enter__(self) -> list[Record]:
        import fcntl  # only writers lock; keep it off the ``get`` path

        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        lock = os.path.join(directory, LOCK_NAME)
        try:
            self._lock_fd = os.open(
                lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise StoreError(f"cannot open lock file {lock}: {exc.strerror}") from None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self.records = read(self.path)
            self._before = serialize(self.records)
        except BaseException:
            os.close(self._lock_fd)
            raise
        return self.records

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                text = serialize(self.records)
                if text != self._before:
                    _write_atomic(self.path, text)
        finally:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
