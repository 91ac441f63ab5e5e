"""The distribution: one `hoptrace` namespace, a light base install, server code kept out of Lambda."""

from __future__ import annotations

import os
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
    for package_dir in ("instrumentation", "collector", "graph", "ui", "demo"):
        assert f"hoptrace/{package_dir}/__init__.py" in names


def test_every_source_package_folder_is_in_the_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for part in ("instrumentation", "collector", "graph", "ui", "demo"):
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


def test_a_traced_lambda_loads_neither_the_sdk_nor_the_otlp_exporter_nor_protobuf() -> None:
    # What keeps the cold start small: the default Lambda path is the OpenTelemetry API and
    # hoptrace's own spans and OTLP encoder. An invocation, with an AWS call and its flush, runs here.
    code = (
        "import sys, hoptrace, boto3\n"
        "hoptrace.init()\n"
        "sqs = boto3.session.Session(region_name='us-east-1').client('sqs')\n"
        "def refuse(**_):\n"
        "    raise ConnectionRefusedError('no network in this test')\n"
        "sqs.meta.events.register('before-send.sqs.SendMessage', refuse)\n"
        "@hoptrace.lambda_handler\n"
        "def handler(event, context):\n"
        "    try:\n"
        "        sqs.send_message(QueueUrl='http://127.0.0.1:9/q', MessageBody='x')\n"
        "    except ConnectionRefusedError:\n"
        "        pass\n"
        "handler({}, None)\n"
        "heavy = ('opentelemetry.sdk', 'opentelemetry.exporter', 'opentelemetry.proto', 'google', 'requests')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    env = {
        **os.environ,
        "AWS_LAMBDA_FUNCTION_NAME": "packaging-check",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "HOPTRACE_FLUSH_BUDGET_MS": "50",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
