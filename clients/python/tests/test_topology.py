"""ClusterView handling: conversion from the wire message, diffs reported to
topology callbacks, and the router's leader map, candidates and hints."""

from __future__ import annotations

import time

from inject import make_view
from norikv import get_shard_for_key
from norikv.topology import Router, diff_views, view_from_proto

NODES3 = [("n1", "10.0.0.1:9001", "alive"), ("n2", "10.0.0.2:9001", "alive"), ("n3", "10.0.0.3:9001", "alive")]


def leader_mod3(s: int) -> str:
    return "n%d" % (s % 3 + 1)


def test_view_from_proto_keeps_nodes_shards_replicas_and_leaders() -> None:
    v = view_from_proto(make_view(4, NODES3, 16, leader_mod3))
    assert v.epoch == 4 and len(v.nodes) == 3 and len(v.shards) == 16
    assert v.shards[5].leader_id == "n3" and len(v.shards[5].replicas) == 3
    leader = v.leader_of(5)
    assert leader is not None and leader.addr == "10.0.0.3:9001"
    assert v.node("n9") is None


def test_router_routes_each_shard_to_the_leader_the_view_names() -> None:
    r = Router(["seed:9001"], 16)
    r.apply_view(view_from_proto(make_view(1, NODES3, 16, leader_mod3)))
    assert r.cached_leaders == 16 and r.total_nodes == 3
    for key in ("a", "user:1", "hello", "z" * 100):
        shard = get_shard_for_key(key, 16)
        assert r.shard_for(key.encode()) == shard
        assert r.route(shard) == "10.0.0.%d:9001" % (shard % 3 + 1)


def test_router_without_leader_rotates_over_live_nodes_then_seeds() -> None:
    r = Router(["seed:9001"], 8)
    assert r.route(3) == "seed:9001"
    nodes = [("n1", "a:1", "alive"), ("n2", "b:1", "dead"), ("n3", "c:1", "suspect")]
    r.apply_view(view_from_proto(make_view(2, nodes, 8, None)))
    assert r.cached_leaders == 0
    assert r.candidates() == ["a:1", "c:1", "seed:9001"]
    seen = [r.route(3) for _ in range(6)]
    assert set(seen) == {"a:1", "c:1", "seed:9001"}
    assert r.next_candidate(avoid="a:1") != "a:1"


def test_leader_hint_overrides_until_forgotten_or_a_new_view() -> None:
    r = Router(["seed:9001"], 8)
    r.apply_view(view_from_proto(make_view(1, NODES3, 8, leader_mod3)))
    r.learn_leader(2, "10.0.0.9:9001")
    assert r.route(2) == "10.0.0.9:9001"
    r.forget_leader(2, "10.0.0.1:9001")  # not the cached one: no effect
    assert r.route(2) == "10.0.0.9:9001"
    r.forget_leader(2, "10.0.0.9:9001")
    assert r.leader_addr(2) is None and r.cached_leaders == 7
    r.learn_leader(2, "10.0.0.9:9001")
    r.apply_view(view_from_proto(make_view(2, NODES3, 8, leader_mod3)))
    assert r.route(2) == "10.0.0.3:9001"


def test_stale_or_repeated_views_are_ignored() -> None:
    r = Router(["seed:9001"], 8)
    assert r.apply_view(view_from_proto(make_view(5, NODES3, 8, leader_mod3))) is not None
    assert r.apply_view(view_from_proto(make_view(5, NODES3[:1], 8, None))) is None
    assert r.apply_view(view_from_proto(make_view(3, NODES3[:1], 8, None))) is None
    assert r.view.epoch == 5 and len(r.view.nodes) == 3


def test_diff_reports_added_removed_roles_and_leader_moves() -> None:
    old = view_from_proto(make_view(3, NODES3, 4, leader_mod3))
    new_nodes = [("n1", "10.0.0.1:9001", "alive"), ("n2", "10.0.0.2:9001", "suspect"), ("n4", "10.0.0.4:9001", "alive")]
    new = view_from_proto(make_view(4, new_nodes, 4, lambda s: "n1" if s in (0, 3) else None,
                                    replicas=["n1", "n2", "n4"]))
    ev = diff_views(old, new)
    assert (ev.previous_epoch, ev.current_epoch) == (3, 4)
    assert ev.added_nodes == ["n4"] and ev.removed_nodes == ["n3"]
    assert ev.role_changes == {"n2": ("alive", "suspect")}
    # old leaders: 0->n1 1->n2 2->n3 3->n1 ; new: 0->n1 3->n1
    assert ev.leader_changes == {1: ("n2", None), 2: ("n3", None)}
    assert ev.view is new


def test_first_view_reports_every_node_as_added() -> None:
    r = Router(["seed:9001"], 4)
    ev = r.apply_view(view_from_proto(make_view(1, NODES3, 4, leader_mod3)))
    assert ev is not None and ev.previous_epoch == 0 and ev.added_nodes == ["n1", "n2", "n3"]


def test_addresses_that_refused_connections_are_passed_over_for_a_while() -> None:
    r = Router(["s1:1", "s2:1"], 8)
    nodes = [("n1", "a:1", "alive"), ("n2", "b:1", "alive")]
    r.apply_view(view_from_proto(make_view(1, nodes, 8, lambda s: "n1")))
    assert r.cached_leaders == 8
    t0 = time.monotonic()
    r.mark_down("a:1", now=t0)
    assert r.cached_leaders == 0, "a down node is no one's leader"
    picks = {r.next_candidate() for _ in range(12)}
    assert "a:1" not in picks and picks == {"b:1", "s1:1", "s2:1"}
    assert r.is_down("a:1", now=t0 + 0.5)
    assert not r.is_down("a:1", now=t0 + r.down_period_s + 0.01)
    # When every address is down, one is still returned.
    for a in ("a:1", "b:1", "s1:1", "s2:1"):
        r.mark_down(a)
    assert r.next_candidate() in {"a:1", "b:1", "s1:1", "s2:1"}
    # A leader hint naming an address brings it back at once.
    r.learn_leader(3, "b:1")
    assert not r.is_down("b:1") and r.route(3) == "b:1"


def test_any_replica_picks_live_replicas_of_the_shard_only() -> None:
    import random

    r = Router(["seed:9001"], 4)
    nodes = [("n1", "a:1", "alive"), ("n2", "b:1", "dead"), ("n3", "c:1", "alive"), ("n4", "d:1", "alive")]
    r.apply_view(view_from_proto(make_view(1, nodes, 4, lambda s: "n1", replicas=["n1", "n2", "n3"])))
    rng = random.Random(1)
    picks = {r.any_replica(2, rng) for _ in range(50)}
    assert picks == {"a:1", "c:1"}  # n2 is dead, n4 holds no replica
    r.mark_down("c:1")
    assert {r.any_replica(2, rng) for _ in range(20)} == {"a:1"}
    assert Router(["seed:9001"], 4).any_replica(0, rng) is None
