"""registry.cli.quick: read command lines run without Typer mean exactly what Typer makes of them.

Checked three ways: each entry of QUICK against the Typer command's own parameters; command lines
parsed both ways (Typer in-process, the body replaced by a recorder); and whole processes against
a stand-in registry, the quick path beside the Typer path: same output, same exit status, the
same clear error for a malformed answer, and no Typer, click or pydantic loaded.
"""

from __future__ import annotations

import errno
import inspect
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from registry.cli import quick, reads
from registry.cli.quick import QUICK

ROOT = Path(__file__).resolve().parents[4]


def _typer_command(words: tuple[str, ...]) -> Any:
    import typer

    from registry.cli.app import build

    command: Any = typer.main.get_command(build(words[0]))
    for word in words:
        command = command.commands[word]
    return command


@pytest.mark.parametrize("words", list(QUICK), ids=" ".join)
def test_each_quick_command_takes_what_its_typer_command_takes(words: tuple[str, ...]) -> None:
    spec = QUICK[words]
    params = _typer_command(words).params
    arguments = [p for p in params if type(p).__name__ == "TyperArgument"]
    options = [p for p in params if type(p).__name__ == "TyperOption"]
    assert [p.name for p in arguments] == list(spec.arguments)
    assert [p.required for p in arguments] == [i < spec.required for i in range(len(arguments))]
    assert all(p.nargs == 1 and not p.envvar for p in arguments)
    flags = {p.opts[0]: p.name for p in options if p.is_flag}
    assert flags == dict(spec.flags)
    for p in options:
        assert len(p.opts) == 1 and not p.secondary_opts and not p.envvar and not p.multiple
        assert p.default is (False if p.is_flag else None)
        assert not p.required
    valued = {p.opts[0]: p.name for p in options if not p.is_flag}
    quick_valued = dict(spec.options)
    assert quick_valued.items() <= valued.items()
    assert set(valued) - set(quick_valued) == {
        next(o for o, n in valued.items() if n == name) for name in spec.typer_only
    }
    for p in params:  # nothing that would turn the words into something else
        assert p.callback is None and not p.is_eager and p.expose_value
        assert p.type_descriptor.parameter_info.parser is None
        if p.name not in spec.typer_only:
            assert p.type_descriptor.annotation is (bool if getattr(p, "is_flag", False) else str)
    for p in options:
        assert not p.prompt and not p.count
    # the body takes every parameter, by the same names
    body = inspect.signature(getattr(reads, spec.body)).parameters
    assert list(body) == [p.name for p in params]


def test_the_quick_table_covers_the_read_commands_only() -> None:
    assert set(QUICK) == {
        ("show",), ("list",), ("attestations",), ("identity", "list"), ("policy", "show"),
        ("alias", "list"), ("alias", "history"), ("token", "list"), ("audit", "log"),
    }  # fmt: skip


PLAIN = [
    (["show", "a/b@1"], ("show", {"ref": "a/b@1", "as_json": False})),
    (["show", "a/b@1", "--json"], ("show", {"ref": "a/b@1", "as_json": True})),
    (["show", "--json", "a/b@prod"], ("show", {"ref": "a/b@prod", "as_json": True})),
    (["show", ""], ("show", {"ref": "", "as_json": False})),
    (["list"], ("list_", {"target": None, "as_json": False})),
    (["list", "--json"], ("list_", {"target": None, "as_json": True})),
    (["list", "vision"], ("list_", {"target": "vision", "as_json": False})),
    (["list", "vision/resnet", "--json"], ("list_", {"target": "vision/resnet", "as_json": True})),
    (["attestations", "a/b@1"],
     ("attestations", {"ref": "a/b@1", "predicate_type": None, "save": None, "as_json": False})),
    (["attestations", "--predicate-type", "https://x/y", "a/b@1", "--json"],
     ("attestations", {"ref": "a/b@1", "predicate_type": "https://x/y", "save": None,
                       "as_json": True})),
    (["identity", "list"], ("identity_list", {"as_json": False})),
    (["identity", "list", "--json"], ("identity_list", {"as_json": True})),
    (["policy", "show", "vision"], ("policy_show", {"namespace": "vision"})),
    (["alias", "list", "a/b"], ("alias_list", {"artifact": "a/b", "as_json": False})),
    (["alias", "history", "a/b", "prod", "--json"],
     ("alias_history", {"artifact": "a/b", "alias": "prod", "as_json": True})),
    (["token", "list"], ("token_list", {"as_json": False})),
    (["audit", "log"], ("audit_log", {"since": None, "as_json": False})),
    (["audit", "log", "--since", "2026-01-01", "--json"],
     ("audit_log", {"since": "2026-01-01", "as_json": True})),
    (["show", "a/b@1\u202e"], ("show", {"ref": "a/b@1\u202e", "as_json": False})),
]  # fmt: skip

