// Error paths that a healthy one-node server never produces (NOT_LEADER,
// QUORUM_UNAVAILABLE, COMMIT_TIMEOUT, full queues), injected by an
// in-process grpc-js node placed in front of the real server. The injecting
// node claims to lead every shard; its scripted answers end with a
// NOT_LEADER whose leader-hint names the real server, so that every write
// that succeeds is executed by the real norikv-server and read back from it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import {
  createClient,
  ConnectionError,
  DeadlineExceededError,
  NotLeaderError,
  ResourceExhaustedError,
} from '@norikv/client';
import { EphemeralServer } from '@norikv/client/testing';
import { codecOf, methods } from '../dist/esm/wire.js';
import { serverBinary, uniqueKey } from './helpers.mjs';

const { bin, why } = serverBinary();
let real = null;
let direct = null;

before(async () => {
  if (bin === null) return;
  real = await EphemeralServer.start({ binary: bin });
  direct = createClient({ nodes: [real.grpcAddr] });
  await direct.connect();
});
after(async () => {
  await direct?.close();
  await real?.stop();
});

function definition(service) {
  const def = {};
  for (const [name, m] of Object.entries(methods[service])) {
    const req = codecOf(m.request);
    const resp = codecOf(m.response);
    def[name] = {
      path: m.path,
      requestStream: false,
      responseStream: m.serverStream,
      requestSerialize: req.serialize,
      requestDeserialize: req.deserialize,
      responseSerialize: resp.serialize,
      responseDeserialize: resp.deserialize,
    };
  }
  return def;
}

/**
 * Starts an injecting node. script: answers for the Kv calls in order
 * ('quorum', 'commit_timeout', 'full', 'nohint', 'hint'); after the script,
 * `then` answers every call.
 */
