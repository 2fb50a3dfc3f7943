/**
 * The local stack's conversions, run the way Lambda runs them: each job in a process of its
 * own (a sandbox, tools/stack/convert-worker.ts), never on the event loop that serves the HTTP
 * API and the local S3. Loaded into serverless offline by the plugin tools/local-convert-pool.js,
 * which hands it the S3 events serverless-s3-local delivers.
 *
 * - At most `concurrency` jobs convert at once; the rest queue, in arrival order.
 * - The function's memory size and timeout apply: a sandbox whose resident memory passes the
 *   memory size, or whose job runs past the timeout, is killed, as Lambda kills it.
 * - A job whose sandbox was killed or crashed leaves a failed job report that says why (unless
 *   the job wrote its own report first); the stack goes on. A handler that throws (S3 trouble)
 *   is retried as Lambda retries an asynchronous invocation, then dropped with a log line.
 * - Every line a sandbox prints goes to the stack's log tagged with its job.
 * - The queue is written to a status file (`statusFile`) for the CLI: queued and converting jobs.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { S3Event } from 'aws-lambda';
import { describeUpload, failedReport, resolveEventKey, type UploadJob, type UploadRef } from '../../lib/convert/upload-job';
import type { ObjectStore } from '../../lib/storage/object-store';
import type { InvokeMessage, WorkerMessage } from './convert-worker';

/** The function the pool runs, as serverless.yml declares it. */
export interface PoolFunction {
  name: string;
  /** The bundled handler module (serverless-esbuild's output) and its export. */
  handlerFile: string;
  handlerExport: string;
  memoryMb: number;
  timeoutS: number;
  /** Lambda's `maximumRetryAttempts` for asynchronous invocations (0-2). */
  maxRetries: number;
  /** The function's whole environment. */
  env: Record<string, string>;
}

export interface PoolOptions {
  fn: PoolFunction;
  concurrency: number;
  /** The worker bundle (tools/stack/convert-worker.ts, built). */
  workerFile: string;
  /** Where failure reports go. */
  store: ObjectStore;
  statusFile?: string;
  log: (line: string) => void;
  /** Delay before the n-th retry of a failed invocation is n times this (Lambda waits minutes). */
  retryDelayMs?: number;
  /** How often a running sandbox's memory is read. */
  memoryPollMs?: number;
}

/** What the CLI reads from the status file. */
export interface PoolStatus {
  updatedAt: string;
  concurrency: number;
  jobs: { jobId?: string; model?: string; key: string; state: 'queued' | 'converting'; since: string; attempt: number; pid?: number }[];
}

interface Job {
  event: S3Event;
  upload: UploadRef;
  job?: UploadJob;
  state: 'queued' | 'converting';
  since: string;
  attempt: number;
  sandbox?: Sandbox;
}

/** How one invocation ended. */
type Outcome = ({ kind: 'returned' } | { kind: 'threw'; error: string } | { kind: 'killed'; reason: string }) & { peakBytes?: number };

const MIB = 1024 * 1024;

/** Resident memory of a process: now and its peak since the last reset (Linux /proc). */
function memoryOf(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/** Resets a process's peak resident memory, so each job is measured on its own. */
function resetPeak(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    // Not Linux, or not allowed: the peak then counts from the sandbox's start.
  }
}

/** One sandbox: a worker process running one invocation at a time. */
class Sandbox {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  /** The tag its output lines carry. */
  tag: string;
  private stderrTail: string[] = [];
  private current?: { requestId: string; finish: (outcome: Outcome) => void };
  private exited = false;

