"""Table tests for hfgit.policy: every token role x relationship x visibility x action.

The expected answer of every combination is the intersection of two explicit tables:
what the *owner* may do (by relationship and visibility) and what the *token* allows
(by role, scopes and visibility). The status code of a refusal is checked too, since it
decides what git shows and whether a hidden repo leaks its existence.
"""

from __future__ import annotations

import itertools

import pytest

from hfgit.policy import (
    ALLOW,
    NOT_FOUND_MESSAGE,
    PERM_READ,
    PERM_WRITE,
    Action,
    Deny,
    Principal,
    RepoFacts,
    Scope,
    Token,
    decide,
    decide_create,
)

R, W, M = Action.READ, Action.WRITE, Action.MANAGE
ALL = frozenset({R, W, M})
READ_ONLY = frozenset({R})
NOTHING: frozenset[Action] = frozenset()

ME = "alice"
OTHER = "bob"
ORG = "acme"

# relationship -> (repo namespace, is org, my role in the org, repo creator, granted)
RELATIONSHIPS = {
    "owner": (ME, False, None, ME, False),
    "org-admin": (ORG, True, "admin", OTHER, False),
    "org-write": (ORG, True, "write", OTHER, False),
    "org-contributor-creator": (ORG, True, "contributor", ME, False),
    "org-contributor": (ORG, True, "contributor", OTHER, False),
    "org-read": (ORG, True, "read", OTHER, False),
    "org-stranger": (ORG, True, None, OTHER, False),
    "stranger": (OTHER, False, None, OTHER, False),
    "stranger-granted": (OTHER, False, None, OTHER, True),
}
VISIBILITIES = ("public", "private", "gated-auto", "gated-manual")

# What the owner of the token may do, tokens aside.
OWNER_RIGHTS = {
    "owner": {v: ALL for v in VISIBILITIES},
    "org-admin": {v: ALL for v in VISIBILITIES},
    "org-write": {v: ALL for v in VISIBILITIES},
    "org-contributor-creator": {v: ALL for v in VISIBILITIES},
    "org-contributor": {v: READ_ONLY for v in VISIBILITIES},
    "org-read": {v: READ_ONLY for v in VISIBILITIES},
    "org-stranger": {
        "public": READ_ONLY,
        "private": NOTHING,
        "gated-auto": NOTHING,
        "gated-manual": NOTHING,
    },
    "stranger": {
        "public": READ_ONLY,
        "private": NOTHING,
        "gated-auto": NOTHING,
        "gated-manual": NOTHING,
    },
    "stranger-granted": {
        "public": READ_ONLY,
        "private": NOTHING,
        "gated-auto": READ_ONLY,
        "gated-manual": READ_ONLY,
    },
}

# What a token allows where its scopes (if any) cover the repo. Fine-grained tokens
# without a covering scope read public ungated repos only (plus gated ones with
# canReadGatedRepos).
NO_SCOPE = {"public": READ_ONLY, "private": NOTHING, "gated-auto": NOTHING, "gated-manual": NOTHING}
TOKEN_CAPS = {
    "session": {v: ALL for v in VISIBILITIES},
    "read": {v: READ_ONLY for v in VISIBILITIES},
    "write": {v: ALL for v in VISIBILITIES},
    "fg-unrelated": NO_SCOPE,
    "fg-gated": {**NO_SCOPE, "gated-auto": READ_ONLY, "gated-manual": READ_ONLY},
    "fg-repo-read": {v: READ_ONLY for v in VISIBILITIES},
    "fg-repo-write": {v: ALL for v in VISIBILITIES},
    "fg-namespace-write": {v: ALL for v in VISIBILITIES},
    "fg-namespace-read": {v: READ_ONLY for v in VISIBILITIES},
}


def make_repo(relationship: str, visibility: str, repo_type: str = "model") -> RepoFacts:
    namespace, is_org, _role, creator, _granted = RELATIONSHIPS[relationship]
    return RepoFacts(
        type=repo_type,
        namespace=namespace,
        name="weights",
        private=visibility == "private",
        gated=visibility.removeprefix("gated-") if visibility.startswith("gated") else "off",
        namespace_is_org=is_org,
        creator=creator,
        hub_id=f"id-{repo_type}-weights",
    )


