/**
 * What a failed attempt says about the request's fate, and so whether it may
 * be sent again (CONTRACT.md, "Errors"; the same rules as the Go SDK's
 * retry.go):
 *
 * - permanent: the server decided (not found, CAS conflict, bad argument);
 *   sending it again gives the same answer.
 * - notLeader: the node refused before executing; always safe to retry, at
 *   the hinted leader at once.
 * - notSent: the request never reached a server that could execute it
 *   (connection refused) or was rejected before execution (overload);
 *   always safe to retry.
 * - unknown: it may have reached a leader and may yet be applied (deadline,
 *   commit timeout, connection lost mid-call, no quorum, shutdown). A write
 *   is retried only when it carries an idempotency key or is unconditional,
 *   for which a second application is harmless; a conditional write
 *   (ifMatch, ifNotExists) without a key is returned to the caller, since a
 *   retry could report a conflict caused by its own first attempt.
 */
import { status as Status } from '@grpc/grpc-js';
import type { RetryConfig } from './config.js';

export type Failure = 'permanent' | 'notLeader' | 'notSent' | 'unknown';

// Messages grpc-js gives a call that failed before any byte of it reached a
// server: no connection could be made.
const NOT_SENT_MARKERS = [
  'No connection established',
  'ECONNREFUSED',
  'connect ECONN',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'Name resolution failed',
  'Waiting for LB pick',
  'channel closed before the call was sent',
];

export function classify(code: number, details: string): Failure {
  switch (code) {
    case Status.UNAVAILABLE:
      if (details.includes('NOT_LEADER')) return 'notLeader';
      for (const m of NOT_SENT_MARKERS) if (details.includes(m)) return 'notSent';
      return 'unknown';
    case Status.RESOURCE_EXHAUSTED:
      // A message over gRPC's size limit fails the same way every time.
      if (details.includes('larger than max') || details.includes('exceeds maximum')) return 'permanent';
      return 'notSent';
    case Status.DEADLINE_EXCEEDED:
    case Status.ABORTED:
    case Status.CANCELLED:
      return 'unknown';
    case Status.INTERNAL:
      // grpc-js reports a stream reset or closed mid-call as INTERNAL.
      return /RST_STREAM|reset|closed/i.test(details) ? 'unknown' : 'permanent';
  }
  return 'permanent';
}

/** Whether the node itself looks unreachable, so the next attempt should go elsewhere. */
export function nodeDown(code: number, details: string, f: Failure): boolean {
  if (code !== Status.UNAVAILABLE && code !== Status.CANCELLED && code !== Status.INTERNAL) return false;
  if (f === 'notLeader' || details.includes('QUORUM_UNAVAILABLE')) return false;
  return f === 'notSent' || f === 'unknown';
}

/** Whether an attempt that failed with f may be sent again. */
export function mayRetry(f: Failure, writeSafe: boolean): boolean {
  switch (f) {
    case 'notLeader':
    case 'notSent':
      return true;
    case 'unknown':
      return writeSafe;
    case 'permanent':
      return false;
  }
}

/** Delay before retry number n (n >= 1). */
export function backoffMs(r: Required<RetryConfig>, n: number, random: () => number = Math.random): number {
  let d = r.initialDelayMs;
  for (let i = 1; i < n && d < r.maxDelayMs; i++) d *= 2;
  if (d > r.maxDelayMs) d = r.maxDelayMs;
  if (r.jitterMs > 0) d += random() * r.jitterMs;
  return d;
}
