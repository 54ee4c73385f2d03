// Shared test helpers: the real server (skip when no binary exists) and small utilities.
import { EphemeralServer, findServerBinary, ServerNotFoundError } from '@norikv/client/testing';

/** The server binary, or null with the reason (tests then skip, saying why). */
export function serverBinary() {
  try {
    return { bin: findServerBinary(), why: '' };
  } catch (e) {
    if (e instanceof ServerNotFoundError) return { bin: null, why: e.message };
    throw e;
  }
}

/** Starts an ephemeral server for test context t (skips t when no binary), stopped after t. */
export async function startServer(t, opts = {}) {
  const { bin, why } = serverBinary();
  if (bin === null) {
    t.skip(`no norikv-server to test against: ${why}`);
    return null;
  }
  const s = await EphemeralServer.start({ binary: bin, ...opts });
  t.after(async () => {
    if (!s.hasExited) await s.stop();
  });
  return s;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls cond() until it is truthy or ms pass; returns its last value. */
export async function waitFor(cond, ms, step = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v || Date.now() >= end) return v;
    await sleep(step);
  }
}

let seq = 0;
/** A key unique to this process and call. */
export function uniqueKey(prefix) {
  return `${prefix}-${process.pid}-${Date.now()}-${seq++}`;
}
