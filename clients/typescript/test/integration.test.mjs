// Behaviour against the real norikv-server (ephemeral, in memory), one
// server shared by the tests of this file; tests that restart or configure
// a server start their own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createClient,
  NoriKVClient,
  Version,
  KeyNotFoundError,
  VersionMismatchError,
  AlreadyExistsError,
  InvalidArgumentError,
  ConnectionError,
  DeadlineExceededError,
  ShardCountMismatchError,
  ClientClosedError,
  NoriKVError,
} from '@norikv/client';
import { EphemeralServer, freeAddr } from '@norikv/client/testing';
import { serverBinary, startServer, waitFor, uniqueKey, sleep } from './helpers.mjs';

const LEVELS = [undefined, 'lease', 'linearizable', 'strong', 'stale_ok', 'eventual', 'bounded_staleness'];
const { bin, why } = serverBinary();
let server = null;
let client = null;

before(async () => {
  if (bin === null) return;
  server = await EphemeralServer.start({ binary: bin });
  client = createClient({ nodes: [server.grpcAddr] });
  await client.connect();
});

after(async () => {
  await client?.close();
  await server?.stop();
});

function needServer(t) {
  if (server === null) {
    t.skip(`no norikv-server to test against: ${why}`);
    return false;
  }
  return true;
}

test('put, get and delete round-trip with the put version at every consistency level', async (t) => {
  if (!needServer(t)) return;
  const key = uniqueKey('crud');
  const v1 = await client.put(key, 'value-1');
  assert.ok(v1.term >= 1n && v1.index >= 1n, `version ${v1} has term and index >= 1`);
  for (const consistency of LEVELS) {
    const r = await client.get(key, consistency === undefined ? {} : { consistency });
    assert.equal(r.text(), 'value-1', `value at ${consistency}`);
    assert.ok(r.version.equals(v1), `version at ${consistency}: ${r.version} want ${v1}`);
  }
  const v2 = await client.put(key, 'value-2');
  assert.ok(!v2.equals(v1) && v2.index > v1.index, 'an overwrite gets a newer version');
  assert.equal((await client.get(key, { consistency: 'linearizable' })).text(), 'value-2');
  assert.equal(await client.delete(key), true, 'deleting a live value tombstones it');
  for (const consistency of LEVELS) {
    await assert.rejects(client.get(key, consistency === undefined ? {} : { consistency }), KeyNotFoundError);
  }
  assert.equal(await client.delete(key), false, 'deleting an absent key succeeds with false');
});

test('binary keys and values round-trip byte for byte', async (t) => {
  if (!needServer(t)) return;
  const key = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x01]);
  const value = Buffer.alloc(4096);
  for (let i = 0; i < value.length; i++) value[i] = (i * 31) & 0xff;
  const v = await client.put(key, value);
  const r = await client.get(key);
  assert.ok(Buffer.isBuffer(r.value));
  assert.ok(r.value.equals(value));
  assert.ok(r.version.equals(v));
  await client.put(uniqueKey('empty-value'), '');
});

test('a value with ttlMs expires at every consistency level, a value without stays', async (t) => {
  if (!needServer(t)) return;
  const key = uniqueKey('ttl');
  const keep = uniqueKey('ttl-keep');
  await client.put(key, 'short-lived', { ttlMs: 400 });
  await client.put(keep, 'forever');
  assert.equal((await client.get(key)).text(), 'short-lived', 'readable before expiry');
  const gone = await waitFor(async () => {
    try {
      await client.get(key);
      return false;
    } catch (e) {
      if (e instanceof KeyNotFoundError) return true;
      throw e;
    }
  }, 10000);
  assert.ok(gone, 'the key expired within 10 s of a 400 ms TTL');
  for (const consistency of LEVELS.filter(Boolean)) {
    await assert.rejects(client.get(key, { consistency }), KeyNotFoundError, `expired at ${consistency}`);
  }
  assert.equal((await client.get(keep)).text(), 'forever');
});

