"""deploy/: the Lambda layer is built and run from an /opt layout; the container and AWS files are checked statically.

No Docker engine and no AWS account here: the Dockerfile and compose file are parsed and their
structure asserted, the CloudFormation templates are linted by cfn-lint. Nothing is built or
deployed from them in these tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from hoptrace.collector.cli import build_parser
from tests.otlp_sink import OtlpSink

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
TRACE_SPAN_ARRIVAL_TIMEOUT = 20
BUILD_SCRIPT = DEPLOY / "lambda-layer" / "build.py"


def _load_layer_builder() -> ModuleType:
    # deploy/lambda-layer is a folder of scripts, not a package (its name has a hyphen).
    spec = importlib.util.spec_from_file_location("hoptrace_layer_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def layer_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("layer") / "hoptrace-layer.zip"
    done = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    print(done.stdout.strip())  # the layer's sizes, in the test log (-s or -rA)
    assert "MiB zipped" in done.stdout and "MiB unzipped" in done.stdout
    return out


@pytest.fixture(scope="module")
def opt(layer_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer unzipped the way Lambda mounts it, modes kept (zipfile drops them)."""
    opt = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(layer_zip) as zf:
        for info in zf.infolist():
            zf.extract(info, opt)
            mode = info.external_attr >> 16 & 0o777
            if mode:
                (opt / info.filename).chmod(mode)
    return opt


def test_layer_holds_the_instrumentation_and_the_exec_wrapper_at_its_root(layer_zip: Path) -> None:
    with zipfile.ZipFile(layer_zip) as zf:
        names = set(zf.namelist())
        wrapper_mode = zf.getinfo("hoptrace-exec-wrapper").external_attr >> 16 & 0o777
    assert "python/hoptrace/instrumentation/aws_lambda/wrapper.py" in names
    assert "python/opentelemetry/trace/__init__.py" in names
    assert wrapper_mode & 0o111, "the exec wrapper must be executable in the layer"


def test_layer_leaves_out_server_code_and_server_dependencies(layer_zip: Path) -> None:
    with zipfile.ZipFile(layer_zip) as zf:
        tops = {n.split("/")[1] for n in zf.namelist() if n.startswith("python/") and n.count("/") >= 2}
        hoptrace_parts = {n.split("/")[2] for n in zf.namelist() if n.startswith("python/hoptrace/")}
    assert not {"fastapi", "uvicorn", "psycopg", "networkx", "starlette", "grpc", "bin"} & tops, tops
    assert not {"collector", "graph", "ui", "demo"} & hoptrace_parts, hoptrace_parts
    assert "instrumentation" in hoptrace_parts


def test_layer_size_is_reported_and_well_under_lambdas_limit(layer_zip: Path) -> None:
    builder = _load_layer_builder()
    with zipfile.ZipFile(layer_zip) as zf:
        unzipped = sum(i.file_size for i in zf.infolist())
    assert unzipped < builder.LAMBDA_UNZIPPED_LIMIT // 10  # a tenth of the budget left for the function
    assert layer_zip.stat().st_size < unzipped


HANDLER_SOURCE = """
def handler(event, context):
    return {"statusCode": 200, "body": event["item"]}
"""

# The runtime's part, reduced: import the module named in _HANDLER and call it with a context.
BOOTSTRAP = """
import importlib, json, os, sys
module_name, _, fn = os.environ["_HANDLER"].rpartition(".")
handler = getattr(importlib.import_module(module_name), fn)

class Context:
    aws_request_id = "0b1c2d3e-layer-test"
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = "128"
    def get_remaining_time_in_millis(self):
        return 3000

print(json.dumps(handler({"item": "socks"}, Context())))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "psycopg", "networkx"))))
print(json.dumps(sorted({os.path.dirname(m.__file__) for m in (sys.modules["hoptrace"],)})))
"""


