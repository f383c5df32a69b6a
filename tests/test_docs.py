"""Docs tests: the README documents every setting and every CLI command the code has."""
from pathlib import Path

import click
import pytest

from screening import config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme(app):
    for key in config.defaults(app.instance_path):
        assert f"SCREENING_{key}" in README or f"_{key}`" in README, f"SCREENING_{key} is not in the README"


def test_every_cli_command_is_documented_in_the_readme(app):
    def walk(command, prefix):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{prefix} {name}")
        else:
            yield prefix
    own = {name: cmd for name, cmd in app.cli.commands.items()}
    for name, command in own.items():
        for path in walk(command, f"screening {name}"):
            assert path in README, f"`{path}` is not in the README"


@pytest.mark.parametrize("proxies,seen", [(1, "203.0.113.9"), (0, "10.0.0.1")])
def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_configured_proxy(make_app, proxies, seen):
    app = make_app(PROXY_COUNT=proxies)

    @app.get("/_test/addr")
    def addr():
        from flask import request
        return request.remote_addr

    response = app.test_client().get("/_test/addr", headers={"X-Forwarded-For": "203.0.113.9"},
                                     environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert response.text == seen
