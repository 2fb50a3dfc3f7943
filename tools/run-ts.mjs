// Runs a TypeScript tool of this repo (`node tools/run-ts.mjs tools/stack/start.ts [args...]`):
// esbuild bundles the entry with the project's own lib/ code into .tools-out/ (node_modules
// stay external, loaded as in production), then the bundle runs in this same process, so
// signals such as Ctrl-C reach the tool directly.
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, stop } from 'esbuild';

const { TOOL_BUILD } = createRequire(import.meta.url)('./tool-build.cjs');
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [entry, ...args] = process.argv.slice(2);
if (!entry) {
  console.error('usage: node tools/run-ts.mjs <entry.ts> [args...]');
  process.exit(2);
}
// One bundle per process: two tools (or two tests) starting at once never load a half-written file.
const outfile = join(root, '.tools-out', `${basename(entry, '.ts')}-${process.pid}.cjs`);
await build({
  absWorkingDir: root,
  entryPoints: [resolve(entry)],
  outfile,
  ...TOOL_BUILD,
});
await stop();
// The tools run on the developer's Node (20 here); the functions run on Lambda's 22.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.argv = [process.argv[0] ?? process.execPath, outfile, ...args];
process.setSourceMapsEnabled(true);
try {
  createRequire(import.meta.url)(outfile);
} finally {
  rmSync(outfile, { force: true }); // loaded (its source map is inline): the file is not needed again
}
