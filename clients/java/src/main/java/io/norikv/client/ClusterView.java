package io.norikv.client;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The cluster's layout as the client last learned it (Meta.WatchCluster):
 * its nodes, and every shard's replicas with the leader flagged. The epoch
 * increases exactly when the view changes, as counted by the node that served
 * it. Immutable.
 */
public final class ClusterView {
  private final long epoch;
  private final List<Node> nodes;
  private final List<Shard> shards;

  public ClusterView(long epoch, List<Node> nodes, List<Shard> shards) {
    this.epoch = epoch;
    this.nodes = Collections.unmodifiableList(new ArrayList<>(nodes));
    this.shards = Collections.unmodifiableList(new ArrayList<>(shards));
  }

  public long getEpoch() {
    return epoch;
  }

  public List<Node> getNodes() {
    return nodes;
  }

  public List<Shard> getShards() {
    return shards;
  }

  /** A copy with another epoch and the same content. */
  ClusterView withEpoch(long e) {
    return new ClusterView(e, nodes, shards);
  }

  /** Whether the two views describe the same cluster, epochs aside. */
  boolean sameContent(ClusterView o) {
    return nodes.equals(o.nodes) && shards.equals(o.shards);
  }

  @Override
  public String toString() {
    return "ClusterView{epoch " + epoch + ", " + nodes.size() + " nodes, " + shards.size() + " shards}";
  }

  /** One member of the cluster. */
  public static final class Node {
    private final String id;
    private final String addr;
    private final String role;

    public Node(String id, String addr, String role) {
      this.id = id;
      this.addr = addr;
      this.role = role;
    }

    public String getId() {
      return id;
    }

    /** The node's client (gRPC) address, host:port. */
    public String getAddr() {
      return addr;
    }

    /** Membership state: "alive", "suspect", "dead" or "left". */
    public String getRole() {
      return role;
    }

    /** A node counts as present while alive or suspect (or with no role given). */
    public boolean isPresent() {
      return role.isEmpty() || role.equals("alive") || role.equals("suspect");
    }

    @Override
    public boolean equals(Object o) {
      if (!(o instanceof Node)) {
        return false;
      }
      Node n = (Node) o;
      return id.equals(n.id) && addr.equals(n.addr) && role.equals(n.role);
    }

    @Override
    public int hashCode() {
      return (id.hashCode() * 31 + addr.hashCode()) * 31 + role.hashCode();
    }

    @Override
    public String toString() {
      return id + "@" + addr + "(" + role + ")";
    }
  }

  /** A shard and its replicas. */
  public static final class Shard {
    private final int id;
    private final List<Replica> replicas;

    public Shard(int id, List<Replica> replicas) {
      this.id = id;
      this.replicas = Collections.unmodifiableList(new ArrayList<>(replicas));
    }

    public int getId() {
      return id;
    }

    public List<Replica> getReplicas() {
      return replicas;
    }

    /** The node ID of the replica flagged leader, or "" when none is. */
    public String leaderNodeId() {
      for (Replica r : replicas) {
        if (r.isLeader()) {
          return r.getNodeId();
        }
      }
      return "";
    }

    @Override
    public boolean equals(Object o) {
      if (!(o instanceof Shard)) {
        return false;
      }
      Shard s = (Shard) o;
      return id == s.id && replicas.equals(s.replicas);
    }

    @Override
    public int hashCode() {
      return id * 31 + replicas.hashCode();
    }

    @Override
    public String toString() {
      return "shard " + id + " " + replicas;
    }
  }

  /** One replica of a shard. */
  public static final class Replica {
    private final String nodeId;
    private final boolean leader;

    public Replica(String nodeId, boolean leader) {
      this.nodeId = nodeId;
      this.leader = leader;
    }

    public String getNodeId() {
      return nodeId;
    }

    public boolean isLeader() {
      return leader;
    }

    @Override
    public boolean equals(Object o) {
      if (!(o instanceof Replica)) {
        return false;
      }
      Replica r = (Replica) o;
      return nodeId.equals(r.nodeId) && leader == r.leader;
    }

    @Override
    public int hashCode() {
      return nodeId.hashCode() * 2 + (leader ? 1 : 0);
    }

    @Override
    public String toString() {
      return nodeId + (leader ? "*" : "");
    }
  }
}
