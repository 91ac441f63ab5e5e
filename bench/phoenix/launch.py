"""Start Arize Phoenix's server with its gRPC listener off; runs in Phoenix's own virtualenv.

Phoenix binds its OTLP/gRPC port on every interface (``[::]``) and has no setting to bind it
elsewhere; the benchmark feeds Phoenix over OTLP/HTTP only and keeps every server it starts on
loopback, so gRPC is switched off here (the ``disabled`` flag Phoenix itself uses when
read-only) and the HTTP server listens on ``PHOENIX_HOST`` (127.0.0.1). Imports nothing of
hoptrace: this file is run by Phoenix's interpreter, beside the benchmark, not inside it.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    from phoenix.server import grpc_server  # type: ignore[import-not-found]

    original = grpc_server.GrpcServer.__init__

    def without_grpc(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["disabled"] = True
        original(self, *args, **kwargs)

    grpc_server.GrpcServer.__init__ = without_grpc
    from phoenix.server.main import main as phoenix_main  # type: ignore[import-not-found]

    sys.argv = ["phoenix", "serve"]
    phoenix_main()


if __name__ == "__main__":
    main()
