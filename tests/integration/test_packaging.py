"""The distribution: one `hoptrace` namespace, a light base install, server code kept out of Lambda."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("hoptrace-*.whl")
    return found


def test_wheel_installs_everything_under_the_hoptrace_namespace_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.startswith("hoptrace-") or "/" not in n}
    assert top == {"hoptrace"}, f"unexpected top-level entries: {top}"
    for package_dir in ("instrumentation", "collector", "graph", "ui"):
        assert f"hoptrace/{package_dir}/__init__.py" in names


def test_every_source_package_folder_is_in_the_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for part in ("instrumentation", "collector", "graph", "ui"):
        for init in (ROOT / part).rglob("__init__.py"):
            rel = init.relative_to(ROOT)
            assert f"hoptrace/{rel.as_posix()}" in names, f"{rel} is missing from the wheel"
    assert "hoptrace/instrumentation/aws_lambda/hoptrace-exec-wrapper" in names


def test_base_install_requires_only_the_opentelemetry_packages(wheel: Path) -> None:
    zf = zipfile.ZipFile(wheel)
    meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(zf.read(meta_name).decode())
    requires = meta.get_all("Requires-Dist") or []
    base = sorted(r.split(">")[0].split("=")[0].strip() for r in requires if "extra ==" not in r)
    assert base == ["opentelemetry-api", "opentelemetry-exporter-otlp-proto-http", "opentelemetry-sdk"]
    extras = meta.get_all("Provides-Extra") or []
    assert "server" in extras and "dev" in extras


def test_instrumentation_imports_no_server_or_aws_code() -> None:
    code = (
        "import sys, hoptrace, hoptrace.instrumentation; hoptrace.init(lambda_mode=True);"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi','uvicorn','psycopg','networkx','starlette','hoptrace.collector','hoptrace.graph'));"
        "bad += [m for m in sys.modules if m.startswith(('hoptrace.collector','hoptrace.graph'))];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
