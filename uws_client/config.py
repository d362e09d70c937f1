"""Where the ``uws`` command finds its service and token.

In order: ``--url``/``--token`` options, then ``UWS_URL``/``UWS_TOKEN``, then the config
file (``$UWS_CLIENT_CONFIG``, else ``~/.config/uws/config``), an INI file::

    [default]
    url = https://uws.example.org
    token = ...

A token is a password: a config file that holds one must be readable by its owner alone
(mode 0600), or it is refused — as ssh does with a private key.
"""

from __future__ import annotations

import configparser
import os
import stat
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    """The configuration cannot be used (message says why)."""


@dataclass(frozen=True)
class Config:
    url: str
    token: str | None


def config_path() -> Path:
    env = os.environ.get("UWS_CLIENT_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "uws" / "config"


def _read_file(path: Path, section: str) -> dict[str, str]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    values = dict(parser[section]) if parser.has_section(section) else {}
    if values.get("token") and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} holds a token but is readable by others (mode {stat.S_IMODE(st.st_mode):04o});"
            f" run: chmod 600 {path}"
        )
    return values


def load_config(
    url: str | None = None, token: str | None = None, section: str = "default"
) -> Config:
    """The service URL and token to use; :class:`ConfigError` when no URL is known."""
    file_values = _read_file(config_path(), section)
    url = url or os.environ.get("UWS_URL") or file_values.get("url")
    token = token or os.environ.get("UWS_TOKEN") or file_values.get("token") or None
    if not url:
        raise ConfigError(
            "no service URL: use --url, set UWS_URL, or put url = ... in " + str(config_path())
        )
    return Config(url=url, token=token)
