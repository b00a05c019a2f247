"""Key files: an Ed25519 key pair made on first use, kept owner-only on disk.

Signing itself is pure (`exchange.protocol`, "what bytes are signed"); this module is
the I/O around it, for the programs. A private key file is PKCS#8 PEM (what
``openssl genpkey -algorithm ed25519`` writes and Node's ``crypto.createPrivateKey``
reads), created with mode 0600 in a directory made 0700 if it is new; beside it,
``<name>.pub`` holds the public key as one line of 64 hex, for whoever must trust it
(the matcher reads the sequencer's; a client may be given the matcher's).

Where (docs/operations.md, "Keys"): a client's key is ``<key dir>/<clientId>.key``,
the key dir being ``$DEX_KEY_DIR`` if set, else ``$XDG_CONFIG_HOME/dex/keys``, else
``~/.config/dex/keys``; the workers keep theirs beside their database
(``data/sequencer.key``, ``data/matcher.key``). The matcher key a client trusts is
pinned per exchange instance (the sequencer's public key, which the matcher's signed
head names) as ``<key dir>/known/matchers/<instance>.pub``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from exchange.protocol import AuthFailed, public_key_from_hex, public_key_hex

__all__ = [
    "KEY_DIR_ENV",
    "KNOWN_MATCHERS",
    "KeyFileError",
    "client_key_path",
    "default_key_dir",
    "load_or_create_key",
    "pin_matcher_key",
    "pinned_matcher_path",
    "public_key_path",
    "read_public_key",
    "read_trusted_key",
]

KNOWN_MATCHERS: Final = "known/matchers"
"""Where in the key directory a client pins the matcher key of each exchange instance,
one ``<instance>.pub`` a file (in a subdirectory: no clientId's ``<clientId>.pub`` can
take the place of one). Before: one ``known/matcher.pub`` for every exchange, no longer
read."""

KEY_DIR_ENV: Final = "DEX_KEY_DIR"
"""The environment variable that moves the clients' key directory (tests use it)."""


class KeyFileError(OSError):
    """A key file exists but cannot be used (unreadable, not an Ed25519 key, too open)."""


def default_key_dir() -> Path:
    """``$DEX_KEY_DIR``, else ``$XDG_CONFIG_HOME/dex/keys``, else ``~/.config/dex/keys``."""
    explicit = os.environ.get(KEY_DIR_ENV)
    if explicit:
        return Path(explicit)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "dex" / "keys"


def client_key_path(client_id: str, key_dir: Path | None = None) -> Path:
    """Where the key of `client_id` lives (a clientId is [A-Za-z0-9_.-], a safe name)."""
    return (key_dir or default_key_dir()) / f"{client_id}.key"


def public_key_path(key_path: Path) -> Path:
    """The ``.pub`` file written beside the private key file `key_path`."""
    return key_path.with_suffix(".pub")


def load_or_create_key(path: str | Path) -> Ed25519PrivateKey:
    """Read the private key at `path`; make one there first if there is none.

    A new key file is written atomically (a temporary file renamed into place) with
    mode 0600, and its ``.pub`` beside it; an existing file readable by group or others
    is refused rather than used, as ssh does.

    Raises:
        KeyFileError: the file is not an Ed25519 PKCS#8 PEM key, or is group/world
            readable.
        OSError: the directory or file cannot be made or read.
    """
    path = Path(path)
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(pem)
                file.flush()
                os.fsync(file.fileno())
            # Another process may have made it meanwhile: theirs wins, ours is dropped.
            try:
                os.link(tmp, path)
            except FileExistsError:
                return load_or_create_key(path)
        finally:
            tmp.unlink(missing_ok=True)
        _write_public(path, key)
        return key
    if path.stat().st_mode & 0o077:
        raise KeyFileError(f"{path}: readable by others; chmod 600 it (or remove it)")
    try:
        loaded = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM private key: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    key = loaded
    _write_public(path, key)
    return key


def _write_public(key_path: Path, key: Ed25519PrivateKey) -> None:
    """Write `key`'s ``.pub`` beside `key_path` unless it already holds it: atomically
    (a temporary file renamed over it), so a reader never sees half of it, and a file
    torn by a crash is mended at the next start."""
    pub = public_key_path(key_path)
    text = public_key_hex(key) + "\n"
    try:
        if pub.read_text() == text:
            return
    except FileNotFoundError:
        pass
    tmp = pub.with_name(f".{pub.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, pub)
    finally:
        tmp.unlink(missing_ok=True)


def read_public_key(path: str | Path) -> Ed25519PublicKey | None:
    """The public key in a ``.pub`` file (64 hex), or None if there is no such file.

    Raises:
        KeyFileError: the file holds something else.
    """
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return public_key_from_hex(text, str(path))
    except AuthFailed as exc:
        raise KeyFileError(exc.detail) from None


def read_trusted_key(value: str) -> Ed25519PublicKey:
    """A public key given on a command line: 64 hex, or the path of a ``.pub`` file.

    Raises:
        KeyFileError: neither (or the file is missing).
    """
    if len(value) == 64:
        try:
            return public_key_from_hex(value.lower(), "key")
        except AuthFailed:
            pass
    key = read_public_key(value)
    if key is None:
        raise KeyFileError(f"{value}: neither 64 hex nor a public key file")
    return key


def pinned_matcher_path(instance: str, key_dir: Path | None = None) -> Path:
    """Where the matcher key of exchange `instance` (64 hex) is pinned."""
    return (key_dir or default_key_dir()) / KNOWN_MATCHERS / f"{instance}.pub"


def pin_matcher_key(
    instance: str, key: Ed25519PublicKey, key_dir: Path | None = None
) -> tuple[Ed25519PublicKey, bool]:
    """The matcher key pinned for exchange `instance`; `key` is pinned first if none is.

    Returns:
        The pinned key (compare it with `key`) and whether it was pinned by this call.

    Raises:
        KeyFileError: the pin file holds something else, or `instance` is not 64 hex.
        OSError: the file cannot be read or written.
    """
    try:
        public_key_from_hex(instance, "instance")
    except AuthFailed as exc:
        raise KeyFileError(exc.detail) from None
    path = pinned_matcher_path(instance, key_dir)
    pinned = read_public_key(path)
    if pinned is not None:
        return pinned, False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(public_key_hex(key) + "\n")
    try:
        os.link(tmp, path)  # atomic, and never over a pin another process made meanwhile
    except FileExistsError:
        pinned = read_public_key(path)
        if pinned is None:  # pragma: no cover - removed again in between
            raise KeyFileError(f"{path}: vanished while pinning") from None
        return pinned, False
    finally:
        tmp.unlink(missing_ok=True)
    return key, True
