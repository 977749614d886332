"""JWT bearer tokens for the lookup API: HS256 only, ``sub`` = user id, ``role`` claim.

Roles: ``client`` and ``reader`` read their own data (``client`` may also change its
own settings), ``monitor`` reaches only health endpoints, ``admin`` and ``superadmin``
read any user's data and the evaluation metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
ROLES: frozenset[str] = frozenset({"client", "reader", "monitor", "admin", "superadmin"})
ADMIN_ROLES: frozenset[str] = frozenset({"admin", "superadmin"})
READ_OWN_ROLES: frozenset[str] = frozenset({"client", "reader"}) | ADMIN_ROLES
WRITE_OWN_ROLES: frozenset[str] = frozenset({"client"}) | ADMIN_ROLES
DEFAULT_ROLE = "client"


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
    if role not in ROLES:
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
        "sub": str(sub), "role": _check_role(role), "iat": now, "exp": now + int(ttl_seconds),
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(
    token: str, secret: str, issuer: str | None = None, audience: str | None = None
) -> Principal:
    """Verify ``token`` (signature, ``exp``, ``sub``, optional ``iss``/``aud``) and return its principal.

    A token without a ``role`` claim gets the least-privileged role, ``client``.
    """
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
    user_id = claims["sub"]
    if not isinstance(user_id, str) or not user_id:
        raise AuthError("invalid token: 'sub' must be a non-empty string")
    return Principal(user_id=user_id, role=_check_role(claims.get("role", DEFAULT_ROLE)))
