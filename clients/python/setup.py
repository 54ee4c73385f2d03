"""Build hook: the norikv.v1 protobuf/gRPC modules are generated from the
project's .proto when the package is built (see _build_proto.py); nothing
generated is committed. Everything else is declared in pyproject.toml."""

import os
import shutil
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py
from setuptools.command.sdist import sdist as _sdist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _build_proto  # noqa: E402


def _runtime_requirements():
    """grpcio and xxhash, plus the protobuf runtime that the generated code
    needs: at least the version of the protoc bundled in the grpcio-tools
    used for this build (the generated module checks it on import), and at
    least that grpcio-tools' grpcio (the generated _grpc module checks it on
    import too: an environment holding an older grpcio must be upgraded)."""
    reqs = ["xxhash>=3.0"]
    tmp = tempfile.mkdtemp(prefix="norikv-gen-")
    try:
        _build_proto.generate(tmp)
        ver = _build_proto.gencode_protobuf_version(
            os.path.join(tmp, "norikv", "v1", "norikv_pb2.py")
        )
        gver = _build_proto.gencode_grpc_version(
            os.path.join(tmp, "norikv", "v1", "norikv_pb2_grpc.py")
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    reqs.append("protobuf>=%s" % ver if ver else "protobuf>=5.26")
    reqs.append("grpcio>=%s" % gver if gver else "grpcio>=1.62")
    return reqs


class build_py(_build_py):
    def run(self):
        super().run()
        _build_proto.generate(self.build_lib)


class sdist(_sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        # The .proto lives outside this directory in the repository; carry a
        # copy so that the sdist builds on its own.
        src = os.path.join(_build_proto.find_proto_root(), _build_proto.PROTO_REL)
        dst = os.path.join(base_dir, "proto", _build_proto.PROTO_REL)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)


setup(
    cmdclass={"build_py": build_py, "sdist": sdist},
    install_requires=_runtime_requirements(),
)