  constructor(private readonly options: PoolOptions) {
    const { fn } = options;
    this.child = fork(options.workerFile, [fn.handlerFile, fn.handlerExport], {
      env: fn.env,
      // V8's own heap stops at the memory size too, so a JavaScript leak fails as on Lambda.
      execArgv: [`--max-old-space-size=${fn.memoryMb}`],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    this.tag = `${fn.name} sandbox ${this.child.pid ?? '?'}`;
    for (const [stream, isErr] of [[this.child.stdout, false], [this.child.stderr, true]] as const) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        if (isErr) this.stderrTail = [...this.stderrTail.slice(-19), line];
        options.log(`[${this.tag}] ${line}`);
      });
    }
    this.ready = new Promise((done, fail) => {
      this.child.once('message', (m: WorkerMessage) => (m.type === 'ready' ? done() : fail(new Error(`unexpected first message ${m.type}`))));
      this.child.once('exit', (code, signal) => fail(new Error(`crashed: its process exited (${signal ?? `exit code ${code}`}) while the handler was loading ${this.stderrTail.join(' | ')}`.trim())));
    });
    this.ready.catch(() => undefined);
    this.child.on('message', (m: WorkerMessage) => {
      if (m.type === 'done' && this.current?.requestId === m.requestId) this.current.finish(m.error === undefined ? { kind: 'returned' } : { kind: 'threw', error: m.error });
    });
    // A failed send to a sandbox that died is an 'error' event; its exit says what happened.
    this.child.on('error', (err) => options.log(`[${this.tag}] ${err.message}`));
    this.child.on('exit', (code, signal) => {
      this.exited = true;
      const heap = this.stderrTail.some((l) => l.includes('heap out of memory'));
      const why = heap
        ? `ran out of memory: the JavaScript heap reached the function's ${fn.memoryMb} MB memory size`
        : `crashed: its process exited (${signal ?? `exit code ${code}`}) before the handler returned`;
      this.current?.finish({ kind: 'killed', reason: why });
    });
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** Runs one event to its end: returned, threw, or killed (limit, crash). */
  async invoke(event: S3Event): Promise<Outcome> {
    await this.ready;
    const { fn } = this.options;
    const pid = this.child.pid as number;
    const requestId = randomUUID();
    const deadline = Date.now() + fn.timeoutS * 1000;
    resetPeak(pid);
    return new Promise<Outcome>((done) => {
      let killedFor: string | undefined;
      let peakBytes = 0;
      const kill = (reason: string): void => {
        if (killedFor) return;
        killedFor = reason;
        this.child.kill('SIGKILL');
      };
      const timer = setTimeout(() => kill(`timed out: it ran past the function's ${fn.timeoutS} s timeout`), fn.timeoutS * 1000);
      const poll = setInterval(() => {
        const memory = memoryOf(pid);
        if (!memory) return;
        peakBytes = Math.max(peakBytes, memory.rss, memory.peak);
        if (peakBytes > fn.memoryMb * MIB) {
          kill(`ran out of memory: it used ${Math.round(peakBytes / MIB)} MB, over the function's ${fn.memoryMb} MB memory size`);
        }
      }, this.options.memoryPollMs ?? 100);
      this.current = {
        requestId,
        finish: (outcome) => {
          clearTimeout(timer);
          clearInterval(poll);
          this.current = undefined;
          const last = memoryOf(pid);
          if (last) peakBytes = Math.max(peakBytes, last.peak);
          done({ ...(killedFor ? { kind: 'killed', reason: killedFor } : outcome), peakBytes });
        },
      };
      const message: InvokeMessage = { type: 'invoke', requestId, event, deadline };
      this.child.send(message);
    });
  }

