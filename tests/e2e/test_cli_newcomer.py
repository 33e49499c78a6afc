"""What a newcomer meets first: one clear line for each set-up mistake, naming the setting or
flag to fix (never an API field name, a traceback or a secret)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from registry import __version__
from registry.errors import InvalidRequestError
from registry.sdk.client import RegistryClient
from tests.support import Live, run_cli


def test_version() -> None:
    shown = run_cli("--version")
    assert shown.returncode == 0 and shown.stdout == f"modelseal {__version__}\n"


def test_a_url_without_a_scheme_is_one_clear_error(live: Live) -> None:
    done = run_cli("list", live=live, token=live.admin_token, extra_env={
        "MODELSEAL_URL": live.url.removeprefix("http://")})  # fmt: skip
    assert done.returncode == 1
    bare = live.url.removeprefix("http://")
    assert done.stderr.startswith(
        f"error: MODELSEAL_URL={bare!r} is not a registry URL: it needs http:// or https://"
    )
    assert "Traceback" not in done.stderr
    with pytest.raises(InvalidRequestError, match=r"url '127\.0\.0\.1:8700' is not a registry URL"):
        RegistryClient("127.0.0.1:8700")


def test_a_misconfigured_server_says_so_in_one_line(tmp_path: Path) -> None:
    """Settings refused while the app is built (after bootstrap), here a webhook to a loopback
    address, stop `serve` with one error line naming the setting, not a traceback."""
    done = run_cli("serve", "--data-dir", str(tmp_path / "data"), "--port", "1", timeout=60,
                   extra_env={"MODELSEAL_WEBHOOKS": '["http://127.0.0.1:9/hook"]',
                              "MODELSEAL_WEBHOOK_SECRET": "s" * 32})  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: webhook 'http://127.0.0.1:9/hook'") and "loopback" in last
    assert "MODELSEAL_WEBHOOK_ALLOW_PRIVATE=true" in last


def test_a_missing_or_wrong_token_names_modelseal_token(live: Live) -> None:
    missing = run_cli("list", live=live, token="")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: MODELSEAL_TOKEN is not set")
    wrong = run_cli("list", live=live, token="ms_0000000000000000_" + "x" * 43)
    assert wrong.returncode == 1
    assert "the token in MODELSEAL_TOKEN was not accepted" in wrong.stderr
    assert "x" * 43 not in wrong.stderr + wrong.stdout


def test_cli_errors_name_flags_not_api_fields(live: Live) -> None:
    done = run_cli("token", "create", "--role", "deployer", "--namespace", "vision",
                   "--expires", "0", live=live)  # fmt: skip
    assert done.returncode == 2
    assert "--expires" in done.stderr and "expires_days" not in done.stderr


def test_tables_never_cut_or_fold_identifiers() -> None:
    from registry.cli.common import Styled, Table

    digest = "sha256:" + "0123456789abcdef" * 4
    table = Table("version", "root digest", "state")
    table.add_row("1", digest, Styled("revoked (!)", "red"))
    table.add_row("10", "x", "released")
    plain = table.render()
    assert plain.splitlines() == [
        "version  root digest" + " " * (len(digest) - len("root digest")) + "  state",
        f"1        {digest}  revoked (!)",
        "10       x" + " " * (len(digest) - 1) + "  released",
    ]
    coloured = table.render(colour=True)
    assert "\x1b[31mrevoked (!)\x1b[0m" in coloured and "\x1b[" not in plain


def test_text_from_the_registry_cannot_drive_the_terminal() -> None:
    from registry.cli.common import Table, printable

    table = Table("path", "findings")
    table.add_row("a\x1b]8;;http://evil\x07b", "one\ntwo\x9b")
    rendered = table.render(colour=True)
    assert "\x1b" not in rendered and "\x07" not in rendered and "\x9b" not in rendered
    shown = "a\ufffd]8;;http://evil\ufffdb"
    assert rendered.splitlines()[1:] == [f"{shown}  one", " " * len(shown) + "  two\ufffd"]
    assert printable("a\tb\nc\rd\x1b") == "a\tb\nc\ufffdd\ufffd"
    with pytest.raises(ValueError):
        table.add_row("only one cell")


def test_a_hugging_face_snapshot_is_pushed_with_follow_symlinks(live: Live, tmp_path: Path) -> None:
    from tests.unit.attest.test_files_symlinks import hf_cache

    snapshot = hf_cache(tmp_path)
    refused = run_cli("push", str(snapshot), "hf/tiny@1", "--no-progress", live=live)
    assert refused.returncode == 1
    assert "is a symbolic link" in refused.stderr and "--follow-symlinks" in refused.stderr
    pushed = run_cli("push", str(snapshot), "hf/tiny@1", "--no-progress", "--follow-symlinks",
                     live=live)  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert "following symbolic links to regular files inside" in pushed.stderr
    shown = json.loads(run_cli("show", "hf/tiny@1", "--json", live=live).stdout)
    files = {f["path"]: f["digest"] for f in shown["files"]}
    assert sorted(files) == ["config.json", "model.safetensors", "sub/tok.txt"]
    assert files["model.safetensors"] == "sha256:" + hashlib.sha256(b"weights").hexdigest()
