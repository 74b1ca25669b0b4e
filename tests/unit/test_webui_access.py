"""The web UI's login: credentials from the environment, and no unprotected UI on a network."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tuneforge.cli.main import app
from tuneforge.utils.errors import ConfigError
from tuneforge.webui.access import DEFAULT_AUTH_ENV, check_exposure, credentials, is_loopback

runner = CliRunner()


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UI_LOGIN", "ann:s3cret:with:colons, bob:pw")
    assert credentials("UI_LOGIN") == [("ann", "s3cret:with:colons"), ("bob", "pw")]
    monkeypatch.delenv("UI_LOGIN")
    assert credentials("UI_LOGIN") is None
    with pytest.raises(ConfigError):
        credentials("UI_LOGIN", required=True)
    monkeypatch.setenv("UI_LOGIN", "no-password")
    with pytest.raises(ConfigError) as err:
        credentials("UI_LOGIN")
    assert err.value.problems[0].field == "--auth-env"


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                             ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.4", False),
                                             ("myhost", False)])
def test_loopback_hosts(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_a_network_host_needs_a_login_or_an_explicit_flag() -> None:
    check_exposure("127.0.0.1", None, False)
    check_exposure("0.0.0.0", [("a", "b")], False)
    check_exposure("0.0.0.0", None, True)
    with pytest.raises(ConfigError) as err:
        check_exposure("0.0.0.0", None, False)
    assert err.value.problems[0].field == "--host" and DEFAULT_AUTH_ENV in err.value.problems[0].fix


def test_webui_command_refuses_an_open_network_ui(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DEFAULT_AUTH_ENV, raising=False)
    result = runner.invoke(app, ["webui", "--host", "0.0.0.0", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "--insecure-no-auth" in result.output
    result = runner.invoke(app, ["webui", "--auth-env", "NOT_SET_ANYWHERE", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "NOT_SET_ANYWHERE" in result.output


def test_the_ui_asks_for_the_login(tmp_path: Path) -> None:
    import socket

    from tuneforge.webui.app import build, launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build(tmp_path)
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
           auth=[("ann", "pw")])
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/config").status_code in (401, 403)
        assert httpx.post(f"{url}/login", data={"username": "ann", "password": "wrong"}).status_code >= 400
        with httpx.Client() as client:
            assert client.post(f"{url}/login", data={"username": "ann", "password": "pw"}).status_code == 200
            assert client.get(f"{url}/config").status_code == 200
    finally:
        demo.close()
