/**
 * Test helper: runs the real `norikv-server --ephemeral` (everything in
 * memory, free ports), waits for its `READY grpc=<host:port> http=<host:port>`
 * line, and stops it with SIGTERM (SIGKILL after a grace period). There is no
 * fake server here: the binary is the project's C server.
 *
 *   import { EphemeralServer } from '@norikv/client/testing';
 *   const server = await EphemeralServer.start();
 *   const client = createClient({ nodes: [server.grpcAddr] });
 *   ...
 *   await client.close();
 *   await server.stop();
 *
 * The binary is found through $NORIKV_SERVER_BIN (when it names an
 * executable), then `norikv-server` on PATH, then
 * build/src/server/norikv-server in the repository that holds the current
 * directory or this package.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { delimiter, dirname, join, resolve } from 'node:path';

export const ENV_BINARY = 'NORIKV_SERVER_BIN';
const BINARY = 'norikv-server';
const REPO_BINARY = join('build', 'src', 'server', BINARY);
const OUTPUT_LIMIT = 256 * 1024;
const DEFAULT_START_MS = 60_000;
const STOP_GRACE_MS = 15_000;

export class ServerNotFoundError extends Error {}
export class ServerStartError extends Error {}

function executable(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function searchUp(start: string): string | null {
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    const p = join(dir, REPO_BINARY);
    if (executable(p)) return p;
    if (dirname(dir) === dir) return null;
  }
}

/** The server binary's path; throws ServerNotFoundError saying where it looked. */
export function findServerBinary(): string {
  const looked: string[] = [];
  const env = process.env[ENV_BINARY];
  if (env) {
    if (executable(env)) return resolve(env);
    looked.push(`$${ENV_BINARY}=${env} (no such executable)`);
  } else {
    looked.push(`$${ENV_BINARY} (unset)`);
  }
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir && executable(join(dir, BINARY))) return join(dir, BINARY);
  }
  looked.push('PATH');
  const fromCwd = searchUp(process.cwd());
  if (fromCwd !== null) return fromCwd;
  const fromHere = searchUp(__dirnameOf());
  if (fromHere !== null) return fromHere;
  looked.push(`${REPO_BINARY} in the parents of ${process.cwd()}`);
  throw new ServerNotFoundError(`norikv-server binary not found (looked at ${looked.join(', ')})`);
}

// This file is compiled to both ESM and CommonJS: find the package's own
// directory without import.meta or __dirname, through the module paths.
function __dirnameOf(): string {
  const stack = new Error().stack ?? '';
  const m = /(?:file:\/\/)?(\/[^\s:)]+\/testing\/ephemeral\.[cm]?js)/.exec(stack);
  return m?.[1] !== undefined ? dirname(m[1]) : process.cwd();
}

export interface EphemeralOptions {
  /** Overrides findServerBinary(). */
  binary?: string;
  /** Extra flags, e.g. ['--rpc-addr=127.0.0.1:9001'] or ['--cluster-total-shards=256']. */
  args?: string[];
  /** Leave out --ephemeral (for servers with a --data-dir in args). */
  notEphemeral?: boolean;
  /**
   * The server's gRPC address as configured in args: it counts as started
   * once that address accepts a TCP connection, even without a READY line.
   */
  readyAddr?: string;
  /** Bound on the wait for READY (ms, default 60000). */
  startTimeoutMs?: number;
}

/** A running norikv-server process. */
export class EphemeralServer {
  grpcAddr = '';
  httpAddr = '';
  readonly binary: string;
  readonly args: string[];
  private readonly proc: ChildProcess;
  private out = '';
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private readonly exited: Promise<void>;
  private stopped = false;

