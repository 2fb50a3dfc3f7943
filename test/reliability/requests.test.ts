/**
 * Seeded fuzz of the inference handler: thousands of malformed, hostile and valid requests,
 * as API Gateway HTTP API events, against a real s3rver and real onnxruntime-node sessions.
 *
 * Every answer must be a 200 with the right outputs (valid requests) or a 4xx whose body is
 * exactly `{"error": "<message>"}` with a message naming the problem; never a 5xx, never a
 * throw. Memory stays bounded, and valid requests answer the same after the fuzz as before.
 */
import { collector } from '../helpers/memory';
import { InferenceSession } from 'onnxruntime-node';
import { createTestApp, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { mlpModel } from '../helpers/models';
import { checkAnswer } from './answer-checks';
import { recordReliability } from './record';
import { publishFuzzModels } from './fuzz-models';
import { ANY_ANSWER, CATEGORY_NAMES, requestCase, requestCases, type Category, type RequestCase, wellFormedAnswer } from './request-cases';
import type { HttpResponse } from '../../lib/http/handle';

const SEED = 0x5eed_2024;
/**
 * 10,000 cases take about 20 s on a 2-core machine, so `npm test` runs them all and the full
 * reliability run (FULL_RUN) runs the same set. To replay one case: `requestCase(SEED, index)`.
 */
const CASES = 10_000;
/** Valid requests answered before and after the fuzz, which must not change. */
const CANARY_SEED = 0xca4a_e7;
const CANARIES = 40;
const SAMPLE_EVERY = 100;
const MIB = 1024 * 1024;
/** Growth of the V8 heap over the run, after a full collection: generous, a leak per request would pass it. */
const HEAP_GROWTH_LIMIT = 64 * MIB;
/** Growth of the RSS over the run: very generous (freed large strings need not return to the OS at once). */
const RSS_GROWTH_LIMIT = 768 * MIB;
const MAX_MESSAGE_LENGTH = 1024;

type Response = HttpResponse;

let s3: LocalS3;
let t: TestApp;
/** The same weights as mlp and mlp-dyn, run directly: the expected probabilities. */
let reference: InferenceSession;

beforeAll(async () => {
  s3 = await startLocalS3();
  await publishFuzzModels(s3);
  t = createTestApp(s3);
  reference = await InferenceSession.create(mlpModel({ batch: 'N' }));
}, 60_000);

afterAll(async () => {
  await reference?.release();
  await t?.dispose();
  await s3?.stop();
});

function eventOf(c: RequestCase) {
  const event = httpEvent(c.method, c.path, {
    body: c.rawBase64 !== undefined ? '' : c.body,
    headers: c.headers,
    apiKey: c.apiKey,
    base64: c.base64,
  });
  if (c.rawBase64 !== undefined) {
    event.body = c.rawBase64;
    event.isBase64Encoded = true;
  }
  if (c.contentType === null) delete event.headers['content-type'];
  else if (c.contentType !== undefined) event.headers['content-type'] = c.contentType;
  return event;
}

async function send(c: RequestCase): Promise<Response> {
  return (await t.handler(eventOf(c), lambdaContext())) as Response;
}

// ---------------------------------------------------------------------------------------------
// One case

interface Outcome {
  status: number | 'threw';
  /** Why the case did not end as it must; undefined when it did. */
  problem?: string;
  /** A valid request answered with wrong data. */
  wrongData?: boolean;
}

async function runCase(c: RequestCase): Promise<Outcome> {
  let res: Response;
  try {
    res = await send(c);
  } catch (err) {
    return { status: 'threw', problem: `handler threw: ${(err as Error)?.stack ?? String(err)}` };
  }
  const status = res?.statusCode;
  if (typeof status !== 'number' || typeof res.body !== 'string') return { status: -1, problem: `not an HTTP answer: ${JSON.stringify(res)?.slice(0, 200)}` };
  const excerpt = res.body.slice(0, 300);
  if (status >= 500) return { status, problem: `server error ${status}: ${excerpt}` };
  if (res.headers?.['content-type'] !== 'application/json') return { status, problem: `content-type ${res.headers?.['content-type']}` };
  let json: unknown;
  try {
    json = JSON.parse(res.body);
  } catch {
    return { status, problem: `body is not JSON: ${excerpt}` };
  }
  if (c.expect.status === ANY_ANSWER) {
    if (status === 200) return wellFormedAnswer(json) ? { status } : { status, problem: `a 200 that is no answer: ${excerpt}` };
  } else if (status !== c.expect.status) return { status, problem: `status ${status}, expected ${c.expect.status}: ${excerpt}` };

  if (status !== 200) {
    if (status < 400) return { status, problem: `status ${status}` };
    const keys = json !== null && typeof json === 'object' && !Array.isArray(json) ? Object.keys(json) : [];
    const message = (json as { error?: unknown }).error;
    if (keys.length !== 1 || typeof message !== 'string') return { status, problem: `not {"error": "..."}: ${excerpt}` };
    if (message.trim() === '') return { status, problem: 'empty error message' };
    if (message.length > MAX_MESSAGE_LENGTH) return { status, problem: `error message of ${message.length} characters` };
    if (/\n\s+at |\.ts:\d+|node_modules/.test(message)) return { status, problem: `stack trace in the message: ${excerpt}` };
    if (c.expect.message && !c.expect.message.test(message)) return { status, problem: `message ${JSON.stringify(message.slice(0, 300))} does not match ${String(c.expect.message)}` };
    if (status === 401 && res.headers['www-authenticate'] !== 'Bearer') return { status, problem: '401 without www-authenticate' };
    return { status };
  }
  if (!c.expect.answer) return { status, problem: 'a 200 with no answer to check' };
  try {
    await checkAnswer(c.expect.answer, res.body, reference);
  } catch (err) {
    return { status, problem: `wrong answer: ${(err as Error).message}`, wrongData: true };
  }
  return { status };
}

// ---------------------------------------------------------------------------------------------
// Memory

function settledMemory(gc: (() => void) | undefined): NodeJS.MemoryUsage {
  gc?.();
  gc?.();
  return process.memoryUsage();
}

/** Powertools Metrics warns on stderr after every request that added no metric: 10,000 lines. */
function muteEmptyMetricsWarnings(): { restore: () => void; muted: () => number } {
  let muted = 0;
  const original = process.stderr.write.bind(process.stderr) as (...args: unknown[]) => boolean;
  const spy = jest.spyOn(process.stderr, 'write').mockImplementation((...args: unknown[]) => {
    if (String(args[0]).includes('No application metrics to publish')) {
      muted++;
      return true;
    }
    return original(...args);
  });
  return { restore: () => spy.mockRestore(), muted: () => muted };
}

const mib = (bytes: number) => Math.round(bytes / MIB);

// ---------------------------------------------------------------------------------------------

test(`${CASES} seeded malformed, hostile and valid requests: never a 5xx, every refusal a named 4xx, valid answers right`, async () => {
  const started = Date.now();
  const mute = muteEmptyMetricsWarnings();
  try {
    // Canaries: valid requests, answered before the fuzz (warming every session) and after.
    const canaries: RequestCase[] = [];
    for (let i = 0; canaries.length < CANARIES; i++) {
      const c = requestCase(CANARY_SEED, i);
      if (c.category.startsWith('valid-') && c.expect.answer) canaries.push(c);
    }
    const before = new Map<number, string>();
    for (const c of canaries) {
      const outcome = await runCase(c);
      expect(outcome).toEqual({ status: 200 });
      before.set(c.index, (await send(c)).body);
    }

    const gc = collector();
    const baseline = settledMemory(gc);
    let peakRss = baseline.rss;
    let peakHeap = baseline.heapUsed;

    const byStatus = new Map<string, number>();
    const byCategory = new Map<Category, { cases: number; ok: number; statuses: Map<string, number> }>(
      CATEGORY_NAMES.map((c) => [c, { cases: 0, ok: 0, statuses: new Map() }]),
    );
    const failures: string[] = [];
    let endedWell = 0;
    let wrongData = 0;
    let done = 0;

    for (const c of requestCases(SEED, CASES)) {
      const outcome = await runCase(c);
      const status = String(outcome.status);
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
      const cat = byCategory.get(c.category);
      if (cat) {
        cat.cases++;
        cat.statuses.set(status, (cat.statuses.get(status) ?? 0) + 1);
        if (!outcome.problem) cat.ok++;
      }
      if (outcome.problem) failures.push(`#${c.index} [${c.category}] ${c.method} ${c.path.slice(0, 80)} ${c.what}: ${outcome.problem}`);
      else endedWell++;
      if (outcome.wrongData) wrongData++;
      if (++done % SAMPLE_EVERY === 0) {
        const m = process.memoryUsage();
        peakRss = Math.max(peakRss, m.rss);
        peakHeap = Math.max(peakHeap, m.heapUsed);
      }
    }

    // Poison check: the canaries answer exactly as before, and nothing reached Object.prototype.
    const poisoned: string[] = [];
    for (const c of canaries) {
      const outcome = await runCase(c);
      const body = (await send(c)).body;
      if (outcome.problem || body !== before.get(c.index)) poisoned.push(`canary #${c.index} ${c.what}: ${outcome.problem ?? 'answer changed'}`);
    }
    const polluted = ['polluted', '__junk'].filter((k) => k in Object.prototype || k in ({} as Record<string, unknown>));

    const after = settledMemory(gc);
    const heapGrowth = after.heapUsed - baseline.heapUsed;
    const rssGrowth = after.rss - baseline.rss;
    const seconds = (Date.now() - started) / 1000;

    const statuses = [...byStatus.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([s, n]) => `${s}: ${n}`).join(', ');
    recordReliability({
      part: 'requests (handler)',
      cases: CASES,
      endedWell,
      dataLost: wrongData + poisoned.length,
      detail:
        `seed 0x${SEED.toString(16)}; ended well = no 5xx or throw, the expected status, {"error"} bodies whose message names the problem, ` +
        `right outputs for valid requests; statuses ${statuses}; peak RSS ${mib(peakRss)} MiB (heap ${mib(peakHeap)} MiB), ` +
        `heap growth after GC ${mib(heapGrowth)} MiB${gc ? '' : ' (no GC available)'}; ${CANARIES} canaries unchanged after: ${poisoned.length === 0}`,
    });
    const table = CATEGORY_NAMES.map((name) => {
      const cat = byCategory.get(name);
      const s = [...(cat?.statuses.entries() ?? [])].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}:${n}`).join(' ');
      return `  ${name.padEnd(15)} ${String(cat?.cases ?? 0).padStart(5)} cases  ${String(cat?.ok ?? 0).padStart(5)} ok   ${s}`;
    });
    console.log(
      [
        `requests (handler): ${CASES} cases, ${endedWell} ended well, ${failures.length} failed, ${seconds.toFixed(1)} s`,
        `  statuses ${statuses}`,
        `  memory: baseline heap ${mib(baseline.heapUsed)} MiB rss ${mib(baseline.rss)} MiB; peak heap ${mib(peakHeap)} MiB rss ${mib(peakRss)} MiB; ` +
          `after GC heap ${mib(after.heapUsed)} MiB (+${mib(heapGrowth)}) rss ${mib(after.rss)} MiB (+${mib(rssGrowth)}); muted metric warnings ${mute.muted()}`,
        ...table,
      ].join('\n'),
    );

    expect(failures.slice(0, 40)).toEqual([]);
    expect(endedWell).toBe(CASES);
    expect(poisoned).toEqual([]);
    expect(polluted).toEqual([]);
    for (const name of CATEGORY_NAMES) expect({ name, cases: (byCategory.get(name)?.cases ?? 0) > 0 }).toEqual({ name, cases: true });
    expect(heapGrowth).toBeLessThan(HEAP_GROWTH_LIMIT);
    expect(rssGrowth).toBeLessThan(RSS_GROWTH_LIMIT);
  } finally {
    mute.restore();
  }
}, 600_000);
