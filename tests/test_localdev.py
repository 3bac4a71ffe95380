"""Local-only tooling stays local: production code never imports ``localdev``, the image never ships it."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What the production image ships (the .dockerignore allow-list) and the Airflow processes load.
PRODUCTION_FOLDERS = ("include", "dags", "plugins")


def _imports(path: Path) -> list[str]:
    """Every module a Python file imports (statically), plus strings passed to importlib."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("localdev"):
            found.append(node.value)  # importlib.import_module("localdev...") and the like
    return found


def test_production_code_never_imports_localdev() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for folder in PRODUCTION_FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in _imports(path)
        if name == "localdev" or name.startswith("localdev.")
    ]
    assert offenders == []


def test_the_check_sees_an_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import importlib\nfrom localdev.seed import seed_estate\nimportlib.import_module('localdev.stack')\n")
    assert _imports(sample) == ["importlib", "localdev.seed", "localdev.stack"]


def test_local_tooling_is_gone_from_include() -> None:
    assert not (ROOT / "include" / "estate").exists()
    assert not (ROOT / "include" / "local.py").exists()


def test_the_image_context_leaves_localdev_out() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert "include" in allowed and not {"localdev", "localdev/**"} & allowed


@pytest.mark.parametrize(
    ("module", "commands"),
    [("localdev", "demo,up,down"), ("localdev.emulators", "start,stop,env,status")],
)
def test_command_lines(module: str, commands: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "{" + commands + "}" in result.stdout


def test_python_m_localdev_seed_seeds_the_running_emulators(clean_clouds: object, tmp_path: Path) -> None:
    """The command the compose ``airflow-cli`` one-off and the benchmarks run."""
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    estate = tmp_path / "estate.yaml"
    estate.write_text(
        "azure:\n  target: azure-prod\n  containers:\n"
        "    - {name: cli-seeded, seed_id: cli-1, blobs: {count: 2, size_kib: 1}}\n"
    )
    env = dict(os.environ, RUNBOOKS_ESTATE_FILE=str(estate))
    result = subprocess.run(
        [sys.executable, "-m", "localdev.seed"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "seeded local estate: 3 created, 0 already present" in result.stderr
    container = WasbHook(wasb_conn_id="azure_estate").blob_service_client.get_container_client("cli-seeded")
    assert sorted(container.list_blob_names()) == ["object-000.txt", "object-001.txt"]


def test_dotenv_keeps_foreign_lines(tmp_path: Path) -> None:
    from localdev.emulators import Emulators
    from localdev.stack import Stack, write_dotenv

    dotenv = tmp_path / ".env"
    dotenv.write_text("FERNET_KEY=keep-me\nAIRFLOW_CONN_AWS_ESTATE='old'\n")
    write_dotenv(Emulators(aws_port=1, gcs_port=2, azure_port=3), dotenv)
    text = dotenv.read_text()
    assert "FERNET_KEY=keep-me" in text and "'old'" not in text
    assert text.count("AIRFLOW_CONN_AWS_ESTATE=") == 1 and "127.0.0.1:1" in text
    assert Stack(home=tmp_path / "x", port=1).dotenv == tmp_path / "x" / ".env"


@pytest.mark.parametrize(("argv", "expected"), [
    (["demo"], {"demo": True, "keep_serving": False}),
    (["demo", "--serve"], {"demo": True, "keep_serving": True}),
    (["up"], {"demo": False, "keep_serving": True}),
])
def test_make_demo_up_and_demo_serve_share_one_code_path(
    argv: list[str], expected: dict[str, bool], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo`, `make up` and `make demo SERVE=1` are one function with two switches; the slow test
    (tests/test_local_stack.py) runs it for real with both switches on."""
    from localdev import stack

    called: list[dict[str, bool]] = []
    monkeypatch.setattr(stack, "serve", lambda s, **kw: called.append(kw) or 0)
    assert stack.main([*argv, "--home", str(tmp_path), "--port", "18123"]) == 0
    assert called == [expected]


def test_the_suite_moto_server_is_moto_minus_its_per_request_overheads(tmp_path: Path) -> None:
    """localdev/moto_server.py answers as moto does (the default AMIs every seed and test uses are there, in every
    region), without the per-region "latest" AMIs, without an access log line per request, and reads its module
    list once instead of on every request."""
    import boto3

    from localdev.emulators import start_moto
    from localdev.moto_server import default_amis_file

    log = tmp_path / "moto.log"
    proc, endpoint = start_moto(log, timeout=60)
    try:
        ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=endpoint,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        images = {image["ImageId"] for image in ec2.describe_images(Owners=["amazon"])["Images"]}
        assert {"ami-04681a1dbd79675a5", "ami-b7e93bce"} <= images
        assert len(images) == len(json.loads(default_amis_file().read_text()))  # 44, not ~1,000 more per region
        assert "DescribeImages" not in log.read_text() and "POST / HTTP" not in log.read_text()
    finally:
        proc.kill()
        proc.wait()

    probe = subprocess.run(
        [sys.executable, "-c", "import os, runpy, sys, moto.backends as b\n"
         "calls = []\nreal = os.listdir\nos.listdir = lambda p: calls.append(p) or real(p)\n"
         "sys.argv = ['moto', '--help']\n"
         "try:\n    runpy.run_module('localdev.moto_server', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         "before = len(calls)\nassert 'sts' in b.list_of_moto_modules() and 's3' in b.list_of_moto_modules()\n"
         "print(before, len(calls))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    listed_at_start, listed_after_two_lookups = map(int, probe.stdout.split()[-2:])
    assert listed_at_start >= 1 and listed_after_two_lookups == listed_at_start
