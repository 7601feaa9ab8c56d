"""Git LFS over HTTP: the batch API and the signed basic-transfer endpoints.

``POST <repo>.git/info/lfs/objects/batch`` authenticates exactly like git (same tokens,
same policy, same 401/403/404 messages) and answers with signed URLs:
``PUT``/``GET <repo>.git/info/lfs/objects/<oid>/<size>`` and
``POST <repo>.git/info/lfs/verify/<oid>/<size>``, each valid for one operation on one
object of one repository until it expires. With S3 storage the upload and download URLs
point at the bucket instead, and verify is where an object joins the repository.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable
from urllib.parse import parse_qs, urlencode

from werkzeug.wrappers import Response
from werkzeug.wsgi import get_current_url, wrap_file

from ..accounts import Accounts, Actor, AuthError, Caller, RepoRecord
from ..config import MiB, Settings
from ..lfs import (
    Grant,
    InvalidSignature,
    LfsObjects,
    LocalStorage,
    ObjectMismatch,
    S3Storage,
    Signer,
    Storage,
    open_storage,
)
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
from ..names import RepoPath
from ..policy import Action
from . import responses
from .body import BodyError, open_body
from .gate import Access, Gate

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/vnd.git-lfs+json"
OID_RE = re.compile(r"[0-9a-f]{64}")
#: A batch names objects by oid and size only: 4 MiB is room for far more than the limit.
BATCH_BODY_LIMIT = 4 * MiB
PREFIX = "info/lfs/"
INVALID_URL = "This transfer URL is not valid: request a new one."
#: Lock requests carry a path and a ref: 64 KiB is plenty.
LOCK_BODY_LIMIT = 64 * 1024
TRANSFER_ACTIONS = {"download": Action.READ, "upload": Action.WRITE, "verify": Action.WRITE}


def lfs_error(status: int, message: str, *, challenge: bool = False) -> Response:
    """An LFS error: git-lfs prints ``message`` from a JSON body of this media type."""
    response = Response(json.dumps({"message": message}), status=status, mimetype=MEDIA_TYPE)
    if challenge:
        response.headers["WWW-Authenticate"] = f'Basic realm="{responses.REALM}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _lfs_json(data: dict, status: int = 200) -> Response:
    response = Response(json.dumps(data), status=status, mimetype=MEDIA_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def _object_error(oid: object, size: object, code: int, message: str) -> dict:
    return {"oid": oid, "size": size, "error": {"code": code, "message": message}}


def _credential(caller: Caller | None) -> str:
    """What a transfer URL is bound to: the current digest of the caller's token."""
    return (caller.token_digest or "") if caller else ""


def _read_all(read) -> bytes:
    chunks = []
    while chunk := read(64 * 1024):
        chunks.append(chunk)
    return b"".join(chunks)