NOT_PLAIN = [
    [], ["--help"], ["--version"], ["show"], ["show", "--help"], ["show", "a/b@1", "--help"],
    ["show", "a", "b"], ["show", "-h"], ["show", "--", "a/b@1"], ["show", "-", "x"],
    ["show", "a/b@1", "--json=1"], ["show", "a/b@1", "--json", "--json"], ["show", "--jso", "x"],
    ["show", "-a/b@1"], ["show", "a/b@1", "--no-json"], ["--json", "show", "a/b@1"],
    ["list", "a", "b"], ["list", "--json", "--json"], ["pull", "a/b@1"], ["push", "d", "a/b@1"],
    ["attestations", "a/b@1", "--save", "dir"], ["attestations", "a/b@1", "--predicate-type"],
    ["attestations", "a/b@1", "--predicate-type", "-x"],
    ["attestations", "a/b@1", "--predicate-type=x"],
    ["attestations", "a/b@1", "--predicate-type", "x", "--predicate-type", "y"],
    ["identity"], ["identity", "add", "x"], ["identity", "list", "extra"], ["policy", "show"],
    ["policy", "set", "a", "f"], ["alias"], ["alias", "set", "a/b", "prod", "1"],
    ["alias", "history", "a/b"], ["token", "create", "--role", "admin"],
    ["audit", "verify"], ["audit", "log", "--since"], ["audit", "log", "--since", "--json"],
    ["token", "--help", "list"], ["alias", "list", "--help", "a/b"], ["serve"], ["admin", "gc"],
    ["SHOW", "a/b@1"], ["show ", "a/b@1"],
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), PLAIN, ids=lambda v: repr(v)[:60])
def test_plain_read_command_lines(argv: list[str], expected: Any) -> None:
    assert quick.parse(argv) == expected


@pytest.mark.parametrize("argv", NOT_PLAIN, ids=repr)
def test_everything_else_goes_to_typer(argv: list[str]) -> None:
    assert quick.parse(argv) is None


def test_shell_completion_goes_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_MODELSEAL_COMPLETE", "bash_complete")
    assert quick.parse(["show", "a/b@1"]) is None


def _as_typer_calls(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any] | None:
    """(body, keyword arguments) the Typer app calls for ARGV, or None when it calls none."""
    from typer.testing import CliRunner

    from registry.cli.app import build

    calls: list[tuple[str, dict[str, Any]]] = []
    for spec in QUICK.values():
        original = getattr(reads, spec.body)

        def record(*args: Any, _name: str = spec.body, _f: Any = original, **kw: Any) -> None:
            calls.append((_name, dict(inspect.signature(_f).bind(*args, **kw).arguments)))

        monkeypatch.setattr(reads, spec.body, record)
    named = argv[0] if argv and not argv[0].startswith("-") else None
    runner = CliRunner()
    try:
        runner.invoke(build(named if named in {c[0] for c in _commands()} else None), argv)
    finally:
        monkeypatch.undo()
    assert len(calls) <= 1
    return calls[0] if calls else None


def _commands() -> tuple[tuple[str, str, str, bool], ...]:
    from registry.cli.app import COMMANDS

    return COMMANDS


