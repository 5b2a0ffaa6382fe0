"""The committed gRPC stubs are exactly what the proto generates."""

from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[2]


def test_committed_grpc_stubs_match_the_proto(tmp_path):
    proto = "gateway/proto/ingest.proto"
    include = str(Path(protoc.__file__).parent / "_proto")
    args = ["protoc", f"-I{REPO}", f"-I{include}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    assert protoc.main([*args, f"--grpc_python_out={tmp_path}", str(REPO / proto)]) == 0
    for name in ("ingest_pb2.py", "ingest_pb2.pyi", "ingest_pb2_grpc.py"):
        generated = (tmp_path / "gateway" / "proto" / name).read_text()
        assert generated == (REPO / "gateway" / "proto" / name).read_text(), f"{name} is stale: regenerate it"