test('CAS: ifMatch applies on the current version and otherwise fails with the current version', async (t) => {
  if (!needServer(t)) return;
  const key = uniqueKey('cas');
  const v1 = await client.put(key, 'a');
  const v2 = await client.put(key, 'b', { ifMatch: v1 });
  await assert.rejects(client.put(key, 'c', { ifMatch: v1 }), (e) => {
    assert.ok(e instanceof VersionMismatchError, e.name);
    assert.equal(e.code, 'FAILED_PRECONDITION');
    assert.ok(e.currentVersion.equals(v2), `currentVersion ${e.currentVersion} want ${v2}`);
    return true;
  });
  assert.equal((await client.get(key)).text(), 'b', 'a failed CAS writes nothing');
  await assert.rejects(client.delete(key, { ifMatch: v1 }), VersionMismatchError);
  assert.equal(await client.delete(key, { ifMatch: v2 }), true);
  await assert.rejects(client.put(key, 'd', { ifMatch: v2 }), (e) => {
    assert.ok(e instanceof VersionMismatchError);
    assert.equal(e.currentVersion, null, 'no current version for a missing key');
    return true;
  });
});

test('concurrent CAS increments from 8 workers end at the exact count', async (t) => {
  if (!needServer(t)) return;
  const key = uniqueKey('counter');
  await client.put(key, '0');
  const workers = 8;
  const perWorker = 25;
  let conflicts = 0;
  async function worker() {
    for (let done = 0; done < perWorker; ) {
      const cur = await client.get(key, { consistency: 'linearizable' });
      try {
        await client.put(key, String(Number(cur.text()) + 1), { ifMatch: cur.version });
        done++;
      } catch (e) {
        if (!(e instanceof VersionMismatchError)) throw e;
        conflicts++;
      }
    }
  }
  await Promise.all(Array.from({ length: workers }, worker));
  assert.equal((await client.get(key, { consistency: 'linearizable' })).text(), String(workers * perWorker));
  t.diagnostic(`${conflicts} CAS conflicts retried`);
});

test('ifNotExists writes only when the key has no live value', async (t) => {
  if (!needServer(t)) return;
  const key = uniqueKey('ine');
  const v = await client.put(key, 'first', { ifNotExists: true });
  await assert.rejects(client.put(key, 'second', { ifNotExists: true }), (e) => e instanceof AlreadyExistsError && e.code === 'ALREADY_EXISTS');
  const r = await client.get(key);
  assert.equal(r.text(), 'first');
  assert.ok(r.version.equals(v));
  await client.delete(key);
  await client.put(key, 'third', { ifNotExists: true });
  assert.equal((await client.get(key)).text(), 'third');
});

test('a retried write with the same idempotency key returns the first result without writing again', async (t) => {
  if (!needServer(t)) return;
  const key = uniqueKey('idem');
  const idem = uniqueKey('idem-key');
  const v1 = await client.put(key, 'once', { idempotencyKey: idem });
  const v2 = await client.put(key, 'other'); // a different write in between
  const again = await client.put(key, 'once', { idempotencyKey: idem });
  assert.ok(again.equals(v1), `retry returned ${again}, first was ${v1}`);
  const r = await client.get(key);
  assert.equal(r.text(), 'other', 'the retry did not execute again');
  assert.ok(r.version.equals(v2));
  await assert.rejects(client.put(key, 'changed', { idempotencyKey: idem }), InvalidArgumentError, 'same key, other parameters');
  // Conditional writes with a key: the stored outcome, not a fresh conflict.
  const ck = uniqueKey('idem-ine');
  const ci = uniqueKey('idem-ine-key');
  const c1 = await client.put(ck, 'x', { ifNotExists: true, idempotencyKey: ci });
  const c2 = await client.put(ck, 'x', { ifNotExists: true, idempotencyKey: ci });
  assert.ok(c1.equals(c2));
  const di = uniqueKey('idem-del');
  assert.equal(await client.delete(ck, { idempotencyKey: di }), true);
  assert.equal(await client.delete(ck, { idempotencyKey: di }), true, 'the delete retry returns the first outcome');
});

