#!/usr/bin/env node
// Builds the sharp Lambda layer from the installed packages:
//   layers/sharp/nodejs/node_modules/{sharp, @img/sharp-linux-x64, @img/sharp-libvips-linux-x64,
//   @img/colour, detect-libc, semver}
// keeping what loads at run time on linux x64 (glibc): the CommonJS entry points, the addon and
// libvips. No typings, ES module twins, C++ sources, install scripts or other platforms. Only
// functions serving models that declare image inputs ever load it (lib/prepost/image.ts).
//
//   node layers/build-sharp-layer.mjs [--out <dir>]
import { cpSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageDir, sizeOf } from './layer-files.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const args = process.argv.slice(2);
const outFlag = args.indexOf('--out');
const out = outFlag >= 0 ? args[outFlag + 1] : join(here, 'sharp');
const modules = join(out, 'nodejs', 'node_modules');

/** Run-time files only: package.json, licences, CommonJS code, the addon and shared libraries. */
const keep = (rel) =>
  rel === 'package.json' ||
  /^LICEN[CS]E/i.test(rel) ||
  ((rel.endsWith('.js') || rel.endsWith('.cjs')) && !rel.startsWith('bin/') && !rel.startsWith('install/')) ||
  rel.endsWith('.node') ||
  /\.so(\.\d+)*$/.test(rel) ||
  rel === 'versions.json';

rmSync(out, { recursive: true, force: true });
mkdirSync(modules, { recursive: true });
const packages = ['sharp', '@img/sharp-linux-x64', '@img/sharp-libvips-linux-x64', '@img/colour', 'detect-libc', 'semver'];
for (const name of packages) {
  const from = packageDir(name, root);
  cpSync(from, join(modules, name), { recursive: true, filter: (src) => statSync(src).isDirectory() || keep(relative(from, src)) });
}
// The layer must load as Lambda loads it: check that sharp resolves and its addon opens from here.
const sharp = createRequire(join(modules, 'sharp', 'package.json'))('sharp');
if (typeof sharp.versions?.vips !== 'string') throw new Error('sharp did not load from the layer');
const bytes = sizeOf(out);
const version = JSON.parse(readFileSync(join(modules, 'sharp', 'package.json'), 'utf8')).version;
console.log(`layer: ${relative(root, out) || out} (sharp ${version}, libvips ${sharp.versions.vips}, linux x64), ${(bytes / 1024 / 1024).toFixed(1)} MB unzipped`);
if (bytes > 30 * 1024 * 1024) {
  console.error('layer is over the 30 MB budget');
  process.exit(1);
}
