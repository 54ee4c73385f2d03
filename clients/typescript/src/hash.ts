/**
 * Routing hash: shard = jumpConsistentHash(xxhash64(key bytes, seed 0), totalShards),
 * bit-exact with the server and every other SDK (CONTRACT.md, "Routing";
 * checked against testdata/hash-vectors.json).
 *
 * xxhash64 comes from the xxhash-wasm package (the reference C code compiled
 * to WebAssembly), which has to be instantiated once, asynchronously:
 * `await loadHasher()` before the synchronous functions here (the client
 * does so while connecting). Jump hash runs on two 32-bit halves in plain
 * numbers rather than on BigInt, which would allocate on every step; the
 * floating-point step is the same IEEE double arithmetic as the C code's.
 */
import xxhashWasm from 'xxhash-wasm';

type H64Raw = (input: Uint8Array, seed?: bigint) => bigint;
type H64Str = (input: string, seed?: bigint) => bigint;

let h64Raw: H64Raw | null = null;
let h64Str: H64Str | null = null;
let loading: Promise<void> | null = null;

/** Instantiates the WebAssembly xxhash64 once; later calls return at once. */
export function loadHasher(): Promise<void> {
  if (h64Raw !== null) return Promise.resolve();
  if (loading === null) {
    loading = xxhashWasm().then((api) => {
      h64Raw = api.h64Raw;
      h64Str = api.h64;
    });
  }
  return loading;
}

function hasher(): H64Raw {
  if (h64Raw === null) {
    throw new Error('norikv: the xxhash64 WebAssembly module is not loaded yet; await loadHasher() first');
  }
  return h64Raw;
}

/** Strings are routed by their UTF-8 bytes. (Buffer.from is several times faster than TextEncoder for short strings.) */
export function keyBytes(key: string | Uint8Array): Uint8Array {
  return typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
}

/** xxhash64 of the key's bytes (a string's UTF-8 bytes) with seed 0, as an unsigned 64-bit bigint. */
export function xxhash64(key: string | Uint8Array): bigint {
  const h = hasher();
  // A string is encoded straight into the WebAssembly memory (encodeInto).
  return typeof key === 'string' ? h64Str!(key, 0n) : h(key, 0n);
}

// Splits a 64-bit bigint into 32-bit halves without the allocations of
// bigint shifts and masks.
const split = new DataView(new ArrayBuffer(8));

const TWO31 = 2147483648; // (double)(1 << 31)
// 2862933555777941757 = 0x27BB2EE6_87B0B0FD
const C_HI = 0x27bb2ee6;
const C_LO = 0x87b0b0fd;
const C_LO_0 = C_LO & 0xffff;
const C_LO_1 = C_LO >>> 16;

/**
 * Jump Consistent Hash of the 64-bit key given as its high and low 32-bit
 * halves (unsigned). Returns a bucket in [0, numBuckets).
 */
export function jumpHash32(hi: number, lo: number, numBuckets: number): number {
  if (!(numBuckets >= 1 && numBuckets <= 0x7fffffff) || !Number.isInteger(numBuckets)) {
    throw new RangeError(`norikv: numBuckets must be an integer in 1..2147483647, got ${numBuckets}`);
  }
  let b = -1;
  let j = 0;
  while (j < numBuckets) {
    b = j;
    // key = key * C + 1 (mod 2^64). The low word's product lo * C_LO is
    // formed exactly from 16-bit pieces; the cross terms only reach the
    // high word, where Math.imul's wrap-around is what we want.
    const a0 = lo & 0xffff;
    const a1 = lo >>> 16;
    const p00 = a0 * C_LO_0;
    const p01 = a0 * C_LO_1;
    const p10 = a1 * C_LO_0;
    const p11 = a1 * C_LO_1;
    const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    let newLo = ((mid << 16) | (p00 & 0xffff)) >>> 0;
    let newHi = (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16)) >>> 0;
    newHi = (newHi + Math.imul(hi, C_LO) + Math.imul(lo, C_HI)) >>> 0;
    newLo = (newLo + 1) >>> 0;
    if (newLo === 0) newHi = (newHi + 1) >>> 0;
    hi = newHi;
    lo = newLo;
    // (key >> 33) + 1 < 2^31: exact as a double, like the C code's.
    j = Math.floor((b + 1) * (TWO31 / ((hi >>> 1) + 1)));
  }
  return b;
}

/** Jump Consistent Hash of an unsigned 64-bit key. */
export function jumpConsistentHash(key: bigint, numBuckets: number): number {
  split.setBigUint64(0, BigInt.asUintN(64, key));
  return jumpHash32(split.getUint32(0), split.getUint32(4), numBuckets);
}

/** The shard of a key: jump(xxhash64(key), totalShards). */
export function shardForKey(key: string | Uint8Array, totalShards: number): number {
  split.setBigUint64(0, xxhash64(key));
  return jumpHash32(split.getUint32(0), split.getUint32(4), totalShards);
}
