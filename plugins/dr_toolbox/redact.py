"""Redaction of secrets from anything the toolbox prints.

Two layers, because either alone leaks: the exact secret values the process knows about (the DSN's
password, AWS keys, the Kubernetes token) are replaced wherever they appear, and pattern rules catch
password-looking fragments in text the process did not produce itself (libpq and botocore errors).
"""

from __future__ import annotations

import os
import re

MASK = "***"

# Environment variables whose values are always secrets when present.
_SECRET_ENV_VARS = ("PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # postgresql://user:secret@host -> postgresql://user:***@host (any URI scheme)
    (re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?P<post>@)"), "uri"),
    # key=value forms: password=x, PGPASSWORD=x, "password": "x", aws_secret_access_key = x, token=x
    (
        re.compile(
            r"(?P<pre>\b(?:pg)?pass(?:word|wd)?\b\s*[=:]\s*|"
            r"\b(?:aws_)?secret(?:_access)?_key\b\s*[=:]\s*|"
            r"\b(?:aws_)?session_token\b\s*[=:]\s*|"
            r"\btoken\b\s*[=:]\s*|"
            r"[\"'](?:password|secret|token|secret_access_key)[\"']\s*:\s*)"
            r"(?P<q>[\"']?)(?P<secret>[^\s\"',;&}]+)",
            re.IGNORECASE,
        ),
        "kv",
    ),
    # Authorization: Bearer <token>
    (re.compile(r"(?P<pre>\bBearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE), "bearer"),
    # AWS access key ids
    (re.compile(r"(?P<secret>\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)"), "akid"),
]

_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is masked wherever it later appears (short values are ignored:
    masking 'a' everywhere would destroy the message without protecting anything)."""
    if value and len(value) >= 4:
        _known_secrets.add(value)


def register_env_secrets(environ: dict[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    for name in _SECRET_ENV_VARS:
        register_secret(env.get(name))


def redact(text: str) -> str:
    """Return `text` with known secrets and password-looking fragments masked."""
    if not text:
        return text
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern, kind in _PATTERNS:
        if kind == "akid":
            text = pattern.sub(MASK, text)
        elif kind == "kv":
            text = pattern.sub(lambda m: f"{m.group('pre')}{m.group('q')}{MASK}", text)
        else:
            text = pattern.sub(lambda m: f"{m.group('pre')}{MASK}{m.groupdict().get('post') or ''}", text)
    return text


def redact_obj(obj: object) -> object:
    """Redact every string inside a JSON-like structure (the final result line goes through this)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj
