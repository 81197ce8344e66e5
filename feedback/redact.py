"""Secrets out before anything is stored: API keys, tokens, passwords, private keys.

Patterns cover the common providers' key shapes (AWS, GitHub, GitLab, OpenAI, Anthropic, Slack,
Google, Stripe, Hugging Face, npm, PyPI), JWTs, bearer/basic auth headers, credentials in URLs,
``KEY=value`` assignments whose name says secret/token/password/api key, and PEM private key
blocks. Each match becomes ``[REDACTED:<kind>]`` so a reader still sees that something was there.
"""

from __future__ import annotations

import re
from typing import Any

_SECRET_NAME = r"(?:api[_\-]?key|secret|token|passw(?:or)?d|passwd|credential|access[_\-]?key)"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private_key", re.compile(r"-----BEGIN (?:[A-Z0-9 ]+ )?PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END (?:[A-Z0-9 ]+ )?PRIVATE KEY(?: BLOCK)?-----|\Z)", re.S)),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})\b")),
    ("gitlab_token", re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}\b")),
    ("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}")),
    ("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{20,}")),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("stripe_key", re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}\b")),
    ("huggingface_token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("npm_token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b")),
    ("pypi_token", re.compile(r"\bpypi-[A-Za-z0-9_\-]{50,}")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")),
    ("auth_header", re.compile(r"(?i)\b(authorization\s*[:=]\s*[\"']?(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=\-]{8,}")),
    ("url_credentials", re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@\"']+:)[^\s/@\"']+(@)")),
    # KEY = "literal" where the name says it is secret: any quoted value of 4+ characters
    ("secret_literal", re.compile(
        r"(?i)\b([A-Za-z0-9_.\-]*" + _SECRET_NAME + r"[A-Za-z0-9_.\-]*[\"']?\s*[:=]\s*)([\"'])(?!\[REDACTED)([^\"'\n]{4,})\2")),
    # KEY=value unquoted (env files, shell): only values that look generated (8+ chars with a digit),
    # so code like ``token = get_token()`` stays readable
    ("secret_assignment", re.compile(
        r"(?i)\b([A-Za-z0-9_.\-]*" + _SECRET_NAME + r"[A-Za-z0-9_.\-]*\s*[:=]\s*)(?![\[\"'])(?=[^\s\"',;()]*\d)([^\s\"',;()\[\]{}]{8,})")),
]


def redact(text: str) -> str:
    """``text`` with every secret replaced by ``[REDACTED:<kind>]``."""
    if not text:
        return text
    for kind, pattern in _PATTERNS:
        if kind in ("auth_header", "url_credentials"):
            text = pattern.sub(lambda m, k=kind: m.group(1) + f"[REDACTED:{k}]" + (m.group(2) if m.lastindex and m.lastindex >= 2 else ""), text)
        elif kind == "secret_literal":
            text = pattern.sub(lambda m: m.group(1) + m.group(2) + "[REDACTED:secret]" + m.group(2), text)
        elif kind == "secret_assignment":
            text = pattern.sub(lambda m: m.group(1) + "[REDACTED:secret]", text)
        else:
            text = pattern.sub(f"[REDACTED:{kind}]", text)
    return text


def redact_obj(value: Any) -> Any:
    """Redact every string inside nested dicts/lists (keys included)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_obj(v) for v in value]
    return value
