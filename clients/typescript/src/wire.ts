/**
 * The wire layer: protobuf codecs for the norikv.v1 messages, built at load
 * time from the descriptor that scripts/gen-proto.mjs generated from
 * proto/norikv/v1/norikv.proto, and helpers between the wire's 64-bit
 * integers and bigint.
 */
import protobuf from 'protobufjs';
import { DESCRIPTOR, METHODS, type Long64 } from './gen/norikv.js';

const root = protobuf.Root.fromJSON(DESCRIPTOR);

export interface Codec<T> {
  serialize: (msg: T) => Buffer;
  deserialize: (buf: Buffer) => T;
}

function codec<T>(name: string): Codec<T> {
  const type = root.lookupType(`norikv.v1.${name}`);
  return {
    serialize: (msg: T) => {
      const w = type.encode(msg as unknown as protobuf.Message);
      const bytes = w.finish();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    deserialize: (buf: Buffer) => type.decode(buf) as unknown as T,
  };
}

export type Method = { path: string; request: string; response: string; serverStream: boolean };
export const methods = METHODS;

const codecs = new Map<string, Codec<unknown>>();
/** The codec of a message type by its name in the proto ("PutRequest"). */
export function codecOf<T>(name: string): Codec<T> {
  let c = codecs.get(name);
  if (c === undefined) {
    c = codec<unknown>(name);
    codecs.set(name, c);
  }
  return c as Codec<T>;
}

/** A wire 64-bit integer (Long, number or decimal string) as a bigint. */
export function toBigInt(v: Long64 | null | undefined): bigint {
  if (v === null || v === undefined) return 0n;
  if (typeof v === 'number') return BigInt(v);
  if (typeof v === 'string') return BigInt(v);
  return (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
}

/** A bigint as the wire's unsigned 64-bit integer. */
export function fromBigInt(v: bigint): Long64 {
  const u = BigInt.asUintN(64, v);
  return { low: Number(u & 0xffffffffn) | 0, high: Number(u >> 32n) | 0, unsigned: true };
}