test('limits: empty and oversized keys, oversized values and unknown consistency are invalid arguments', async (t) => {
  if (!needServer(t)) return;
  const invalid = (re) => (e) => {
    assert.ok(e instanceof InvalidArgumentError, `${e.name}: ${e.message}`);
    assert.equal(e.code, 'INVALID_ARGUMENT');
    assert.match(e.message, re);
    return true;
  };
  await assert.rejects(client.put('', 'v'), invalid(/key/i));
  await assert.rejects(client.get(''), invalid(/key/i));
  await assert.rejects(client.put('k'.repeat(1025), 'v'), invalid(/1024|key/i));
  await client.put('k'.repeat(1024), 'v'); // the limit itself is fine
  await assert.rejects(client.put(uniqueKey('big'), Buffer.alloc(1024 * 1024 + 1)), invalid(/value|MiB|1048576/i));
  await client.put(uniqueKey('max'), Buffer.alloc(1024 * 1024));
  await assert.rejects(client.get('k', { consistency: 'bogus' }), invalid(/consistency/i));
  await assert.rejects(client.put('k', 'v', { ttlMs: -1 }), InvalidArgumentError);
  await assert.rejects(client.put(42, 'v'), TypeError);
  // The server still serves after bad input.
  await client.put(uniqueKey('after-bad'), 'ok');
});

test('the cluster view names the node, which leads all 1024 shards; stats agree', async (t) => {
  if (!needServer(t)) return;
  const view = client.getClusterView();
  assert.ok(view !== null);
  assert.ok(view.epoch > 0n);
  assert.equal(view.nodes.length, 1);
  assert.equal(view.nodes[0].addr, server.grpcAddr);
  assert.equal(view.nodes[0].role, 'alive');
  assert.equal(view.shards.length, 1024);
  for (const s of view.shards) {
    assert.equal(s.replicas.length, 1);
    assert.ok(s.replicas[0].leader && s.replicas[0].nodeId === view.nodes[0].id);
  }
  view.nodes.length = 0; // a copy: the client's view is untouched
  assert.equal(client.getClusterView().nodes.length, 1);
  const st = client.getStats();
  assert.equal(st.router.totalShards, 1024);
  assert.equal(st.router.totalNodes, 1);
  assert.equal(st.topology.cachedLeaders, 1024);
  assert.equal(st.topology.watching, true);
  assert.equal(st.pool.totalConnections, 1);
  assert.ok(st.requests.total > 0 && st.requests.attempts >= st.requests.total);
  assert.equal(client.shardForKey('hello'), 309);
});

test('a topology listener hears the first view: the node added, every shard given a leader', async (t) => {
  if (!needServer(t)) return;
  const c = createClient({ nodes: [server.grpcAddr] });
  const events = [];
  const unsubscribe = c.onTopologyChange((ev) => events.push(ev));
  await c.connect();
  await waitFor(() => events.length > 0, 5000);
  assert.equal(events.length, 1);
  const ev = events[0];
  assert.equal(ev.previousEpoch, 0n);
  assert.ok(ev.currentEpoch > 0n);
  assert.deepEqual(ev.addedNodes, [ev.view.nodes[0].id]);
  assert.deepEqual(ev.removedNodes, []);
  assert.equal(ev.leaderChanges.size, 1024);
  unsubscribe();
  await c.close();
});