  stop(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

/** A bounded pool of sandboxes with a queue in front. */
export class ConvertPool {
  private readonly queue: Job[] = [];
  private readonly running = new Set<Job>();
  private readonly idle: Sandbox[] = [];
  private closed = false;

  constructor(private readonly options: PoolOptions) {
    this.writeStatus();
  }

  /** Takes an S3 event as Lambda takes an asynchronous invocation: accepted at once, run when a sandbox is free. */
  submit(event: S3Event): void {
    void this.enqueue(event);
  }

  private async enqueue(event: S3Event): Promise<void> {
    const record = event.Records?.[0];
    const raw = record?.s3?.object?.key ?? '';
    let key = raw;
    try {
      key = await resolveEventKey(this.options.store, raw);
    } catch {
      // The handler resolves the key again; the raw key only names the job here.
    }
    const upload: UploadRef = { key, etag: record?.s3?.object?.eTag };
    this.queue.push({ event, upload, job: describeUpload(upload), state: 'queued', since: new Date().toISOString(), attempt: 1 });
    this.options.log(`[${this.options.fn.name}] queued ${key} (${this.running.size} converting, ${this.queue.length} queued)`);
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.running.size < this.options.concurrency && this.queue.length > 0) {
      const job = this.queue.shift() as Job;
      this.running.add(job);
      void this.run(job);
    }
    this.writeStatus();
  }

  private async run(job: Job): Promise<void> {
    const { fn, log } = this.options;
    const tag = job.job ? `${fn.name} ${job.job.model} ${job.job.jobId.slice(0, 8)}` : `${fn.name} ${job.upload.key}`;
    const startedAt = new Date().toISOString();
    let sandbox: Sandbox | undefined;
    let outcome: Outcome;
    try {
      sandbox = this.idle.pop() ?? new Sandbox(this.options);
      sandbox.tag = tag;
      job.state = 'converting';
      job.since = startedAt;
      job.sandbox = sandbox;
      this.writeStatus();
      outcome = await sandbox.invoke(job.event);
    } catch (err) {
      outcome = { kind: 'killed', reason: (err as Error).message };
    }
    this.running.delete(job);
    const seconds = (Date.now() - Date.parse(startedAt)) / 1000;
    const peak = outcome.peakBytes ? `${Math.round(outcome.peakBytes / MIB)} MB` : 'not measured';
    log(`[${tag}] REPORT ${outcome.kind} in ${seconds.toFixed(2)} s, memory size ${fn.memoryMb} MB, max memory used ${peak}`);
    if (sandbox) sandbox.tag = `${fn.name} sandbox ${sandbox.child.pid ?? '?'}`;
    if (sandbox?.alive && !this.closed) this.idle.push(sandbox);
    else sandbox?.stop();

    if (outcome.kind === 'threw' && job.attempt <= fn.maxRetries && !this.closed) {
      log(`[${tag}] the handler threw (attempt ${job.attempt} of ${fn.maxRetries + 1}); retrying as Lambda retries an asynchronous invocation: ${outcome.error.split('\n')[0]}`);
      const retry: Job = { ...job, state: 'queued', since: new Date().toISOString(), attempt: job.attempt + 1, sandbox: undefined };
      setTimeout(() => {
        this.queue.push(retry);
        this.pump();
      }, (this.options.retryDelayMs ?? 1000) * job.attempt).unref();
    } else if (outcome.kind === 'threw') {
      log(`[${tag}] the handler threw on its last attempt; the event is dropped (on AWS it goes to the failure queue): ${outcome.error.split('\n')[0]}`);
    } else if (outcome.kind === 'killed') {
      log(`[${tag}] the job failed: the sandbox ${outcome.reason}`);
      const limit = /^(ran out of memory|timed out)/.test(outcome.reason) ? '; Lambda stops a function at the same limit' : '';
      await this.reportFailure(job, `the ${fn.name} function ${outcome.reason}${limit}`, startedAt).catch((err: unknown) => {
        log(`[${tag}] could not write the failure report: ${(err as Error).message}`);
      });
    }
    this.pump();
  }

  /** A killed job leaves a failed report, unless it wrote its own before it died. */
  private async reportFailure(job: Job, reason: string, startedAt: string): Promise<void> {
    if (!job.job) return;
    const { store } = this.options;
    if ((await store.getJson(job.job.reportKey)) !== undefined) return;
    const report = failedReport(job.job, job.upload, reason, startedAt);
    await store.put(job.job.reportKey, JSON.stringify(report, null, 2), 'application/json');
  }

  private writeStatus(): void {
    const file = this.options.statusFile;
    if (!file) return;
    const jobs = [...this.running, ...this.queue].map((j) => ({
      jobId: j.job?.jobId,
      model: j.job?.model,
      key: j.upload.key,
      state: j.state,
      since: j.since,
      attempt: j.attempt,
      pid: j.state === 'converting' ? j.sandbox?.child.pid : undefined,
    }));
    const status: PoolStatus = { updatedAt: new Date().toISOString(), concurrency: this.options.concurrency, jobs };
    try {
      writeFileSync(`${file}.tmp`, `${JSON.stringify(status, null, 2)}\n`);
      renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.options.log(`[${this.options.fn.name}] could not write ${file}: ${(err as Error).message}`);
    }
  }

  /** Stops every sandbox; queued jobs are dropped (the stack is going away). */
  close(): void {
    this.closed = true;
    this.queue.length = 0;
    for (const s of this.idle) s.stop();
    for (const j of this.running) j.sandbox?.stop();
  }
}
