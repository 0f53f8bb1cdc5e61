"""Settings from the environment: real service with a key, the embedded emulator without."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from parallel_nb import config
from parallel_nb.api.client import AsyncClient, Client
from parallel_nb.api.models import TaskRequest
from parallel_nb.config import (
    DEMO_NOTICE,
    FORCED_DEMO_NOTICE,
    Settings,
    get_async_client,
    get_client,
    get_settings,
)

SENTINEL = "sk-SENTINEL-0b5e-never-print-me"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("PARALLEL_API_KEY", "PARALLEL_BASE_URL", "PARALLEL_NB_DEMO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PARALLEL_NB_TIME_SCALE", "0")
    config.reset_settings()
    yield
    config.reset_settings()


def test_without_a_key_runs_go_to_the_demo_emulator(capsys: pytest.CaptureFixture[str]) -> None:
    settings = get_settings()
    again = get_settings()

    assert settings.demo is True
    assert settings.base_url.startswith("http://127.0.0.1:")
    assert settings.api_key
    assert again == settings  # one emulator per process
    captured = capsys.readouterr()
    assert captured.out == DEMO_NOTICE + "\n"  # printed once, to stdout only
    assert captured.err == ""


def test_the_demo_client_completes_a_run() -> None:
    client = get_client()
    assert get_client() is client
    run = client.create_run(TaskRequest("lite", "What was the GDP of France in 2023?"))
    assert client.result(run.run_id).run.status == "completed"


async def test_the_demo_async_client_completes_a_run() -> None:
    async with get_async_client() as client:
        assert isinstance(client, AsyncClient)
        assert client.base_url == get_settings().base_url
        run = await client.create_run(TaskRequest("lite", "Describe JWST"))
        assert (await client.result(run.run_id)).run.status == "completed"


def test_with_a_key_runs_go_to_parallel(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARALLEL_API_KEY", SENTINEL)
    assert get_settings() == Settings("https://api.parallel.ai", SENTINEL, demo=False)

    monkeypatch.setenv("PARALLEL_BASE_URL", "http://127.0.0.1:8123")
    assert get_settings() == Settings("http://127.0.0.1:8123", SENTINEL, demo=False)
    client = get_client()
    assert isinstance(client, Client) and client.base_url == "http://127.0.0.1:8123"
    assert capsys.readouterr().out == ""  # no emulator, no notice


def test_demo_can_be_forced_with_a_key_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARALLEL_API_KEY", SENTINEL)
    monkeypatch.setenv("PARALLEL_NB_DEMO", "1")
    settings = get_settings()
    assert settings.demo and settings.base_url.startswith("http://127.0.0.1:")
    assert settings.api_key != SENTINEL  # the user's key never goes to the emulator
    assert capsys.readouterr().out == FORCED_DEMO_NOTICE + "\n"


def test_settings_repr_hides_the_key() -> None:
    settings = Settings("https://api.parallel.ai", SENTINEL, demo=False)
    assert SENTINEL not in repr(settings) and SENTINEL not in str(settings)
    assert repr(settings) == "Settings(base_url='https://api.parallel.ai', demo=False)"


@pytest.mark.parametrize("value", ["fast", "-1", "nan"])
def test_a_bad_time_scale_says_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PARALLEL_NB_TIME_SCALE", value)
    with pytest.raises(ValueError, match=r"PARALLEL_NB_TIME_SCALE must be a number >= 0"):
        get_settings()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "", "PARALLEL_NB_TIME_SCALE": "0"}  # no PARALLEL_API_KEY: demo mode
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


def test_importing_config_starts_nothing_and_stays_light() -> None:
    done = run_python(
        "import sys, threading, parallel_nb.config, parallel_nb.api.models, "
        "parallel_nb.api.errors\n"
        "heavy = {'httpx', 'starlette', 'uvicorn', 'parallel_nb.emulator'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert threading.active_count() == 1\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_demo_emulator_starts_lazily_and_stops_at_exit() -> None:
    done = run_python(
        "import atexit, httpx\n"
        "from parallel_nb import config\n"
        "url = config.get_settings().base_url + '/_emulator/stats'\n"
        "httpx.get(url)  # answers (any status) while running\n"
        "atexit._run_exitfuncs()\n"
        "try:\n"
        "    httpx.get(url)\n"
        "except httpx.ConnectError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('the emulator still answers after exit handlers ran')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == DEMO_NOTICE + "\n"
