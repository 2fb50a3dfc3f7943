// `npm run test:reliability`: every reliability part at its full case count (RELIABILITY_FULL=1),
// then the table of figures they recorded (test/reliability/record.ts), also written to
// .reliability-out/table.md. The exit code is jest's.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const out = join(root, '.reliability-out');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const started = Date.now();
const jest = spawnSync(process.execPath, [join(root, 'node_modules/jest/bin/jest.js'), 'test/reliability', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, RELIABILITY_FULL: '1', NODE_OPTIONS: '--openssl-legacy-provider' },
});

const rows = readdirSync(out)
  .filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(out, f), 'utf8')))
  .sort((a, b) => a.part.localeCompare(b.part));
const lines = [
  `Reliability, full run (${new Date().toISOString().slice(0, 10)}, ${Math.round((Date.now() - started) / 1000)} s)`,
  '',
  '| part | cases | ended well | data lost | detail |',
  '|---|---:|---:|---:|---|',
  ...rows.map((r) => `| ${r.part} | ${r.cases} | ${r.endedWell} | ${r.dataLost} | ${r.detail} |`),
];
if (rows.length === 0) lines.push('| (no part recorded a row) | | | | |');
const table = `${lines.join('\n')}\n`;
writeFileSync(join(out, 'table.md'), table);
process.stdout.write(`\n${table}`);
process.exit(jest.status ?? 1);
