// What the layer builders share: finding installed packages and measuring what they copied.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** The directory of a package installed for `from` (its package.json may not be exported). */
export function packageDir(name, from) {
  // Installed where npm puts it (binary-only packages have no entry point to resolve)...
  const direct = join(from, 'node_modules', name);
  if (existsSync(join(direct, 'package.json'))) return direct;
  // ... or wherever Node's resolver finds it from `from` (a hoisted or nested copy).
  let dir;
  try {
    dir = dirname(createRequire(join(from, 'package.json')).resolve(name));
  } catch {
    throw new Error(`${name} is not installed; run npm ci`);
  }
  while (!existsSync(join(dir, 'package.json')) || JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name !== name) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the package directory of ${name}`);
    dir = parent;
  }
  return dir;
}

/** Bytes of every file below `dir`. */
export function sizeOf(dir) {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? sizeOf(path) : statSync(path).size;
  }
  return total;
}
