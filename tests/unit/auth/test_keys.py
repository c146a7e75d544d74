"""auth.keys: the key settings (YAML and env JSON), hashed keys, scopes, constant-time lookup."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rag_appliance.auth import keys as keys_module
from rag_appliance.auth.keys import (
    FULL_ACCESS,
    ApiKeySpec,
    KeyRing,
    Principal,
    authenticate,
    hash_key,
)
from rag_appliance.errors import SettingsError
from rag_appliance.settings import load_settings

SCOPED = {"key": "team-a-key", "role": "read-write", "collections": ["team-a-*", "shared"]}


def test_plain_strings_still_mean_full_access() -> None:
    ring = KeyRing(["k1", "k2"])
    assert ring.authenticate("k2") == FULL_ACCESS
    assert ring.authenticate("k3") is None
    assert FULL_ACCESS.is_admin and FULL_ACCESS.can_write("anything")
    assert not KeyRing([])  # no keys: authentication is off


def test_yaml_and_env_json_take_the_same_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "server:\n  api_keys:\n    - plain-key\n"
        "    - {key: team-a-key, role: read-write, collections: ['team-a-*', shared]}\n"
    )
    from_yaml = load_settings(profile).server.api_keys
    assert from_yaml[0] == "plain-key"
    assert from_yaml[1] == ApiKeySpec.model_validate(SCOPED)
    monkeypatch.setenv(
        "RAG_SERVER__API_KEYS",
        '["plain-key", {"key": "team-a-key", "role": "read-write", '
        '"collections": ["team-a-*", "shared"]}]',
    )
    assert load_settings().server.api_keys == from_yaml


def test_the_key_never_shows_in_the_settings_repr() -> None:
    spec = ApiKeySpec.model_validate(SCOPED)
    assert "team-a-key" not in repr(spec)
    assert spec.role == "read-write" and spec.name is None


def test_defaults_are_read_only_over_every_collection() -> None:
    spec = ApiKeySpec(key="k")
    assert (spec.role, spec.collections) == ("read-only", ["*"])


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"key": ""}, "must not be empty"),
        ({"key": "sha256:abc"}, "64 hex"),
        ({"key": "k", "role": "owner"}, "role"),
        ({"key": "k", "collections": ["a*b"]}, "only at the end"),
        ({"key": "k", "collections": [""]}, "invalid collection scope"),
        ({"key": "k", "role": "admin", "collections": ["team-a-*"]}, "read-write"),
        ({"key": "k", "scopes": ["x"]}, "scopes"),
    ],
)
def test_bad_entries_are_one_clear_settings_line(entry: dict[str, Any], words: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(server={"api_keys": [entry]})
    assert words in str(info.value) and "server.api_keys" in str(info.value)


def test_an_empty_plain_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="must not be empty"):
        load_settings(server={"api_keys": [""]})


def test_hashed_keys_authenticate_by_their_key_not_their_digest() -> None:
    digest = hash_key("s3cret")
    assert digest == "sha256:" + hashlib.sha256(b"s3cret").hexdigest()
    ring = KeyRing([{"key": digest.upper().replace("SHA256:", "sha256:"), "role": "read-only"}])
    found = ring.authenticate("s3cret")
    assert found is not None and found.role == "read-only"
    assert ring.authenticate(digest) is None  # knowing the digest is not knowing the key
    assert authenticate([digest], b"s3cret") == FULL_ACCESS  # a hashed plain string too


def test_every_key_is_compared_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(keys_module, "hmac", SimpleNamespace(compare_digest=counting))
    ring = KeyRing(["first", hash_key("second"), {"key": "third", "role": "read-only"}])
    for token in ("first", "third", "nope", "a much longer guess than any key" * 10):
        calls.clear()
        ring.authenticate(token)
        # All three, whichever matched, on equal-length digests: no timing says which or how.
        assert calls == [(32, 32)] * 3


@pytest.mark.parametrize(
    ("collection", "readable"),
    [
        ("team-a-docs", True),
        ("team-a-", True),
        ("shared", True),
        ("team-b", False),
        ("team-a", False),  # the prefix is "team-a-"
        ("shared-2", False),  # exact names are exact
        ("TEAM-A-docs", False),
    ],
)
def test_scopes_are_names_and_prefixes(collection: str, readable: bool) -> None:
    principal = KeyRing([SCOPED]).authenticate("team-a-key")
    assert principal is not None
    assert principal.can_read(collection) is readable
    assert principal.can_write(collection) is readable  # read-write: both, in scope only


def test_roles() -> None:
    ro = Principal(None, "read-only", ("*",))
    rw = Principal(None, "read-write", ("x",))
    assert ro.can_read("any") and not ro.can_write("any") and not ro.is_admin
    assert rw.can_write("x") and not rw.can_write("y") and not rw.is_admin
    assert Principal(None, "read-only", ()).scopes() == "no collections"


def test_names_tell_keys_apart() -> None:
    ring = KeyRing(
        [
            "plain",
            {"key": "a", "name": "alice", "collections": ["team-a-*"]},
            {"key": "b", "name": "bob", "collections": ["team-b-*"]},
            {"key": "b2", "name": "bob", "collections": ["team-b-*"]},
        ]
    )
    assert ring.names == {"alice", "bob"}
    assert ring.for_name(None) == FULL_ACCESS
    bob = ring.for_name("bob")
    assert bob is not None and bob.collections == ("team-b-*",)
    two = KeyRing([{"key": "a", "collections": ["x"]}, {"key": "b", "collections": ["y"]}])
    assert two.for_name(None) is None  # unnamed keys that differ: no one grant
