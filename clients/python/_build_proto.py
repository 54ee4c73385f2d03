"""Generate the norikv.v1 protobuf and gRPC Python modules from the project's proto.

Used by setup.py (at build time, into the wheel's build directory) and by
run-tests.sh (into src/ so that mypy can check the package in place). The
generated files are never committed: the single source of the client API is
proto/norikv/v1/norikv.proto at the repository root.

Where the .proto is looked for, in order:
  1. $NORIKV_PROTO_DIR/norikv/v1/norikv.proto
  2. <this dir>/proto/norikv/v1/norikv.proto  (an sdist carries a copy there)
  3. <this dir>/../../proto/norikv/v1/norikv.proto  (the repository checkout)
"""

from __future__ import annotations

import os
import re
import sys
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_REL = os.path.join("norikv", "v1", "norikv.proto")


def find_proto_root() -> str:
    """Return the include directory that holds norikv/v1/norikv.proto."""
    candidates: List[str] = []
    env = os.environ.get("NORIKV_PROTO_DIR")
    if env:
        candidates.append(env)
    candidates.append(os.path.join(HERE, "proto"))
    candidates.append(os.path.normpath(os.path.join(HERE, "..", "..", "proto")))
    for root in candidates:
        if os.path.isfile(os.path.join(root, PROTO_REL)):
            return root
    raise FileNotFoundError(
        "norikv.proto not found; looked for %s under: %s (set NORIKV_PROTO_DIR "
        "to the directory that contains norikv/v1/norikv.proto)"
        % (PROTO_REL, ", ".join(candidates))
    )


def generate(out_dir: str, proto_root: Optional[str] = None) -> List[str]:
    """Generate norikv/v1/{norikv_pb2.py,norikv_pb2.pyi,norikv_pb2_grpc.py,__init__.py}
    under out_dir. Returns the written paths."""
    from grpc_tools import protoc  # build-time dependency (grpcio-tools)

    try:
        from importlib.resources import files as _files

        well_known = str(_files("grpc_tools").joinpath("_proto"))
    except Exception:  # pragma: no cover - very old importlib
        import pkg_resources  # type: ignore

        well_known = pkg_resources.resource_filename("grpc_tools", "_proto")
    root = proto_root or find_proto_root()
    os.makedirs(out_dir, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        "-I" + root,
        "-I" + well_known,
        "--python_out=" + out_dir,
        "--pyi_out=" + out_dir,
        "--grpc_python_out=" + out_dir,
        PROTO_REL,
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError("protoc failed (exit %d) on %s" % (rc, os.path.join(root, PROTO_REL)))
    pkg = os.path.join(out_dir, "norikv", "v1")
    init = os.path.join(pkg, "__init__.py")
    with open(init, "w", encoding="utf-8") as f:
        f.write(
            '"""Generated norikv.v1 wire types (from proto/norikv/v1/norikv.proto). Do not edit."""\n'
        )
    return [
        init,
        os.path.join(pkg, "norikv_pb2.py"),
        os.path.join(pkg, "norikv_pb2.pyi"),
        os.path.join(pkg, "norikv_pb2_grpc.py"),
    ]


def gencode_protobuf_version(pb2_path: str) -> Optional[str]:
    """The protobuf runtime version the generated module requires (X.Y.Z), if stated."""
    with open(pb2_path, encoding="utf-8") as f:
        head = f.read(2000)
    m = re.search(r"Protobuf Python Version: (\d+\.\d+\.\d+)", head)
    return m.group(1) if m else None


def gencode_grpc_version(grpc_path: str) -> Optional[str]:
    """The grpcio version the generated _grpc module requires (X.Y.Z), if
    stated: it refuses to import under an older grpcio."""
    with open(grpc_path, encoding="utf-8") as f:
        head = f.read(2000)
    m = re.search(r"GRPC_GENERATED_VERSION = '(\d+\.\d+\.\d+)'", head)
    return m.group(1) if m else None


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "src")
    for p in generate(target):
        print(p)