def make_token(kind: str, repo: RepoFacts) -> Token | None:
    read, write = frozenset({PERM_READ}), frozenset({PERM_READ, PERM_WRITE})
    namespace_kind = "org" if repo.namespace_is_org else "user"
    # A user scope can only ever name the token owner's own namespace.
    namespace = repo.namespace if repo.namespace_is_org else ME
    scopes = {
        "fg-unrelated": (Scope("model", f"{ME}/something-else", write, "id-other"),),
        "fg-gated": (),
        "fg-repo-read": (Scope(repo.type, repo.repo_id, read, repo.hub_id),),
        "fg-repo-write": (Scope(repo.type, repo.repo_id, frozenset({PERM_WRITE}), repo.hub_id),),
        "fg-namespace-write": (Scope(namespace_kind, namespace, write),),
        "fg-namespace-read": (Scope(namespace_kind, namespace, read),),
    }
    if kind == "session":
        return None
    if kind in ("read", "write"):
        return Token("tok", kind)
    return Token("tok", "fineGrained", scopes[kind], can_read_gated=kind == "fg-gated")


def namespace_scope_covers(token_kind: str, relationship: str) -> bool:
    """A user-namespace scope covers only the token owner's own repos."""
    return not (
        token_kind.startswith("fg-namespace") and relationship in ("stranger", "stranger-granted")
    )


def expected(token_kind: str, relationship: str, visibility: str) -> frozenset[Action]:
    caps = TOKEN_CAPS[token_kind][visibility]
    if not namespace_scope_covers(token_kind, relationship):
        caps = NO_SCOPE[visibility]
    return OWNER_RIGHTS[relationship][visibility] & caps


CASES = list(itertools.product(TOKEN_CAPS, RELATIONSHIPS, VISIBILITIES, (R, W, M)))


@pytest.mark.parametrize(("token_kind", "relationship", "visibility", "action"), CASES)
def test_every_combination(token_kind, relationship, visibility, action):
    repo = make_repo(relationship, visibility)
    _ns, _is_org, role, _creator, granted = RELATIONSHIPS[relationship]
    principal = Principal(ME, make_token(token_kind, repo), {ORG: role} if role else {})
    decision = decide(principal, repo, action, granted=granted)
    allowed = expected(token_kind, relationship, visibility)

    if action in allowed:
        assert decision == ALLOW
        return
    assert isinstance(decision, Deny)
    if R not in allowed and visibility == "private":
        # Hidden: byte for byte what a missing repository answers.
        assert decision == decide(principal, None, action)
        assert (decision.status, decision.message) == (404, NOT_FOUND_MESSAGE)
    elif R not in allowed:
        assert (decision.status, decision.code) == (403, "GatedRepo")
    else:
        assert (decision.status, decision.code) == (403, "Forbidden")


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("action", [R, W, M])
def test_anonymous(visibility, action):
    repo = make_repo("stranger", visibility)
    decision = decide(None, repo, action)
    if visibility == "public" and action is R:
        assert decision == ALLOW
    else:
        # 401 makes git ask the credential helper; private answers exactly as missing.
        assert isinstance(decision, Deny) and decision.status == 401
    if visibility == "private":
        assert decision == decide(None, None, action)


@pytest.mark.parametrize("token_kind", list(TOKEN_CAPS))
@pytest.mark.parametrize("action", [R, W, M])
def test_missing_repo_is_404_for_every_token(token_kind, action):
    repo = make_repo("owner", "public")
    principal = Principal(ME, make_token(token_kind, repo))
    assert decide(principal, None, action) == Deny(404, "RepoNotFound", NOT_FOUND_MESSAGE)


@pytest.mark.parametrize("repo_type", ["model", "dataset", "space"])
def test_repo_scope_is_bound_to_the_repo_type(repo_type):
    repo = make_repo("owner", "private", repo_type)
    other_type = "dataset" if repo_type == "model" else "model"
    scope = Scope(other_type, repo.repo_id, frozenset({PERM_WRITE}), repo.hub_id)
    assert decide(Principal(ME, Token("t", "fineGrained", (scope,))), repo, R).status == 404


