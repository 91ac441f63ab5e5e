"""Zero-code tracing: a handler that loads the user's handler named in ``HOPTRACE_HANDLER``.

Set the function's handler to ``hoptrace.instrumentation.aws_lambda.wrapper.handler`` and
``HOPTRACE_HANDLER`` to the original (``module.function``, ``dir/module.function``), or let
the ``AWS_LAMBDA_EXEC_WRAPPER`` script (``hoptrace-exec-wrapper``) do both. Tracing is set up
before the user's module is imported, so its module-level boto3 clients are traced.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable

from ..guard import guard

HANDLER_VARIABLE = "HOPTRACE_HANDLER"


class HandlerNotFound(Exception):
    """The original handler could not be located; says which variable to fix."""


def load_handler(spec: str) -> Callable[..., Any]:
    """Import ``module.function`` the way the Lambda Python runtime does (``/`` means a package)."""
    if not spec or "." not in spec:
        raise HandlerNotFound(
            f"{HANDLER_VARIABLE}={spec!r} is not a handler name: expected 'module.function' "
            "(for example 'app.handler' or 'src/app.handler')"
        )
    module_name, _, function_name = spec.rpartition(".")
    module = importlib.import_module(module_name.replace("/", "."))
    try:
        fn: Callable[..., Any] = getattr(module, function_name)
    except AttributeError:
        raise HandlerNotFound(
            f"module {module_name!r} has no function {function_name!r} ({HANDLER_VARIABLE}={spec!r})"
        ) from None
    return fn


def _build() -> Callable[..., Any]:
    from .handler import wrap_handler

    with guard("wrapper.init"):
        from .. import setup

        setup.init()
    spec = os.environ.get(HANDLER_VARIABLE, "")
    # Import errors are the user's and must look exactly as without hoptrace: not guarded.
    original = load_handler(spec)
    return original if getattr(original, "__wrapped_by_hoptrace__", False) else wrap_handler(original)


_handler: Callable[..., Any] | None = None


def handler(event: Any, context: Any = None) -> Any:
    """The Lambda entry point of the zero-code path."""
    global _handler
    if _handler is None:
        _handler = _build()
    return _handler(event, context)


if os.environ.get(HANDLER_VARIABLE) and os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    # In Lambda, load during the init phase (as the runtime would) rather than on first call.
    _handler = _build()
