"""The HF-compatible JSON API, so that ``huggingface_hub`` works with ``HF_ENDPOINT``.

Paths, bodies and error headers copy the Hub's (checked against ``huggingface_hub`` 2.4),
so the client raises the same exceptions it raises against the Hub. Every decision goes
through :mod:`hfgit.policy`; this module only translates HTTP to those calls and back.
No endpoint here manages tokens: that needs a browser session on the settings pages.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from werkzeug.wrappers import Request, Response

from ..accounts import AccessRequest, Accounts, Actor, Caller, Conflict
from ..config import Settings
from ..names import RepoId
from ..policy import Action, decide_create
from .body import open_body, parse_json, read_all
from .gate import Access, Gate
from .refusal import Refusal
from .surface import Surface
from .urls import public_base

#: The API's request bodies are small JSON objects.
MAX_BODY_BYTES = 64 * 1024
#: huggingface_hub tells a bad token from a hidden repo by this exact text.
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def iso(timestamp: float) -> str:
    """The Hub's timestamp format: ISO 8601 in UTC with milliseconds and ``Z``."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_response(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


class ApiRequest(Request):
    max_content_length = MAX_BODY_BYTES


def header_text(message: str) -> str:
    """``message`` as a header value can carry it: one line, ASCII (others escaped).

    WSGI servers refuse header values outside Latin-1, and werkzeug any line break.
    """
    flat = " ".join(message.split())
    return flat.encode("ascii", "backslashreplace").decode("ascii")


def error_response(status: int, message: str, code: str | None = None) -> Response:
    """An API error as the Hub sends it: JSON body plus ``X-Error-Code``/``X-Error-Message``."""
    response = Response(json.dumps({"error": message}), status=status, mimetype="application/json")
    response.headers["X-Error-Message"] = header_text(message)
    if code:
        response.headers["X-Error-Code"] = code
    return response


def hub_refusal(access: Access) -> Refusal | None:
    """The policy's refusal as the Hub words it, or None when the access is allowed."""
    if access.decision:
        return None
    refusal = Refusal.from_deny(access.decision)
    if (
        refusal.code == "AuthRequired"
        and access.repo is not None
        and access.repo.facts.gated != "off"
    ):
        # The Hub answers an anonymous read of a gated repo with GatedRepo, which the
        # client turns into GatedRepoError rather than RepositoryNotFoundError.
        refusal.code = "GatedRepo"
    return refusal


def _bad_request(message: str) -> Refusal:
    return Refusal(400, message)


def _body(request: Request) -> dict:
    if not request.is_json:
        raise _bad_request("Send a JSON object with Content-Type: application/json.")
    data = parse_json(read_all(open_body(request.environ, MAX_BODY_BYTES)))
    if not isinstance(data, dict):
        raise _bad_request("Send a JSON object with Content-Type: application/json.")
    return data


def _visibility(body: dict) -> bool | None:
    """``private`` from either the ``visibility`` or the older ``private`` field."""
    visibility = body.get("visibility")
    if visibility is not None:
        if visibility not in ("public", "private"):
            raise _bad_request(f"Invalid visibility {visibility!r}: use public or private.")
        return visibility == "private"
    private = body.get("private")
    if private is not None and not isinstance(private, bool):
        raise _bad_request("private must be true or false.")
    return private


def _access_request_json(item: AccessRequest) -> dict:
    return {
        "user": {"user": item.user, "fullname": item.fullname, "email": item.email},
        "requestId": item.request_id,
        "status": item.status,
        "timestamp": iso(item.created_at),
        "fields": item.fields,
    }


