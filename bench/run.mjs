// Bench runner (`npm run bench`): bundles every bench entry with esbuild into .bench-out/ and
// runs the sections one after another in fresh node processes. Timing is printed, never
// asserted: the exit code says only whether the bench itself ran.
//
//   node bench/run.mjs              all sections
//   node bench/run.mjs warm cold    only these sections (machine, warm, binary, cold, convert, int8, prepost, keras, keras3, stack)
//
// The printed output is also written to .bench-out/last-run.md.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, '.bench-out');

/** Sections, in the order they run. */
const SECTIONS = ['machine', 'warm', 'binary', 'cold', 'convert', 'int8', 'prepost', 'keras', 'keras3', 'stack'];
/** Entries spawned by the cold-start section, one fresh process each. */
const CHILDREN = ['cold-app', 'cold-floor', 'cold-create'];

const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!SECTIONS.includes(name)) {
    console.error(`unknown section "${name}"; sections: ${SECTIONS.join(', ')}`);
    process.exit(2);
  }
}
const sections = wanted.length > 0 ? SECTIONS.filter((s) => wanted.includes(s)) : SECTIONS;

mkdirSync(outdir, { recursive: true });
const started = Date.now();
const common = { absWorkingDir: root, outdir, bundle: true, platform: 'node', format: 'cjs', target: 'node20', logLevel: 'warning' };
// The sections (which also run s3rver in process) load their packages from node_modules.
await build({ ...common, entryPoints: SECTIONS.map((name) => `bench/${name}.ts`), packages: 'external' });
// The cold-start children are bundled as serverless-esbuild bundles the deployed functions
// (serverless.yml, custom.esbuild): the SDK, middy and Powertools inside one file, ES module
// builds first so unused code is shaken out, onnxruntime-node (native) left outside. A cold
// start is measured on the code Lambda loads, not on hundreds of files from node_modules.
await build({ ...common, entryPoints: CHILDREN.map((name) => `bench/${name}.ts`), mainFields: ['module', 'main'], external: ['onnxruntime-node', 'sharp'] });

const env = {
  ...process.env,
  POWERTOOLS_LOG_LEVEL: 'SILENT',
  POWERTOOLS_METRICS_DISABLED: 'true',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  // --expose-gc as serverless.yml deploys the functions (the session loader uses it).
  NODE_OPTIONS: '--openssl-legacy-provider --expose-gc',
};

const transcript = [];

function runSection(name) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [join(outdir, `${name}.js`)], { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      transcript.push(chunk.toString('utf8'));
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`bench section "${name}" exited with ${signal ?? code}`));
    });
  });
}

let failed = false;
for (const name of sections) {
  try {
    await runSection(name);
  } catch (err) {
    console.error(err.message);
    failed = true;
  }
}
const footer = `Bench finished in ${((Date.now() - started) / 1000).toFixed(1)} s.\n`;
process.stdout.write(footer);
transcript.push(footer);
writeFileSync(join(outdir, 'last-run.md'), transcript.join(''));
process.exit(failed ? 1 : 0);
