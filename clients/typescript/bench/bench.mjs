// Benchmarks of the TypeScript SDK (run by hand: `npm run bench`, or
// `node bench/bench.mjs` after a build; never a timed test):
//   1. routing cost: xxhash64, jump hash and the whole key -> shard step,
//      in ns per key, against the seed README's "<100 ns" figure;
//   2. end-to-end ops/s of puts and gets with C concurrent callers against
//      one ephemeral norikv-server started here (the real server).
// Options: --seconds S (per end-to-end phase, default 5), --concurrency C
// (default 64), --value-size B (default 100), --routing-only.
import { parseArgs } from 'node:util';
import { createClient, loadHasher, shardForKey, xxhash64, jumpConsistentHash } from '@norikv/client';
import { EphemeralServer } from '@norikv/client/testing';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '64' },
    'value-size': { type: 'string', default: '100' },
    'routing-only': { type: 'boolean', default: false },
  },
});
const seconds = Number(opt.seconds);
const concurrency = Number(opt.concurrency);
const valueSize = Number(opt['value-size']);

await loadHasher();
const enc = new TextEncoder();
const strKeys = Array.from({ length: 4096 }, (_, i) => `user:${i * 7919}:profile`);
const byteKeys = strKeys.map((k) => enc.encode(k));
const hashes = byteKeys.map((k) => xxhash64(k));

// Each measured loop is written out on its own, so that V8 optimizes it
// for its one callee (a shared loop calling different functions would turn
// megamorphic and measure the call dispatch instead).
function measure(label, n, loop) {
  loop(200000); // warm up (JIT)
  let best = Infinity;
  let bestCpu = Infinity;
  for (let round = 0; round < 5; round++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    loop(n);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n);
    const c = process.cpuUsage(c0);
    bestCpu = Math.min(bestCpu, ((c.user + c.system) * 1000) / n);
  }
  console.log(
    `  ${label.padEnd(44)} ${best.toFixed(1).padStart(8)} ns/op wall ${bestCpu.toFixed(1).padStart(8)} ns/op CPU  (best of 5 x ${n})`,
  );
  // CPU time is what the comparison uses: time spent descheduled on a
  // shared machine does not count in it.
  return bestCpu;
}

let sink = 0;
console.log(`routing (keys like "${strKeys[1]}", ${byteKeys[1].length} bytes; 1024 shards; node ${process.version})`);
const N = 1_000_000;
measure('xxhash64(bytes)  [xxhash-wasm]', N, (n) => {
  for (let i = 0; i < n; i++) sink ^= Number(xxhash64(byteKeys[i & 4095]) & 1n);
});
measure('jumpConsistentHash(u64 bigint, 1024)', N, (n) => {
  for (let i = 0; i < n; i++) sink ^= jumpConsistentHash(hashes[i & 4095], 1024);
});
const tRouteB = measure('shardForKey(bytes, 1024)', N, (n) => {
  for (let i = 0; i < n; i++) sink ^= shardForKey(byteKeys[i & 4095], 1024);
});
const tRouteS = measure('shardForKey(string, 1024)', N, (n) => {
  for (let i = 0; i < n; i++) sink ^= shardForKey(strKeys[i & 4095], 1024);
});
console.log(
  `  seed figure "< 100 ns" per routing decision: bytes ${tRouteB < 100 ? 'met' : 'NOT met'} (${tRouteB.toFixed(0)} ns), ` +
    `string ${tRouteS < 100 ? 'met' : 'NOT met'} (${tRouteS.toFixed(0)} ns)  [sink ${sink & 1}]`,
);

if (opt['routing-only']) process.exit(0);

const server = await EphemeralServer.start();
const client = createClient({ nodes: [server.grpcAddr], timeoutMs: 30000 });
await client.connect();
const value = Buffer.alloc(valueSize, 0x61);
const keyspace = 100000;

// Puts write keys 0, 1, 2, ... (up to keyspace); gets read the keys written.
let next = 0;
let written = 0;
let nextKey = () => next++ % keyspace;

async function phase(label, op) {
  let done = 0;
  let failed = 0;
  const lat = [];
  const end = Date.now() + seconds * 1000;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  async function worker() {
    while (Date.now() < end) {
      const s = process.hrtime.bigint();
      try {
        await op(nextKey());
        done++;
        if ((done & 15) === 0) lat.push(Number(process.hrtime.bigint() - s) / 1e6);
      } catch (e) {
        failed++;
        if (failed === 1) console.error(`  ${label}: first failure: ${e.message}`);
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(c0);
  const cpuUsPerOp = done > 0 ? (cpu.user + cpu.system) / done : 0;
  lat.sort((a, b) => a - b);
  const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * p))].toFixed(2) : '-');
  console.log(
    `  ${label.padEnd(34)} ${(done / secs).toFixed(0).padStart(8)} ops/s  p50 ${pct(0.5)} ms  p99 ${pct(0.99)} ms  client CPU ${cpuUsPerOp.toFixed(0)} us/op  (${done} ok, ${failed} failed, ${secs.toFixed(1)} s)`,
  );
}

console.log(`end to end against one ephemeral norikv-server (${concurrency} concurrent callers, ${valueSize}-byte values, ${seconds} s per phase)`);
await phase('put (unconditional)', (i) => client.put(`bench:${i}`, value));
written = Math.min(next, keyspace);
next = 0;
nextKey = () => next++ % written;
await phase('get (lease)', (i) => client.get(`bench:${i}`));
await phase('get (linearizable)', (i) => client.get(`bench:${i}`, { consistency: 'linearizable' }));
await client.close();
await server.stop();
