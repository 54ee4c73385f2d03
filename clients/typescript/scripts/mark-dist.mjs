// Marks each build's module format for Node: dist/esm holds ES modules,
// dist/cjs CommonJS, whatever the package's own "type" says.
import { writeFileSync } from 'node:fs';
writeFileSync(new URL('../dist/esm/package.json', import.meta.url), '{\n  "type": "module"\n}\n');
writeFileSync(new URL('../dist/cjs/package.json', import.meta.url), '{\n  "type": "commonjs"\n}\n');
