/**
 * Typed errors, mirroring the Go and Python SDKs (CONTRACT.md, "Errors"):
 *
 *   NoriKVError                   base; `code` is the gRPC status name
 *   ├─ KeyNotFoundError           NOT_FOUND
 *   ├─ VersionMismatchError       FAILED_PRECONDITION "version mismatch"; currentVersion
 *   ├─ AlreadyExistsError         ALREADY_EXISTS (ifNotExists)
 *   ├─ InvalidArgumentError       INVALID_ARGUMENT (limits, bad consistency, ...)
 *   ├─ ConnectionError            UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ...
 *   │   ├─ NotLeaderError         UNAVAILABLE "NOT_LEADER" (only once retries ran out)
 *   │   ├─ DeadlineExceededError  the call's time ran out
 *   │   └─ ResourceExhaustedError the server's queues were full
 *   ├─ UnimplementedError         the server does not serve the method (vector calls today)
 *   ├─ ShardCountMismatchError    config.totalShards differs from the cluster's
 *   ├─ ConfigurationError         invalid ClientConfig
 *   └─ ClientClosedError          the client was closed
 */
import { Metadata, status as Status } from '@grpc/grpc-js';
import { Version } from './types.js';

export const LEADER_HINT = 'leader-hint';
export const CURRENT_VERSION = 'current-version';

const codeNames: Record<number, string> = {};
for (const [name, value] of Object.entries(Status)) {
  if (typeof value === 'number') codeNames[value] = name;
}

/** The gRPC status name of a numeric code ("UNAVAILABLE"). */
export function codeName(code: number): string {
  return codeNames[code] ?? `CODE_${code}`;
}

export interface ErrorDetails {
  /** gRPC status name of the last answer ("NOT_FOUND", "UNAVAILABLE", ...). */
  code?: string;
  /** Address of the node that answered last, if any. */
  node?: string;
  /** Attempts made. */
  attempts?: number;
  /** The leader a NOT_LEADER answer named, if any. */
  leaderHint?: string;
  cause?: unknown;
}

export class NoriKVError extends Error {
  readonly code: string;
  node: string | undefined;
  attempts: number;
  leaderHint: string | undefined;

  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = details.code ?? 'UNKNOWN';
    this.node = details.node;
    this.attempts = details.attempts ?? 0;
    this.leaderHint = details.leaderHint;
  }
}

export class KeyNotFoundError extends NoriKVError {}

export class VersionMismatchError extends NoriKVError {
  /** The key's version when the CAS failed on an existing key; null when the key was absent. */
  readonly currentVersion: Version | null;
  constructor(message: string, currentVersion: Version | null, details: ErrorDetails = {}) {
    super(message, details);
    this.currentVersion = currentVersion;
  }
}

export class AlreadyExistsError extends NoriKVError {}
export class InvalidArgumentError extends NoriKVError {}
export class ConnectionError extends NoriKVError {}
export class NotLeaderError extends ConnectionError {}
export class DeadlineExceededError extends ConnectionError {}
export class ResourceExhaustedError extends ConnectionError {}
export class UnimplementedError extends NoriKVError {}
export class ShardCountMismatchError extends NoriKVError {}
export class ConfigurationError extends NoriKVError {}
export class ClientClosedError extends NoriKVError {
  constructor(message = 'norikv: the client is closed') {
    super(message, { code: 'CANCELLED' });
  }
}

/** The first value of a trailer, or undefined. */
export function trailerValue(md: Metadata | undefined, key: string): string | undefined {
  if (md === undefined) return undefined;
  const v = md.get(key)[0];
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.toString('utf8');
}

/** Maps a failed call's status and trailers to its typed error. */
export function errorFromStatus(
  code: number,
  details: string,
  trailers: Metadata | undefined,
  op: string,
  extra: ErrorDetails = {},
): NoriKVError {
  const name = codeName(code);
  const d: ErrorDetails = { ...extra, code: name };
  const hint = trailerValue(trailers, LEADER_HINT);
  if (hint !== undefined) d.leaderHint = hint;
  let msg = `norikv: ${op}: ${name}${details ? `: ${details}` : ''}`;
  if (extra.node !== undefined) msg = `norikv: ${op} on ${extra.node}: ${name}${details ? `: ${details}` : ''}`;
  if ((extra.attempts ?? 0) > 1) msg += ` (after ${extra.attempts} attempts)`;
  switch (code) {
    case Status.NOT_FOUND:
      return new KeyNotFoundError(msg, d);
    case Status.FAILED_PRECONDITION:
      if (details.startsWith('version mismatch')) {
        const cv = trailerValue(trailers, CURRENT_VERSION);
        const v = cv === undefined ? null : Version.parse(cv);
        if (v !== null) msg += ` (current version ${v.toString()})`;
        return new VersionMismatchError(msg, v, d);
      }
      return new NoriKVError(msg, d);
    case Status.ALREADY_EXISTS:
      return new AlreadyExistsError(msg, d);
    case Status.INVALID_ARGUMENT:
    case Status.OUT_OF_RANGE:
      return new InvalidArgumentError(msg, d);
    case Status.UNAVAILABLE:
      if (details.includes('NOT_LEADER')) return new NotLeaderError(msg, d);
      return new ConnectionError(msg, d);
    case Status.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(msg, d);
    case Status.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(msg, d);
    case Status.ABORTED:
    case Status.CANCELLED:
      return new ConnectionError(msg, d);
    case Status.UNIMPLEMENTED:
      return new UnimplementedError(msg, d);
  }
  return new NoriKVError(msg, d);
}

/** A failed gRPC call as grpc-js reports it (a ServiceError, or the same shape). */
export interface RpcFailure {
  code: number;
  details: string;
  metadata: Metadata | undefined;
}

export function isRpcFailure(e: unknown): e is RpcFailure {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'number' && 'details' in e;
}
