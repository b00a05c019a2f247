"""Key files: made once, owner-only, read back; what cannot be used is refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.protocol import public_key_hex
from exchange.runtime import (
    KeyFileError,
    client_key_path,
    default_key_dir,
    load_or_create_key,
    pin_matcher_key,
    pinned_matcher_path,
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


@pytest.mark.parametrize("torn", ["", "3f2a", "not hex at all\n"])
def test_a_public_key_file_torn_by_a_crash_is_mended_at_the_next_start(
    torn: str, tmp_path: Path
) -> None:
    """A worker killed while writing its ``.pub`` left half a file, which every client
    given ``--matcher-key=<it>`` refused; the next start writes it whole again."""
    path = tmp_path / "matcher.key"
    key = load_or_create_key(path)
    public_key_path(path).write_text(torn)
    assert public_key_hex(load_or_create_key(path)) == public_key_hex(key)
    assert read_public_key(public_key_path(path)) is not None
    assert public_key_path(path).read_text() == public_key_hex(key) + "\n"
    assert {p.name for p in tmp_path.iterdir()} == {"matcher.key", "matcher.pub"}


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


def test_a_matcher_key_is_pinned_per_exchange_instance(tmp_path: Path) -> None:
    one, two = "ab" * 32, "cd" * 32
    key, other = Ed25519PrivateKey.generate().public_key(), Ed25519PrivateKey.generate()
    pinned, new = pin_matcher_key(one, key, tmp_path)
    assert new
    assert public_key_hex(pinned) == public_key_hex(key)
    assert pinned_matcher_path(one, tmp_path) == tmp_path / "known" / "matchers" / f"{one}.pub"
    assert pinned_matcher_path(one, tmp_path).read_text() == public_key_hex(key) + "\n"
    # The same instance keeps its first key: another is returned as not pinned.
    pinned, new = pin_matcher_key(one, other.public_key(), tmp_path)
    assert not new
    assert public_key_hex(pinned) == public_key_hex(key)
    # Another instance is pinned on its own.
    pinned, new = pin_matcher_key(two, other.public_key(), tmp_path)
    assert new
    assert public_key_hex(pinned) == public_key_hex(other)
    assert sorted(p.name for p in (tmp_path / "known" / "matchers").iterdir()) == [
        f"{one}.pub",
        f"{two}.pub",
    ]  # fmt: skip (no temporary file left)


def test_a_bad_pin_or_instance_is_refused(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(KeyFileError, match="instance"):
        pin_matcher_key("../../etc/passwd", key, tmp_path)  # never a path
    path = pinned_matcher_path("ab" * 32, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("not a key\n")
    with pytest.raises(KeyFileError):
        pin_matcher_key("ab" * 32, key, tmp_path)
