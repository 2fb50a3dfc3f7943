import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { T0 } from './t0';

/** One timed step of a cold-start child, in ms, `at` relative to the child's first line. */
export interface Phase {
  name: string;
  at: number;
  ms: number;
  detail?: string;
  /** What the call returned, when the bench describes it (e.g. "hit"/"miss", "path (s3)"). */
  outcome?: string;
  /** process.memoryUsage() at the end of the phase, bytes (rss, and array buffers / external). */
  rss?: number;
  arrayBuffers?: number;
  /** The same at the start of the phase. */
  rssStart?: number;
  arrayBuffersStart?: number;
}

/** What every cold-start child prints (one line, prefixed by {@link RESULT_PREFIX}). */
export interface ChildReport {
  mode: string;
  /** ms from the process's time origin to the child's first line (node bootstrap). */
  bootMs: number;
  /** Milestones, ms since the first line. */
  marks: Record<string, number>;
  phases: Phase[];
  /** process.memoryUsage().rss at named points, bytes. */
  rss: Record<string, number>;
  /**
   * process.resourceUsage().maxRSS, converted from KiB to bytes. On Linux this is inherited
   * across fork + exec: a spawned child starts with its parent's RSS at the fork as its max.
   */
  maxRssBytes: number;
  /** This process image's own peak RSS: VmHWM of /proc/self/status (reset by exec), bytes. */
  hwmBytes: number;
  status?: number;
}

export const RESULT_PREFIX = 'BENCH_RESULT ';

/** ms since the child's first line. */
export function sinceT0(): number {
  return performance.now() - T0;
}

const rssAt: Record<string, number> = {};

/** Peak RSS of this process image (VmHWM), falling back to maxRSS off Linux. */
function highWaterMark(): number {
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (match?.[1]) return Number(match[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

/** Notes the resident set size now, under `name`. */
export function noteRss(name: string): void {
  rssAt[name] = process.memoryUsage().rss;
}

/** Prints the report and exits at once (open S3 sockets must not hold the process). */
export function finish(mode: string, marks: Record<string, number>, phases: Phase[] = [], status?: number): never {
  const report: ChildReport = {
    mode,
    bootMs: T0,
    marks,
    phases,
    rss: rssAt,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    hwmBytes: highWaterMark(),
    status,
  };
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(report)}\n`);
  process.exit(0);
}

/** Reports a failure and exits non-zero. */
export function fail(err: unknown): never {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
}
