"""JWT bearer tokens for the lookup API: HS256 only, ``sub`` = user id, ``role`` claim.

Rejected: a bad signature, ``alg`` other than HS256 (``none`` and RS/ES/PS included, so
a public key can never be used as an HMAC secret), a missing or past ``exp``, an ``exp``
further away than the configured maximum lifetime, a missing, non-string, over-long or
control-character ``sub``, an unknown ``role``, and a wrong or missing ``iss``/``aud`` when
an issuer/audience is configured. ``sub`` is canonicalised like every id (:mod:`ids`), so a
token for ``" 52 "`` or ``"52.0"`` is user ``52``.

Roles: ``client`` and ``reader`` read their own data (``client`` may also change its
own settings), ``monitor`` reaches only health endpoints, ``admin`` and ``superadmin``
read any user's data and the evaluation metrics.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import jwt

from personalization_pipeline.ids import MAX_ID_LENGTH, canonical_id

ALGORITHM = "HS256"
ROLES: frozenset[str] = frozenset({"client", "reader", "monitor", "admin", "superadmin"})
ADMIN_ROLES: frozenset[str] = frozenset({"admin", "superadmin"})
READ_OWN_ROLES: frozenset[str] = frozenset({"client", "reader"}) | ADMIN_ROLES
WRITE_OWN_ROLES: frozenset[str] = frozenset({"client"}) | ADMIN_ROLES
DEFAULT_ROLE = "client"

DEFAULT_MAX_LIFETIME_SECONDS = 86_400
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""User ids and scopes: 1-200 characters, none of them a control character (NUL included)."""


class AuthError(ValueError):
    """The token is missing, malformed, badly signed, expired or carries an unknown role."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES

    def can_read_user(self, user_id: str) -> bool:
        """Own data for reading roles; anyone's for admins."""
        return self.is_admin or (self.role in READ_OWN_ROLES and user_id == self.user_id)


def _check_role(role: object) -> str:
    if not isinstance(role, str) or role not in ROLES:
        raise AuthError(f"unknown role {role!r}; expected one of {sorted(ROLES)}")
    return str(role)


def mint_token(
    secret: str,
    sub: str,
    role: str = DEFAULT_ROLE,
    ttl_seconds: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """Return a signed HS256 token for user ``sub`` with ``role``, expiring after ``ttl_seconds``."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(sub),
        "role": _check_role(role),
        "iat": now,
        "exp": now + int(ttl_seconds),
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(
    token: str,
    secret: str,
    issuer: str | None = None,
    audience: str | None = None,
    max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
) -> Principal:
    """Verify ``token`` (signature, ``exp`` at most ``max_lifetime_seconds`` away, ``sub``, optional
    ``iss``/``aud``) and return its principal, with the canonical user id.

    A token without a ``role`` claim gets the end-user role, ``client``. A verified token is
    remembered (the :data:`TOKEN_CACHE_SIZE` most recently verified) and only its expiry checked again: every
    other check gives the same answer until then.
    """
    key = (token, secret, issuer, audience, max_lifetime_seconds)
    verified = _verified.get(key)
    if verified is None:
        verified = _verify(*key)
        if len(_verified) >= TOKEN_CACHE_SIZE:
            _verified.pop(next(iter(_verified)), None)  # the longest remembered
        _verified[key] = verified
    user_id, role, expires = verified
    if expires <= time.time():
        raise AuthError("token has expired")
    return Principal(user_id=user_id, role=role)


TOKEN_CACHE_SIZE = 65_536
_verified: dict[tuple[str, str, str | None, str | None, int], tuple[str, str, int]] = {}
"""Verified tokens' user id, role and ``exp``: tuples of strings and ints, which the garbage
collector stops tracking, so a full cache adds nothing to a full collection's walk (an
``lru_cache`` of principals added two tracked objects per token: 55-80 ms per full collection
with the cache full)."""


def _verify(
    token: str, secret: str, issuer: str | None, audience: str | None, max_lifetime_seconds: int
) -> tuple[str, str, int]:
    """The user id, role and ``exp`` of a token that passes every check (an exception is never remembered)."""
    required = ["exp", "sub"] + (["iss"] if issuer else []) + (["aud"] if audience else [])
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    if not isinstance(claims["exp"], int | float) or claims["exp"] > time.time() + max_lifetime_seconds:
        raise AuthError(f"invalid token: 'exp' is more than {max_lifetime_seconds} seconds away")
    user_id = canonical_id(claims["sub"]) if isinstance(claims["sub"], str) else None
    if user_id is None or not is_valid_id(user_id):
        raise AuthError(
            f"invalid token: 'sub' must be a string of 1-{MAX_ID_LENGTH} characters without control characters"
        )
    return user_id, _check_role(claims.get("role", DEFAULT_ROLE)), int(claims["exp"])


def is_valid_id(value: str) -> bool:
    """Whether ``value`` is a usable user id or scope (see :data:`ID_PATTERN`)."""
    return len(value) <= MAX_ID_LENGTH and re.fullmatch(ID_PATTERN, value) is not None
