package io.norikv.client;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * Tells a topology listener that the cluster view changed.
 *
 * <p>Epochs are those of the node that served the view. They increase with
 * every change while the client follows one node; after the client moves to
 * another node, or its node restarts, the current epoch may be lower than the
 * previous one. An event is sent only when the view's content changed.
 */
public final class TopologyChangeEvent {
  private final long previousEpoch;
  private final long currentEpoch;
  private final List<String> addedNodes;
  private final List<String> removedNodes;
  private final Map<Integer, String> leaderChanges;
  private final ClusterView view;

  private TopologyChangeEvent(long prev, long cur, List<String> added, List<String> removed,
      Map<Integer, String> leaders, ClusterView view) {
    this.previousEpoch = prev;
    this.currentEpoch = cur;
    this.addedNodes = Collections.unmodifiableList(added);
    this.removedNodes = Collections.unmodifiableList(removed);
    this.leaderChanges = Collections.unmodifiableMap(leaders);
    this.view = view;
  }

  /** The event for the change from prev (null: the first view) to cur. */
  static TopologyChangeEvent diff(ClusterView prev, ClusterView cur) {
    Set<String> before = new HashSet<>();
    Map<Integer, String> prevLeader = new HashMap<>();
    if (prev != null) {
      for (ClusterView.Node n : prev.getNodes()) {
        if (n.isPresent()) {
          before.add(n.getId());
        }
      }
      for (ClusterView.Shard s : prev.getShards()) {
        prevLeader.put(s.getId(), s.leaderNodeId());
      }
    }
    List<String> added = new ArrayList<>();
    Set<String> after = new HashSet<>();
    for (ClusterView.Node n : cur.getNodes()) {
      if (n.isPresent()) {
        after.add(n.getId());
        if (!before.contains(n.getId())) {
          added.add(n.getId());
        }
      }
    }
    List<String> removed = new ArrayList<>();
    for (String id : before) {
      if (!after.contains(id)) {
        removed.add(id);
      }
    }
    Collections.sort(added);
    Collections.sort(removed);
    Map<Integer, String> leaders = new TreeMap<>();
    for (ClusterView.Shard s : cur.getShards()) {
      String l = s.leaderNodeId();
      String old = prevLeader.get(s.getId());
      if ((old != null && !old.equals(l)) || (old == null && !l.isEmpty())) {
        leaders.put(s.getId(), l);
      }
    }
    return new TopologyChangeEvent(prev == null ? 0 : prev.getEpoch(), cur.getEpoch(), added, removed, leaders, cur);
  }

  /** The epoch before the change; 0 for the first view the client learns. */
  public long getPreviousEpoch() {
    return previousEpoch;
  }

  public long getCurrentEpoch() {
    return currentEpoch;
  }

  /** IDs of nodes now present (alive or suspect) that were not before, sorted. */
  public List<String> getAddedNodes() {
    return addedNodes;
  }

  /** IDs of nodes present before that are now dead, left or gone, sorted. */
  public List<String> getRemovedNodes() {
    return removedNodes;
  }

  /** Each shard whose leader changed, to the new leader's node ID ("" when none is known). */
  public Map<Integer, String> getLeaderChanges() {
    return leaderChanges;
  }

  /** The new view. */
  public ClusterView getView() {
    return view;
  }

  @Override
  public String toString() {
    return "TopologyChangeEvent{epoch " + previousEpoch + " -> " + currentEpoch + ", added " + addedNodes
        + ", removed " + removedNodes + ", " + leaderChanges.size() + " leader changes}";
  }
}
