"""Webhook signing secrets at rest: encrypted with Fernet, under the keys of TRACKER_SECRET_KEY.

A stored secret is `fernet:` followed by a Fernet token (AES-128-CBC + HMAC-SHA256) of the
`whsec_...` secret; a value without that prefix is a plain secret from before encryption, read
as it is until `tracker db upgrade` or `tracker secrets rotate-key` encrypts it. The keys are
a MultiFernet: the first encrypts, every one decrypts, so a key is rotated by putting the new
one first, running `tracker secrets rotate-key`, then dropping the old one.

Without TRACKER_SECRET_KEY the key lives in `$TRACKER_DATA_DIR/secret.key` (0600, folder 0700),
made the first time a secret is encrypted, and said so once in a WARNING. A secret that no
configured key decrypts raises `UnreadableSecret` naming its endpoint; nothing is ever signed
without it. Neither keys nor secrets appear in a message.

`derive_key(purpose)` gives other parts a key of their own from the same secret (the
dashboard signs its session cookies with one), so there is one secret to keep, and knowing a
derived key tells nothing about the key that encrypts webhook secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tracker.db.engine import PRIVATE_FILE_MODE, make_private_folder
from tracker.errors import ConfigError, UnreadableSecret
from tracker.settings import Settings, get_settings

__all__ = [
    "ENCRYPTED_PREFIX",
    "KEY_FILE_NAME",
    "Vault",
    "derive_key",
    "get_vault",
    "is_encrypted",
    "key_file",
]

log = logging.getLogger(__name__)

ENCRYPTED_PREFIX = "fernet:"
KEY_FILE_NAME = "secret.key"


def is_encrypted(stored: str) -> bool:
    return stored.startswith(ENCRYPTED_PREFIX)


class Vault:
    """Encrypts with the first key, decrypts with any; `source` says where the keys came from."""

    def __init__(
        self,
        keys: Sequence[str | bytes],
        *,
        source: str,
        make_key: Callable[[], bytes] | None = None,
    ) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys]) if keys else None
        self._make_key = make_key  # no key yet: made when the first secret is encrypted
        self.source = source

    def encrypt(self, secret: str) -> str:
        if self._fernet is None and self._make_key is not None:
            self._fernet = MultiFernet([Fernet(self._make_key())])
        if self._fernet is None:
            raise ConfigError(f"no key to encrypt webhook secrets with ({self.source})")
        return ENCRYPTED_PREFIX + self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def decrypt(self, stored: str, *, endpoint_id: int) -> str:
        """The secret `stored` holds; a plain (not yet encrypted) one is returned as it is."""
        if not is_encrypted(stored):
            return stored
        if self._fernet is None:
            raise UnreadableSecret(endpoint_id, f"no key is configured ({self.source})")
        try:
            return self._fernet.decrypt(stored[len(ENCRYPTED_PREFIX) :].encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise UnreadableSecret(
                endpoint_id, f"it was encrypted with a key that is not in {self.source}"
            ) from None

    def reencrypt(self, stored: str, *, endpoint_id: int) -> str:
        """`stored` encrypted with the first key, whatever it was stored with (or plain)."""
        return self.encrypt(self.decrypt(stored, endpoint_id=endpoint_id))

    def signing_secrets(
        self, *, endpoint_id: int, secret: str, previous: Sequence[dict[str, str]], at: datetime
    ) -> list[str]:
        """An endpoint's secrets that sign at `at`: the current one, then the rotated-out ones
        whose overlap has not ended, newest first."""
        secrets = [self.decrypt(secret, endpoint_id=endpoint_id)]
        live = [entry for entry in previous if datetime.fromisoformat(entry["until"]) > at]
        for entry in sorted(live, key=lambda entry: entry["until"], reverse=True):
            secrets.append(self.decrypt(entry["secret"], endpoint_id=endpoint_id))
        return secrets


def key_file(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE_NAME


def get_vault(*, create: bool = False, settings: Settings | None = None) -> Vault:
    """The vault of the configured keys: TRACKER_SECRET_KEY, else the data folder's key file.

    With `create`, a missing key file is made when the vault first encrypts (only encrypting
    needs one: a new key decrypts nothing stored).
    """
    settings = settings or get_settings()
    if settings.secret_keys:
        return Vault(settings.secret_keys, source="TRACKER_SECRET_KEY")
    path = key_file(settings)
    source = f"TRACKER_SECRET_KEY (not set) or {path}"
    key = _read_key(path)
    if key is None and create:
        return Vault([], source=source, make_key=lambda: _create_key(path))
    return Vault([key] if key else [], source=source)


def derive_key(purpose: str, *, settings: Settings | None = None) -> bytes:
    """32 bytes for `purpose`, derived from the first key (TRACKER_SECRET_KEY, else the data
    folder's key file, made if missing): HMAC-SHA256 of the purpose under that key."""
    settings = settings or get_settings()
    if settings.secret_keys:
        key = settings.secret_keys[0].encode("ascii")
    else:
        path = key_file(settings)
        key = _read_key(path) or _create_key(path)
    return hmac.new(key, f"tracker:{purpose}".encode(), hashlib.sha256).digest()


def _read_key(path: Path) -> bytes | None:
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"cannot read the webhook secret key {path}: {error.strerror}") from None
    try:
        Fernet(key)
    except ValueError:
        raise ConfigError(
            f"{path} does not hold a Fernet key; restore it from your backup "
            "(or set TRACKER_SECRET_KEY)"
        ) from None
    return key


def _create_key(path: Path) -> bytes:
    """Write a new key to `path`, owner-only; of two processes racing, both use the first's."""
    key = Fernet.generate_key()
    try:
        make_private_folder(path.parent)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_EXCL, PRIVATE_FILE_MODE)
        try:
            os.write(descriptor, key + b"\n")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, path)  # fails if another process made it first: use that one
        except FileExistsError:
            existing = _read_key(path)
            assert existing is not None
            return existing
        finally:
            temporary.unlink()
    except OSError as error:
        raise ConfigError(
            f"cannot create the webhook secret key {path}: {error.strerror or error} "
            "(set TRACKER_SECRET_KEY or TRACKER_DATA_DIR)"
        ) from None
    log.warning(
        "created a new key for webhook secrets in %s (owner-only): back it up with the "
        "database, or set TRACKER_SECRET_KEY instead",
        path,
    )
    return key