#: A repository scope matches the repository's identity, never its name: the scope's
#: label, the identity it holds, and what it covers of ``alice/weights`` (id-model-weights).
IDENTITY_CASES = [
    ("alice/weights", "id-model-weights", True),
    ("alice/old-name", "id-model-weights", True),  # moved or renamed: the scope follows
    ("ALICE/Weights", "id-model-weights", True),
    ("alice/weights", "id-model-earlier", False),  # same name, another repository
    ("alice/weights", None, False),  # the repository it named is gone
]


@pytest.mark.parametrize(("label", "identity", "covers"), IDENTITY_CASES)
def test_repo_scope_matches_identity_not_name(label, identity, covers):
    repo = make_repo("owner", "private")
    token = Token("t", "fineGrained", (Scope("model", label, frozenset({PERM_WRITE}), identity),))
    decision = decide(Principal(ME, token), repo, W)
    assert (decision == ALLOW) is covers
    if not covers:
        assert decision == decide(Principal(ME, token), None, W)  # hidden, as if missing


@pytest.mark.parametrize(
    ("token", "role", "relationship", "needle"),
    [
        (Token("ci", "read"), None, "owner", "read role"),
        (
            Token(
                "ci",
                "fineGrained",
                (Scope("model", f"{ME}/weights", frozenset({PERM_READ}), "id-model-weights"),),
            ),
            None,
            "owner",
            "repo.write",
        ),
        (Token("ci", "write"), "read", "org-read", "read role in organization acme"),
        (
            Token("ci", "write"),
            "contributor",
            "org-contributor",
            "only push to repositories they created",
        ),
    ],
)
def test_write_refusals_name_the_missing_permission(token, role, relationship, needle):
    repo = make_repo(relationship, "private")
    decision = decide(Principal(ME, token, {ORG: role} if role else {}), repo, W)
    assert isinstance(decision, Deny) and decision.status == 403
    assert needle in decision.message
    assert "hf_" not in decision.message


def test_fine_grained_token_without_gated_flag_names_it():
    repo = make_repo("stranger-granted", "gated-manual")
    decision = decide(Principal(ME, Token("app", "fineGrained", ())), repo, R, granted=True)
    assert isinstance(decision, Deny)
    assert decision.code == "GatedRepo" and "canReadGatedRepos" in decision.message


@pytest.mark.parametrize(
    ("token", "namespace", "is_org", "role", "allowed"),
    [
        (None, ME, False, None, True),
        (Token("t", "write"), ME, False, None, True),
        (Token("t", "read"), ME, False, None, False),
        (Token("t", "write"), OTHER, False, None, False),
        (Token("t", "write"), ORG, True, "admin", True),
        (Token("t", "write"), ORG, True, "write", True),
        (Token("t", "write"), ORG, True, "contributor", True),
        (Token("t", "write"), ORG, True, "read", False),
        (Token("t", "write"), ORG, True, None, False),
        (
            Token("t", "fineGrained", (Scope("user", ME, frozenset({PERM_WRITE})),)),
            ME,
            False,
            None,
            True,
        ),
        (
            Token("t", "fineGrained", (Scope("user", ME, frozenset({PERM_READ})),)),
            ME,
            False,
            None,
            False,
        ),
        (
            Token("t", "fineGrained", (Scope("org", ORG, frozenset({PERM_WRITE})),)),
            ORG,
            True,
            "write",
            True,
        ),
        (
            Token("t", "fineGrained", (Scope("org", ORG, frozenset({PERM_WRITE})),)),
            ORG,
            True,
            "read",
            False,
        ),
        (
            Token("t", "fineGrained", (Scope("user", ME, frozenset({PERM_WRITE})),)),
            ORG,
            True,
            "write",
            False,
        ),
        (
            Token(
                "t", "fineGrained", (Scope("model", f"{ME}/x", frozenset({PERM_WRITE}), "id-x"),)
            ),
            ME,
            False,
            None,
            False,
        ),
    ],
)
def test_create(token, namespace, is_org, role, allowed):
    principal = Principal(ME, token, {ORG: role} if role else {})
    decision = decide_create(principal, namespace, is_org)
    assert bool(decision) is allowed
    if not allowed:
        assert decision.status == 403


def test_create_needs_authentication():
    assert decide_create(None, ME, False).status == 401