class LfsService:
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

    def __call__(self, environ: dict, start_response, target: RepoPath) -> Iterable[bytes]:
        try:
            response = self._dispatch(environ, target)
        except Refused as refused:
            response = refused.response
        except BodyError as error:
            response = lfs_error(error.status, str(error))
        except InvalidLockRequest as error:
            response = lfs_error(422, str(error))
        return response(environ, start_response)

    def _dispatch(self, environ: dict, target: RepoPath) -> Response:
        method = environ["REQUEST_METHOD"]
        route = target.rest[len(PREFIX) :].split("/")
        if route == ["objects", "batch"]:
            if method != "POST":
                return lfs_error(405, "Use POST for the LFS batch API.")
            return self._batch(environ, target)
        if len(route) == 3 and route[0] in ("objects", "verify"):
            operation = {
                ("objects", "PUT"): "upload",
                ("objects", "GET"): "download",
                ("verify", "POST"): "verify",
            }.get((route[0], method))
            if operation is None:
                return lfs_error(405, "Method not allowed for this LFS URL.")
            return self._transfer(environ, target, operation, route[1], route[2])
        if route[0] == "locks":
            return self._locks(environ, target, method, route[1:])
        return lfs_error(404, "Not found. hfgit serves the LFS batch API with basic transfers.")

    # Batch API

    def _batch(self, environ: dict, target: RepoPath) -> Response:
        caller = self._authenticate(environ)
        request = self._read_batch(environ)
        operation = request["operation"]
        access = self._decide(
            caller, target, Action.WRITE if operation == "upload" else Action.READ
        )
        objects = request["objects"]
        valid = [o for o in objects if self._object_problem(o) is None]
        held = self.objects.sizes(access.repo.id, (o["oid"] for o in valid))
        base = self._base_url(environ)
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

    def _read_batch(self, environ: dict) -> dict:
        try:
            request = json.loads(_read_all(open_body(environ, BATCH_BODY_LIMIT)))
        except ValueError:
            raise BodyError(400, "The batch request body is not valid JSON.") from None
        if not isinstance(request, dict) or request.get("operation") not in ("upload", "download"):
            raise BodyError(422, 'The batch request needs "operation": "upload" or "download".')
        objects = request.get("objects")
        if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
            raise BodyError(422, 'The batch request needs "objects": a list of {oid, size}.')
        limit = self.settings.lfs_max_batch_objects
        if len(objects) > limit:
            raise BodyError(413, f"Too many objects in one batch: the limit is {limit}.")
        transfers = request.get("transfers", ["basic"])
        if not isinstance(transfers, list) or "basic" not in transfers:
            raise BodyError(422, "hfgit supports the basic transfer adapter only.")
        if request.get("hash_algo", "sha256") != "sha256":
            raise BodyError(409, "hfgit supports the sha256 hash algorithm only.")
        return request

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
        oid, size, repo = item["oid"], item["size"], access.repo
        if oid not in held:
            return _object_error(oid, size, 404, "Object does not exist in this repository.")
        size = held[oid]
        if isinstance(self.storage, S3Storage):
            href = self.storage.download_href(
                self.storage.key(repo.storage_id, oid), self.settings.lfs_url_ttl
            )
            action = {"href": href.url, "header": href.headers}
        else:
            action = {"href": self._signed_url(base, access, "download", oid, size, expires)}
        action["expires_in"] = self.settings.lfs_url_ttl
        return {"oid": oid, "size": size, "authenticated": True, "actions": {"download": action}}

    def _upload_answer(
        self, item: dict, held: dict[str, int], access: Access, base: str, expires: int
    ) -> dict:
        oid, size, repo = item["oid"], item["size"], access.repo
        if held.get(oid) == size:
            return {"oid": oid, "size": size}  # no actions: the repository has it already
        ttl = self.settings.lfs_url_ttl
        if isinstance(self.storage, S3Storage):
            href = self.storage.upload_href(self.storage.key(repo.storage_id, oid), oid, size, ttl)
            upload = {"href": href.url, "header": href.headers, "expires_in": ttl}
        else:
            url = self._signed_url(base, access, "upload", oid, size, expires)
            upload = {"href": url, "expires_in": ttl}
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

    def _base_url(self, environ: dict) -> str:
        return self.settings.lfs_public_url or get_current_url(environ, root_only=True).rstrip("/")

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

    def _transfer(
        self, environ: dict, target: RepoPath, operation: str, oid: str, size_text: str
    ) -> Response:
        if not OID_RE.fullmatch(oid) or not size_text.isdigit():
            return lfs_error(404, "Not found.")
        size = int(size_text)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        expires = query.get("expires", [""])[0]
        signature = query.get("signature", [""])[0]
        token_id = query.get("token", [""])[0]
        if not expires.isdigit() or not (token_id == "" or token_id.isdigit()):
            return lfs_error(403, INVALID_URL)
        try:
            caller = self.accounts.lookups.caller_for_token(int(token_id)) if token_id else None
        except AuthError:
            return lfs_error(
                401,
                "The token that requested this transfer URL was deleted, refreshed or has "
                "expired: run the git command again with a valid token.",
            )
        # Decided again, as every request is: access may have changed since the batch.
        access = self.gate.check(caller, target.repo, TRANSFER_ACTIONS[operation])
        record = access.repo
        if record is None:
            return lfs_error(403, INVALID_URL)
        grant = Grant(operation, record.hub_id, oid, size, int(expires), _credential(caller))
        try:
            self.signer.check(grant, signature)
        except InvalidSignature as error:
            return lfs_error(403, str(error))
        if not access.decision:
            return lfs_error(
                403, f"Access changed since this transfer URL was issued: {access.decision.message}"
            )
        if operation == "download":
            return self._send(environ, record, oid, size)
        if operation == "upload":
            return self._receive(environ, record, oid, size)
        return self._verify(environ, record, oid, size)

    def _send(self, environ: dict, record: RepoRecord, oid: str, size: int) -> Response:
        if not isinstance(self.storage, LocalStorage) or oid not in self.objects.sizes(
            record.id, [oid]
        ):
            return lfs_error(404, "Object does not exist in this repository.")
        try:
            handle = self.storage.path(oid).open("rb")
        except FileNotFoundError:
            log.error("LFS object %s of %s missing from storage", oid, record.repo_id)
            return lfs_error(404, "Object does not exist in this repository.")
        if os.fstat(handle.fileno()).st_size != size:
            handle.close()
            log.error("LFS object %s in storage has the wrong size", oid)
            return lfs_error(404, "Object does not exist in this repository.")
        response = Response(
            wrap_file(environ, handle, buffer_size=MiB),
            mimetype="application/octet-stream",
            direct_passthrough=True,
        )
        response.headers["Content-Length"] = str(size)
        return response

    def _receive(self, environ: dict, record: RepoRecord, oid: str, size: int) -> Response:
        if not isinstance(self.storage, LocalStorage):
            return lfs_error(404, "Uploads go to the object store for this server.")
        try:
            self.storage.receive(oid, size, open_body(environ, size))
        except ObjectMismatch as error:
            return lfs_error(422, str(error))
        except BodyError as error:
            return lfs_error(error.status, str(error))
        self.objects.add(record.id, oid, size)
        return _lfs_json({}, 200)

    def _verify(self, environ: dict, record: RepoRecord, oid: str, size: int) -> Response:
        try:
            body = json.loads(_read_all(open_body(environ, 64 * 1024)) or b"{}")
        except (BodyError, ValueError):
            return lfs_error(400, "The verify request body must be JSON {oid, size}.")
        if not isinstance(body, dict) or body.get("oid") != oid or body.get("size") != size:
            return lfs_error(422, "The verify request does not match the object of this URL.")
        if isinstance(self.storage, S3Storage):
            if not self.storage.verify(self.storage.key(record.storage_id, oid), oid, size):
                return lfs_error(422, f"Object {oid} was not uploaded or does not match.")
            self.objects.add(record.id, oid, size)
        elif self.objects.sizes(record.id, [oid]).get(oid) != size:
            return lfs_error(404, f"Object {oid} was not uploaded to this repository.")
        return _lfs_json({}, 200)

    # File locking

    def _locks(self, environ: dict, target: RepoPath, method: str, route: list[str]) -> Response:
        if route == []:
            if method == "GET":
                return self._list_locks(environ, target)
            if method == "POST":
                return self._create_lock(environ, target)
            return lfs_error(405, "Use GET to list locks and POST to create one.")
        if route == ["verify"] or (len(route) == 2 and route[1] == "unlock"):
            if method != "POST":
                return lfs_error(405, "Use POST for this LFS locks URL.")
            if route == ["verify"]:
                return self._verify_locks(environ, target)
            return self._unlock(environ, target, route[0])
        return lfs_error(404, "Not found.")

    def _authenticate(self, environ: dict) -> Caller | None:
        """The request's caller; raises :class:`Refused` with git's 401 for bad credentials."""
        try:
            return self.gate.caller(environ)
        except AuthError as error:
            raise Refused(
                lfs_error(401, responses.GIT_AUTH_MESSAGES[error.kind], challenge=True)
            ) from None

    def _decide(self, caller: Caller | None, target: RepoPath, action: Action) -> Access:
        """Access for ``action``; raises :class:`Refused` with git's answer when denied."""
        access = self.gate.check(caller, target.repo, action)
        if not access.decision:
            deny = access.decision
            raise Refused(lfs_error(deny.status, deny.message, challenge=deny.status == 401))
        return access

    def _access(self, environ: dict, target: RepoPath, action: Action) -> Access:
        return self._decide(self._authenticate(environ), target, action)

    def _list_locks(self, environ: dict, target: RepoPath) -> Response:
        access = self._access(environ, target, Action.READ)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        # parse_qs drops empty values: git-lfs sends unset filters empty.
        path, lock_id, cursor, limit, refspec = (
            query.get(name, [None])[-1] for name in ("path", "id", "cursor", "limit", "refspec")
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

    def _create_lock(self, environ: dict, target: RepoPath) -> Response:
        access = self._access(environ, target, Action.WRITE)
        request = _read_json(environ)
        path = check_path(request.get("path"))
        ref = check_ref(request.get("ref"))
        try:
            lock = self.locks.create(access.repo.id, path, ref, access.caller.user_id)
        except LockExists as exists:
            return _lfs_json({"lock": _lock_json(exists.lock), "message": str(exists)}, 409)
        return _lfs_json({"lock": _lock_json(lock)}, 201)

    def _verify_locks(self, environ: dict, target: RepoPath) -> Response:
        access = self._access(environ, target, Action.WRITE)
        request = _read_json(environ)
        check_ref(request.get("ref"))
        cursor = request.get("cursor")
        cursor = check_id(cursor, "cursor") if cursor not in (None, "") else None
        limit = check_limit(request.get("limit"))
        locks, after = self.locks.page(access.repo.id, cursor=cursor, limit=limit)
        me = access.caller.user_id
        answer: dict = {
            "ours": [_lock_json(lock) for lock in locks if lock.owner_id == me],
            "theirs": [_lock_json(lock) for lock in locks if lock.owner_id != me],
        }
        if after is not None:
            answer["next_cursor"] = str(after)
        return _lfs_json(answer)

    def _unlock(self, environ: dict, target: RepoPath, id_text: str) -> Response:
        access = self._access(environ, target, Action.WRITE)
        request = _read_json(environ)
        lock_id = check_id(id_text)
        check_ref(request.get("ref"))
        force = request.get("force", False)
        if not isinstance(force, bool):
            raise InvalidLockRequest('"force" must be true or false.')
        repo, caller = access.repo, access.caller
        found = self.locks.find(repo.id, lock_id=lock_id, limit=1)
        if not found:
            return lfs_error(404, f"There is no lock {lock_id} in this repository.")
        lock = found[0]
        if lock.owner_id != caller.user_id:
            if not force:
                return lfs_error(
                    403,
                    f"{lock.path} is locked by {lock.owner}: only they can unlock it, or "
                    "someone who manages the repository with --force.",
                )
            manage = self.gate.check(caller, target.repo, Action.MANAGE).decision
            if not manage:
                return lfs_error(
                    403,
                    f"{lock.path} is locked by {lock.owner}: unlocking another user's lock "
                    f"needs the right to manage the repository. {manage.message}",
                )
        if self.locks.delete(repo.id, lock.id, owner_id=lock.owner_id) is None:
            return lfs_error(404, f"There is no lock {lock_id} in this repository.")
        if lock.owner_id != caller.user_id:
            self.accounts.audit.append(
                "lfs.unlock.force",
                actor=Actor(caller.user_id, caller.token_id),
                repo_id=repo.id,
                detail={"path": lock.path, "owner": lock.owner},
            )
        return _lfs_json({"lock": _lock_json(lock)})


class Refused(Exception):
    """An answer that ends the request early (bad credentials, a policy refusal)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _lock_json(lock: Lock) -> dict:
    return {
        "id": str(lock.id),
        "path": lock.path,
        "locked_at": lock.locked_at,
        "owner": {"name": lock.owner},
    }


def _read_json(environ: dict) -> dict:
    """A small JSON object body; an empty body counts as ``{}``."""
    try:
        data = json.loads(_read_all(open_body(environ, LOCK_BODY_LIMIT)) or b"{}")
    except ValueError:
        raise BodyError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BodyError(400, "The request body must be a JSON object.")
    return data
