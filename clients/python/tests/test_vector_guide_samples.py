"""The vector samples of the NoriKV Python API guide, and the vector API's
semantics, against a real norikv-server --ephemeral.

The samples are copied as the guide shows them. The only changes: the node
address is the ephemeral server's, sample fragments get the variables and
helpers the guide assumes (client, get_embedding, embedding, query), and
assertions follow each sample.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from typing import Any, List

import pytest

from norikv import (
    AlreadyExistsError,
    ClientConfig,
    ConsistencyLevel,
    DistanceFunction,
    InvalidArgumentError,
    KeyNotFoundError,
    NoriKVClient,
    Version,
    VectorGetOptions,
    VectorIndexType,
)
from norikv.testing import EphemeralServer


@pytest.fixture
async def client(server: EphemeralServer) -> Any:
    config = ClientConfig(nodes=[server.address], total_shards=1024, timeout=5000)
    async with NoriKVClient(config) as c:
        yield c


async def get_embedding(text: str) -> List[float]:
    """Stands in for an embedding model: 1536 values derived from the text."""
    return [((ord(text[i % len(text)]) * (i + 7)) % 97) / 97 for i in range(1536)]


async def test_vector_guide_samples_in_order(client: NoriKVClient, capsys: pytest.CaptureFixture[str]) -> None:
    # Creating a Vector Index
    from norikv import DistanceFunction, VectorIndexType

    created = await client.vector_create_index(
        "embeddings",                    # namespace
        1536,                            # dimensions
        DistanceFunction.COSINE,         # distance function
        VectorIndexType.HNSW,            # index type
    )

    if created:
        print("Index created")
    else:
        print("Index already exists")
    assert created is True

    # With Options
    from norikv import CreateVectorIndexOptions

    options = CreateVectorIndexOptions(
        idempotency_key="create-embeddings-index",
    )

    created = await client.vector_create_index(
        "embeddings",
        1536,
        DistanceFunction.COSINE,
        VectorIndexType.HNSW,
        options,
    )
    assert created is False  # it exists with the same parameters

    # Inserting Vectors
    embedding = await get_embedding("Hello world")

    version = await client.vector_insert(
        "embeddings",    # namespace
        "doc-123",       # unique ID
        embedding,       # list[float]
    )

    print(f"Inserted at version: {version}")
    assert isinstance(version, Version) and version.index > 0

    # With Options
    from norikv import VectorInsertOptions

    options2 = VectorInsertOptions(
        idempotency_key="insert-doc-123",
    )

    version = await client.vector_insert("embeddings", "doc-123", embedding, options2)
    again = await client.vector_insert("embeddings", "doc-123", embedding, options2)
    assert again == version  # a retry answers the first result

    # Searching for Similar Vectors
    query = await get_embedding("Find similar documents")

    result = await client.vector_search(
        "embeddings",    # namespace
        query,           # query vector
        10,              # k nearest neighbors
    )

    print(f"Search took {result.search_time_us}us")

    for match in result.matches:
        print(f"ID: {match.id}, Distance: {match.distance}")
    assert [m.id for m in result.matches] == ["doc-123"]

    # With Options
    from norikv import VectorSearchOptions, VectorSearchResult

    options3 = VectorSearchOptions(
        include_vectors=True,  # include vector data in results
    )

    result2: VectorSearchResult = await client.vector_search(
        "embeddings",
        query,
        10,
        options3,
    )

    for match in result2.matches:
        print(f"ID: {match.id}, Distance: {match.distance}")
        if match.vector:
            print(f"Vector dims: {len(match.vector)}")

    # Getting a Vector by ID
    vector = await client.vector_get("embeddings", "doc-123")

    if vector:
        print(f"Vector has {len(vector)} dimensions")
    else:
        print("Vector not found")
    assert vector is not None and len(vector) == 1536

    # Deleting Vectors
    deleted = await client.vector_delete("embeddings", "doc-123")

    if deleted:
        print("Vector deleted")
    else:
        print("Vector not found")
    assert deleted is True

    # With Options
    from norikv import VectorDeleteOptions

    options4 = VectorDeleteOptions(
        idempotency_key="delete-doc-123",
    )

    deleted = await client.vector_delete("embeddings", "doc-123", options4)
    assert deleted is False
    assert await client.vector_get("embeddings", "doc-123") is None

    # Dropping a Vector Index
    dropped = await client.vector_drop_index("embeddings")

    if dropped:
        print("Index dropped")
    else:
        print("Index did not exist")
    assert dropped is True

    out = capsys.readouterr().out
    for want in ["Index created", "Inserted at version: ", "Search took ", "ID: doc-123, Distance: ",
                 "Vector dims: 1536", "Vector has 1536 dimensions", "Vector deleted", "Index dropped"]:
        assert want in out, (want, out)


async def test_complete_vector_example(server: EphemeralServer, capsys: pytest.CaptureFixture[str]) -> None:
    async def get_product_embedding(text: str) -> list[float]:
        # Call your embedding model here
        return [0.0] * 768

    async def main() -> None:
        config = ClientConfig(
            nodes=[server.address],
            total_shards=1024,
        )

        async with NoriKVClient(config) as client:
            # Create index
            await client.vector_create_index(
                "products",
                768,
                DistanceFunction.COSINE,
                VectorIndexType.HNSW,
            )

            # Insert product embeddings
            product_embedding = await get_product_embedding("Red running shoes")
            await client.vector_insert("products", "prod-001", product_embedding)

            # Search for similar products
            query_embedding = await get_product_embedding("Athletic footwear")
            results = await client.vector_search("products", query_embedding, 5)

            print("Similar products:")
            for match in results.matches:
                print(f"  {match.id} (distance: {match.distance:.4f})")

            # Cleanup
            await client.vector_delete("products", "prod-001")
            await client.vector_drop_index("products")

    await main()
    out = capsys.readouterr().out
    assert "Similar products:\n  prod-001 (distance: 1.0000)" in out, out


def l2(a: List[float], b: List[float]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


async def test_vector_search_equals_brute_force_and_errors_name_the_problem(client: NoriKVClient) -> None:
    ns = "py-" + uuid.uuid4().hex[:10]
    assert await client.vector_create_index(ns, 6, DistanceFunction.EUCLIDEAN, VectorIndexType.BRUTE_FORCE)
    with pytest.raises(AlreadyExistsError):
        await client.vector_create_index(ns, 7, DistanceFunction.EUCLIDEAN, VectorIndexType.BRUTE_FORCE)
    rng = random.Random(9)
    data = {"v%d" % i: [rng.gauss(0, 1) for _ in range(6)] for i in range(60)}
    await asyncio.gather(*(client.vector_insert(ns, i, v) for i, v in data.items()))
    q = [rng.gauss(0, 1) for _ in range(6)]
    res = await client.vector_search(ns, q, 5)
    want = sorted(data, key=lambda i: l2(q, data[i]))[:5]
    assert [m.id for m in res.matches] == want
    for m in res.matches:
        assert abs(m.distance - l2(q, data[m.id])) < 1e-4 and m.vector is None
    got = await client.vector_get(ns, "v3", VectorGetOptions(consistency=ConsistencyLevel.LINEARIZABLE))
    assert got is not None and all(abs(x - y) < 1e-6 for x, y in zip(got, data["v3"]))
    with pytest.raises(InvalidArgumentError) as e:
        await client.vector_insert(ns, "bad", [1.0, 2.0])
    assert "dimensions" in str(e.value)
    with pytest.raises(InvalidArgumentError) as e:
        await client.vector_insert(ns, "bad", [1.0, float("nan"), 0, 0, 0, 0])
    assert "NaN" in str(e.value)
    with pytest.raises(InvalidArgumentError) as e:
        await client.vector_search(ns, q, 0)
    assert "k is 0" in str(e.value)
    assert await client.vector_drop_index(ns)
    with pytest.raises(KeyNotFoundError):
        await client.vector_search(ns, q, 1)
    with pytest.raises(KeyNotFoundError):
        await client.vector_insert(ns, "x", q)
