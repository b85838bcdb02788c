"""Secrets at rest: store credentials and unique keys are Fernet tokens (MultiFernet: the first
key encrypts, every key decrypts, so keys can be rotated without losing data)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretError(RuntimeError):
    """A secret cannot be decrypted with any configured key."""


class Vault:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys])
        except ValueError as exc:
            raise ValueError(f"STOCKSYNC_SECRET_KEY is not a valid Fernet key: {exc}") from None

    def encrypt(self, plain: str) -> bytes:
        return self._fernet.encrypt(plain.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise SecretError(
                "a stored secret cannot be decrypted: was STOCKSYNC_SECRET_KEY changed without "
                "keeping the old key after the new one?"
            ) from None

    @classmethod
    def from_setting(cls, secret_key: str | None, data_dir: Path) -> Vault:
        """Keys from the setting, or a key generated once into ``data_dir`` for a laptop setup."""
        if secret_key:
            return cls([k for k in secret_key.split(",") if k.strip()])
        path = data_dir / "secret.key"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(Fernet.generate_key().decode())
        return cls([path.read_text().strip()])
