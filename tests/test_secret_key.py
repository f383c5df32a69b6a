"""The secret key: from SCREENING_SECRET_KEY, or made once in the instance folder, private to the
owner, and the same for every worker even when they all start at the same moment."""
import multiprocessing
import os
import secrets
import stat
import time

import pytest

from screening import config, create_app

REAL_TOKEN_HEX = secrets.token_hex
REAL_LOAD = config.load_secret_key


def key_file(folder):
    return folder / config.SECRET_KEY_FILE


def test_the_key_is_created_once_with_owner_only_permissions(tmp_path):
    folder = tmp_path / "instance"
    key = config.load_secret_key(str(folder))
    assert len(key) >= 32
    assert stat.S_IMODE(key_file(folder).stat().st_mode) == 0o600
    assert key_file(folder).read_text().strip() == key
    assert config.load_secret_key(str(folder)) == key
    assert sorted(p.name for p in folder.iterdir()) == [config.SECRET_KEY_FILE]   # no temporary file left


def test_the_key_file_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        config.load_secret_key(str(tmp_path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(key_file(tmp_path).stat().st_mode) == 0o600


def test_each_installation_gets_its_own_random_key(tmp_path):
    assert config.load_secret_key(str(tmp_path / "a")) != config.load_secret_key(str(tmp_path / "b"))


def _load_after(barrier, folder, results):
    """In a child process: wait until every sibling is ready, then load (or create) the key."""
    barrier.wait()
    results.put(config.load_secret_key(folder))


def slow_token_hex(n):
    """Key generation that takes a while, so that all eight processes are between "no key file yet"
    and "write mine" at once: a check-then-write loader gives several keys under this."""
    time.sleep(0.05)
    return REAL_TOKEN_HEX(n)


@pytest.mark.parametrize("round_", range(5))
def test_eight_processes_starting_together_agree_on_one_key(tmp_path, monkeypatch, round_):
    """Like gunicorn workers booting at once on a new installation."""
    monkeypatch.setattr(config.secrets, "token_hex", slow_token_hex)   # inherited by the forked children
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    folder = str(tmp_path / "instance")
    processes = [ctx.Process(target=_load_after, args=(barrier, folder, results)) for _ in range(8)]
    for p in processes:
        p.start()
    keys = [results.get(timeout=30) for _ in processes]
    for p in processes:
        p.join(timeout=30)
    assert [p.exitcode for p in processes] == [0] * 8
    assert len(set(keys)) == 1
    assert key_file(tmp_path / "instance").read_text().strip() == keys[0]


@pytest.mark.parametrize("content", ["", "\n", "short-key", " " * 40])
def test_an_empty_or_short_key_file_is_refused_with_a_clear_message(tmp_path, content):
    key_file(tmp_path).write_text(content)
    with pytest.raises(RuntimeError, match="no usable secret key; delete it") as refused:
        config.load_secret_key(str(tmp_path))
    assert str(key_file(tmp_path)) in str(refused.value)


def test_the_key_from_the_environment_wins_and_the_instance_folder_is_not_needed(tmp_path, monkeypatch):
    monkeypatch.setenv("SCREENING_SECRET_KEY", "e" * 64)
    monkeypatch.setattr(config, "load_secret_key", lambda path: pytest.fail("the instance key was read"))
    app = create_app({"TESTING": True, "DATABASE": str(tmp_path / "env.db")})
    assert app.secret_key == "e" * 64


def test_an_unusable_key_file_stops_the_start_with_one_line_naming_the_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("SCREENING_SECRET_KEY", raising=False)
    monkeypatch.setattr(config, "load_secret_key", lambda path: REAL_LOAD(str(tmp_path)))
    key_file(tmp_path).write_text("short-key")
    with pytest.raises(config.SettingsError) as refused:
        create_app({"TESTING": True, "DATABASE": str(tmp_path / "x.db")})
    assert str(refused.value).startswith("SCREENING_SECRET_KEY: not set, and the key in the instance folder cannot "
                                         f"be used: {key_file(tmp_path)} holds no usable secret key; delete it")


def test_an_instance_folder_that_cannot_be_made_stops_the_start_with_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("SCREENING_SECRET_KEY", raising=False)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(config, "load_secret_key", lambda path: REAL_LOAD(str(tmp_path / "a-file" / "instance")))
    with pytest.raises(config.SettingsError, match="^SCREENING_SECRET_KEY: not set, and the key in the instance "
                                                   "folder cannot be used: .*Not a directory"):
        create_app({"TESTING": True, "DATABASE": str(tmp_path / "x.db")})
