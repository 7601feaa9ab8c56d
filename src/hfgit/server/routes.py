"""Every URL the server answers, in one table.

An endpoint is ``surface.handler``: the surface (``site``, ``pages``, ``api``, ``git``,
``lfs``, and the Hub's file API: ``files``, ``repoinfo``) renders that handler's answers
and refusals, and ``handler`` is the method of that surface's service that answers.
Paths are checked for canonical form before they are matched here
(:func:`hfgit.names.is_canonical`), so a converter sees plain segments;
only the file API's revision and path, after its keyword, reach it still percent-encoded.
"""

from __future__ import annotations

import re

from werkzeug.routing import BaseConverter, Map, Rule, ValidationError

from ..names import RepoId, parse_api_repo, parse_repo_url


class RepoConverter(BaseConverter):
    """A repository as git and LFS URLs name it: ``[datasets/|spaces/]ns/name[.git]``."""

    regex = r"(?:(?:datasets|spaces)/)?[^/]+/[^/]+"
    part_isolating = False

    def to_python(self, value: str) -> RepoId:
        repo_id = parse_repo_url(value)
        if repo_id is None:
            raise ValidationError()
        return repo_id

    def to_url(self, value: RepoId) -> str:
        return value.url_path


class ApiRepoConverter(BaseConverter):
    """A repository as the Hub's API names it: ``models|datasets|spaces/ns/name``."""

    regex = r"(?:models|datasets|spaces)/[^/]+/[^/]+"
    part_isolating = False

    def to_python(self, value: str) -> RepoId:
        repo_id = parse_api_repo(value)
        if repo_id is None:
            raise ValidationError()
        return repo_id

    def to_url(self, value: RepoId) -> str:
        return f"{value.type}s/{value.repo_id}"


class LfsOidConverter(BaseConverter):
    """A Git LFS object id: a SHA-256 in lowercase hex."""

    regex = r"[0-9a-f]{64}"


_LFS = "/<repo:repo>/info/lfs"
_API_REPO = "/api/<api_repo:repo>"
_ACCESS_REQUESTS = _API_REPO + "/user-access-request"
_RESOLVE = "/<repo:repo>/resolve/<rev>/<path:path>"

