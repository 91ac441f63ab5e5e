"""The zero-code path, run as Lambda runs it: exec wrapper script, then the runtime's handler lookup."""

from __future__ import annotations

import importlib.resources
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.otlp_sink import OtlpSink

RUNTIME = textwrap.dedent(
    """
    import importlib, json, os, sys
    sys.path.insert(0, os.environ["TASK_ROOT"])
    from tests.lambda_context import LambdaContext
    module, _, name = os.environ["_HANDLER"].rpartition(".")
    handler = getattr(importlib.import_module(module.replace("/", ".")), name)
    try:
        print(json.dumps({"result": handler({"n": 20}, LambdaContext(function_name="orders"))}))
    except Exception as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    """
)

APP = textwrap.dedent(
    """
    import os
    import boto3

    # Created at import time, before the handler runs: must still be traced.
    s3 = boto3.client("s3", endpoint_url=os.environ["MOTO_ENDPOINT"], region_name="us-east-1")

    def handler(event, context):
        s3.list_buckets()
        if event["n"] < 0:
            raise ValueError("negative")
        return event["n"] + 1
    """
)


def wrapper_script() -> Path:
    ref = importlib.resources.files("hoptrace.instrumentation") / "aws_lambda" / "hoptrace-exec-wrapper"
    return Path(str(ref))


def run_like_lambda(tmp_path: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.py").write_text(APP)
    env = {
        **os.environ,
        "TASK_ROOT": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parents[2])]),
        "_HANDLER": "app.handler",
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        **env_extra,
    }
    env.pop("HOPTRACE_HANDLER", None)
    return subprocess.run(
        ["bash", str(wrapper_script()), sys.executable, "-c", RUNTIME],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_exec_wrapper_traces_an_unmodified_handler_and_its_import_time_clients(
    tmp_path: Path, moto_endpoint: str
) -> None:
    with OtlpSink() as sink:
        proc = run_like_lambda(tmp_path, {"MOTO_ENDPOINT": moto_endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == '{"result": 21}'
        spans = {s.name: s for s in sink.spans()}
        assert set(spans) == {"orders", "S3.ListBuckets"}
        assert spans["S3.ListBuckets"].parent_span_id == spans["orders"].span_id
        assert spans["S3.ListBuckets"].trace_id == spans["orders"].trace_id


def test_exec_wrapper_points_the_runtime_at_hoptrace_and_keeps_the_original(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(wrapper_script()), "sh", "-c", 'echo "$_HANDLER|$HOPTRACE_HANDLER"'],
        env={**os.environ, "_HANDLER": "src/app.handler"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.stdout.strip() == "hoptrace.instrumentation.aws_lambda.wrapper.handler|src/app.handler"


def test_wrapper_with_a_wrong_handler_name_says_which_variable_to_fix() -> None:
    from hoptrace.instrumentation.aws_lambda import wrapper

    for spec in ("", "nodot"):
        try:
            wrapper.load_handler(spec)
        except wrapper.HandlerNotFound as exc:
            assert "HOPTRACE_HANDLER" in str(exc)
        else:
            raise AssertionError("expected HandlerNotFound")
    try:
        wrapper.load_handler("json.no_such_function")
    except wrapper.HandlerNotFound as exc:
        assert "no function 'no_such_function'" in str(exc)
    else:
        raise AssertionError("expected HandlerNotFound")