class ApiService(Surface):
    request_class = ApiRequest

    def __init__(self, accounts: Accounts, gate: Gate, settings: Settings) -> None:
        self.accounts = accounts
        self.gate = gate
        self.config = settings  # not "settings": that is the settings endpoint

    def refuse(self, refusal: Refusal, request: Request) -> Response:
        """The Hub's dialect, so that ``huggingface_hub`` raises its own exceptions."""
        message = INVALID_CREDENTIALS if refusal.reason == "invalid" else refusal.message
        return error_response(refusal.status, message, refusal.code)

    # Identity

    def whoami(self, request: Request) -> Response:
        caller = self.gate.caller(request.environ)
        if caller is None:
            raise Refusal(401, INVALID_CREDENTIALS)
        return json_response(self.whoami_json(caller))

    def whoami_json(self, caller: Caller) -> dict:
        principal = caller.principal
        user = self.accounts.users.get(principal.user)
        orgs = [
            {
                "type": "org",
                "id": org.hub_id,
                "name": org.name,
                "fullname": org.fullname,
                "roleInOrg": role,
            }
            for org, role in self.accounts.users.memberships_of(principal.user)
        ]
        data: dict = {
            "type": "user",
            "id": user.hub_id,
            "name": user.name,
            "fullname": user.fullname,
            "email": user.email,
            "avatarUrl": "",
            "isPro": False,
            "orgs": orgs,
        }
        if caller.token_id is not None:
            token = self.accounts.tokens.get(user.name, caller.token_id)
            if token is None:  # deleted since this request authenticated
                raise Refusal(401, INVALID_CREDENTIALS)
            access_token: dict = {
                "displayName": token.name,
                "role": token.role,
                "createdAt": iso(token.created_at),
            }
            if token.expires_at is not None:
                # Not in the Hub's documented shape: lets git-credential-hf pass
                # password_expiry_utc to git, which then drops the token on time.
                access_token["expiresAt"] = iso(token.expires_at)
            if token.role == "fineGrained":
                access_token["fineGrained"] = {
                    "scoped": [
                        {
                            "entity": {
                                "_id": scope.repo
                                or self.accounts.users.entity_hub_id(scope.kind, scope.name),
                                "type": scope.kind,
                                "name": scope.name,
                            },
                            "permissions": sorted(scope.permissions),
                        }
                        for scope in token.scopes
                    ],
                    "global": [],
                    "canReadGatedRepos": token.can_read_gated,
                }
            data["auth"] = {"type": "access_token", "accessToken": access_token}
        return data

    # Repositories

    def _refusal(self, caller: Caller | None, repo_id: RepoId, action: Action) -> Refusal | None:
        """The policy's refusal for ``action`` as the Hub words it, or None when allowed."""
        return hub_refusal(self.gate.check(caller, repo_id, action))

    def _require(self, caller: Caller | None, repo_id: RepoId, action: Action) -> None:
        refusal = self._refusal(caller, repo_id, action)
        if refusal is not None:
            raise refusal

    def auth_check_read(self, request: Request, repo: RepoId) -> Response:
        self._require(self.gate.caller(request.environ), repo, Action.READ)
        return json_response({"ok": True})

    def auth_check_write(self, request: Request, repo: RepoId) -> Response:
        self._require(self.gate.caller(request.environ), repo, Action.WRITE)
        return json_response({"ok": True})

    @staticmethod
    def _body_repo_id(body: dict, caller: Caller) -> RepoId:
        """The repo named by ``name``, ``organization`` and ``type`` in a create/delete body."""
        name = body.get("name")
        organization = body.get("organization")
        repo_type = body.get("type") or "model"
        if not isinstance(name, str) or not name:
            raise _bad_request("name is required: the repository's name without its namespace.")
        if organization is not None and not isinstance(organization, str):
            raise _bad_request("organization must be a string.")
        if not isinstance(repo_type, str):
            raise _bad_request("type must be model, dataset or space.")
        if "/" in name:
            organization, _, name = name.partition("/")
        if organization is None:
            organization = caller.principal.user
        return RepoId.parse(f"{organization}/{name}", repo_type)

    def _signed_in(self, request: Request) -> Caller:
        """The caller of a call that needs one: a repository is created or deleted by someone."""
        caller = self.gate.caller(request.environ)
        if caller is None:
            raise Refusal.from_deny(decide_create(None, "", False))
        return caller

    def create_repo(self, request: Request) -> Response:
        caller = self._signed_in(request)
        body = _body(request)
        repo_id = self._body_repo_id(body, caller)
        private = _visibility(body)
        # A namespace nobody holds is treated as an organization the caller is not in,
        # so the answer does not tell which names exist.
        is_org = self.accounts.users.namespace_kind(repo_id.namespace) != "user"
        decision = decide_create(caller.principal, repo_id.namespace, is_org)
        if not decision:
            raise Refusal.from_deny(decision)
        base = public_base(self.config, request)  # before the change: it may refuse
        try:
            record = self.accounts.repos.create(
                repo_id,
                private=bool(private),
                creator=caller.principal.user,
                actor=_actor(caller),
            )
        except Conflict:
            # As on the Hub, the 409 carries the URL: ``create_repo(exist_ok=True)`` reads it.
            message = f"You already created this {repo_id.type} repo"
            conflict = error_response(409, message)
            conflict.set_data(json.dumps({"error": message, "url": _url(base, repo_id)}))
            return conflict
        return json_response(
            {
                "url": _url(base, record.repo_id),
                "name": record.repo_id.repo_id,
                "id": record.hub_id,
            }
        )

    def delete_repo(self, request: Request) -> Response:
        caller = self._signed_in(request)
        repo_id = self._body_repo_id(_body(request), caller)
        self._require(caller, repo_id, Action.MANAGE)
        self.accounts.repos.delete(repo_id, actor=_actor(caller))
        return json_response({})

    def settings(self, request: Request, repo: RepoId) -> Response:
        caller = self.gate.caller(request.environ)
        self._require(caller, repo, Action.MANAGE)
        body = _body(request)
        private = _visibility(body)
        gated = body.get("gated")
        if gated is False:
            gated = "off"
        elif gated is not None and gated not in ("auto", "manual"):
            raise _bad_request(f'Invalid gated value {gated!r}: use "auto", "manual" or false.')
        if private is None and gated is None:
            raise _bad_request("Nothing to update: send gated and/or visibility.")
        record = self.accounts.repos.update(
            repo, private=private, gated=gated, actor=_actor(caller)
        )
        return json_response(
            {
                "private": record.facts.private,
                "gated": False if record.facts.gated == "off" else record.facts.gated,
            }
        )

    # Gated access

    def ask_access(self, request: Request, repo: RepoId) -> Response:
        """Ask for access to a gated repo (the Hub does this from its web page)."""
        caller = self.gate.caller(request.environ)
        if caller is None:
            raise Refusal(401, "Log in with a user access token to ask for access.")
        refusal = self._refusal(caller, repo, Action.READ)
        if refusal is not None and refusal.code != "GatedRepo":
            raise refusal
        status = self.accounts.gated.request_access(
            repo, caller.principal.user, actor=_actor(caller)
        )
        return json_response({"status": status})

    def list_requests(self, request: Request, repo: RepoId, status: str) -> Response:
        self._require(self.gate.caller(request.environ), repo, Action.MANAGE)
        items = self.accounts.gated.access_requests(repo, status)
        return json_response([_access_request_json(item) for item in items])

    def handle_request(self, request: Request, repo: RepoId) -> Response:
        caller = self.gate.caller(request.environ)
        self._require(caller, repo, Action.MANAGE)
        body = _body(request)
        user, request_id, status = body.get("user"), body.get("requestId"), body.get("status")
        for field, value in (("user", user), ("requestId", request_id), ("status", status)):
            if value is not None and not isinstance(value, str):
                raise _bad_request(f"{field} must be a string.")
        if not status:
            raise _bad_request("status is required: accepted, rejected or pending.")
        self.accounts.gated.handle_access_request(
            repo, status, user=user, request_id=request_id, actor=_actor(caller)
        )
        return json_response({"status": status})

    def grant_access(self, request: Request, repo: RepoId) -> Response:
        caller = self.gate.caller(request.environ)
        self._require(caller, repo, Action.MANAGE)
        user = _body(request).get("user")
        if not isinstance(user, str) or not user:
            raise _bad_request("user is required: the name of the user to grant access to.")
        self.accounts.gated.grant_access(repo, user, actor=_actor(caller))
        return json_response({"status": "accepted"})


def _actor(caller: Caller) -> Actor:
    """Who made a change, for the audit: the caller's user and token."""
    return Actor(caller.user_id, caller.token_id)


def _url(base: str, repo_id: RepoId) -> str:
    return f"{base}/{repo_id.url_path}"
