"""Git LFS over HTTP: the batch API, the signed basic-transfer endpoints and file locking.

``POST <repo>.git/info/lfs/objects/batch`` authenticates exactly like git (same tokens,
same policy, same 401/403/404 messages) and answers with signed URLs:
``PUT``/``GET <repo>.git/info/lfs/objects/<oid>/<size>`` and
``POST <repo>.git/info/lfs/verify/<oid>/<size>``, each valid for one operation on one
object of one repository until it expires. Where the storage hands out URLs of its own
(S3), uploads and downloads go there instead, and verify is where an object joins the
repository.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from ..accounts import Accounts, Actor, AuthError, Caller
from ..config import MiB, Settings
from ..lfs import Grant, InvalidSignature, LfsObjects, ObjectMissing, Signer, Storage, open_storage
from ..lfs.locks import (
    InvalidLockRequest,
    LfsLocks,
    Lock,
    LockExists,
    check_id,
    check_limit,
    check_path,
    check_ref,
    check_ref_name,
)
from ..names import RepoId
from ..policy import Action
from . import responses
from .api import header_text
from .body import BodyError, open_body, parse_json, read_all
from .gate import Access, Gate, bad_credentials
from .refusal import Refusal
from .surface import Surface
from .urls import public_base

MEDIA_TYPE = "application/vnd.git-lfs+json"
OID_RE = re.compile(r"[0-9a-f]{64}")
#: A batch names objects by oid and size only: 4 MiB is room for far more than the limit.
BATCH_BODY_LIMIT = 4 * MiB
PREFIX = "info/lfs/"
INVALID_URL = "This transfer URL is not valid: request a new one."
NOT_HELD = "Object does not exist in this repository."
#: Lock requests carry a path and a ref: 64 KiB is plenty.
LOCK_BODY_LIMIT = 64 * 1024
TRANSFER_ACTIONS = {"download": Action.READ, "upload": Action.WRITE, "verify": Action.WRITE}


def _lfs_json(data: dict, status: int = 200) -> Response:
    response = Response(json.dumps(data), status=status, mimetype=MEDIA_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def _object_error(oid: object, size: object, code: int, message: str) -> dict:
    return {"oid": oid, "size": size, "error": {"code": code, "message": message}}


def _credential(caller: Caller | None) -> str:
    """What a transfer URL is bound to: the current digest of the caller's token."""
    return (caller.token_digest or "") if caller else ""


