// dist/cjs holds CommonJS files inside a "type": "module" package: say so for Node and TypeScript.
import { writeFileSync } from 'node:fs';

writeFileSync(new URL('../dist/cjs/package.json', import.meta.url), JSON.stringify({ type: 'commonjs' }) + '\n');
