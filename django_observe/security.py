"""Token checks shared by the health details and the metrics endpoints."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["bearer_token_matches"]


def bearer_token_matches(header: str, token: str) -> bool:
    """True when ``header`` is ``Bearer <token>``.

    Digests are compared, so neither the content nor the length of the token leaks through timing.
    """
    if len(header) > 4096:  # no token is this long: refused before any work on it
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(token.encode()).digest())
