"""Repository identity: names, types and the URL layout shared with the Hub.

Everything that turns user input into a repository goes through here, so there is one
definition of a valid name and one of a canonical path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REPO_TYPES = ("model", "dataset", "space")
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_PREFIX_TYPE = {"datasets": "dataset", "spaces": "space"}

_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,96}")

#: Names that would collide with routes, so no user or organization may take them.
RESERVED_NAMESPACES = frozenset(
    {
        "api",
        "assets",
        "datasets",
        "docs",
        "healthz",
        "join",
        "login",
        "logout",
        "models",
        "new",
        "organizations",
        "settings",
        "spaces",
        "static",
    }
)


class InvalidName(ValueError):
    """A user, organization or repository name that hfgit does not accept."""


def name_problem(name: str) -> str | None:
    """Return why ``name`` is not a valid namespace or repo name, or None when it is."""
    if not _NAME_RE.fullmatch(name):
        return "use 1 to 96 characters among letters, digits, '-', '_' and '.'"
    if name[0] in "-." or name[-1] in "-.":
        return "it may not start or end with '-' or '.'"
    if "--" in name or ".." in name:
        return "it may not contain '--' or '..'"
    if name.lower().endswith(".git"):
        return "it may not end with '.git'"
    return None


def check_name(name: str, what: str = "name") -> str:
    problem = name_problem(name)
    if problem:
        raise InvalidName(f"Invalid {what} {name!r}: {problem}.")
    return name


def check_namespace(name: str) -> str:
    check_name(name, "user or organization name")
    if name.lower() in RESERVED_NAMESPACES:
        raise InvalidName(f"{name!r} is reserved for hfgit's own pages; choose another name.")
    return name


def check_repo_type(repo_type: str) -> str:
    if repo_type not in REPO_TYPES:
        raise InvalidName(f"Invalid repo type {repo_type!r}: use one of {', '.join(REPO_TYPES)}.")
    return repo_type


@dataclass(frozen=True)
class RepoId:
    """A repository as users name it: type, namespace and name."""

    type: str
    namespace: str
    name: str

    @classmethod
    def parse(cls, repo_id: str, repo_type: str = "model") -> RepoId:
        """Build from ``ns/name`` as typed on the command line or sent to the API."""
        check_repo_type(repo_type)
        namespace, sep, name = repo_id.partition("/")
        if not sep:
            raise InvalidName(f"Invalid repo id {repo_id!r}: use NAMESPACE/NAME.")
        check_namespace(namespace)
        check_name(name, "repo name")
        return cls(repo_type, namespace, name)

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def url_path(self) -> str:
        return _URL_PREFIX[self.type] + self.repo_id

    def __str__(self) -> str:
        return f"{self.type} {self.repo_id}"


def is_canonical(raw_path: str) -> bool:
    """Reject paths that only name a repository after normalization.

    ``..``, ``.``, empty segments and any percent-escape are refused before routing, so
    two different strings can never reach the same repository or escape it.
    """
    if "%" in raw_path or "\\" in raw_path or not raw_path.startswith("/"):
        return False
    return all(segment not in ("", ".", "..") for segment in raw_path[1:].split("/"))


def parse_repo_url(path: str) -> RepoId | None:
    """The repository ``[datasets/|spaces/]ns/name[.git]`` names, as git and LFS URLs do.

    Returns None when the path names no repository in valid syntax.
    """
    segments = path.split("/")
    repo_type = _PREFIX_TYPE.get(segments[0], "model") if len(segments) == 3 else "model"
    if repo_type != "model":
        segments = segments[1:]
    if len(segments) != 2:
        return None
    namespace, name = segments
    if name.endswith(".git"):
        name = name[: -len(".git")]
    return _valid_repo(repo_type, namespace, name)


def parse_api_repo(path: str) -> RepoId | None:
    """The repository ``models|datasets|spaces/ns/name`` names, as the Hub's API does."""
    segments = path.split("/")
    if len(segments) != 3 or segments[0] not in ("models", "datasets", "spaces"):
        return None
    return _valid_repo(segments[0][:-1], segments[1], segments[2])


def _valid_repo(repo_type: str, namespace: str, name: str) -> RepoId | None:
    if name_problem(namespace) or namespace.lower() in RESERVED_NAMESPACES or name_problem(name):
        return None
    return RepoId(repo_type, namespace, name)
