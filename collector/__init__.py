"""The workstation agent (README.md, "Collector").

gRPC's C core logs TLS and connection failures on stderr by itself, beside the one line the collector says about
them (infra/cli.py); it stays quiet unless GRPC_VERBOSITY asks otherwise. Set here, before any module of the
collector imports grpc, because the C core reads it once.
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
