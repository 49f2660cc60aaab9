// A build starts from an empty dist/, so no file from an older build is ever shipped.
import { rmSync } from 'node:fs';

rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
