"""App authentication as GitHub does it: RS256 app JWTs and `ghs_` installation tokens.

https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import string
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_LIFETIME = dt.timedelta(hours=1)
JWT_MAX_LIFETIME = 600  # seconds: "no more than 10 minutes into the future"
_ALPHABET = string.ascii_letters + string.digits


class AuthError(Exception):
    """A credential GitHub would refuse; the message is GitHub's, never the credential."""


def generate_private_key() -> str:
    """A fresh 2048-bit RSA app key in PEM (PKCS#1, like the keys GitHub hands out)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem.decode()


def public_key_pem(private_key_pem: str) -> str:
    """The public half of an app key, in PEM."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pub.decode()


def parse_authorization(header: str | None) -> str | None:
    """The credential of an `Authorization: token X` or `Bearer X` header, else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not value.strip():
        return None
    return value.strip()


def looks_like_jwt(credential: str) -> bool:
    """Whether a credential has the three-part shape of a JWT."""
    return credential.count(".") == 2 and credential.startswith("eyJ")


def verify_app_jwt(
    token: str, *, public_key: str, app_id: int, client_id: str, now: float | None = None
) -> None:
    """Check an app JWT's signature, issuer and time claims; AuthError with GitHub's message."""
    moment = time.time() if now is None else now
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise AuthError("A JSON web token could not be decoded")
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise AuthError("A JSON web token could not be decoded") from exc
    iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
    if not isinstance(iat, int) or isinstance(iat, bool) or iat > moment + 1:
        raise AuthError(
            "'Issued at' claim ('iat') must be an Integer representing the time that the "
            "assertion was issued"
        )
    if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= moment:
        raise AuthError(
            "'Expiration time' claim ('exp') must be a numeric value representing the future "
            "time at which the assertion expires"
        )
    if exp - moment > JWT_MAX_LIFETIME + 1 or exp - iat > JWT_MAX_LIFETIME + 60:
        raise AuthError("'Expiration time' claim ('exp') is too far in the future")
    if str(iss) not in (str(app_id), client_id):
        raise AuthError("Integration not found")


@dataclass
class _Token:
    installation_id: int
    expires_at: dt.datetime


class TokenStore:
    """Installation tokens, keyed by their SHA-256 so the tokens themselves are never stored."""

    def __init__(self) -> None:
        self._tokens: dict[str, _Token] = {}

    def mint(self, installation_id: int, now: dt.datetime) -> tuple[str, dt.datetime]:
        """A new `ghs_` token for the installation and its expiry (one hour)."""
        token = "ghs_" + "".join(secrets.choice(_ALPHABET) for _ in range(36))
        expires = now + TOKEN_LIFETIME
        self._tokens[_digest(token)] = _Token(installation_id, expires)
        return token, expires

    def check(self, token: str, now: dt.datetime) -> int:
        """The installation a live token belongs to; AuthError("Bad credentials") otherwise."""
        found = self._tokens.get(_digest(token))
        if found is None or found.expires_at <= now:
            raise AuthError("Bad credentials")
        return found.installation_id

    def expire_all(self) -> int:
        """Expire every token now; returns how many there were."""
        past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        for tok in self._tokens.values():
            tok.expires_at = past
        return len(self._tokens)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
