"""The HF-compatible JSON API, so that ``huggingface_hub`` works with ``HF_ENDPOINT``.

Paths, bodies and error headers copy the Hub's (checked against ``huggingface_hub`` 2.4),
so the client raises the same exceptions it raises against the Hub. Every decision goes
through :mod:`hfgit.policy`; this module only translates HTTP to those calls and back.
No endpoint here manages tokens: that needs a browser session on the settings pages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ..accounts import (
    AccessRequest,
    Accounts,
    AccountsError,
    Actor,
    AuthError,
    Caller,
    Conflict,
    InvalidInput,
    NotFound,
)
from ..names import InvalidName, RepoId
from ..policy import Action, Deny, decide_create
from . import responses
from .gate import Gate

#: The API's request bodies are small JSON objects.
MAX_BODY_BYTES = 64 * 1024

_REPO = "/api/<any(models,datasets,spaces):kind>/<namespace>/<name>"
_ACCESS = _REPO + "/user-access-request"


def iso(timestamp: float) -> str:
    """The Hub's timestamp format: ISO 8601 in UTC with milliseconds and ``Z``."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_response(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


class ApiRequest(Request):
    max_content_length = MAX_BODY_BYTES


class BadRequest(Exception):
    """A malformed API call; answered 400 with this message."""


def _body(request: Request) -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("Send a JSON object with Content-Type: application/json.")
    return data


def _visibility(body: dict) -> bool | None:
    """``private`` from either the ``visibility`` or the older ``private`` field."""
    visibility = body.get("visibility")
    if visibility is not None:
        if visibility not in ("public", "private"):
            raise BadRequest(f"Invalid visibility {visibility!r}: use public or private.")
        return visibility == "private"
    private = body.get("private")
    if private is not None and not isinstance(private, bool):
        raise BadRequest("private must be true or false.")
    return private


def _access_request_json(item: AccessRequest) -> dict:
    return {
        "user": {"user": item.user, "fullname": item.fullname, "email": item.email},
        "requestId": item.request_id,
        "status": item.status,
        "timestamp": iso(item.created_at),
        "fields": item.fields,
    }


class Refused(Exception):
    """The policy said no; carries the refusal to answer with."""

    def __init__(self, deny: Deny) -> None:
        super().__init__(deny.message)
        self.deny = deny