async function injector(t, script, then = 'hint') {
  const srv = new grpc.Server();
  const calls = { Put: 0, Get: 0, Delete: 0, Watch: 0, forwarded: [] };
  let addr = '';
  const upstream = new grpc.Client(real.grpcAddr, grpc.credentials.createInsecure());
  t.after(() => upstream.close());
  const answer = (method) => (call, cb) => {
    calls[method]++;
    const what = script.length > 0 ? script.shift() : then;
    const md = new grpc.Metadata();
    switch (what) {
      case 'forward_then_fail': {
        // The real server executes the request; its answer is lost on the
        // way back, as when a connection breaks after the write committed.
        const m = methods.Kv[method];
        upstream.makeUnaryRequest(m.path, codecOf(m.request).serialize, codecOf(m.response).deserialize, call.request, (err) => {
          calls.forwarded.push(err ? err.details : 'ok');
          cb({ code: grpc.status.UNAVAILABLE, details: 'Connection dropped', metadata: md });
        });
        return;
      }
      case 'hint':
        md.set('leader-hint', real.grpcAddr);
        return cb({ code: grpc.status.UNAVAILABLE, details: 'NOT_LEADER: not the leader of this shard', metadata: md });
      case 'nohint':
        return cb({ code: grpc.status.UNAVAILABLE, details: 'NOT_LEADER: leader unknown', metadata: md });
      case 'quorum':
        return cb({ code: grpc.status.UNAVAILABLE, details: 'QUORUM_UNAVAILABLE: no quorum for shard', metadata: md });
      case 'commit_timeout':
        return cb({ code: grpc.status.DEADLINE_EXCEEDED, details: 'COMMIT_TIMEOUT: not committed in time', metadata: md });
      case 'full':
        return cb({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'request queue full', metadata: md });
    }
    throw new Error(`unknown script step ${what}`);
  };
  srv.addService(definition('Kv'), { Put: answer('Put'), Get: answer('Get'), Delete: answer('Delete') });
  srv.addService(definition('Meta'), {
    WatchCluster: (call) => {
      calls.Watch++;
      const shards = Array.from({ length: 1024 }, (_, id) => ({ id, replicas: [{ node_id: 'inject', leader: true }] }));
      call.write({ epoch: 1, nodes: [{ id: 'inject', addr, role: 'alive' }], shards });
      // Kept open, like the real server's stream, until the client leaves.
    },
  });
  const port = await new Promise((resolve, reject) =>
    srv.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  addr = `127.0.0.1:${port}`;
  t.after(() => srv.forceShutdown());
  const client = createClient({ nodes: [addr], retry: { initialDelayMs: 10, maxDelayMs: 50, jitterMs: 5, maxAttempts: 5 } });
  t.after(() => client.close());
  await client.connect();
  return { addr, calls, client };
}

function needServer(t) {
  if (real === null) {
    t.skip(`no norikv-server to test against: ${why}`);
    return false;
  }
  return true;
}

test('a NOT_LEADER leader-hint is followed at once and the leader is remembered for the shard', async (t) => {
  if (!needServer(t)) return;
  const { calls, client } = await injector(t, []);
  const key = uniqueKey('hint');
  const t0 = Date.now();
  const v = await client.put(key, 'via-hint');
  assert.equal(calls.Put, 1);
  assert.equal(client.getStats().router.redirects, 1);
  assert.ok(Date.now() - t0 < 5000, 'no backoff before following a hint');
  const r = await client.get(key);
  assert.equal(calls.Get, 0, 'the read went straight to the hinted leader');
  assert.ok(r.version.equals(v));
  assert.ok((await direct.get(key)).version.equals(v), 'the real server holds the write');
});

test('an unconditional put is retried with backoff through QUORUM_UNAVAILABLE', async (t) => {
  if (!needServer(t)) return;
  const { calls, client } = await injector(t, ['quorum', 'quorum']);
  const key = uniqueKey('quorum');
  const v = await client.put(key, 'x');
  assert.equal(calls.Put, 3);
  assert.ok(client.getStats().requests.retries >= 2);
  assert.ok((await direct.get(key)).version.equals(v));
});

test('reads are retried through QUORUM_UNAVAILABLE and queue-full answers', async (t) => {
  if (!needServer(t)) return;
  const key = uniqueKey('read');
  const v = await direct.put(key, 'r');
  const { calls, client } = await injector(t, ['quorum', 'full']);
  assert.ok((await client.get(key)).version.equals(v));
  assert.equal(calls.Get, 3);
});

test('a conditional put without idempotency key is not retried after an unknown outcome; with one it is', async (t) => {
  if (!needServer(t)) return;
  const { calls, client } = await injector(t, ['quorum', 'quorum']);
  const key = uniqueKey('cond');
  const e = await client.put(key, 'x', { ifNotExists: true }).catch((x) => x);
  assert.ok(e instanceof ConnectionError && !(e instanceof NotLeaderError), `${e.name}: ${e.message}`);
  assert.match(e.message, /QUORUM_UNAVAILABLE/);
  assert.equal(calls.Put, 1, 'sent once');
  const v = await client.put(key, 'x', { ifNotExists: true, idempotencyKey: uniqueKey('ik') });
  assert.equal(calls.Put, 3, 'the keyed write was retried, then redirected');
  assert.ok((await direct.get(key)).version.equals(v));
});

test('a CAS delete is not retried after a commit timeout; an unconditional delete is', async (t) => {
  if (!needServer(t)) return;
  const key = uniqueKey('ct');
  const v = await direct.put(key, 'x');
  const { calls, client } = await injector(t, ['commit_timeout', 'commit_timeout']);
  const e = await client.delete(key, { ifMatch: v }).catch((x) => x);
  assert.ok(e instanceof DeadlineExceededError, `${e.name}: ${e.message}`);
  assert.equal(e.code, 'DEADLINE_EXCEEDED');
  assert.equal(calls.Delete, 1);
  assert.equal(await client.delete(key), true);
  assert.equal(calls.Delete, 3);
});

test('a full queue (RESOURCE_EXHAUSTED) is retried even for a conditional write, since nothing ran', async (t) => {
  if (!needServer(t)) return;
  const { calls, client } = await injector(t, ['full']);
  const key = uniqueKey('full');
  await client.put(key, 'x', { ifNotExists: true });
  assert.equal(calls.Put, 2);
});

test('NOT_LEADER without a hint is retried up to maxAttempts and then surfaces as NotLeaderError', async (t) => {
  if (!needServer(t)) return;
  const { calls, client } = await injector(t, [], 'nohint');
  const e = await client.put(uniqueKey('nohint'), 'x').catch((x) => x);
  assert.ok(e instanceof NotLeaderError && e instanceof ConnectionError, `${e.name}: ${e.message}`);
  assert.equal(e.attempts, 5);
  assert.equal(calls.Put, 5);
});

test('RESOURCE_EXHAUSTED that outlasts the retries surfaces as ResourceExhaustedError', async (t) => {
  if (!needServer(t)) return;
  const { calls, client } = await injector(t, [], 'full');
  const e = await client.get('k').catch((x) => x);
  assert.ok(e instanceof ResourceExhaustedError, `${e.name}: ${e.message}`);
  assert.equal(calls.Get, 5);
});

test('a keyed conditional write whose answer was lost is retried and returns the first execution\'s result', async (t) => {
  if (!needServer(t)) return;
  const { calls, client } = await injector(t, ['forward_then_fail']);
  const key = uniqueKey('lost');
  const v = await client.put(key, 'once', { ifNotExists: true, idempotencyKey: uniqueKey('lost-ik') });
  assert.deepEqual(calls.forwarded, ['ok'], 'the first attempt executed on the real server');
  assert.equal(calls.Put, 2, 'then the client retried (and was redirected to the real server)');
  const r = await direct.get(key);
  assert.ok(r.version.equals(v), `the retry returned ${v}, the first execution's version is ${r.version}`);
  assert.equal(r.text(), 'once');
});

test('an unkeyed conditional write whose answer was lost is not retried: the caller learns the outcome is unknown', async (t) => {
  if (!needServer(t)) return;
  const { calls, client } = await injector(t, ['forward_then_fail']);
  const key = uniqueKey('lost-nokey');
  const e = await client.put(key, 'once', { ifNotExists: true }).catch((x) => x);
  assert.ok(e instanceof ConnectionError, `${e.name}: ${e.message}`);
  assert.equal(calls.Put, 1);
  // It did execute: a blind retry would have reported AlreadyExists for the client's own write.
  assert.equal((await direct.get(key)).text(), 'once');
});
