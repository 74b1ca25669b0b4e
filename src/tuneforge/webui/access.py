"""Who may open the web UI: a login from an environment variable, and no unprotected UI on a network.

The UI starts training jobs and reads files, so it must not be reachable by others without a login.
Credentials come from an environment variable (never from the command line, where ``ps`` shows them):
``user:password``, several separated by commas. A host other than loopback is refused without them,
unless the user says explicitly that the UI is exposed unprotected.
"""

from __future__ import annotations

import ipaddress
import os

from tuneforge.utils.errors import ConfigError, Problem

#: The variable read when ``--auth-env`` is not given.
DEFAULT_AUTH_ENV = "TUNEFORGE_WEBUI_AUTH"


def credentials(var: str = DEFAULT_AUTH_ENV, required: bool = False) -> list[tuple[str, str]] | None:
    """``[(user, password), ...]`` from ``var``; None when it is unset and not ``required``.

    Raises:
        ConfigError: the variable is malformed, or unset while ``required``.
    """
    value = os.environ.get(var, "")
    if not value:
        if required:
            raise ConfigError("no web UI login", [Problem(f"environment variable {var} is not set",
                              field="--auth-env", fix=f"export {var}=user:password")])
        return None
    pairs = [item.split(":", 1) for item in value.split(",") if item.strip()]
    bad = [i for i, p in enumerate(pairs) if len(p) != 2 or not p[0].strip() or not p[1]]
    if bad or not pairs:
        raise ConfigError("bad web UI login", [Problem(f"{var} must be user:password (several separated by "
                          "commas)", field="--auth-env", fix=f"export {var}=admin:a-long-password")])
    return [(user.strip(), password) for user, password in pairs]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, auth: list[tuple[str, str]] | None, insecure: bool) -> None:
    """Refuse a UI reachable from the network without a login (unless ``insecure`` was given on purpose).

    Raises:
        ConfigError: ``host`` is not loopback, there is no login and ``insecure`` is False.
    """
    if auth or insecure or is_loopback(host):
        return
    raise ConfigError("the web UI would be open to the network without a login", [Problem(
        f"--host {host} exposes the UI, which starts training jobs and reads files, to anyone who can reach "
        "this machine", field="--host",
        fix=f"set a login (export {DEFAULT_AUTH_ENV}=user:password), keep --host 127.0.0.1, or pass "
            "--insecure-no-auth if the network is yours alone")])
