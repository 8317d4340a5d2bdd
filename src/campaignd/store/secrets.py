"""Account secrets at rest: Fernet-encrypted JSON, with a key from the environment or a file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from campaignd.domain.errors import ConfigurationError
from campaignd.logs import log_event


class SecretBox:
    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key)
            self._key = base64.urlsafe_b64decode(key)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "CAMPAIGND_SECRET_KEY is not a valid Fernet key (32 url-safe base64 bytes); "
                "create one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'."
            ) from None

    def sign(self, text: str) -> str:
        """A short HMAC of `text` under this key (for links that must not be guessable)."""
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def verify(self, text: str, signature: str) -> bool:
        # Bytes: compare_digest refuses str with non-ASCII characters (a link is user input).
        given = signature.encode("utf-8", errors="replace")
        return hmac.compare_digest(self.sign(text).encode(), given)

    def seal(self, secrets: dict[str, Any]) -> str | None:
        if not secrets:
            return None
        return self._fernet.encrypt(json.dumps(secrets).encode()).decode()

    def open(self, token: str | None) -> dict[str, Any]:
        if not token:
            return {}
        try:
            return dict(json.loads(self._fernet.decrypt(token.encode())))
        except InvalidToken:
            raise ConfigurationError(
                "Stored secrets cannot be decrypted with this CAMPAIGND_SECRET_KEY; "
                "start the service with the key they were written with."
            ) from None


def load_key(configured: str | None, key_file: Path, secrets_exist: bool) -> str:
    """The key to use: configured, else the key file, else a new file when nothing needs a key."""
    if configured:
        return configured
    if key_file.exists():
        return key_file.read_text().strip()
    if secrets_exist:
        raise ConfigurationError(
            "Account secrets are stored but no key is available: set CAMPAIGND_SECRET_KEY "
            f"(or restore {key_file}) to the key they were written with."
        )
    key = Fernet.generate_key().decode()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    log_event("secrets.key_created", path=str(key_file))
    return key
