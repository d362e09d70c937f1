"""The README's examples run as written: curl, the ``uws`` command, the Python client,
and pyvo on cone search, DataLink and TAP.

Each example is taken from README.md itself (so a README edit that breaks one fails
here) and run against a live service on the demo job definitions of ``job_definitions/``
and a small DL3 store. Only what the README leaves to the reader is filled in: the
service's address (``http://127.0.0.1:8080`` becomes the test server's), the admin token
file ``var/admin_token``, and ``<id>`` (the job the first command created). The OPUS
test activity sleeps 10 s; the test's copy of that definition sleeps 3 s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, LiveServer, make_settings
from tests.test_web_find import build_store

README = PROJECT_ROOT / "README.md"
DOC_URL = "http://127.0.0.1:8080"


def code_blocks(lang: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def block_with(lang: str, marker: str) -> str:
    found = [b for b in code_blocks(lang) if marker in b]
    assert len(found) == 1, f"README: expected one {lang} block with {marker!r}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    root = Path(tmp_path_factory.mktemp("readme"))
    definitions = root / "job_definitions"
    definitions.mkdir()
    for f in (PROJECT_ROOT / "job_definitions").glob("*_vot.xml"):
        text = f.read_text(encoding="utf-8")
        if f.name == "test_activity_1_vot.xml":
            assert "sleep 10" in text
            text = text.replace("sleep 10", "sleep 3")
        (definitions / f.name).write_text(text, encoding="utf-8")
    build_store(root / "dl3")
    live = LiveServer(make_settings(root, job_definitions_dir=definitions))
    live.add_user("admin", admin=True, roles=("operator",))
    workdir = root / "work"
    (workdir / "var").mkdir(parents=True)
    (workdir / "var" / "admin_token").write_text(live.tokens["admin"] + "\n")
    yield live, workdir
    live.stop()


def shell_env(live: LiveServer, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["UWS_CLIENT_CONFIG"] = str(workdir / "no-config")
    env.pop("UWS_URL", None)
    env.pop("UWS_TOKEN", None)
    return env


def run_shell(script: str, live: LiveServer, workdir: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script.replace(DOC_URL, live.base)],
        cwd=workdir, env=shell_env(live, workdir), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, (script, done.stdout, done.stderr)
    return done


def test_curl_example(demo: tuple[LiveServer, Path]) -> None:
    live, workdir = demo
    lines = block_with("sh", "curl -si").strip().splitlines()
    first = [i for i, line in enumerate(lines) if line.startswith("curl -si")][0]
    head = "\n".join(lines[: first + 2])  # TOKEN=..., the comment, the creation (2 lines)
    created = run_shell(head, live, workdir).stdout
    assert created.startswith("HTTP/1.1 303"), created
    location = re.search(r"^Location: (\S+)", created, flags=re.M).group(1)  # type: ignore[union-attr]
    job_id = location.rstrip("/").rsplit("/", 1)[1]
    rest = "\n".join([lines[0], *lines[first + 2 :]]).replace("<id>", job_id)
    out = run_shell(rest, live, workdir).stdout
    assert "<uws:phase>COMPLETED</uws:phase>" in out
    assert "Hello $(world)" in out  # the result, the value never shell text
    svg = (workdir / "prov.svg").read_text()
    assert "<svg" in svg and job_id in svg


def test_uws_command_example(demo: tuple[LiveServer, Path]) -> None:
    live, workdir = demo
    block = block_with("sh", "uws definitions")
    out = run_shell(block, live, workdir).stdout
    assert "test_activity_1" in out and "gammapy_maps" in out  # uws definitions
    saved = (workdir / "out" / "output.txt").read_text()
    assert saved.startswith("bonjour") or "Hello $(world)" in saved
    assert (workdir / "prov.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    admin = live.client("admin")
    jobs = admin.get("/rest/test_activity_1").text
    assert jobs.count("<uws:phase>COMPLETED</uws:phase>") >= 2  # the two that ran
    assert "ABORTED" not in jobs  # the aborted one was deleted


def test_python_client_example(demo: tuple[LiveServer, Path], tmp_path: Path) -> None:
    live, _ = demo
    code = block_with("python", "from uws_client import Client")
    os.chdir(tmp_path)
    exec(code, {"url": live.base, "token": live.tokens["admin"]})  # noqa: S102 - the README's code
    assert (tmp_path / "out" / "output.txt").read_text().strip() == "hi"


def test_pyvo_cone_search_and_datalink_example(
    demo: tuple[LiveServer, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live, _ = demo
    code = block_with("python", "SCSService").replace(DOC_URL, live.base)
    os.chdir(tmp_path)
    namespace: dict[str, object] = {"token": live.tokens["admin"]}
    exec(code, namespace)  # noqa: S102 - the README's code
    printed = capsys.readouterr().out
    assert "2001" in printed and "2002" in printed  # the PKS 2155-304 observations
    assert (tmp_path / "obs.fits.gz").read_bytes()[:2] == b"\x1f\x8b"
    form = namespace["form"]
    assert isinstance(form, dict) and str(form["obs_ids"]) in ("2001", "2002")


def test_pyvo_tap_example(demo: tuple[LiveServer, Path]) -> None:
    live, _ = demo
    code = block_with("python", "TAPService").replace(DOC_URL, live.base)
    namespace: dict[str, object] = {"token": live.tokens["admin"]}
    exec(code, namespace)  # noqa: S102 - the README's code
    crab = namespace["crab"]
    products = namespace["products"]
    assert {str(o) for o in crab["obs_id"]} <= {"1001", "1002", "1003"}  # type: ignore[index]
    assert len(products) == 0  # type: ignore[arg-type]  # no level-3 data sets yet