class ApiService:
    def __init__(self, accounts: Accounts, gate: Gate) -> None:
        self.accounts = accounts
        self.gate = gate
        self.urls = Map(
            [
                Rule("/api/whoami-v2", endpoint="whoami", methods=["GET"]),
                Rule("/api/repos/create", endpoint="create_repo", methods=["POST"]),
                Rule("/api/repos/delete", endpoint="delete_repo", methods=["DELETE"]),
                Rule(_REPO + "/auth-check", endpoint="auth_check_read", methods=["GET"]),
                Rule(_REPO + "/auth-check/write", endpoint="auth_check_write", methods=["GET"]),
                Rule(_REPO + "/settings", endpoint="settings", methods=["PUT"]),
                Rule(_REPO + "/ask-access", endpoint="ask_access", methods=["POST"]),
                Rule(
                    _ACCESS + "/<any(pending,accepted,rejected):status>",
                    endpoint="list_requests",
                    methods=["GET"],
                ),
                Rule(_ACCESS + "/handle", endpoint="handle_request", methods=["POST"]),
                Rule(_ACCESS + "/grant", endpoint="grant_access", methods=["POST"]),
            ]
        )

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        request = ApiRequest(environ)
        try:
            endpoint, args = self.urls.bind_to_environ(environ).match()
        except HTTPException as exc:
            status = exc.code or 404
            return responses.json_error(status, exc.description or "Not found")(
                environ, start_response
            )
        try:
            caller = self.gate.caller(environ)
        except AuthError as error:
            return responses.api_auth_failed(error)(environ, start_response)
        handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
        try:
            response = handler(request, caller, **args)
        except Refused as refused:
            response = responses.api_denied(refused.deny)
        except AuthError as error:
            response = responses.api_auth_failed(error)
        except (BadRequest, InvalidInput, InvalidName) as exc:
            response = responses.json_error(400, str(exc))
        except NotFound as exc:
            response = responses.json_error(404, str(exc))
        except Conflict as exc:
            response = responses.json_error(409, str(exc))
        except AccountsError as exc:
            response = responses.json_error(400, str(exc))
        except HTTPException as exc:  # an oversized body, from werkzeug
            response = responses.json_error(exc.code or 400, exc.description or "Bad request")
        return response(environ, start_response)

    # Identity

    def _whoami(self, request: Request, caller: Caller | None) -> Response:
        if caller is None:
            return responses.json_error(401, responses.API_INVALID_CREDENTIALS)
        return json_response(self.whoami(caller))

    def whoami(self, caller: Caller) -> dict:
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
                raise AuthError("invalid")
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
                                "_id": self.accounts.users.entity_hub_id(scope.kind, scope.name),
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

    def _check(self, caller: Caller | None, repo_id: RepoId, action: Action) -> Deny | None:
        """The policy's refusal for ``action``, or None when it is allowed."""
        access = self.gate.check(caller, repo_id, action)
        if access.decision:
            return None
        deny = access.decision
        assert isinstance(deny, Deny)
        if (
            deny.code == "AuthRequired"
            and access.repo is not None
            and access.repo.facts.gated != "off"
        ):
            # The Hub answers an anonymous read of a gated repo with GatedRepo, which the
            # client turns into GatedRepoError rather than RepositoryNotFoundError.
            return Deny(deny.status, "GatedRepo", deny.message)
        return deny

    def _require(self, caller: Caller | None, repo_id: RepoId, action: Action) -> None:
        """Raise :class:`Refused` (answered by ``__call__``) unless ``action`` is allowed."""
        deny = self._check(caller, repo_id, action)
        if deny is not None:
            raise Refused(deny)

    def _auth_check(self, caller: Caller | None, repo_id: RepoId, action: Action) -> Response:
        self._require(caller, repo_id, action)
        return json_response({"ok": True})

    def _auth_check_read(
        self, request: Request, caller: Caller | None, kind: str, namespace: str, name: str
    ) -> Response:
        return self._auth_check(caller, _repo_id(kind, namespace, name), Action.READ)

    def _auth_check_write(
        self, request: Request, caller: Caller | None, kind: str, namespace: str, name: str
    ) -> Response:
        return self._auth_check(caller, _repo_id(kind, namespace, name), Action.WRITE)

    @staticmethod
    def _body_repo_id(body: dict, caller: Caller) -> RepoId:
        """The repo named by ``name``, ``organization`` and ``type`` in a create/delete body."""
        name = body.get("name")
        organization = body.get("organization")
        repo_type = body.get("type") or "model"
        if not isinstance(name, str) or not name:
            raise BadRequest("name is required: the repository's name without its namespace.")
        if organization is not None and not isinstance(organization, str):
            raise BadRequest("organization must be a string.")
        if not isinstance(repo_type, str):
            raise BadRequest("type must be model, dataset or space.")
        if "/" in name:
            organization, _, name = name.partition("/")
        if organization is None:
            organization = caller.principal.user
        return RepoId.parse(f"{organization}/{name}", repo_type)

    def _create_repo(self, request: Request, caller: Caller | None) -> Response:
        if caller is None:
            return responses.api_denied(_anonymous_refusal())
        body = _body(request)
        repo_id = self._body_repo_id(body, caller)
        private = _visibility(body)
        # A namespace nobody holds is treated as an organization the caller is not in,
        # so the answer does not tell which names exist.
        is_org = self.accounts.users.namespace_kind(repo_id.namespace) != "user"
        decision = decide_create(caller.principal, repo_id.namespace, is_org)
        if not decision:
            assert isinstance(decision, Deny)
            return responses.api_denied(decision)
        try:
            record = self.accounts.repos.create(
                repo_id,
                private=bool(private),
                creator=caller.principal.user,
                actor=Actor(caller.user_id, caller.token_id),
            )
        except Conflict:
            # As on the Hub, the 409 carries the URL: ``create_repo(exist_ok=True)`` reads it.
            conflict = responses.json_error(409, f"You already created this {repo_id.type} repo")
            conflict.set_data(
                json.dumps(
                    {"error": conflict.headers["X-Error-Message"], "url": _url(request, repo_id)}
                )
            )
            return conflict
        return json_response(
            {
                "url": _url(request, record.repo_id),
                "name": record.repo_id.repo_id,
                "id": record.hub_id,
            }
        )

    def _delete_repo(self, request: Request, caller: Caller | None) -> Response:
        if caller is None:
            return responses.api_denied(_anonymous_refusal())
        repo_id = self._body_repo_id(_body(request), caller)
        self._require(caller, repo_id, Action.MANAGE)
        self.accounts.repos.delete(repo_id, actor=Actor(caller.user_id, caller.token_id))
        return json_response({})

    def _settings(
        self, request: Request, caller: Caller | None, kind: str, namespace: str, name: str
    ) -> Response:
        repo_id = _repo_id(kind, namespace, name)
        self._require(caller, repo_id, Action.MANAGE)
        body = _body(request)
        private = _visibility(body)
        gated = body.get("gated")
        if gated is False:
            gated = "off"
        elif gated is not None and gated not in ("auto", "manual"):
            raise BadRequest(f'Invalid gated value {gated!r}: use "auto", "manual" or false.')
        if private is None and gated is None:
            raise BadRequest("Nothing to update: send gated and/or visibility.")
        record = self.accounts.repos.update(
            repo_id, private=private, gated=gated, actor=Actor(caller.user_id, caller.token_id)
        )
        return json_response(
            {
                "private": record.facts.private,
                "gated": False if record.facts.gated == "off" else record.facts.gated,
            }
        )

    # Gated access

    def _ask_access(
        self, request: Request, caller: Caller | None, kind: str, namespace: str, name: str
    ) -> Response:
        """Ask for access to a gated repo (the Hub does this from its web page)."""
        repo_id = _repo_id(kind, namespace, name)
        if caller is None:
            return responses.json_error(401, "Log in with a user access token to ask for access.")
        deny = self._check(caller, repo_id, Action.READ)
        if deny is not None and deny.code != "GatedRepo":
            return responses.api_denied(deny)
        status = self.accounts.gated.request_access(
            repo_id, caller.principal.user, actor=Actor(caller.user_id, caller.token_id)
        )
        return json_response({"status": status})

    def _list_requests(
        self,
        request: Request,
        caller: Caller | None,
        kind: str,
        namespace: str,
        name: str,
        status: str,
    ) -> Response:
        repo_id = _repo_id(kind, namespace, name)
        self._require(caller, repo_id, Action.MANAGE)
        items = self.accounts.gated.access_requests(repo_id, status)
        return json_response([_access_request_json(item) for item in items])

    def _handle_request(
        self, request: Request, caller: Caller | None, kind: str, namespace: str, name: str
    ) -> Response:
        repo_id = _repo_id(kind, namespace, name)
        self._require(caller, repo_id, Action.MANAGE)
        body = _body(request)
        user, request_id, status = body.get("user"), body.get("requestId"), body.get("status")
        for field, value in (("user", user), ("requestId", request_id), ("status", status)):
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"{field} must be a string.")
        if not status:
            raise BadRequest("status is required: accepted, rejected or pending.")
        self.accounts.gated.handle_access_request(
            repo_id,
            status,
            user=user,
            request_id=request_id,
            actor=Actor(caller.user_id, caller.token_id),
        )
        return json_response({"status": status})

    def _grant_access(
        self, request: Request, caller: Caller | None, kind: str, namespace: str, name: str
    ) -> Response:
        repo_id = _repo_id(kind, namespace, name)
        self._require(caller, repo_id, Action.MANAGE)
        user = _body(request).get("user")
        if not isinstance(user, str) or not user:
            raise BadRequest("user is required: the name of the user to grant access to.")
        self.accounts.gated.grant_access(
            repo_id, user, actor=Actor(caller.user_id, caller.token_id)
        )
        return json_response({"status": "accepted"})


def _anonymous_refusal() -> Deny:
    refusal = decide_create(None, "", False)
    assert isinstance(refusal, Deny)
    return refusal


def _repo_id(kind: str, namespace: str, name: str) -> RepoId:
    return RepoId.parse(f"{namespace}/{name}", kind[:-1])


def _url(request: Request, repo_id: RepoId) -> str:
    """The repo's URL as the client reached us (behind a trusted proxy: its public URL)."""
    return f"{request.host_url.rstrip('/')}/{repo_id.url_path}"
