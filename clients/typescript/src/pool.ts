/**
 * One pooled gRPC channel per node address. grpc-js multiplexes every
 * concurrent call of a channel over one HTTP/2 connection, so one per node
 * suffices. The pool holds the configured seeds, the nodes of the current
 * view and hinted leaders; prune() closes the rest.
 */
import * as grpc from '@grpc/grpc-js';
import { ClientClosedError } from './errors.js';

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // grpc-js's default reconnect backoff grows to two minutes; a node that
  // restarts after a crash should be found again within seconds.
  'grpc.initial_reconnect_backoff_ms': 50,
  'grpc.max_reconnect_backoff_ms': 2000,
  // Room for the 2 MiB request limit plus framing: the server, not the
  // client, is the one to judge a request's size and name the limit.
  'grpc.max_send_message_length': 8 * 1024 * 1024,
  'grpc.max_receive_message_length': 8 * 1024 * 1024,
  // A dead peer behind an open socket (the watch stream is always open) is
  // noticed within 40 s. The server refuses pings more often than every
  // 10 s (too_many_pings), so stay well above that.
  'grpc.keepalive_time_ms': 30000,
  'grpc.keepalive_timeout_ms': 10000,
  'grpc.keepalive_permit_without_calls': 0,
};

export class NodeConn {
  readonly addr: string;
  readonly client: grpc.Client;
  /** When a call last found the node unreachable (ms since epoch), 0 never. */
  failedAt = 0;
  closed = false;

  constructor(addr: string) {
    this.addr = addr;
    this.client = new grpc.Client(addr, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  recentlyFailed(now = Date.now()): boolean {
    return this.failedAt !== 0 && now - this.failedAt < 1000;
  }

  usable(): boolean {
    const s = this.client.getChannel().getConnectivityState(false);
    return s !== grpc.connectivityState.TRANSIENT_FAILURE && s !== grpc.connectivityState.SHUTDOWN;
  }

  close(): void {
    this.closed = true;
    this.client.close();
  }
}

export class Pool {
  private conns = new Map<string, NodeConn>();
  private closed = false;

  get(addr: string): NodeConn {
    if (this.closed) throw new ClientClosedError();
    let nc = this.conns.get(addr);
    if (nc === undefined) {
      nc = new NodeConn(addr);
      this.conns.set(addr, nc);
    }
    return nc;
  }

  /** Closes the connections whose address is not in keep. */
  prune(keep: Set<string>): void {
    for (const [addr, nc] of this.conns) {
      if (!keep.has(addr)) {
        this.conns.delete(addr);
        nc.close();
      }
    }
  }

  stats(): { activeConnections: number; totalConnections: number } {
    let active = 0;
    for (const nc of this.conns.values()) if (nc.usable()) active++;
    return { activeConnections: active, totalConnections: this.conns.size };
  }

  close(): void {
    this.closed = true;
    for (const nc of this.conns.values()) nc.close();
    this.conns.clear();
  }
}
