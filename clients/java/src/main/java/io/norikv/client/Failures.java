package io.norikv.client;

import io.grpc.Metadata;
import io.grpc.Status;
import java.net.ConnectException;
import java.net.UnknownHostException;
import java.nio.channels.UnresolvedAddressException;

/**
 * What a failed attempt says about the request's fate, which decides whether
 * it may be sent again (CONTRACT.md, "Errors"), and the mapping of gRPC
 * answers to the SDK's exceptions.
 */
final class Failures {
  private Failures() {}

  static final Metadata.Key<String> LEADER_HINT = Metadata.Key.of("leader-hint", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> CURRENT_VERSION =
      Metadata.Key.of("current-version", Metadata.ASCII_STRING_MARSHALLER);

  enum Kind {
    /** The server decided (not found, CAS conflict, bad argument...): the same answer again. */
    PERMANENT,
    /** The node is not the leader; nothing was executed. Always safe to retry. */
    NOT_LEADER,
    /** The request never reached a server that could execute it, or was rejected before execution. */
    NOT_SENT,
    /** The request may have reached a leader and may yet be applied. */
    UNKNOWN
  }

  static Kind classify(Status st) {
    String msg = st.getDescription() == null ? "" : st.getDescription();
    switch (st.getCode()) {
      case UNAVAILABLE:
        if (msg.contains("NOT_LEADER")) {
          return Kind.NOT_LEADER;
        }
        if (connectFailed(st.getCause()) || msg.contains("Connection refused")) {
          return Kind.NOT_SENT;
        }
        // QUORUM_UNAVAILABLE (the leader may have proposed the entry),
        // shutdown, connection lost mid-call.
        return Kind.UNKNOWN;
      case RESOURCE_EXHAUSTED:
        // A message over gRPC's size limit fails the same way every time.
        if (msg.contains("larger than max") || msg.contains("exceeds maximum")) {
          return Kind.PERMANENT;
        }
        // The server's queues were full: rejected before proposal.
        return Kind.NOT_SENT;
      case DEADLINE_EXCEEDED:
      case ABORTED:
      case CANCELLED:
        // CANCELLED is reached only when the client is not closed: the
        // channel was shut down under the call.
        return Kind.UNKNOWN;
      default:
        return Kind.PERMANENT;
    }
  }

  /** Whether the cause chain says the TCP connection could not be made. */
  private static boolean connectFailed(Throwable t) {
    for (int i = 0; t != null && i < 8; i++, t = t.getCause()) {
      if (t instanceof ConnectException || t instanceof UnknownHostException
          || t instanceof UnresolvedAddressException) {
        return true;
      }
    }
    return false;
  }

  /** Whether the failure says the node itself is unreachable, so that the next attempt goes elsewhere. */
  static boolean nodeDown(Status st, Kind k) {
    if (st.getCode() != Status.Code.UNAVAILABLE && st.getCode() != Status.Code.CANCELLED) {
      return false;
    }
    String msg = st.getDescription() == null ? "" : st.getDescription();
    if (k == Kind.NOT_LEADER || msg.contains("QUORUM_UNAVAILABLE")) {
      return false;
    }
    return k == Kind.NOT_SENT || k == Kind.UNKNOWN;
  }

  /** Whether an attempt that failed so may be sent again; writeSafe: a duplicate is impossible or harmless. */
  static boolean mayRetry(Kind k, boolean writeSafe) {
    switch (k) {
      case NOT_LEADER:
      case NOT_SENT:
        return true;
      case UNKNOWN:
        return writeSafe;
      default:
        return false;
    }
  }

  static String hint(Metadata trailers) {
    if (trailers == null) {
      return null;
    }
    String h = trailers.get(LEADER_HINT);
    return h == null || h.isEmpty() ? null : h.trim();
  }

  /** The SDK exception for a gRPC answer. */
  static NoriKVException toException(String op, String node, Status st, Metadata trailers, int attempts) {
    String desc = st.getDescription() == null ? "" : st.getDescription();
    StringBuilder m = new StringBuilder(op);
    if (node != null) {
      m.append(" on ").append(node);
    }
    m.append(": ").append(st.getCode());
    if (!desc.isEmpty()) {
      m.append(": ").append(desc);
    }
    if (attempts > 1) {
      m.append(" (after ").append(attempts).append(" attempts)");
    }
    Throwable cause = st.asRuntimeException(trailers);
    switch (st.getCode()) {
      case NOT_FOUND:
        return new KeyNotFoundException(m.toString(), st.getCode(), node, attempts, cause);
      case FAILED_PRECONDITION:
        if (desc.startsWith("version mismatch")) {
          Version cur = null;
          String raw = trailers == null ? null : trailers.get(CURRENT_VERSION);
          if (raw != null) {
            try {
              cur = Version.parse(raw);
              m.append(" (current version ").append(cur).append(')');
            } catch (IllegalArgumentException e) {
              cur = null;
            }
          }
          return new VersionMismatchException(m.toString(), cur, node, attempts, cause);
        }
        return new NoriKVException(m.toString(), st.getCode(), node, attempts, cause);
      case ALREADY_EXISTS:
        return new AlreadyExistsException(m.toString(), st.getCode(), node, attempts, cause);
      case UNAVAILABLE:
        if (desc.contains("NOT_LEADER")) {
          return new NotLeaderException(m.toString(), hint(trailers), node, attempts, cause);
        }
        return new ConnectionException(m.toString(), st.getCode(), node, attempts, cause);
      case DEADLINE_EXCEEDED:
        return new DeadlineExceededException(m.toString(), st.getCode(), node, attempts, cause);
      case RESOURCE_EXHAUSTED:
        return new ResourceExhaustedException(m.toString(), st.getCode(), node, attempts, cause);
      case ABORTED:
        return new ConnectionException(m.toString(), st.getCode(), node, attempts, cause);
      case INVALID_ARGUMENT:
        return new InvalidArgumentException(m.toString(), st.getCode(), node, attempts, cause);
      case UNIMPLEMENTED:
        return new UnimplementedException(m.toString(), st.getCode(), node, attempts, cause);
      default:
        return new NoriKVException(m.toString(), st.getCode(), node, attempts, cause);
    }
  }

  /** The exception for a call whose own deadline passed, keeping the last answer's details. */
  static NoriKVException deadline(String op, long timeoutNanos, NoriKVException last, int attempts) {
    StringBuilder m = new StringBuilder(op).append(": no answer within the call's timeout of ")
        .append(timeoutNanos / 1_000_000).append(" ms");
    if (attempts > 0) {
      m.append(" (").append(attempts).append(attempts == 1 ? " attempt" : " attempts");
      if (last != null) {
        m.append("; last answer: ").append(last.getMessage());
      }
      m.append(')');
    }
    return new DeadlineExceededException(m.toString(), Status.Code.DEADLINE_EXCEEDED,
        last == null ? null : last.getNode(), attempts, last);
  }
}
