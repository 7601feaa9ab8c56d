"""Server settings: where data lives, which database, and the limits on requests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "hfgit"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    #: Optional key for token digests, kept outside the database so a leaked database
    #: alone cannot be used to confirm a guessed token.
    token_key: bytes | None = None
    #: Largest receive-pack body after decompression (the pack git pushes).
    max_push_bytes: int = 2048 * MiB
    #: Largest upload-pack body after decompression (wants and haves only).
    max_fetch_request_bytes: int = 10 * MiB

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @classmethod
    def load(
        cls, data_dir: str | os.PathLike | None = None, database_url: str | None = None
    ) -> Settings:
        """Settings from arguments, falling back to ``HFGIT_*`` variables, then defaults."""
        directory = Path(data_dir or os.environ.get("HFGIT_DATA_DIR") or default_data_dir())
        directory = directory.expanduser().absolute()
        url = (
            database_url
            or os.environ.get("HFGIT_DATABASE_URL")
            or f"sqlite:///{directory / 'hfgit.db'}"
        )
        key = os.environ.get("HFGIT_TOKEN_KEY")
        return cls(
            data_dir=directory,
            database_url=url,
            token_key=key.encode() if key else None,
            max_push_bytes=_env_int("HFGIT_MAX_PUSH_BYTES", cls.max_push_bytes),
            max_fetch_request_bytes=_env_int(
                "HFGIT_MAX_FETCH_REQUEST_BYTES", cls.max_fetch_request_bytes
            ),
        )


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of bytes, not {value!r}.") from None
    if number <= 0:
        raise ValueError(f"{name} must be positive, not {value!r}.")
    return number