@pytest.mark.parametrize(("argv", "expected"), PLAIN, ids=lambda v: repr(v)[:60])
def test_typer_makes_the_same_of_a_plain_line(
    argv: list[str], expected: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _as_typer_calls(argv, monkeypatch) == expected


# -- what Typer's main loop does around a command ----------------------------------------------


def _run_raising(exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    def body(**_: Any) -> None:
        raise exc

    monkeypatch.setattr(reads, "token_list", body)
    quick.run("token_list", {"as_json": False})


def test_ctrl_c_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _run_raising(KeyboardInterrupt(), monkeypatch)
    assert exited.value.code == 130
    assert capsys.readouterr() == ("", "")


def test_end_of_input_aborts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _run_raising(EOFError(), monkeypatch)
    assert exited.value.code == 1
    assert capsys.readouterr().err == "\nAborted!\n"


def test_a_closed_stdout_pipe_exits_1_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with pytest.raises(SystemExit) as exited:
        _run_raising(BrokenPipeError(errno.EPIPE, "Broken pipe"), monkeypatch)
    assert exited.value.code == 1
    assert isinstance(sys.stdout, quick._Pacified)


def test_other_errors_go_on_to_main(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PermissionError):
        _run_raising(PermissionError(errno.EACCES, "denied"), monkeypatch)
    with pytest.raises(ValueError, match="boom"):
        _run_raising(ValueError("boom"), monkeypatch)


def test_a_pacified_stream_ignores_a_closed_pipe_only() -> None:
    class Closed(io.StringIO):
        error = errno.EPIPE

        def flush(self) -> None:
            raise OSError(self.error, "flush")

    stream = Closed()
    quick._Pacified(stream).flush()
    stream.error = errno.EIO
    with pytest.raises(OSError):
        quick._Pacified(stream).flush()
    assert quick._Pacified(stream).getvalue() == ""


# -- whole processes against a stand-in registry -----------------------------------------------

TIME = "2026-12-02T11:50:17.979941Z"
VERSION = {
    "namespace": "a", "name": "b", "version": "1", "kind": "model", "state": "pending",
    "root_digest": "sha256:" + "0" * 64, "file_count": 2, "total_size": 3, "created_at": TIME,
    "created_by": "admin", "state_reason": "waiting [red]for[/red] \x1b[2Jevaluation",
    "external": True,
    "files": [{"path": "p", "size": 1, "digest": "sha256:" + "1" * 64, "uri": "s3://x/p"},
              {"path": "q/r", "size": 2, "digest": "sha256:" + "2" * 64, "uri": "s3://x/q/r"}],
}  # fmt: skip
ANSWERS: dict[str, Any] = {
    "/v1/namespaces": [{"name": "a"}, {"name": "zz"}],
    "/v1/namespaces/a/artifacts": [
        {"namespace": "a", "name": "b", "kind": "model", "created_at": TIME, "version_count": 1}
    ],
    "/v1/namespaces/a/artifacts/b/versions": [{k: v for k, v in VERSION.items() if k != "files"}],
    "/v1/namespaces/a/artifacts/b/versions/1": VERSION,
    "/v1/namespaces/a/artifacts/b/versions/1/attestations": [
        {"id": 3, "ref": "a/b@1", "predicate_type": "https://x/y", "subject_digest": "sha256:0",
         "bundle_digest": "sha256:1", "signer": "ci", "signer_id": "sha256:2",
         "created_at": "2026-12-02T11:50:17+02:00", "created_by": "admin"}
    ],
    "/v1/identities": [
        {"name": "ci", "kind": "key", "fingerprint": "sha256:00", "sigstore_issuer": None,
         "sigstore_identity": None, "regex": False, "created_at": TIME, "created_by": "admin"},
        {"name": "gh", "kind": "sigstore", "fingerprint": None, "sigstore_issuer": "https://i",
         "sigstore_identity": ".*@x", "regex": True, "created_at": TIME, "created_by": "admin"},
    ],
    "/v1/namespaces/a/policy": {"namespace": "a", "revision": 2, "document": "model: {}\n",
                                "created_at": TIME, "created_by": "admin"},
    "/v1/namespaces/a/artifacts/b/aliases": [
        {"alias": "prod", "version": "1", "state": "revoked", "updated_at": TIME,
         "updated_by": "admin"}
    ],
    "/v1/namespaces/a/artifacts/b/aliases/prod/history": [
        {"alias": "prod", "from_version": None, "to_version": "1", "actor": "admin", "at": TIME}
    ],
    "/v1/tokens": [
        {"id": "ab12", "name": "t", "role": "deployer", "namespace": "a", "created_at": TIME,
         "expires_at": None, "revoked": False, "token": "ms_ab12_never-shown"}
    ],
    "/v1/audit/log": [
        {"seq": 1, "at": "2026-12-02T11:50:17.367680+00:00", "actor": "admin",
         "action": "add_identity", "target": "/v1/identities", "outcome": "ok", "hash": "00"},
        {"seq": 2, "at": "2026-12-03T00:00:00+00:00", "actor": "admin", "action": "push",
         "target": "/v1/x", "outcome": "ok", "hash": "11"},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def registry() -> Iterator[dict[str, Any]]:
    """A stand-in registry answering ANSWERS (or what a test puts in the dict it yields)."""
    answers = dict(ANSWERS)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            answer = answers.get(path)
            status = 200 if answer is not None else 404
            if answer is None:
                answer = {"type": "https://modelseal.dev/problems/not-found", "detail": "no"}
            body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    answers["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield answers
    server.shutdown()
    server.server_close()


PROBE = """
import atexit, sys
if sys.argv[1] == "typer":
    import registry.cli.quick
    registry.cli.quick.parse = lambda argv: None
def loaded():
    names = ("typer", "click", "pydantic", "registry.wire", "rich")
    sys.stderr.write("LOADED " + " ".join(sorted(
        m for m in sys.modules if any(m == n or m.startswith(n + ".") for n in names))) + "\\n")
atexit.register(loaded)
sys.argv = ["modelseal", *sys.argv[2:]]
sys.modules.setdefault("trio", None)
sys.modules.setdefault("httpx._main", None)
from registry.cli.app import main
main()
"""


def _cli(
    registry: dict[str, Any], way: str, *argv: str, tmp: Path, extra: dict[str, str] | None = None
) -> tuple[int, str, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSEAL_", "_"))}
    env.update(MODELSEAL_URL=registry["url"], MODELSEAL_TOKEN="ms_ab12_secret",
               MODELSEAL_CONFIG_DIR=str(tmp), COLUMNS="80")  # fmt: skip
    env.update(extra or {})
    done = subprocess.run([sys.executable, "-c", PROBE, way, *argv], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)  # fmt: skip
    err, _, loaded = done.stderr.rpartition("LOADED ")
    return done.returncode, done.stdout, err, loaded.strip()


LINES = [
    ["show", "a/b@1"], ["show", "a/b@1", "--json"], ["list"], ["list", "--json"],
    ["list", "a"], ["list", "a", "--json"], ["list", "a/b"], ["list", "a/b", "--json"],
    ["attestations", "a/b@1"], ["attestations", "a/b@1", "--json"],
    ["attestations", "a/b@1", "--predicate-type", "https://x/y"],
    ["identity", "list"], ["identity", "list", "--json"], ["policy", "show", "a"],
    ["alias", "list", "a/b"], ["alias", "list", "a/b", "--json"],
    ["alias", "history", "a/b", "prod"], ["alias", "history", "a/b", "prod", "--json"],
    ["token", "list"], ["token", "list", "--json"], ["audit", "log"], ["audit", "log", "--json"],
    ["audit", "log", "--since", "2026-12-02T12:00:00"], ["show", "a/b@2"], ["list", "A"],
    ["show", "a/b"], ["audit", "log", "--since", "yesterday"],
]  # fmt: skip


@pytest.mark.parametrize("argv", LINES, ids=" ".join)
def test_a_read_command_answers_the_same_both_ways(
    registry: dict[str, Any], argv: list[str], tmp_path: Path
) -> None:
    quickly = _cli(registry, "quick", *argv, tmp=tmp_path)
    typed = _cli(registry, "typer", *argv, tmp=tmp_path)
    assert quickly[:3] == typed[:3]
    assert "Traceback" not in quickly[2]
    assert [m for m in quickly[3].split() if m.split(".")[0] != "rich"] == []  # rich: errors
    assert "typer" in typed[3]
    if quickly[0] == 0:
        assert "ms_ab12_never-shown" not in quickly[1]


def test_the_quick_path_loads_neither_typer_nor_pydantic(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    for argv in (["show", "a/b@1"], ["list", "a/b"], ["alias", "list", "a/b"]):
        status, _, _, loaded = _cli(registry, "quick", *argv, tmp=tmp_path)
        assert status == 0 and loaded == "", (argv, loaded)


@pytest.mark.parametrize(
    ("path", "answer", "argv", "message"),
    [
        ("/v1/namespaces/a/artifacts/b/versions/1", {**VERSION, "total_size": "3"},
         ["show", "a/b@1"], 'total_size is "3", not an integer'),
        ("/v1/namespaces/a/artifacts/b/versions/1", b"<html>gateway</html>",
         ["show", "a/b@1", "--json"], "is malformed: not JSON (application/json, 20 bytes)"),
        ("/v1/namespaces", [{"nom": "a"}], ["list"], "[0].name is missing"),
        ("/v1/namespaces/a/artifacts", {"items": []}, ["list", "a"],
         "/v1/namespaces/a/artifacts did not answer a list"),
        ("/v1/namespaces/a/artifacts/b/versions", [{**VERSION, "created_at": 0}],
         ["list", "a/b", "--json"], "[0].created_at is 0, not an RFC 3339 date-time"),
        ("/v1/audit/log", [{"seq": 1}], ["audit", "log"], "[0].at is missing"),
        ("/v1/audit/log", [{**ANSWERS["/v1/audit/log"][0], "at": "2026-12-02T12:00:00"}],
         ["audit", "log", "--since", "2026-01-01"], "[0].at is '2026-12-02T12:00:00', not a"),
        ("/v1/audit/log", {"seq": 1}, ["audit", "log"], "did not answer a list of entries"),
        ("/v1/tokens", [{"id": "x"}], ["token", "list", "--json"], "[0].name is missing"),
        ("/v1/namespaces/a/artifacts/b/aliases", [{"alias": "p"}], ["alias", "list", "a/b"],
         "[0].version is missing"),
    ],
)  # fmt: skip
def test_a_malformed_answer_is_one_clear_error_both_ways(
    registry: dict[str, Any], path: str, answer: Any, argv: list[str], message: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    saved = registry[path]
    registry[path] = answer
    try:
        for way in ("quick", "typer"):
            status, out, err, _ = _cli(registry, way, *argv, tmp=tmp_path)
            assert (status, out) == (1, ""), (way, err)
            assert err.startswith("error: ") and err.count("\n") == 1, (way, err)
            assert message in err, (way, err)
    finally:
        registry[path] = saved


@pytest.mark.parametrize(
    ("env", "message"),
    [({"MODELSEAL_TOKEN": " "}, "error: MODELSEAL_TOKEN is not set"),
     ({"MODELSEAL_URL": "127.0.0.1:8700"}, "is not a registry URL"),
     ({"MODELSEAL_TOKEN": "ms_ab12_x\nms_cd34_y"}, "holds whitespace or control characters"),
     ({"MODELSEAL_STATUS_MAX_AGE": "soon"}, "MODELSEAL_STATUS_MAX_AGE must be a number")],
)  # fmt: skip
def test_a_setup_error_reads_the_same_both_ways(
    registry: dict[str, Any], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    answers = [_cli(registry, way, "show", "a/b@1", tmp=tmp_path, extra=env)[:3]
               for way in ("quick", "typer")]  # fmt: skip
    assert answers[0] == answers[1]
    assert answers[0][0] == 1 and message in answers[0][2] and "Traceback" not in answers[0][2]
