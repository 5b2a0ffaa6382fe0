"""The committed gRPC stubs are exactly what the protos generate."""

from pathlib import Path

import pytest
from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[2]
PROTOS = sorted(p.stem for p in (REPO / "schemas" / "wire").glob("*.proto"))


@pytest.mark.parametrize("stem", PROTOS)
def test_committed_grpc_stubs_match_the_proto(tmp_path, stem):
    include = str(Path(protoc.__file__).parent / "_proto")
    args = ["protoc", f"-I{REPO}", f"-I{include}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    assert protoc.main([*args, f"--grpc_python_out={tmp_path}", str(REPO / "schemas" / "wire" / f"{stem}.proto")]) == 0
    for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
        name = f"{stem}{suffix}"
        generated = (tmp_path / "schemas" / "wire" / name).read_text()
        assert generated == (REPO / "schemas" / "wire" / name).read_text(), f"{name} is stale: regenerate it"
