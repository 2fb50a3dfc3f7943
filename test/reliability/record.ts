import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * One row of the reliability table (`npm run test:reliability` prints them all): how many
 * cases a part tried, how many ended as they must, and how many lost data (must be 0).
 */
export interface ReliabilityRow {
  /** Short name of the part, e.g. "requests (in-process)". */
  part: string;
  cases: number;
  endedWell: number;
  dataLost: number;
  /** One line on what "ended well" means here and anything notable (peak RSS, outcomes by kind). */
  detail: string;
}

/** Where rows are written: one JSON file per part, read back by test/reliability/report.mjs. */
export const RELIABILITY_OUT = resolve(__dirname, '../../.reliability-out');

/** True under `npm run test:reliability`: run the full case counts, not the `npm test` share. */
export const FULL_RUN = process.env.RELIABILITY_FULL === '1';

export function recordReliability(row: ReliabilityRow): void {
  mkdirSync(RELIABILITY_OUT, { recursive: true });
  const file = row.part.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
  writeFileSync(join(RELIABILITY_OUT, `${file}.json`), `${JSON.stringify({ ...row, fullRun: FULL_RUN, at: new Date().toISOString() }, null, 2)}\n`);
}