URL_MAP = Map(
    [
        # The site
        Rule("/", endpoint="site.index", methods=["GET"]),
        Rule("/healthz", endpoint="site.healthz", methods=["GET"]),
        # The settings pages (a browser session; tokens in headers are ignored)
        Rule("/login", endpoint="pages.login", methods=["GET", "POST"]),
        Rule("/logout", endpoint="pages.logout", methods=["POST"]),
        Rule("/settings", endpoint="pages.settings", methods=["GET"]),
        Rule("/settings/tokens", endpoint="pages.tokens", methods=["GET"]),
        Rule("/settings/tokens/new", endpoint="pages.new_token", methods=["POST"]),
        Rule(
            "/settings/tokens/<int:token_id>/<any(refresh,delete):action>",
            endpoint="pages.token_action",
            methods=["GET", "POST"],
        ),
        Rule("/static/<filename>", endpoint="pages.static", methods=["GET"]),
        # The Hub-compatible API
        Rule("/api/whoami-v2", endpoint="api.whoami", methods=["GET"]),
        Rule("/api/repos/create", endpoint="api.create_repo", methods=["POST"]),
        Rule("/api/repos/delete", endpoint="api.delete_repo", methods=["DELETE"]),
        Rule(_API_REPO + "/auth-check", endpoint="api.auth_check_read", methods=["GET"]),
        Rule(_API_REPO + "/auth-check/write", endpoint="api.auth_check_write", methods=["GET"]),
        Rule(_API_REPO + "/settings", endpoint="api.settings", methods=["PUT"]),
        Rule(_API_REPO + "/ask-access", endpoint="api.ask_access", methods=["POST"]),
        Rule(
            _ACCESS_REQUESTS + "/<any(pending,accepted,rejected):status>",
            endpoint="api.list_requests",
            methods=["GET"],
        ),
        Rule(_ACCESS_REQUESTS + "/handle", endpoint="api.handle_request", methods=["POST"]),
        Rule(_ACCESS_REQUESTS + "/grant", endpoint="api.grant_access", methods=["POST"]),
        # The Hub's file API: revisions and paths after the keyword are matched raw and
        # decoded segment by segment by the handlers (:mod:`.rawpath`)
        Rule(_RESOLVE, endpoint="files.resolve", methods=["GET"]),  # and HEAD
        Rule(_API_REPO, endpoint="repoinfo.info", methods=["GET"]),
        Rule(_API_REPO + "/revision/<rev>", endpoint="repoinfo.info", methods=["GET"]),
        Rule(_API_REPO + "/tree/<rev>", endpoint="repoinfo.tree", methods=["GET"]),
        Rule(_API_REPO + "/tree/<rev>/<path:path>", endpoint="repoinfo.tree", methods=["GET"]),
        Rule(_API_REPO + "/paths-info/<rev>", endpoint="repoinfo.paths_info", methods=["POST"]),
        Rule(_API_REPO + "/refs", endpoint="repoinfo.refs", methods=["GET"]),
        Rule(_API_REPO + "/commits/<rev>", endpoint="repoinfo.commits", methods=["GET"]),
        Rule(_API_REPO + "/preupload/<rev>", endpoint="files.preupload", methods=["POST"]),
        Rule(_API_REPO + "/commit/<rev>", endpoint="files.commit", methods=["POST"]),
        Rule(_API_REPO + "/branch/<rev>", endpoint="files.create_branch", methods=["POST"]),
        Rule(_API_REPO + "/branch/<rev>", endpoint="files.delete_branch", methods=["DELETE"]),
        Rule(_API_REPO + "/tag/<rev>", endpoint="files.create_tag", methods=["POST"]),
        Rule(_API_REPO + "/tag/<rev>", endpoint="files.delete_tag", methods=["DELETE"]),
        Rule(
            _API_REPO + "/xet-write-token/<rev>", endpoint="files.xet_write_token", methods=["GET"]
        ),
        Rule(_API_REPO + "/xet-read-token/<rev>", endpoint="files.xet_read_token", methods=["GET"]),
        Rule("/api/validate-yaml", endpoint="files.validate_yaml", methods=["POST"]),
        Rule("/api/agent-harnesses", endpoint="files.agent_harnesses", methods=["GET"]),
        # Git smart HTTP (only these: dulwich's dumb-protocol paths are not served)
        Rule("/<repo:repo>/info/refs", endpoint="git.info_refs", methods=["GET"]),
        Rule("/<repo:repo>/git-upload-pack", endpoint="git.upload_pack", methods=["POST"]),
        Rule("/<repo:repo>/git-receive-pack", endpoint="git.receive_pack", methods=["POST"]),
        # Git LFS: the batch API, signed basic transfers, file locking
        Rule(_LFS + "/objects/batch", endpoint="lfs.batch", methods=["POST"]),
        Rule(
            _LFS + "/objects/<lfs_oid:oid>/<int:size>",
            endpoint="lfs.download",
            methods=["GET"],
        ),
        Rule(_LFS + "/objects/<lfs_oid:oid>/<int:size>", endpoint="lfs.upload", methods=["PUT"]),
        Rule(_LFS + "/verify/<lfs_oid:oid>/<int:size>", endpoint="lfs.verify", methods=["POST"]),
        Rule(_LFS + "/locks", endpoint="lfs.list_locks", methods=["GET"]),
        Rule(_LFS + "/locks", endpoint="lfs.create_lock", methods=["POST"]),
        Rule(_LFS + "/locks/verify", endpoint="lfs.verify_locks", methods=["POST"]),
        Rule(_LFS + "/locks/<lock_id>/unlock", endpoint="lfs.unlock", methods=["POST"]),
    ],
    converters={"repo": RepoConverter, "api_repo": ApiRepoConverter, "lfs_oid": LfsOidConverter},
    # Canonical form is checked before matching; no redirects to another spelling.
    strict_slashes=False,
    merge_slashes=False,
)

_REPO_PREFIX = re.compile(r"/(?:(?:datasets|spaces)/)?[^/]+/[^/]+/")


def surface_of(path: str) -> str:
    """Which surface answers a path the table has no rule for, in its own dialect."""
    if path.startswith("/api/"):
        return "api"
    if path in ("/login", "/logout", "/settings") or path.startswith(("/settings/", "/static/")):
        return "pages"
    prefix = _REPO_PREFIX.match(path)
    if prefix is not None:
        rest = path[prefix.end() :]
        if rest.startswith("resolve/"):
            return "files"
        return "lfs" if rest.startswith("info/lfs/") else "git"
    return "site"