test('a client with maxInFlight 4 completes 300 concurrent puts by queueing them', async (t) => {
  if (!needServer(t)) return;
  const c = createClient({ nodes: [server.grpcAddr], maxInFlight: 4, timeoutMs: 30000 });
  await c.connect();
  let maxInFlight = 0;
  const prefix = uniqueKey('fanout');
  const ps = [];
  for (let i = 0; i < 300; i++) {
    ps.push(c.put(`${prefix}-${i}`, String(i)));
    maxInFlight = Math.max(maxInFlight, c.getStats().requests.inFlight);
  }
  const timer = setInterval(() => (maxInFlight = Math.max(maxInFlight, c.getStats().requests.inFlight)), 1);
  await Promise.all(ps);
  clearInterval(timer);
  assert.ok(maxInFlight <= 4, `in flight peaked at ${maxInFlight}`);
  for (let i = 0; i < 300; i += 37) assert.equal((await c.get(`${prefix}-${i}`)).text(), String(i));
  assert.equal(c.getStats().requests.queued, 0);
  await c.close();
  await assert.rejects(c.get('x'), ClientClosedError);
});

test('every failure is a NoriKVError subclass with the gRPC code name', async (t) => {
  if (!needServer(t)) return;
  const e = await client.get(uniqueKey('missing')).catch((x) => x);
  assert.ok(e instanceof KeyNotFoundError && e instanceof NoriKVError && e instanceof Error);
  assert.equal(e.code, 'NOT_FOUND');
  assert.equal(e.node, server.grpcAddr);
  assert.match(e.message, /key not found/);
});

test('totalShards different from the cluster fails at connect with both counts named', async (t) => {
  const s = await startServer(t, { args: ['--cluster-total-shards=256'] });
  if (s === null) return;
  const bad = createClient({ nodes: [s.grpcAddr] });
  await assert.rejects(bad.connect(), (e) => {
    assert.ok(e instanceof ShardCountMismatchError, e.name);
    assert.match(e.message, /1024/);
    assert.match(e.message, /256/);
    return true;
  });
  await assert.rejects(bad.put('k', 'v'), ShardCountMismatchError);
  const good = createClient({ nodes: [s.grpcAddr], totalShards: 256 });
  const v = await good.put('hello', 'x');
  assert.ok((await good.get('hello')).version.equals(v));
  assert.equal(good.shardForKey('hello'), 118);
  await good.close();
});

