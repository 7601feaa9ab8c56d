"""The HF-compatible JSON API, so that ``huggingface_hub`` works with ``HF_ENDPOINT``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ..accounts import Accounts, AuthError, Caller
from . import responses
from .gate import Gate


def iso(timestamp: float) -> str:
    """The Hub's timestamp format: ISO 8601 in UTC with milliseconds and ``Z``."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_response(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


class ApiService:
    def __init__(self, accounts: Accounts, gate: Gate) -> None:
        self.accounts = accounts
        self.gate = gate
        self.urls = Map([Rule("/api/whoami-v2", endpoint="whoami", methods=["GET"])])

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        request = Request(environ)
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
        response = getattr(self, f"_{endpoint}")(request, caller, **args)
        return response(environ, start_response)

    def _whoami(self, request: Request, caller: Caller | None) -> Response:
        if caller is None:
            return responses.json_error(401, responses.API_INVALID_CREDENTIALS)
        return json_response(self.whoami(caller))

    def whoami(self, caller: Caller) -> dict:
        principal = caller.principal
        user = self.accounts.user(principal.user)
        orgs = [
            {
                "type": "org",
                "id": org.hub_id,
                "name": org.name,
                "fullname": org.fullname,
                "roleInOrg": role,
            }
            for org, role in self.accounts.memberships_of(principal.user)
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
            token = next(t for t in self.accounts.list_tokens(user.name) if t.id == caller.token_id)
            access_token: dict = {
                "displayName": token.name,
                "role": token.role,
                "createdAt": iso(token.created_at),
            }
            if token.role == "fineGrained":
                access_token["fineGrained"] = {
                    "scoped": [
                        {
                            "entity": {
                                "_id": self.accounts.entity_hub_id(scope.kind, scope.name),
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
