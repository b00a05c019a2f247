"""Key files: made once, owner-only, read back; what cannot be used is refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from exchange.protocol import public_key_hex
from exchange.runtime import (
    KeyFileError,
    client_key_path,
    default_key_dir,
    load_or_create_key,
    public_key_path,
    read_public_key,
    read_trusted_key,
)


def test_a_key_is_made_on_first_use_owner_only_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "new" / "alice.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_key_path(path).read_text() == public_key_hex(key) + "\n"
    assert public_key_hex(load_or_create_key(path)) == public_key_hex(key)
    assert {p.name for p in path.parent.iterdir()} == {"alice.key", "alice.pub"}  # no tmp left


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    load_or_create_key(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_or_create_key(path)


def test_a_file_that_is_no_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_or_create_key(path)


def test_public_keys_are_read_from_files_or_given_as_hex(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "s.key")
    pub = tmp_path / "s.pub"
    assert read_public_key(tmp_path / "missing.pub") is None
    for given in (str(pub), public_key_hex(key), public_key_hex(key).upper()):
        assert public_key_hex(read_trusted_key(given)) == public_key_hex(key)
    pub.write_text("nonsense\n")
    with pytest.raises(KeyFileError):
        read_public_key(pub)
    with pytest.raises(KeyFileError, match="neither 64 hex nor a public key file"):
        read_trusted_key(str(tmp_path / "missing.pub"))


def test_the_key_dir_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEX_KEY_DIR", str(tmp_path / "k"))
    assert client_key_path("client1") == tmp_path / "k" / "client1.key"
    monkeypatch.delenv("DEX_KEY_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert default_key_dir() == tmp_path / "cfg" / "dex" / "keys"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_key_dir() == tmp_path / "home" / ".config" / "dex" / "keys"
