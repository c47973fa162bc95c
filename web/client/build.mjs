// Builds the ESM bundle (dist/index.js) with esbuild; with --tests, also the unit tests
// (test/*.test.ts -> dist-test/*.test.mjs) for `node --test`. Type declarations come from
// `tsc --emitDeclarationOnly` (see package.json "build").
import { build } from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';

const common = { bundle: true, format: 'esm', platform: 'neutral', target: 'es2022', sourcemap: true, logLevel: 'warning' };

await build({ ...common, entryPoints: ['src/index.ts'], outfile: 'dist/index.js', external: ['@noble/ed25519'] });

if (process.argv.includes('--tests')) {
  rmSync('dist-test', { recursive: true, force: true });
  const tests = readdirSync('test').filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`);
  await build({
    ...common,
    platform: 'node',
    entryPoints: tests,
    outdir: 'dist-test',
    outExtension: { '.js': '.mjs' },
    external: ['node:*'],
  });
}
