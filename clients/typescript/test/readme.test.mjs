// Every code block of README.md runs as a test: the TypeScript blocks are
// compiled with `tsc --strict` against the built package (so the README's
// types are checked too) and run; the CommonJS block runs as .cjs. Each
// sample gets a fresh real server: 'localhost:9001' in the sample becomes
// that server's address and 'localhost:9002' a loopback port where nothing
// listens (a dead seed the client must tolerate).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { EphemeralServer, freeAddr } from '@norikv/client/testing';
import { serverBinary } from './helpers.mjs';

const run = promisify(execFile);
const pkg = dirname(dirname(fileURLToPath(import.meta.url)));
const work = join(pkg, 'test', '.readme');
const readme = readFileSync(join(pkg, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/^```(ts|js)\n([\s\S]*?)^```$/gm)].map((m, i) => ({
  lang: m[1],
  code: m[2],
  name: `sample${i + 1}`,
  title: m[2].split('\n').find((l) => l.trim() !== '' && !l.startsWith('import')) ?? '',
}));

test('the README has the quick start and at least five runnable samples', () => {
  assert.ok(blocks.length >= 5, `${blocks.length} blocks`);
  assert.match(blocks[0].code, /import \{ createClient \} from '@norikv\/client';/);
  assert.match(blocks[0].code, /nodes: \['localhost:9001', 'localhost:9002'\]/);
  assert.match(blocks[0].code, /await client\.put\('key', 'value'\);\nconst result = await client\.get\('key'\);/);
});

let compiled = false;
before(async () => {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  for (const b of blocks) {
    if (b.lang === 'ts') writeFileSync(join(work, `${b.name}.mts`), b.code);
  }
  writeFileSync(
    join(work, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        types: ['node'],
        outDir: 'out',
        rootDir: '.',
        skipLibCheck: false,
      },
      include: ['*.mts'],
    }),
  );
  const tsc = join(pkg, 'node_modules', 'typescript', 'bin', 'tsc');
  await run(process.execPath, [tsc, '-p', join(work, 'tsconfig.json')], { cwd: work }).catch((e) => {
    throw new Error(`tsc --strict rejects a README sample:\n${e.stdout}${e.stderr}`);
  });
  compiled = true;
});

for (const b of blocks) {
  test(`README ${b.name} (${b.lang}): ${b.title.trim().slice(0, 60)}`, async (t) => {
    assert.ok(compiled, 'the samples compiled');
    const { bin, why } = serverBinary();
    if (bin === null) return t.skip(`no norikv-server to run the sample against: ${why}`);
    const server = await EphemeralServer.start({ binary: bin });
    t.after(async () => {
      if (!server.hasExited) await server.stop();
    });
    const dead = await freeAddr();
    let file;
    if (b.lang === 'ts') {
      file = join(work, 'out', `${b.name}.mjs`);
    } else {
      file = join(work, `${b.name}.cjs`);
      writeFileSync(file, b.code);
    }
    const src = readFileSync(file, 'utf8').replaceAll('localhost:9001', server.grpcAddr).replaceAll('localhost:9002', dead);
    const target = file.replace(/\.(mjs|cjs)$/, '.run.$1');
    writeFileSync(target, src);
    const env = { ...process.env, NORIKV_SERVER_BIN: bin };
    const { stdout, stderr } = await run(process.execPath, [target], { cwd: work, env, timeout: 60000 }).catch((e) => {
      throw new Error(`sample ${b.name} failed (${e.code ?? e.signal}):\n${e.stdout}\n${e.stderr}`);
    });
    t.diagnostic(stdout.trim().split('\n').join(' | '));
    assert.doesNotMatch(stderr, /Error|Warning/, stderr);
  });
}
