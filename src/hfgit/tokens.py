"""User access token format: ``hf_`` + 28 random letters + a 6-letter checksum.

The shape matches what public secret scanners already look for (``hf_[a-zA-Z]{34}``).
The checksum (CRC32 of the random part, written in base 52) lets the server and any
scanner reject typos and look-alikes without touching the database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib

PREFIX = "hf_"
ORG_TOKEN_PREFIX = "api_org_"  # noqa: S105 - a prefix, not a secret
ALPHABET = string.ascii_uppercase + string.ascii_lowercase
RANDOM_LENGTH = 28
CHECKSUM_LENGTH = 6
TOKEN_LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH


def _checksum(random_part: str) -> str:
    value = zlib.crc32(random_part.encode("ascii"))
    letters = []
    for _ in range(CHECKSUM_LENGTH):
        value, digit = divmod(value, len(ALPHABET))
        letters.append(ALPHABET[digit])
    return "".join(reversed(letters))


def generate() -> str:
    """Return a new token with about 160 bits of randomness."""
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return PREFIX + random_part + _checksum(random_part)


def is_well_formed(token: str) -> bool:
    """Tell whether ``token`` has our shape and a correct checksum."""
    if len(token) != TOKEN_LENGTH or not token.startswith(PREFIX):
        return False
    body = token[len(PREFIX) :]
    if not all(c in ALPHABET for c in body):
        return False
    random_part, checksum = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
    return hmac.compare_digest(_checksum(random_part), checksum)


def looks_like_token(secret: str) -> bool:
    """Tell whether ``secret`` was meant as a token rather than an account password."""
    return secret.startswith((PREFIX, ORG_TOKEN_PREFIX))


def is_org_token(secret: str) -> bool:
    return secret.startswith(ORG_TOKEN_PREFIX)


def digest(token: str, key: bytes | None = None) -> str:
    """Return the value stored for ``token``: SHA-256, keyed with ``key`` when given.

    Tokens are high-entropy and checked on every git request, so a fast hash is right;
    a slow password hash would only cost latency.
    """
    data = token.encode("ascii")
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def last4(token: str) -> str:
    """The suffix shown in listings so users can tell their tokens apart."""
    return token[-4:]