  private constructor(binary: string, args: string[]) {
    this.binary = binary;
    this.args = args;
    this.proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolveExit) => {
      this.proc.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolveExit();
      });
      this.proc.on('error', (e) => {
        this.append(`spawn error: ${String(e)}\n`);
        this.exitInfo = { code: -1, signal: null };
        resolveExit();
      });
    });
    this.proc.stderr?.on('data', (d: Buffer) => this.append(d.toString()));
  }

  private append(s: string): void {
    this.out += s;
    if (this.out.length > OUTPUT_LIMIT) this.out = this.out.slice(this.out.length - OUTPUT_LIMIT);
  }

  /** Starts a server and waits for its READY line. */
  static async start(opts: EphemeralOptions = {}): Promise<EphemeralServer> {
    const bin = opts.binary ?? findServerBinary();
    const args = [...(opts.notEphemeral ? [] : ['--ephemeral']), ...(opts.args ?? [])];
    const s = new EphemeralServer(bin, args);
    const timeoutMs = opts.startTimeoutMs ?? DEFAULT_START_MS;
    const ready = new Promise<string>((resolveReady) => {
      let buf = '';
      s.proc.stdout?.on('data', (d: Buffer) => {
        const text = d.toString();
        s.append(text);
        buf += text;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line.startsWith('READY ')) resolveReady(line);
        }
        if (buf.length > 64 * 1024) buf = '';
      });
      if (opts.readyAddr !== undefined) {
        const addr = opts.readyAddr;
        const probe = (): void => {
          if (s.exitInfo !== null) return;
          const i = addr.lastIndexOf(':');
          const sock = netConnect({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)) });
          sock.once('connect', () => {
            sock.destroy();
            resolveReady(`READY grpc=${addr}`);
          });
          sock.once('error', () => {
            sock.destroy();
            setTimeout(probe, 50);
          });
        };
        probe();
      }
    });
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      ready.then((line) => ({ line })),
      s.exited.then(() => ({ exited: true as const })),
      new Promise<{ timeout: true }>((r) => {
        timer = setTimeout(() => r({ timeout: true }), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if ('line' in outcome) {
      for (const f of outcome.line.split(/\s+/).slice(1)) {
        if (f.startsWith('grpc=')) s.grpcAddr = f.slice(5);
        else if (f.startsWith('http=')) s.httpAddr = f.slice(5);
      }
      if (s.grpcAddr === '') {
        await s.kill();
        throw new ServerStartError(`READY line ${JSON.stringify(outcome.line)} names no grpc= address`);
      }
      return s;
    }
    if ('exited' in outcome) {
      throw new ServerStartError(
        `${bin} ${args.join(' ')} exited before READY (code ${s.exitInfo?.code}, signal ${s.exitInfo?.signal}); output:\n${s.out}`,
      );
    }
    await s.kill();
    throw new ServerStartError(`${bin} printed no READY line within ${timeoutMs} ms; output:\n${s.out}`);
  }

  /** The server's process id. */
  get pid(): number {
    return this.proc.pid ?? -1;
  }

  /** The server's recent stdout and stderr. */
  get output(): string {
    return this.out;
  }

  get hasExited(): boolean {
    return this.exitInfo !== null;
  }

  /**
   * Sends SIGTERM and waits for the exit (SIGKILL after 15 s). Rejects when
   * the server had already died or did not exit cleanly. Idempotent.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.exitInfo !== null) {
      throw new ServerStartError(`server had already exited (code ${this.exitInfo.code}, signal ${this.exitInfo.signal})`);
    }
    this.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), STOP_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    if (killed) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new ServerStartError(`server ignored SIGTERM for ${STOP_GRACE_MS} ms and was killed`);
    }
    const info = this.exitInfo as { code: number | null; signal: NodeJS.Signals | null } | null;
    if (info !== null && info.code !== 0) {
      throw new ServerStartError(`server exited after SIGTERM with code ${info.code}, signal ${info.signal}; output:\n${this.out}`);
    }
  }

  /** SIGKILL (a crash, for failover tests); waits for the exit. */
  async kill(): Promise<void> {
    this.stopped = true;
    if (this.exitInfo === null) this.proc.kill('SIGKILL');
    await this.exited;
  }
}

/** A loopback address whose port was free a moment ago (another process may take it meanwhile). */
export function freeAddr(): Promise<string> {
  return new Promise((resolveAddr, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => {
        if (a !== null && typeof a === 'object') resolveAddr(`127.0.0.1:${a.port}`);
        else reject(new Error('no address'));
      });
    });
  });
}
