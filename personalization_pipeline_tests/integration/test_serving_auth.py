"""JWT minting and verification for the lookup API."""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from personalization_pipeline.serving import auth
from personalization_pipeline.serving.auth import AuthError, Principal, decode_token, mint_token

SECRET = "test-secret-long-enough-for-every-hmac-algorithm-0123456789abcdef"
CLAIMS = {"sub": "u1", "exp": int(time.time()) + 6 * 3600}  # outlives a slow test session
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, claims: dict, key: bytes | None) -> str:
    """A compact JWS with any header, HMAC-SHA256-signed with ``key`` (empty signature for ``None``)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key else b""
    return f"{signing_input}.{b64(signature)}"


def test_round_trip_with_issuer_and_audience() -> None:
    token = mint_token(SECRET, "u1", role="admin", issuer="pp", audience="apps")
    assert decode_token(token, SECRET, issuer="pp", audience="apps") == Principal("u1", "admin")


def test_missing_role_claim_means_the_end_user_role() -> None:
    token = jwt.encode(CLAIMS, SECRET, algorithm="HS256")
    assert decode_token(token, SECRET).role == "client"


REJECTED = [
    (mint_token("another-secret-of-sufficient-length-0123456", "u1"), "Signature verification"),
    (mint_token(SECRET, "u1", ttl_seconds=-5), "expired"),
    (jwt.encode({**CLAIMS, "role": "root"}, SECRET), "unknown role"),
    (jwt.encode({"exp": CLAIMS["exp"]}, SECRET), "sub"),
    (jwt.encode({"sub": "u1"}, SECRET), "exp"),
    (jwt.encode(CLAIMS, SECRET, algorithm="HS512"), "alg value is not allowed"),
    (jwt.encode(CLAIMS, None, algorithm="none"), "alg value is not allowed"),
    (forge({"alg": "none", "typ": "JWT"}, CLAIMS, None), "alg value is not allowed"),
    (forge({"alg": "HS256", "typ": "JWT"}, CLAIMS, None), "Signature verification"),
    (forge({"alg": "RS256", "typ": "JWT"}, CLAIMS, SECRET.encode()), "alg value is not allowed"),
    (jwt.encode(CLAIMS, RSA_KEY, algorithm="RS256"), "alg value is not allowed"),
    (forge({"alg": "HS256", "typ": "JWT"}, CLAIMS, RSA_PUBLIC_PEM), "Signature verification"),
    (jwt.encode({**CLAIMS, "sub": ""}, SECRET), "sub"),
    (jwt.encode({**CLAIMS, "sub": "x" * 10_240}, SECRET), "sub"),
    (jwt.encode({**CLAIMS, "sub": "u1\x00"}, SECRET), "sub"),
    (jwt.encode({**CLAIMS, "role": ["admin"]}, SECRET), "unknown role"),
    (jwt.encode({**CLAIMS, "aud": "apps"}, SECRET), "(?i)audience"),
    (jwt.encode({**CLAIMS, "exp": 1e30}, SECRET), "more than 86400 seconds away"),
    (mint_token(SECRET, "u1", ttl_seconds=86_400 + 3_600), "more than 86400 seconds away"),
    (jwt.encode({**CLAIMS, "sub": " \u00a0\t"}, SECRET), "sub"),
    ("not.a.token", "invalid token"),
    ("", "invalid token"),
]
"""(token, expected message): tokens carry the current time, so test ids are the cases' positions."""


@pytest.mark.parametrize(("token", "message"), REJECTED, ids=[f"{i:02d}-{m}" for i, (_, m) in enumerate(REJECTED)])
def test_rejected_tokens(token: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        decode_token(token, SECRET)


def test_issuer_and_audience_are_enforced_when_configured() -> None:
    with pytest.raises(AuthError, match="iss"):
        decode_token(mint_token(SECRET, "u1"), SECRET, issuer="pp")
    with pytest.raises(AuthError, match=r"(?i)audience"):
        decode_token(mint_token(SECRET, "u1", audience="other"), SECRET, audience="apps")


def test_mint_rejects_unknown_role() -> None:
    with pytest.raises(AuthError, match="unknown role"):
        mint_token(SECRET, "u1", role="owner")


def test_read_permissions_by_role() -> None:
    assert Principal("u1", "client").can_read_user("u1")
    assert not Principal("u1", "client").can_read_user("u2")
    assert Principal("u1", "reader").can_read_user("u1")
    assert not Principal("u1", "monitor").can_read_user("u1")
    assert Principal("a", "admin").can_read_user("u2")
    assert Principal("a", "superadmin").can_read_user("u2")


def test_sub_is_canonicalised_like_every_id() -> None:
    for sub in ("52", "52.0", " 52\t", "\u300052.000"):
        assert decode_token(jwt.encode({**CLAIMS, "sub": sub}, SECRET), SECRET).user_id == "52"
    assert decode_token(jwt.encode({**CLAIMS, "sub": "052"}, SECRET), SECRET).user_id == "052"


def test_the_lifetime_bound_is_configurable() -> None:
    token = mint_token(SECRET, "u1", ttl_seconds=7_200)
    assert decode_token(token, SECRET, max_lifetime_seconds=7_300).user_id == "u1"
    with pytest.raises(AuthError, match="more than 3600 seconds away"):
        decode_token(token, SECRET, max_lifetime_seconds=3_600)


def test_a_verified_token_is_refused_once_it_expires() -> None:
    """Verified tokens are remembered; their expiry is still checked on every use."""
    token = mint_token(SECRET, "u1", ttl_seconds=1)
    assert decode_token(token, SECRET).user_id == "u1"
    assert decode_token(token, SECRET).user_id == "u1"
    time.sleep(max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 0.1)
    with pytest.raises(AuthError, match="token has expired"):
        decode_token(token, SECRET)
    with pytest.raises(AuthError, match="Signature verification failed"):
        decode_token(token, SECRET + "-other")  # a remembered token is not accepted under another secret


def test_remembered_tokens_are_bounded_and_give_the_collector_nothing_to_walk(monkeypatch) -> None:
    """At most TOKEN_CACHE_SIZE tokens are remembered, the longest remembered forgotten first; what is
    remembered holds no object the garbage collector tracks (a full collection would walk them all)."""
    monkeypatch.setattr(auth, "TOKEN_CACHE_SIZE", 500)
    monkeypatch.setattr(auth, "_verified", {})
    tokens = [mint_token(SECRET, f"gc{i}") for i in range(2_000)]
    gc.collect()
    tracked = len(gc.get_objects())
    for token in tokens:
        decode_token(token, SECRET)
    gc.collect()
    assert len(gc.get_objects()) - tracked < 100  # a principal per token remembered would add 2,000+
    assert [key[0] for key in auth._verified] == tokens[-500:]
    assert decode_token(tokens[0], SECRET).user_id == "gc0"  # forgotten, verified again
    assert next(iter(auth._verified))[0] == tokens[-499]
