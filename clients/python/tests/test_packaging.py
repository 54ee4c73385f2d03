"""The tests exercise the installed package (what `pip install ./clients/python`
produces), which carries py.typed and the norikv.v1 modules generated at build
time from the repository's proto/norikv/v1/norikv.proto."""

from __future__ import annotations

import os

import norikv
from conftest import REPO_ROOT
from norikv.v1 import norikv_pb2 as pb


def test_tests_import_the_installed_package_not_the_source_tree() -> None:
    if os.environ.get("PYTHONPATH", "").strip():
        return  # a developer pointing PYTHONPATH at src/ on purpose
    src = os.path.join(REPO_ROOT, "clients", "python", "src")
    assert not os.path.abspath(norikv.__file__).startswith(src + os.sep), norikv.__file__


def test_package_is_typed() -> None:
    assert os.path.isfile(os.path.join(os.path.dirname(norikv.__file__), "py.typed"))


def test_generated_code_comes_from_the_project_proto() -> None:
    assert pb.DESCRIPTOR.name == "norikv/v1/norikv.proto"
    assert pb.DESCRIPTOR.package == "norikv.v1"
    with open(os.path.join(REPO_ROOT, "proto", "norikv", "v1", "norikv.proto"), encoding="utf-8") as f:
        proto = f.read()
    for name in pb.DESCRIPTOR.message_types_by_name:
        assert "message %s {" % name in proto, name
    put = pb.DESCRIPTOR.message_types_by_name["PutRequest"]
    assert {f.name: f.number for f in put.fields} == {
        "key": 1, "value": 2, "ttl_ms": 3, "idempotency_key": 4, "if_match": 5, "if_not_exists": 6,
    }
    services = pb.DESCRIPTOR.services_by_name
    assert [m.name for m in services["Kv"].methods] == ["Put", "Get", "Delete", "Range", "Batch", "Watch"]
    assert [m.name for m in services["Meta"].methods] == ["WatchCluster", "WatchEvents"]
    assert services["Meta"].methods[0].server_streaming


def test_public_api_names() -> None:
    for name in (
        "Client", "NoriKVClient", "ClientConfig", "RetryConfig", "PutOptions", "GetOptions",
        "DeleteOptions", "ConsistencyLevel", "Version", "KeyNotFoundError", "VersionMismatchError",
        "AlreadyExistsError", "ConnectionError", "NoriKVError",
    ):
        assert name in norikv.__all__ and hasattr(norikv, name), name
