#!/usr/bin/env node
// Builds the onnxruntime-node Lambda layer from the installed package:
//   layers/onnxruntime/nodejs/node_modules/{onnxruntime-node,onnxruntime-common}
// keeping only what loads at run time on one platform: the CommonJS entry points and
// bin/napi-v6/linux/<arch>. No docs, typings, source maps, install scripts or other platforms.
// The install-time dependencies of onnxruntime-node (adm-zip, global-agent: its CUDA download
// script) are not needed at run time and are left out.
//
//   npm run build:layer                 # linux x64 (the functions' architecture)
//   npm run build:layer -- --arch arm64
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageDir, sizeOf } from './layer-files.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const require = createRequire(join(root, 'package.json'));

const args = process.argv.slice(2);
const archFlag = args.indexOf('--arch');
const arch = archFlag >= 0 ? args[archFlag + 1] : 'x64';
if (arch !== 'x64' && arch !== 'arm64') {
  console.error(`--arch must be x64 or arm64, got ${arch}`);
  process.exit(2);
}
const outFlag = args.indexOf('--out');
const out = outFlag >= 0 ? args[outFlag + 1] : join(here, 'onnxruntime');
const modules = join(out, 'nodejs', 'node_modules');


/** Copies files under `from` whose path relative to it passes `keep`. */
function copyTree(from, to, keep) {
  cpSync(from, to, {
    recursive: true,
    filter: (src) => statSync(src).isDirectory() || keep(relative(from, src)),
  });
}

/** A package.json reduced to what Node's resolver reads. */
function runtimeManifest(pkg, dependencies) {
  const { name, version, license, main, exports, type } = pkg;
  return JSON.stringify({ name, version, license, main, exports, type, dependencies }, null, 2) + '\n';
}

/** Removes directories the copy filter left empty (other platforms' bin folders). */
function pruneEmptyDirs(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) pruneEmptyDirs(join(dir, entry.name));
  }
  if (readdirSync(dir).length === 0) rmSync(dir, { recursive: true });
}

rmSync(out, { recursive: true, force: true });
mkdirSync(modules, { recursive: true });

const nodeDir = packageDir('onnxruntime-node', root);
const nodePkg = JSON.parse(readFileSync(join(nodeDir, 'package.json'), 'utf8'));
const binary = `bin/napi-v6/linux/${arch}/`;
copyTree(nodeDir, join(modules, 'onnxruntime-node'), (rel) =>
  (rel.startsWith('dist/') && rel.endsWith('.js')) || rel.startsWith(binary),
);
writeFileSync(
  join(modules, 'onnxruntime-node', 'package.json'),
  runtimeManifest(nodePkg, { 'onnxruntime-common': nodePkg.dependencies['onnxruntime-common'] }),
);

const commonDir = packageDir('onnxruntime-common', nodeDir);
const commonPkg = JSON.parse(readFileSync(join(commonDir, 'package.json'), 'utf8'));
copyTree(commonDir, join(modules, 'onnxruntime-common'), (rel) => rel.startsWith('dist/cjs/') && rel.endsWith('.js'));
// Only the CommonJS build ships: point both conditions at it.
writeFileSync(
  join(modules, 'onnxruntime-common', 'package.json'),
  runtimeManifest({ ...commonPkg, exports: { require: './dist/cjs/index.js', default: './dist/cjs/index.js' } }, undefined),
);
// dist/cjs carries its own {"type": "commonjs"} marker in the published package; keep it explicit.
writeFileSync(join(modules, 'onnxruntime-common', 'dist', 'cjs', 'package.json'), '{"type":"commonjs"}\n');

pruneEmptyDirs(modules);
const bytes = sizeOf(out);
console.log(`layer: ${relative(root, out) || out} (linux ${arch}), ${(bytes / 1024 / 1024).toFixed(1)} MB unzipped`);
if (bytes > 60 * 1024 * 1024) {
  console.error('layer is over the 60 MB budget');
  process.exit(1);
}
