"""Resume copies without a database: which outputs get one, the cipher, and the key's
sources (configured file, systemd credential, state directory)."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from triggerd.config import load_settings
from triggerd.errors import ConfigError, ResumeCopyError
from triggerd.executor.resume import (
    KEY_FILE_NAME,
    ResumeKey,
    create_key_file,
    load_resume_key,
)
from triggerd.executor.runner import OutputTooLarge, output_copies
from triggerd.redaction import Redactor


def seal(k: ResumeKey, text: str) -> bytes:
    return k.encrypt(text, execution_id="e1", node_id="s", attempt=1)


def unseal(k: ResumeKey, blob: bytes, attempt: int = 1) -> object:
    return k.decrypt(blob, execution_id="e1", node_id="s", attempt=attempt)


# --- which outputs get a resume copy ----------------------------------------------------


def test_small_output_without_secrets_is_its_own_display_copy() -> None:
    value = {"n": 1, "items": ["a", "b"]}
    display, resume_text = output_copies(value, Redactor(["unrelated-secret"]), 1000, 10_000)
    assert display is value
    assert resume_text is None


def test_large_output_is_displayed_truncated_and_kept_whole() -> None:
    value = ["x" * 600] * 3
    display, resume_text = output_copies(value, Redactor(), 1000, 10_000)
    assert isinstance(display, dict)
    assert display["_truncated"] is True
    assert display["size_bytes"] == 1812
    assert resume_text is not None
    assert len(resume_text) == 1812


def test_secret_in_output_is_displayed_masked_and_kept_real() -> None:
    value = {"auth": "Bearer s3cr3t", "s3cr3t": 1}
    display, resume_text = output_copies(value, Redactor(["s3cr3t"]), 1000, 10_000)
    assert display == {"auth": "Bearer ***", "***": 1}
    assert resume_text == '{"auth": "Bearer s3cr3t", "s3cr3t": 1}'


def test_secret_matching_only_json_punctuation_needs_no_copy() -> None:
    # The secret occurs in the JSON text, but in no string of the value.
    assert output_copies({"a": 1}, Redactor(['": ']), 1000, 10_000) == ({"a": 1}, None)


@pytest.mark.parametrize(
    ("value", "display"),
    [
        (["a\x00b", 1], ["a\ufffdb", 1]),
        ({"k\x00": "v"}, {"k\ufffd": "v"}),
        ("a\ud800b", "a\ufffdb"),
        ([float("nan"), float("inf"), 1.5], [None, None, 1.5]),
    ],
    ids=["nul", "nul-key", "lone-surrogate", "nan-inf"],
)
def test_what_postgresql_cannot_store_is_displayed_replaced_and_kept_exactly(
    value: Any, display: Any
) -> None:
    shown, resume_text = output_copies(value, Redactor(), 1000, 10_000)
    assert shown == display
    assert resume_text is not None
    restored = json.loads(resume_text)
    assert json.dumps(restored) == json.dumps(value)  # NaN != NaN: compare the text


def test_output_above_the_cap_is_refused_with_size_and_cap() -> None:
    with pytest.raises(OutputTooLarge) as info:
        output_copies("x" * 200, Redactor(), 64, 100)
    assert str(info.value) == "202 bytes, above [executor] max_resume_output_bytes (100 bytes)"
    assert output_copies("x" * 98, Redactor(), 64, 100)[1] is not None  # 100 bytes: kept


# --- the cipher -------------------------------------------------------------------------


def key(byte: int) -> ResumeKey:
    return ResumeKey(bytes([byte]) * 32, source="test")


def test_copy_round_trips_and_does_not_hold_the_plaintext() -> None:
    text = '{"token": "hunter2-hunter2"}'
    blob = seal(key(1), text)
    assert b"hunter2" not in blob
    assert unseal(key(1), blob) == {"token": "hunter2-hunter2"}
    assert seal(key(1), text) != blob  # a fresh nonce each time


def test_copy_of_another_row_does_not_decrypt() -> None:
    blob = seal(key(1), '"v"')
    with pytest.raises(ResumeCopyError) as info:
        unseal(key(1), blob, attempt=2)
    assert (info.value.code, info.value.message) == (
        "RESUME_COPY_INVALID",
        "the resume copy of node 's' is damaged or belongs to another row",
    )


def test_copy_made_with_another_key_names_both_key_ids() -> None:
    blob = seal(key(1), '"v"')
    with pytest.raises(ResumeCopyError) as info:
        unseal(key(2), blob)
    assert info.value.code == "RESUME_KEY_MISMATCH"
    assert info.value.message == (
        f"the resume copy of node 's' was encrypted with another key than this process's"
        f" (key id {key(1).key_id}, this process has {key(2).key_id}); every replica must use"
        " the same [executor] resume_key_file"
    )


def test_damaged_copy_is_refused() -> None:
    blob = bytearray(seal(key(1), '"v"'))
    blob[-1] ^= 1
    with pytest.raises(ResumeCopyError) as info:
        unseal(key(1), bytes(blob))
    assert info.value.code == "RESUME_COPY_INVALID"
    with pytest.raises(ResumeCopyError) as info:
        unseal(key(1), b"\x07garbage")
    assert info.value.message == "the resume copy of node 's' is not in a format this build reads"


def test_key_repr_shows_its_id_not_the_key() -> None:
    k = ResumeKey(b"k" * 32, source="/x")
    assert repr(k) == f"ResumeKey(key_id={k.key_id!r}, source='/x')"
    assert len(k.key_id) == 16
    assert "kkkk" not in repr(k)


# --- where the key comes from -----------------------------------------------------------


def test_state_dir_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    settings = load_settings(environ={"TRIGGERD_DAEMON_STATE_DIR": str(tmp_path / "state")})
    first = load_resume_key(settings, {})
    path = tmp_path / "state" / KEY_FILE_NAME
    assert first.source == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_bytes().strip())) == 32
    assert load_resume_key(settings, {}).key_id == first.key_id  # read back, not replaced
    assert sorted(p.name for p in path.parent.iterdir()) == [KEY_FILE_NAME]


def test_processes_creating_the_key_together_all_get_the_same_one(tmp_path: Path) -> None:
    path = tmp_path / "state" / KEY_FILE_NAME
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def create() -> None:
        start.wait()
        try:
            create_key_file(path)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    settings = load_settings(environ={"TRIGGERD_DAEMON_STATE_DIR": str(tmp_path / "state")})
    assert len({load_resume_key(settings, {}).key_id for _ in range(3)}) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == [KEY_FILE_NAME]  # nothing aside


def test_systemd_credential_comes_before_the_state_dir(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "resume-key").write_bytes(base64.b64encode(b"c" * 32) + b"\n")
    settings = load_settings(environ={"TRIGGERD_DAEMON_STATE_DIR": str(tmp_path / "state")})
    loaded = load_resume_key(settings, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert loaded.key_id == ResumeKey(b"c" * 32).key_id
    assert loaded.source == str(credentials / "resume-key")
    assert not (tmp_path / "state").exists()  # nothing created


def test_configured_key_file_comes_first_and_takes_raw_bytes(tmp_path: Path) -> None:
    (tmp_path / "raw.key").write_bytes(b"r" * 32)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "resume-key").write_bytes(base64.b64encode(b"c" * 32))
    settings = load_settings(
        environ={
            "TRIGGERD_DAEMON_STATE_DIR": str(tmp_path / "state"),
            "TRIGGERD_EXECUTOR_RESUME_KEY_FILE": str(tmp_path / "raw.key"),
        }
    )
    loaded = load_resume_key(settings, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert loaded.key_id == ResumeKey(b"r" * 32).key_id


def test_missing_configured_key_file_is_an_error_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "shared" / "resume.key"
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_RESUME_KEY_FILE": str(missing)})
    with pytest.raises(ConfigError) as info:
        load_resume_key(settings, {})
    assert str(info.value) == (
        f"executor.resume_key_file: cannot read the resume key {missing}: No such file or"
        " directory; make one with: head -c 32 /dev/urandom | base64"
    )
    assert not missing.exists()


def test_malformed_key_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text(base64.b64encode(b"short").decode() + "\n")
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_RESUME_KEY_FILE": str(bad)})
    with pytest.raises(ConfigError) as info:
        load_resume_key(settings, {})
    assert str(info.value) == (
        "executor.resume_key_file: not a resume key (32 bytes, raw or base64);"
        " make one with: head -c 32 /dev/urandom | base64"
    )


def test_state_dir_that_cannot_hold_the_key_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = load_settings(environ={"TRIGGERD_DAEMON_STATE_DIR": str(blocker)})
    with pytest.raises(ConfigError) as info:
        load_resume_key(settings, {})
    assert str(info.value) == (
        f"daemon.state_dir: cannot create the resume key {blocker / KEY_FILE_NAME}:"
        " Not a directory"
    )
    assert os.path.isfile(blocker)