def test_layer_traces_a_handler_through_the_exec_wrapper_from_an_opt_layout(opt: Path, tmp_path: Path) -> None:
    task = tmp_path / "task"  # /var/task: the function's own code, nothing else
    task.mkdir()
    (task / "app.py").write_text(HANDLER_SOURCE)
    with OtlpSink() as sink:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": f"{task}{os.pathsep}{opt / 'python'}",
            "_HANDLER": "app.handler",
            "AWS_LAMBDA_FUNCTION_NAME": "layer-check",
            "AWS_REGION": "us-east-1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_SERVICE_NAME": "layer-check",
        }
        # -S: no site-packages, so nothing of this virtualenv (or the editable hoptrace) is importable.
        done = subprocess.run(
            [str(opt / "hoptrace-exec-wrapper"), sys.executable, "-S", "-c", BOOTSTRAP],
            cwd=task,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert sink.received.wait(TRACE_SPAN_ARRIVAL_TIMEOUT), "no OTLP request reached the sink"
        spans = sink.spans()
    result, server_modules, hoptrace_dirs = done.stdout.strip().splitlines()[-3:]
    assert result == '{"statusCode": 200, "body": "socks"}'
    assert server_modules == "[]"
    assert hoptrace_dirs == f'["{opt / "python" / "hoptrace"}"]'
    assert spans, "the sink was called but decoded no spans"
    assert any(s.kind == s.SPAN_KIND_SERVER for s in spans), [s.name for s in spans]


def test_layer_build_refuses_clearly_when_pip_cannot_resolve(tmp_path: Path) -> None:
    # A wheel pip cannot read fails the same path as an unresolvable dependency, without
    # depending on which versions a registry publishes today.
    bogus = tmp_path / "hoptrace-0.1.0-py3-none-any.whl"
    bogus.write_bytes(b"not a wheel")
    out = tmp_path / "layer.zip"
    done = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--wheel", str(bogus), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "hoptrace layer build refused: pip could not install hoptrace for Python" in done.stderr
    assert not out.exists()


def test_layer_build_refuses_an_unsupported_python_version(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--python-version", "2.7", "--out", str(tmp_path / "l.zip")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unsupported Python version(s) ['2.7']" in done.stderr


# --- deploy/container: parsed and checked; no Docker engine here, so never built in these tests.

CONTAINER = DEPLOY / "container"


def _stages() -> list[list[dict[str, Any]]]:
    """The Dockerfile's instructions, split into its build stages."""
    parsed = DockerfileParser(path=str(CONTAINER / "Dockerfile"))
    stages: list[list[dict[str, Any]]] = []
    for instruction in parsed.structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages and instruction["instruction"] != "COMMENT":
            stages[-1].append(dict(instruction))
    return stages


def _values(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def test_dockerfile_builds_the_ui_and_the_wheel_in_their_own_stages() -> None:
    stages = _stages()
    assert len(stages) == 3
    assert _values(stages[0], "FROM")[0].startswith("node:") and _values(stages[0], "FROM")[0].endswith(" AS ui")
    assert "bash scripts/ensure-ui.sh" in _values(stages[0], "RUN")
    assert any(v.startswith("--from=ui ") and v.endswith(" ui/dist") for v in _values(stages[1], "COPY"))
    final_run = " ".join(_values(stages[2], "RUN"))
    assert "from=wheel" in final_run and "[server,grpc]" in final_run
    assert not _values(stages[2], "COPY"), "the runtime stage takes only the wheel, by a bind mount"


def test_dockerfile_copies_only_files_that_exist_in_the_repository() -> None:
    for stage in _stages():
        for value in _values(stage, "COPY"):
            if value.startswith("--from="):
                continue
            *sources, _dest = value.split()
            for source in sources:
                assert list(ROOT.glob(source)), f"COPY {source}: no such path in the repository"


def test_dockerfile_runtime_is_non_root_exposes_otlp_ports_and_checks_healthz() -> None:
    final = _stages()[-1]
    (user,) = _values(final, "USER")
    assert user.split(":")[0] not in ("root", "0", "")
    assert set(" ".join(_values(final, "EXPOSE")).split()) == {"4318", "4317"}
    (healthcheck,) = _values(final, "HEALTHCHECK")
    assert "/healthz" in healthcheck and "CMD" in healthcheck
    assert json.loads(_values(final, "ENTRYPOINT")[0]) == ["hoptrace"]


def test_dockerfile_default_command_and_environment_are_what_the_cli_accepts() -> None:
    final = _stages()[-1]
    command = json.loads(_values(final, "CMD")[0])
    args = build_parser().parse_args(command)
    assert args.command == "serve" and args.grpc_port == 4317
    cli_source = (ROOT / "collector" / "cli.py").read_text()
    for env in _values(final, "ENV"):
        for name in re.findall(r"(HOPTRACE_\w+)=", env):
            assert name in cli_source, f"ENV {name} is not read by the CLI"


def test_dockerfile_holds_no_secrets() -> None:
    text = (CONTAINER / "Dockerfile").read_text()
    assert not re.search(r"(?i)\b\w*(password|secret|token|api_key)\w*\s*=", text)
    assert not re.search(r"postgres(ql)?://[^/\s]*:[^@\s]*@", text), "a store URL with a password"


def test_dockerignore_excludes_local_state_from_the_build_context() -> None:
    lines = (CONTAINER / "Dockerfile.dockerignore").read_text().splitlines()
    assert lines[lines.index("**") :].count("**") == 1  # deny everything first, then re-include
    for excluded in ("ui/web/node_modules", "ui/dist", "**/__pycache__"):
        assert excluded in lines


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((CONTAINER / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_the_collector_on_postgresql_15_with_a_volume() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"collector", "postgres"}
    assert services["postgres"]["image"] == "postgres:15"
    (volume,) = services["postgres"]["volumes"]
    assert volume.split(":")[0] in compose["volumes"]
    assert volume.split(":")[1] == "/var/lib/postgresql/data"
    build = services["collector"]["build"]
    assert (CONTAINER / build["context"] / build["dockerfile"]).resolve() == (CONTAINER / "Dockerfile").resolve()


def test_compose_waits_for_a_healthy_database_and_checks_both_services() -> None:
    services = _compose()["services"]
    assert services["collector"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["collector"]["healthcheck"]["test"])


def test_compose_passes_the_store_url_by_environment_without_a_literal_password() -> None:
    services = _compose()["services"]
    store = services["collector"]["environment"]["HOPTRACE_STORE"]
    assert store.startswith("postgresql://hoptrace:${POSTGRES_PASSWORD}@postgres:5432/")
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for port in services["collector"]["ports"]:
        assert port.startswith("127.0.0.1:"), "published on loopback only; a proxy exposes it"


# --- deploy/aws: linted by cfn-lint (SAM transform included); never deployed here (no AWS account).

AWS = DEPLOY / "aws"
TEMPLATES = ("collector.yaml", "example-function.yaml")
# cfn-lint's console script, run with this interpreter (the package has no __main__).
CFN_LINT = "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !Sub, ...) as {"Ref": ...} mappings."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def _template(name: str) -> dict[str, Any]:
    loaded = yaml.load((AWS / name).read_text(), Loader=_CfnLoader)
    assert isinstance(loaded, dict)
    return loaded


def _cfn_lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CFN_LINT, *map(str, paths)], capture_output=True, text=True, timeout=120
    )


def test_cloudformation_templates_pass_cfn_lint() -> None:
    done = _cfn_lint(*(AWS / name for name in TEMPLATES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_cfn_lint_checks_the_sam_function_after_its_transform(tmp_path: Path) -> None:
    # The lint above means something only if it reads SAM resources: a misspelt property must fail.
    broken = tmp_path / "example-function.yaml"
    text = (AWS / "example-function.yaml").read_text()
    assert "      Layers: [!Ref HoptraceLayer]" in text
    broken.write_text(text.replace("      Layers: [!Ref HoptraceLayer]", "      Layerz: [!Ref HoptraceLayer]"))
    done = _cfn_lint(broken)
    assert done.returncode != 0
    assert "Layerz" in done.stdout


def test_collector_template_keeps_the_database_private_and_its_password_in_secrets_manager() -> None:
    resources = _template("collector.yaml")["Resources"]
    db = resources["Database"]["Properties"]
    assert db["PubliclyAccessible"] is False and db["StorageEncrypted"] is True
    assert db["ManageMasterUserPassword"] is True and "MasterUserPassword" not in db
    assert resources["DatabaseSubnetGroup"]["Properties"]["SubnetIds"] == {"Ref": "PrivateSubnetIds"}
    (container,) = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    (secret,) = container["Secrets"]
    assert secret["Name"] == "PGPASSWORD"
    assert secret["ValueFrom"]["Fn::Sub"].startswith("${Database.MasterUserSecret.SecretArn}:password")
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["HOPTRACE_STORE"]["Fn::Sub"].startswith("postgresql://hoptrace@")  # user only, no password
    assert env["HOPTRACE_RETENTION"] == {"Ref": "Retention"}
    cli_source = (ROOT / "collector" / "cli.py").read_text()
    assert all(name in cli_source for name in env), "every HOPTRACE_* variable is one the CLI reads"
    assert container["Image"] == {"Ref": "ImageUri"}


def test_collector_template_serves_through_the_load_balancer_only() -> None:
    template = _template("collector.yaml")
    assert {"ImageUri", "VpcId", "PrivateSubnetIds", "Retention"} <= set(template["Parameters"])
    resources = template["Resources"]
    target = resources["TargetGroup"]["Properties"]
    assert target["HealthCheckPath"] == "/healthz" and target["Port"] == 4318
    network = resources["Service"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED" and network["Subnets"] == {"Ref": "PrivateSubnetIds"}
    (ingress,) = resources["ServiceSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress["SourceSecurityGroupId"] == {"Ref": "LoadBalancerSecurityGroup"}


def test_example_function_uses_the_layer_and_its_exec_wrapper(layer_zip: Path) -> None:
    template = _template("example-function.yaml")
    function = template["Resources"]["HelloFunction"]["Properties"]
    assert function["Layers"] == [{"Ref": "HoptraceLayer"}]
    variables = function["Environment"]["Variables"]
    wrapper = variables["AWS_LAMBDA_EXEC_WRAPPER"]
    assert wrapper.startswith("/opt/")
    assert wrapper.removeprefix("/opt/") in zipfile.ZipFile(layer_zip).namelist()
    assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"] == {"Ref": "CollectorEndpoint"}
    assert variables["OTEL_EXPORTER_OTLP_HEADERS"]["Fn::Sub"].startswith("authorization=Bearer%20{{resolve:")
    runtime = template["Globals"]["Function"]["Runtime"]
    assert runtime.removeprefix("python") in _load_layer_builder().SUPPORTED_VERSIONS


def test_layer_for_several_pythons_puts_each_in_its_runtime_folder_with_that_platforms_wheels(tmp_path: Path) -> None:
    # Not runnable here (other Pythons, another architecture): the zip's layout and wheel tags say it.
    out = tmp_path / "layer.zip"
    versions = ["--python-version", "3.12", "--python-version", "3.13"]
    done = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), *versions, "--arch", "arm64", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "(Python 3.12, 3.13, arm64)" in done.stdout
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        for version in ("3.12", "3.13"):
            site = f"python/lib/python{version}/site-packages/"
            assert f"{site}hoptrace/instrumentation/aws_lambda/wrapper.py" in names
            (wheel_meta,) = [n for n in names if n.startswith(f"{site}protobuf-") and n.endswith(".dist-info/WHEEL")]
            assert "manylinux2014_aarch64" in zf.read(wheel_meta).decode()
    assert "hoptrace-exec-wrapper" in names
    assert not [n for n in names if n.startswith("python/") and n.count("/") == 2 and n.endswith(".py")]
    assert not [n for n in names if n.endswith(".pyc")], "bytecode of this Python would be wrong for those"
