/** Client configuration, its defaults and its validation. */
import { ConfigurationError } from './errors.js';

/**
 * Retry policy for transient failures. The n-th retry waits
 * min(initialDelayMs * 2^(n-1), maxDelayMs) plus a uniform random extra in
 * [0, jitterMs). A NOT_LEADER answer naming the leader is followed at once.
 */
export interface RetryConfig {
  /** Total attempts, the first included (default 10). */
  maxAttempts?: number;
  /** Default 100 ms. */
  initialDelayMs?: number;
  /** Default 5000 ms. */
  maxDelayMs?: number;
  /** Default 100 ms; 0 disables jitter. */
  jitterMs?: number;
}

export interface ClientConfig {
  /** Client (gRPC) addresses, host:port, of some cluster members; the rest come from the cluster view. */
  nodes: string[];
  /** Must equal the cluster's shard count (default 1024); checked at connect. */
  totalShards?: number;
  /** Bound on each call, all its attempts and backoff included (ms, default 5000). */
  timeoutMs?: number;
  /** Retry policy; defaults as documented on RetryConfig. */
  retry?: RetryConfig;
  /**
   * Bound on this client's attempts on the wire at once (default 512);
   * further calls wait in the client, within their timeout. A gRPC server
   * rejects calls beyond its pending-call limit, so unbounded fan-out
   * (Promise.all over thousands of puts) would fail instead of queueing.
   */
  maxInFlight?: number;
  /** Bound on the connect step (ms): first cluster view from some node (default: timeoutMs). */
  connectTimeoutMs?: number;
}

export interface NormalizedConfig {
  nodes: string[];
  totalShards: number;
  timeoutMs: number;
  connectTimeoutMs: number;
  maxInFlight: number;
  retry: Required<RetryConfig>;
}

export const DEFAULTS = {
  totalShards: 1024,
  timeoutMs: 5000,
  maxInFlight: 512,
  retry: { maxAttempts: 10, initialDelayMs: 100, maxDelayMs: 5000, jitterMs: 100 },
} as const;

function positiveInt(v: unknown, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw new ConfigurationError(`norikv: ${name} must be an integer in 1..${max}, got ${String(v)}`, {
      code: 'INVALID_ARGUMENT',
    });
  }
  return v;
}

function nonNegative(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new ConfigurationError(`norikv: ${name} must be a number >= 0, got ${String(v)}`, { code: 'INVALID_ARGUMENT' });
  }
  return v;
}

/** Checks a config and fills in defaults; throws ConfigurationError naming the bad field. */
export function normalizeConfig(c: ClientConfig): NormalizedConfig {
  if (c === null || typeof c !== 'object') {
    throw new ConfigurationError('norikv: createClient needs a config object with nodes', { code: 'INVALID_ARGUMENT' });
  }
  if (!Array.isArray(c.nodes) || c.nodes.length === 0) {
    throw new ConfigurationError('norikv: config.nodes must list at least one node address (host:port)', {
      code: 'INVALID_ARGUMENT',
    });
  }
  const nodes = c.nodes.map((n, i) => {
    if (typeof n !== 'string' || !/^.+:\d{1,5}$/.test(n)) {
      throw new ConfigurationError(`norikv: config.nodes[${i}] must be host:port, got ${JSON.stringify(n)}`, {
        code: 'INVALID_ARGUMENT',
      });
    }
    const port = Number(n.slice(n.lastIndexOf(':') + 1));
    if (port < 1 || port > 65535) {
      throw new ConfigurationError(`norikv: config.nodes[${i}] has port ${port}, want 1..65535`, {
        code: 'INVALID_ARGUMENT',
      });
    }
    return n;
  });
  const r = c.retry ?? {};
  const retry: Required<RetryConfig> = {
    maxAttempts: positiveInt(r.maxAttempts ?? DEFAULTS.retry.maxAttempts, 'retry.maxAttempts', 1000),
    initialDelayMs: nonNegative(r.initialDelayMs ?? DEFAULTS.retry.initialDelayMs, 'retry.initialDelayMs'),
    maxDelayMs: nonNegative(r.maxDelayMs ?? DEFAULTS.retry.maxDelayMs, 'retry.maxDelayMs'),
    jitterMs: nonNegative(r.jitterMs ?? DEFAULTS.retry.jitterMs, 'retry.jitterMs'),
  };
  if (retry.maxDelayMs < retry.initialDelayMs) retry.maxDelayMs = retry.initialDelayMs;
  const timeoutMs = positiveInt(c.timeoutMs ?? DEFAULTS.timeoutMs, 'timeoutMs');
  return {
    nodes: [...new Set(nodes)],
    totalShards: positiveInt(c.totalShards ?? DEFAULTS.totalShards, 'totalShards', 0x7fffffff),
    timeoutMs,
    connectTimeoutMs: positiveInt(c.connectTimeoutMs ?? timeoutMs, 'connectTimeoutMs'),
    maxInFlight: positiveInt(c.maxInFlight ?? DEFAULTS.maxInFlight, 'maxInFlight', 1 << 20),
    retry,
  };
}