test('after SIGKILL and restart of the server the client recovers and every acknowledged write is there', async (t) => {
  if (bin === null) return t.skip(`no norikv-server to test against: ${why}`);
  const dir = mkdtempSync(join(tmpdir(), 'norikv-ts-restart-'));
  const rpc = await freeAddr();
  const opts = {
    binary: bin,
    notEphemeral: true,
    readyAddr: rpc,
    args: [`--rpc-addr=${rpc}`, '--http-addr=127.0.0.1:0', '--peer-addr=127.0.0.1:0', `--data-dir=${dir}`],
  };
  let s = await EphemeralServer.start(opts);
  const c = createClient({ nodes: [rpc], timeoutMs: 20000, retry: { initialDelayMs: 20, maxDelayMs: 500 } });
  // One hook, in this order: the test runner runs hooks first-registered
  // first and skips the rest when one throws, so a failed stop must neither
  // leave the client open (its reconnects would keep the process alive) nor
  // remove the data directory under a server that is still flushing.
  t.after(async () => {
    try {
      await c.close();
      if (!s.hasExited) await s.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  const events = [];
  c.onTopologyChange((ev) => events.push(ev));
  const written = new Map();
  for (let i = 0; i < 50; i++) written.set(`restart-${i}`, await c.put(`restart-${i}`, `v${i}`));
  await s.kill(); // SIGKILL: no clean shutdown

  // While the node is down, a call with a short timeout fails as a connection problem.
  const down = await c.get('restart-0', { timeoutMs: 600 }).catch((e) => e);
  assert.ok(down instanceof ConnectionError, `${down.name}: ${down.message}`);
  await waitFor(() => !c.getStats().topology.watching, 5000);

  // A call started while the node is down completes once it is back.
  const pending = c.put('during-restart', 'x');
  await sleep(300);
  s = await EphemeralServer.start(opts);
  const vDuring = await pending;
  for (const [k, v] of written) {
    const r = await c.get(k, { consistency: 'linearizable' });
    assert.equal(r.text(), `v${k.slice(8)}`);
    assert.ok(r.version.equals(v), `${k}: ${r.version} want ${v}`);
  }
  assert.ok((await c.get('during-restart')).version.equals(vDuring));
  assert.ok(await waitFor(() => c.getStats().topology.watching, 30000), 'the watch stream is open again');
  assert.ok(events.length >= 1);
});

test('a call whose time runs out fails with DeadlineExceededError within about its timeout', async (t) => {
  if (bin === null) return t.skip(`no norikv-server to test against: ${why}`);
  const s = await EphemeralServer.start({ binary: bin });
  const c = createClient({ nodes: [s.grpcAddr] });
  await c.connect();
  await s.kill();
  const t0 = Date.now();
  const e = await c.put('k', 'v', { timeoutMs: 700 }).catch((x) => x);
  const took = Date.now() - t0;
  assert.ok(e instanceof ConnectionError, `${e.name}: ${e.message}`);
  assert.ok(e instanceof DeadlineExceededError || e.attempts >= 1, e.message);
  assert.ok(took < 10000, `failed after ${took} ms (timeout 700 ms)`);
  await c.close();
});

test('a client can be built from the class as well as from createClient', async (t) => {
  if (!needServer(t)) return;
  const c = new NoriKVClient({ nodes: [server.grpcAddr] });
  assert.equal(c.isConnected, false);
  await c.connect();
  assert.equal(c.isConnected, true);
  const v = await c.put(uniqueKey('cls'), 'v');
  assert.ok(v instanceof Version);
  await c.close();
  assert.equal(c.isConnected, false);
});

test('vector calls are served: create, insert, search, get, delete and drop round-trip through the server', async (t) => {
  if (!needServer(t)) return;
  const ns = `emb-${uniqueKey('vec')}`;
  assert.equal(await client.vectorCreateIndex(ns, 3, 'euclidean', 'hnsw'), true);
  assert.equal(await client.vectorCreateIndex(ns, 3, 'euclidean', 'hnsw'), false, 'same parameters: exists');
  await assert.rejects(client.vectorCreateIndex(ns, 4, 'euclidean', 'hnsw'), AlreadyExistsError);
  const v1 = await client.vectorInsert(ns, 'doc-1', [0.1, 0.2, 0.3]);
  assert.ok(v1 instanceof Version);
  await client.vectorInsert(ns, 'doc-2', [1, 1, 1]);
  const r = await client.vectorSearch(ns, [0.1, 0.2, 0.3], 5, { includeVectors: true });
  assert.deepEqual(r.matches.map((m) => m.id), ['doc-1', 'doc-2']);
  assert.equal(r.matches[0].distance, 0);
  assert.equal(r.matches[1].vector.length, 3);
  const g = await client.vectorGet(ns, 'doc-1');
  assert.equal(g.length, 3);
  assert.ok(Math.abs(g[2] - 0.3) < 1e-6);
  assert.equal(await client.vectorGet(ns, 'absent'), null);
  await assert.rejects(client.vectorInsert(ns, 'bad', [1, 2]), InvalidArgumentError, 'wrong dimensions');
  await assert.rejects(client.vectorSearch(ns, [1, 2, 3], 0), InvalidArgumentError, 'k = 0');
  assert.equal(await client.vectorDelete(ns, 'doc-1'), true);
  assert.equal(await client.vectorDelete(ns, 'doc-1'), false);
  assert.equal(await client.vectorDropIndex(ns), true);
  assert.equal(await client.vectorDropIndex(ns), false);
  await assert.rejects(client.vectorSearch(ns, [1, 2, 3], 1), KeyNotFoundError, 'a dropped index');
});

test('close() ends a call that is waiting between retries at once, with ClientClosedError', async (t) => {
  if (bin === null) return t.skip(`no norikv-server to test against: ${why}`);
  const s = await EphemeralServer.start({ binary: bin });
  const c = createClient({ nodes: [s.grpcAddr], timeoutMs: 60000, retry: { maxAttempts: 100, initialDelayMs: 8000, maxDelayMs: 10000, jitterMs: 0 } });
  await c.connect();
  await s.kill();
  const pending = c.put('k', 'v').catch((e) => e);
  await waitFor(() => c.getStats().requests.attempts >= 1 && c.getStats().requests.inFlight === 0, 10000);
  await new Promise((r) => setTimeout(r, 100)); // now sleeping 8 s before the next attempt
  const t0 = Date.now();
  await c.close();
  const e = await pending;
  assert.ok(e instanceof ClientClosedError, `${e.name}: ${e.message}`);
  assert.ok(Date.now() - t0 < 4000, `the call ended ${Date.now() - t0} ms after close(), not at its 8 s retry`);
});

test('a dead first seed is passed over: the client connects through the next one', async (t) => {
  if (!needServer(t)) return;
  const dead = await freeAddr();
  const c = createClient({ nodes: [dead, server.grpcAddr], timeoutMs: 10000 });
  t.after(() => c.close());
  await c.connect();
  assert.equal(c.getClusterView().nodes[0].addr, server.grpcAddr);
  const v = await c.put(uniqueKey('dead-seed'), 'x');
  assert.ok(v.index >= 1n);
});

test('a hung server (SIGSTOP): calls on the wire and calls queued for a slot all end at their timeout', async (t) => {
  if (bin === null) return t.skip(`no norikv-server to test against: ${why}`);
  const s = await EphemeralServer.start({ binary: bin });
  const c = createClient({ nodes: [s.grpcAddr], maxInFlight: 1 });
  t.after(async () => {
    try {
      await c.close();
    } finally {
      if (!s.hasExited) {
        process.kill(s.pid, 'SIGCONT');
        await s.stop();
      }
    }
  });
  await c.connect();
  process.kill(s.pid, 'SIGSTOP');
  const t0 = Date.now();
  const calls = [1, 2, 3].map((i) => c.put(`hung-${i}`, 'v', { timeoutMs: 600 }).catch((e) => e));
  await waitFor(() => c.getStats().requests.queued === 2, 2000, 5);
  assert.equal(c.getStats().requests.inFlight, 1);
  const errs = await Promise.all(calls);
  const took = Date.now() - t0;
  for (const e of errs) assert.ok(e instanceof DeadlineExceededError, `${e.name}: ${e.message}`);
  assert.ok(took < 10000, `the calls ended ${took} ms after they started (timeout 600 ms, the server hung for good)`);
  assert.equal(c.getStats().requests.queued, 0);
  assert.equal(c.getStats().requests.inFlight, 0);
  process.kill(s.pid, 'SIGCONT');
  const v = await c.put('hung-after', 'v', { timeoutMs: 10000 });
  assert.ok((await c.get('hung-after')).version.equals(v));
});

test('JavaScript callers may pass null options and a plain { term, index } as ifMatch', async (t) => {
  if (!needServer(t)) return;
  const key = uniqueKey('plain');
  const v = await client.put(key, 'a', null);
  assert.equal((await client.get(key, null)).text(), 'a');
  const v2 = await client.put(key, 'b', { ifMatch: { term: Number(v.term), index: Number(v.index) } });
  await assert.rejects(client.delete(key, { ifMatch: { term: v.term, index: v.index } }), VersionMismatchError);
  assert.equal(await client.delete(key, { ifMatch: v2 }), true);
  assert.equal(await client.delete(key, null), false);
});
