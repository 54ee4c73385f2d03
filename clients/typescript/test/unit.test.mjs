// Pure unit tests: configuration checks, the retry policy, versions, errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { createClient, NoriKVClient, ConfigurationError, Version, ClientClosedError, ConnectionError } from '@norikv/client';
import { classify, mayRetry, backoffMs, nodeDown } from '../dist/esm/retry.js';
import { errorFromStatus } from '../dist/esm/errors.js';
import * as errors from '@norikv/client';

test('config: empty or malformed node lists and bad numbers are refused with the field named', () => {
  assert.throws(() => new NoriKVClient({ nodes: [] }), (e) => e instanceof ConfigurationError && /nodes/.test(e.message));
  assert.throws(() => new NoriKVClient({ nodes: ['localhost'] }), /nodes\[0\] must be host:port/);
  assert.throws(() => new NoriKVClient({ nodes: ['localhost:0'] }), /port 0/);
  assert.throws(() => new NoriKVClient({ nodes: ['a:1'], totalShards: 0 }), /totalShards/);
  assert.throws(() => new NoriKVClient({ nodes: ['a:1'], timeoutMs: -5 }), /timeoutMs/);
  assert.throws(() => new NoriKVClient({ nodes: ['a:1'], maxInFlight: 0 }), /maxInFlight/);
  assert.throws(() => new NoriKVClient({ nodes: ['a:1'], retry: { maxAttempts: 0 } }), /retry.maxAttempts/);
  const c = new NoriKVClient({ nodes: ['a:1', 'a:1', 'b:2'] });
  assert.deepEqual(c.config.nodes, ['a:1', 'b:2']);
  assert.equal(c.config.totalShards, 1024);
  assert.equal(c.config.timeoutMs, 5000);
  assert.deepEqual(c.config.retry, { maxAttempts: 10, initialDelayMs: 100, maxDelayMs: 5000, jitterMs: 100 });
});

test('retry: NOT_LEADER and refused connections are always retried; unknown outcomes only for safe writes', () => {
  const U = grpc.status.UNAVAILABLE;
  assert.equal(classify(U, 'NOT_LEADER: shard 3 is led elsewhere'), 'notLeader');
  assert.equal(classify(U, 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1'), 'notSent');
  assert.equal(classify(U, 'QUORUM_UNAVAILABLE'), 'unknown');
  assert.equal(classify(grpc.status.DEADLINE_EXCEEDED, 'COMMIT_TIMEOUT'), 'unknown');
  assert.equal(classify(grpc.status.RESOURCE_EXHAUSTED, 'request queue full'), 'notSent');
  for (const c of [grpc.status.NOT_FOUND, grpc.status.INVALID_ARGUMENT, grpc.status.FAILED_PRECONDITION, grpc.status.ALREADY_EXISTS]) {
    assert.equal(classify(c, 'x'), 'permanent');
  }
  assert.equal(mayRetry('notLeader', false), true);
  assert.equal(mayRetry('notSent', false), true);
  assert.equal(mayRetry('unknown', false), false);
  assert.equal(mayRetry('unknown', true), true);
  assert.equal(mayRetry('permanent', true), false);
  assert.equal(nodeDown(U, 'QUORUM_UNAVAILABLE', 'unknown'), false);
  assert.equal(nodeDown(U, 'No connection established', 'notSent'), true);
});

test('retry: backoff doubles from the initial delay up to the maximum, plus jitter below jitterMs', () => {
  const r = { maxAttempts: 10, initialDelayMs: 100, maxDelayMs: 1000, jitterMs: 50 };
  const zero = () => 0;
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffMs(r, n, zero)), [100, 200, 400, 800, 1000, 1000]);
  for (let i = 0; i < 100; i++) {
    const d = backoffMs(r, 2);
    assert.ok(d >= 200 && d < 250, `jittered delay ${d}`);
  }
});

test('Version: equality, parsing of the current-version trailer form, string form', () => {
  const v = new Version(3n, 18446744073709551615n);
  assert.equal(v.toString(), '3.18446744073709551615');
  assert.ok(v.equals(Version.parse('3.18446744073709551615')));
  assert.ok(!v.equals(new Version(3, 1)));
  assert.equal(Version.parse('3'), null);
  assert.equal(Version.parse('a.b'), null);
});

test('errors: each gRPC status maps to its typed error, with currentVersion and leader hint', () => {
  const md = new grpc.Metadata();
  md.set('current-version', '7.42');
  md.set('leader-hint', '127.0.0.1:9002');
  const vm = errorFromStatus(grpc.status.FAILED_PRECONDITION, 'version mismatch', md, 'put');
  assert.ok(vm instanceof errors.VersionMismatchError);
  assert.ok(vm.currentVersion.equals(new Version(7, 42)));
  const nl = errorFromStatus(grpc.status.UNAVAILABLE, 'NOT_LEADER', md, 'put');
  assert.ok(nl instanceof errors.NotLeaderError && nl instanceof ConnectionError);
  assert.equal(nl.leaderHint, '127.0.0.1:9002');
  const cases = [
    [grpc.status.NOT_FOUND, errors.KeyNotFoundError],
    [grpc.status.ALREADY_EXISTS, errors.AlreadyExistsError],
    [grpc.status.INVALID_ARGUMENT, errors.InvalidArgumentError],
    [grpc.status.UNAVAILABLE, ConnectionError],
    [grpc.status.DEADLINE_EXCEEDED, errors.DeadlineExceededError],
    [grpc.status.RESOURCE_EXHAUSTED, errors.ResourceExhaustedError],
    [grpc.status.UNIMPLEMENTED, errors.UnimplementedError],
  ];
  for (const [code, cls] of cases) {
    const e = errorFromStatus(code, 'x', undefined, 'get');
    assert.ok(e instanceof cls, `${code} -> ${e.name}`);
    assert.ok(e instanceof errors.NoriKVError);
    assert.equal(e.name, cls.name);
  }
});

test('a closed client rejects calls with ClientClosedError', async () => {
  const c = createClient({ nodes: ['127.0.0.1:1'], connectTimeoutMs: 200 });
  await c.close();
  await assert.rejects(c.put('k', 'v'), ClientClosedError);
});

test('connect fails with ConnectionError naming the nodes when nothing listens', async () => {
  const c = createClient({ nodes: ['127.0.0.1:1'], connectTimeoutMs: 500 });
  await assert.rejects(c.connect(), (e) => e instanceof ConnectionError && /127\.0\.0\.1:1/.test(e.message));
  await assert.rejects(c.get('k'), (e) => e instanceof ConnectionError || e instanceof ClientClosedError);
});
