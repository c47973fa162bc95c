// Bundles the demo page: src/demo.ts (with @tickwire/client) -> dist/demo.js, and copies
// index.html. The lobby (`tickwire-demo web`) serves dist/.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

mkdirSync('dist', { recursive: true });
await build({
  entryPoints: ['src/demo.ts'],
  outfile: 'dist/demo.js',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  logLevel: 'warning',
});
copyFileSync('index.html', 'dist/index.html');