class LfsService(Surface):
    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        gate: Gate,
        storage: Storage | None = None,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.gate = gate
        self.storage = storage or open_storage(settings)
        self.objects = LfsObjects(accounts.store)
        self.locks = LfsLocks(accounts.store)
        self._signer: Signer | None = None

    @property
    def signer(self) -> Signer:
        # Read lazily: a worker may start while the database is briefly unreachable.
        if self._signer is None:
            self._signer = Signer(self.accounts.store.secret())
        return self._signer

    def refuse(self, refusal: Refusal, request: Request) -> Response:
        """git-lfs's dialect: it prints ``message`` from a JSON body of its media type.

        ``huggingface_hub`` reads only ``X-Error-Message`` (and ``X-Error-Code``, which
        makes a hidden repository its ``RepositoryNotFoundError``), so both are sent too.
        """
        response = _lfs_json({"message": refusal.message}, refusal.status)
        response.headers["X-Error-Message"] = header_text(refusal.message)
        if refusal.code:
            response.headers["X-Error-Code"] = refusal.code
        if refusal.challenge:
            response.headers["WWW-Authenticate"] = f'Basic realm="{responses.REALM}"'
        return response

    # Batch API

    def batch(self, request: Request, repo: RepoId) -> Response:
        caller = self.gate.caller(request.environ)
        body = self._read_batch(request)
        operation = body["operation"]
        access = self.gate.require(
            caller, repo, Action.WRITE if operation == "upload" else Action.READ
        )
        # A repository whose storage is not what it must be is served by no surface.
        self.accounts.repos.path(access.repo)
        objects = body["objects"]
        valid = [o for o in objects if self._object_problem(o) is None]
        held = self.objects.sizes(access.repo.id, (o["oid"] for o in valid))
        base = public_base(self.settings, request)
        expires = int(time.time()) + self.settings.lfs_url_ttl
        answers = []
        for item in objects:
            problem = self._object_problem(item)
            if problem is not None:
                answers.append(_object_error(item.get("oid"), item.get("size"), 422, problem))
            elif operation == "download":
                answers.append(self._download_answer(item, held, access, base, expires))
            else:
                answers.append(self._upload_answer(item, held, access, base, expires))
        return _lfs_json({"transfer": "basic", "objects": answers, "hash_algo": "sha256"})

    def _read_batch(self, request: Request) -> dict:
        raw = read_all(open_body(request.environ, BATCH_BODY_LIMIT))
        limit = self.settings.lfs_max_batch_objects
        # An object is {oid, size} (git-lfs adds nothing else): room for a few more keys.
        body = parse_json(raw, max_items=8 * limit + 64)
        if not isinstance(body, dict) or body.get("operation") not in ("upload", "download"):
            raise BodyError(422, 'The batch request needs "operation": "upload" or "download".')
        objects = body.get("objects")
        if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
            raise BodyError(422, 'The batch request needs "objects": a list of {oid, size}.')
        if len(objects) > limit:
            raise BodyError(413, f"Too many objects in one batch: the limit is {limit}.")
        transfers = body.get("transfers", ["basic"])
        if not isinstance(transfers, list) or "basic" not in transfers:
            raise BodyError(422, "hfgit supports the basic transfer adapter only.")
        if body.get("hash_algo", "sha256") != "sha256":
            raise BodyError(409, "hfgit supports the sha256 hash algorithm only.")
        return body

    def _object_problem(self, item: dict) -> str | None:
        oid, size = item.get("oid"), item.get("size")
        if not isinstance(oid, str) or not OID_RE.fullmatch(oid):
            return "Invalid oid: expected 64 lowercase hexadecimal characters (SHA-256)."
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return "Invalid size: expected a whole number of bytes."
        limit = self.settings.lfs_max_object_bytes
        if size > limit:
            return f"Object too large: {size} bytes, the limit is {limit} bytes."
        return None

    def _download_answer(
        self, item: dict, held: dict[str, int], access: Access, base: str, expires: int
    ) -> dict:
        oid = item["oid"]
        if oid not in held:
            return _object_error(oid, item["size"], 404, NOT_HELD)
        size, ttl = held[oid], self.settings.lfs_url_ttl
        href = self.storage.download_href(access.repo.storage_id, oid, ttl)
        if href is None:
            action = {"href": self._signed_url(base, access, "download", oid, size, expires)}
        else:
            action = {"href": href.url, "header": href.headers}
        action["expires_in"] = ttl
        return {"oid": oid, "size": size, "authenticated": True, "actions": {"download": action}}

    def _upload_answer(
        self, item: dict, held: dict[str, int], access: Access, base: str, expires: int
    ) -> dict:
        oid, size = item["oid"], item["size"]
        if held.get(oid) == size:
            return {"oid": oid, "size": size}  # no actions: the repository has it already
        ttl = self.settings.lfs_url_ttl
        href = self.storage.upload_href(access.repo.storage_id, oid, size, ttl)
        if href is None:
            upload = {"href": self._signed_url(base, access, "upload", oid, size, expires)}
        else:
            upload = {"href": href.url, "header": href.headers}
        upload["expires_in"] = ttl
        verify = {
            "href": self._signed_url(base, access, "verify", oid, size, expires),
            "expires_in": ttl,
        }
        return {
            "oid": oid,
            "size": size,
            "authenticated": True,
            "actions": {"upload": upload, "verify": verify},
        }

    def _signed_url(
        self, base: str, access: Access, operation: str, oid: str, size: int, expires: int
    ) -> str:
        repo, caller = access.repo, access.caller
        grant = Grant(operation, repo.hub_id, oid, size, expires, _credential(caller))
        params: dict[str, object] = {"expires": expires}
        if caller is not None:
            # The token's id, not its value: the signature binds its current digest.
            params["token"] = caller.token_id
        params["signature"] = self.signer.sign(grant)
        query = urlencode(params)
        kind = "verify" if operation == "verify" else "objects"
        return f"{base}/{repo.repo_id.url_path}.git/{PREFIX}{kind}/{oid}/{size}?{query}"

    # Signed transfers

    def download(self, request: Request, repo: RepoId, oid: str, size: int) -> Response:
        record = self._transfer(request, repo, "download", oid, size).repo
        if oid not in self.objects.sizes(record.id, [oid]):
            raise Refusal(404, NOT_HELD)
        try:
            handle = self.storage.open(record.storage_id, oid, size)
        except ObjectMissing:
            raise Refusal(404, NOT_HELD) from None
        response = Response(
            wrap_file(request.environ, handle, buffer_size=MiB),
            mimetype="application/octet-stream",
            direct_passthrough=True,
        )
        response.headers["Content-Length"] = str(size)
        return response

    def upload(self, request: Request, repo: RepoId, oid: str, size: int) -> Response:
        record = self._transfer(request, repo, "upload", oid, size).repo
        self.storage.receive(record.storage_id, oid, size, open_body(request.environ, size))
        self.objects.add(record.id, oid, size)
        return _lfs_json({}, 200)

    def verify(self, request: Request, repo: RepoId, oid: str, size: int) -> Response:
        record = self._transfer(request, repo, "verify", oid, size).repo
        try:
            body = parse_json(read_all(open_body(request.environ, 64 * 1024)) or b"{}")
        except BodyError:
            raise Refusal(400, "The verify request body must be JSON {oid, size}.") from None
        if not isinstance(body, dict) or body.get("oid") != oid or body.get("size") != size:
            raise Refusal(422, "The verify request does not match the object of this URL.")
        if self.objects.sizes(record.id, [oid]).get(oid) != size:
            self.storage.confirm_upload(record.storage_id, oid, size)
            self.objects.add(record.id, oid, size)
        return _lfs_json({}, 200)

    def _transfer(
        self, request: Request, repo: RepoId, operation: str, oid: str, size: int
    ) -> Access:
        """The access a signed transfer URL stands for, decided again as every request is."""
        expires = request.args.get("expires", "")
        signature = request.args.get("signature", "")
        token_id = request.args.get("token", "")
        if not expires.isdigit() or not (token_id == "" or token_id.isdigit()):
            raise Refusal(403, INVALID_URL)
        try:
            caller = self.accounts.lookups.caller_for_token(int(token_id)) if token_id else None
        except AuthError as error:
            if error.kind == "disabled":
                raise bad_credentials(error) from None
            raise Refusal(
                401,
                "The token that requested this transfer URL was deleted, refreshed or has "
                "expired: run the git command again with a valid token.",
            ) from None
        # Access may have changed since the batch.
        access = self.gate.check(caller, repo, TRANSFER_ACTIONS[operation])
        record = access.repo
        if record is None:
            raise Refusal(403, INVALID_URL)
        grant = Grant(operation, record.hub_id, oid, size, int(expires), _credential(caller))
        try:
            self.signer.check(grant, signature)
        except InvalidSignature as error:
            raise Refusal(403, str(error)) from None
        if not access.decision:
            raise Refusal(
                403, f"Access changed since this transfer URL was issued: {access.decision.message}"
            )
        self.accounts.repos.path(record)
        return access

    # File locking

    def list_locks(self, request: Request, repo: RepoId) -> Response:
        access = self.gate.authorize(request.environ, repo, Action.READ)
        path, lock_id, cursor, limit, refspec = (
            _last_value(request, name) for name in ("path", "id", "cursor", "limit", "refspec")
        )
        path = check_path(path) if path is not None else None
        lock_id = check_id(lock_id) if lock_id is not None else None
        cursor = check_id(cursor, "cursor") if cursor is not None else None
        limit = check_limit(limit)
        if refspec is not None:
            check_ref_name(refspec)
        locks, after = self.locks.page(
            access.repo.id, path=path, lock_id=lock_id, cursor=cursor, limit=limit
        )
        answer: dict = {"locks": [_lock_json(lock) for lock in locks]}
        if after is not None:
            answer["next_cursor"] = str(after)
        return _lfs_json(answer)

    def create_lock(self, request: Request, repo: RepoId) -> Response:
        access = self.gate.authorize(request.environ, repo, Action.WRITE)
        body = _read_json(request)
        path = check_path(body.get("path"))
        ref = check_ref(body.get("ref"))
        try:
            lock = self.locks.create(access.repo.id, path, ref, access.caller.user_id)
        except LockExists as exists:
            return _lfs_json({"lock": _lock_json(exists.lock), "message": str(exists)}, 409)
        return _lfs_json({"lock": _lock_json(lock)}, 201)

    def verify_locks(self, request: Request, repo: RepoId) -> Response:
        access = self.gate.authorize(request.environ, repo, Action.WRITE)
        body = _read_json(request)
        check_ref(body.get("ref"))
        cursor = body.get("cursor")
        cursor = check_id(cursor, "cursor") if cursor not in (None, "") else None
        limit = check_limit(body.get("limit"))
        locks, after = self.locks.page(access.repo.id, cursor=cursor, limit=limit)
        me = access.caller.user_id
        answer: dict = {
            "ours": [_lock_json(lock) for lock in locks if lock.owner_id == me],
            "theirs": [_lock_json(lock) for lock in locks if lock.owner_id != me],
        }
        if after is not None:
            answer["next_cursor"] = str(after)
        return _lfs_json(answer)

    def unlock(self, request: Request, repo: RepoId, lock_id: str) -> Response:
        access = self.gate.authorize(request.environ, repo, Action.WRITE)
        body = _read_json(request)
        number = check_id(lock_id)
        check_ref(body.get("ref"))
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise InvalidLockRequest('"force" must be true or false.')
        record, caller = access.repo, access.caller
        found = self.locks.find(record.id, lock_id=number, limit=1)
        if not found:
            raise Refusal(404, f"There is no lock {number} in this repository.")
        lock = found[0]
        if lock.owner_id != caller.user_id:
            if not force:
                raise Refusal(
                    403,
                    f"{lock.path} is locked by {lock.owner}: only they can unlock it, or "
                    "someone who manages the repository with --force.",
                )
            manage = self.gate.check(caller, repo, Action.MANAGE).decision
            if not manage:
                raise Refusal(
                    403,
                    f"{lock.path} is locked by {lock.owner}: unlocking another user's lock "
                    f"needs the right to manage the repository. {manage.message}",
                )
        if self.locks.delete(record.id, lock.id, owner_id=lock.owner_id) is None:
            raise Refusal(404, f"There is no lock {number} in this repository.")
        if lock.owner_id != caller.user_id:
            self.accounts.audit.append(
                "lfs.unlock.force",
                actor=Actor(caller.user_id, caller.token_id),
                repo_id=record.id,
                detail={"path": lock.path, "owner": lock.owner},
            )
        return _lfs_json({"lock": _lock_json(lock)})


def _lock_json(lock: Lock) -> dict:
    return {
        "id": str(lock.id),
        "path": lock.path,
        "locked_at": lock.locked_at,
        "owner": {"name": lock.owner},
    }


def _last_value(request: Request, name: str) -> str | None:
    """A query parameter's last non-empty value: git-lfs sends unset filters empty."""
    values = [value for value in request.args.getlist(name) if value]
    return values[-1] if values else None


def _read_json(request: Request) -> dict:
    """A small JSON object body; an empty body counts as ``{}``."""
    data = parse_json(read_all(open_body(request.environ, LOCK_BODY_LIMIT)) or b"{}")
    if not isinstance(data, dict):
        raise BodyError(400, "The request body must be a JSON object.")
    return data
