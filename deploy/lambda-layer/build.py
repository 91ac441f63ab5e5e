"""Build the hoptrace Lambda layer: the instrumentation and its core dependencies, as a zip.

    python deploy/lambda-layer/build.py [--python-version 3.12 ...] [--arch x86_64|arm64]
                                        [--wheel dist/hoptrace-*.whl] [--out hoptrace-layer.zip]

What goes in, and why:
- ``pip install hoptrace`` with no extra (never ``server``): a Lambda never imports server code.
  The wheel is the one built from this checkout, unless ``--wheel`` names one.
- Dependencies are picked for Lambda, not for this machine: ``--platform manylinux2014_<arch>
  --python-version X --implementation cp --only-binary=:all:``, so a binary dependency
  (protobuf, pulled in by the OTLP exporter) is the Linux wheel for the runtime's Python.
- One Python version: ``python/`` (on every Python runtime's path). Several:
  ``python/lib/pythonX.Y/site-packages`` each, the runtime-specific folders Lambda documents.
- ``hoptrace.collector``, ``hoptrace.graph`` and ``hoptrace.ui`` are dropped from the layer: the
  wheel carries them for the server, a function never loads them.
- ``hoptrace-exec-wrapper`` at the zip's root, executable, so it lands at
  ``/opt/hoptrace-exec-wrapper`` for ``AWS_LAMBDA_EXEC_WRAPPER``.
- Bytecode is compiled only for the Python running this script: ``/opt`` is read-only in
  Lambda, so a layer without ``.pyc`` files recompiles on every cold start, and pip can only
  compile with its own interpreter. Build with the runtime's Python to get them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "instrumentation" / "aws_lambda" / "hoptrace-exec-wrapper"
SUPPORTED_VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
# Server-side parts of the distribution: in the wheel, never needed in a function.
SERVER_PACKAGES = ("collector", "graph", "ui", "demo")
# Lambda's limit for a function and all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


class LayerBuildError(Exception):
    """The layer could not be built; the message says what failed and what to try."""


@dataclass(frozen=True)
class LayerReport:
    """What was built: the zip, its two sizes, and which Pythons it serves."""

    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    python_versions: tuple[str, ...]
    arch: str

    def summary(self) -> str:
        mib = 1024 * 1024
        return (
            f"layer {self.path}: {self.zipped_bytes / mib:.2f} MiB zipped, "
            f"{self.unzipped_bytes / mib:.2f} MiB unzipped "
            f"(Python {', '.join(self.python_versions)}, {self.arch})"
        )


def running_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def build_wheel(out_dir: Path) -> Path:
    """Build hoptrace's wheel from this checkout (no dependencies, no build isolation)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out_dir)]
    cmd.append(str(ROOT))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise LayerBuildError(f"building the hoptrace wheel from {ROOT} failed:\n{done.stderr.strip()[-2000:]}")
    wheels = sorted(out_dir.glob("hoptrace-*.whl"))
    if len(wheels) != 1:
        raise LayerBuildError(f"expected one hoptrace wheel in {out_dir}, found {[w.name for w in wheels]}")
    return wheels[0]


def install_for(wheel: Path, version: str, arch: str, target: Path) -> None:
    """Install the wheel and its core dependencies for one Lambda Python into ``target``."""
    cmd = [
        sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
        "--target", str(target),
        "--platform", PLATFORMS[arch],
        "--python-version", version,
        "--implementation", "cp",
        "--only-binary=:all:",
        # pip can compile only with its own interpreter: other versions' bytecode would be wrong.
        *([] if version == running_version() else ["--no-compile"]),
        str(wheel),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise LayerBuildError(
            f"pip could not install hoptrace for Python {version} on {PLATFORMS[arch]} "
            "(binary wheels only). Check that every dependency publishes a wheel for that Python "
            f"and platform, or pick another --python-version.\npip said:\n{done.stderr.strip()[-2000:]}"
        )
    for part in SERVER_PACKAGES:
        shutil.rmtree(target / "hoptrace" / part, ignore_errors=True)
    # pip --target leaves a bin/ of console scripts (hoptrace's CLI is server code).
    shutil.rmtree(target / "bin", ignore_errors=True)


def write_zip(stage: Path, out: Path) -> int:
    """Zip the staged /opt tree deterministically; return the unzipped size in bytes."""
    unzipped = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            rel = path.relative_to(stage).as_posix()
            info = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            unzipped += len(data)
            zf.writestr(info, data)
    return unzipped


def build_layer(out: Path, versions: list[str], arch: str, wheel: Path | None = None) -> LayerReport:
    """Build the layer zip at ``out`` for ``versions`` on ``arch``; raise LayerBuildError if it can't."""
    bad = [v for v in versions if v not in SUPPORTED_VERSIONS]
    if bad:
        raise LayerBuildError(f"unsupported Python version(s) {bad}: choose from {', '.join(SUPPORTED_VERSIONS)}")
    if arch not in PLATFORMS:
        raise LayerBuildError(f"unknown --arch {arch!r}: choose from {', '.join(PLATFORMS)}")
    with tempfile.TemporaryDirectory(prefix="hoptrace-layer-") as tmp:
        work = Path(tmp)
        if wheel is None:
            wheel = build_wheel(work / "wheel")
        stage = work / "opt"
        for version in versions:
            per_version = stage / "python" / "lib" / f"python{version}" / "site-packages"
            target = stage / "python" if len(versions) == 1 else per_version
            install_for(wheel, version, arch, target)
        shutil.copyfile(WRAPPER, stage / "hoptrace-exec-wrapper")
        (stage / "hoptrace-exec-wrapper").chmod(0o755)
        unzipped = write_zip(stage, out)
    report = LayerReport(out, out.stat().st_size, unzipped, tuple(versions), arch)
    if unzipped > LAMBDA_UNZIPPED_LIMIT:
        raise LayerBuildError(f"{report.summary()}: over Lambda's 250 MiB unzipped limit")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the hoptrace Lambda layer zip.")
    parser.add_argument(
        "--python-version", action="append", dest="versions",
        help=f"a Lambda Python runtime ({', '.join(SUPPORTED_VERSIONS)}); repeat for several; default: this Python",
    )  # fmt: skip
    parser.add_argument("--arch", default="x86_64", choices=sorted(PLATFORMS), help="the functions' architecture")
    parser.add_argument("--wheel", type=Path, help="a hoptrace wheel to use instead of building this checkout")
    parser.add_argument("--out", type=Path, default=Path("hoptrace-layer.zip"), help="where to write the zip")
    args = parser.parse_args(argv)
    versions: list[str] = args.versions or [running_version()]
    try:
        report = build_layer(args.out, versions, args.arch, args.wheel)
    except LayerBuildError as exc:
        print(f"hoptrace layer build refused: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
