/**
 * Uploading a model the way a user does (options sidecar first, then the .onnx under uploads/)
 * and waiting for the conversion job's report. Used by `npm start` for the default model and by
 * `npm run model -- upload`.
 */
import { Readable } from 'node:stream';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { jobIdFor, type JobReport } from '../../lib/convert/job';
import { keys } from '../../lib/registry/keys';
import type { ObjectStore } from '../../lib/storage/object-store';

export interface UploadRequest {
  model: string;
  /** The file name under uploads/<model>/, without its suffix. */
  name: string;
  bytes: Uint8Array;
  /** The upload's suffix: `onnx` (the default), `zip` (a TF.js model folder), `h5` (Keras 2) or `keras` (Keras 3). */
  suffix?: 'onnx' | 'zip' | 'h5' | 'keras';
  /** The sidecar's JSON object, uploaded first so the job finds it. */
  options?: unknown;
  /** Called as the model's bytes go out. */
  onProgress?: (sent: number, total: number) => void;
}

export interface UploadedModel {
  key: string;
  etag: string;
  jobId: string;
  reportKey: string;
}

const CHUNK = 256 * 1024;

/** Puts the sidecar (if any) and the model; returns where the job will write its report. */
export async function uploadModel(client: S3Client, store: ObjectStore, request: UploadRequest): Promise<UploadedModel> {
  const base = `uploads/${request.model}/${request.name}`;
  if (request.options !== undefined) await store.put(`${base}.json`, JSON.stringify(request.options, null, 2), 'application/json');
  const { bytes, onProgress } = request;
  let sent = 0;
  // A stream of small chunks, so progress follows the socket rather than one 100% jump.
  const body = Readable.from(
    (function* chunks() {
      for (let at = 0; at < bytes.byteLength; at += CHUNK) {
        const chunk = bytes.subarray(at, Math.min(at + CHUNK, bytes.byteLength));
        sent += chunk.byteLength;
        onProgress?.(sent, bytes.byteLength);
        yield chunk;
      }
    })(),
  );
  const key = `${base}.${request.suffix ?? 'onnx'}`;
  const out = await client.send(
    new PutObjectCommand({ Bucket: store.bucket, Key: key, Body: body, ContentLength: bytes.byteLength, ContentType: 'application/octet-stream' }),
  );
  onProgress?.(bytes.byteLength, bytes.byteLength);
  // S3 events carry the ETag without quotes; the job id is derived from key and ETag.
  const etag = (out.ETag ?? '').replace(/"/g, '');
  const jobId = jobIdFor({ key, etag });
  return { key, etag, jobId, reportKey: keys.job(request.model, jobId) };
}

export class WaitTimeoutError extends Error {}

/** Polls for the job report until it exists; `onTick` sees the seconds waited so far. */
export async function waitForReport(
  store: ObjectStore,
  reportKey: string,
  options: { timeoutMs: number; intervalMs?: number; onTick?: (waitedMs: number) => void },
): Promise<JobReport> {
  const started = Date.now();
  for (;;) {
    const report = (await store.getJson(reportKey)) as JobReport | undefined;
    if (report !== undefined) return report;
    const waited = Date.now() - started;
    if (waited > options.timeoutMs) {
      throw new WaitTimeoutError(`no job report at ${reportKey} after ${Math.round(waited / 1000)} s: is the convert function running?`);
    }
    options.onTick?.(waited);
    await new Promise((done) => setTimeout(done, options.intervalMs ?? 250));
  }
}

/** The report as a few lines for people. */
export function summarizeReport(report: JobReport): string[] {
  const lines: string[] = [];
  if (report.status === 'failed') {
    lines.push(`conversion failed: ${report.reason ?? 'no reason given'}`);
    return lines;
  }
  const f = report.figures;
  lines.push(`published ${report.model} version ${report.version ?? '?'} (${report.outcome ?? 'converted'})`);
  if (f) {
    const mb = (n: number): string => `${(n / 1e6).toFixed(2)} MB`;
    lines.push(`  size        ${mb(f.bytes.original)} -> ${mb(f.bytes.converted)} (${f.compressionPercent.toFixed(1)}% smaller)`);
    lines.push(`  latency     ${f.latencyMs.original.toFixed(3)} ms -> ${f.latencyMs.converted.toFixed(3)} ms median (speedup ${f.speedup.toFixed(2)}x)`);
    for (const [name, o] of Object.entries(f.outputs)) {
      const top1 = o.top1Agreement === undefined ? '' : `, top-1 agreement ${(o.top1Agreement * 100).toFixed(1)}%`;
      lines.push(`  output ${name}: cosine ${o.cosine.toFixed(5)}, max abs error ${o.maxAbsError.toExponential(2)}${top1}`);
    }
  }
  const imported = report.import;
  if (imported) {
    const head = `  import      ${imported.format} -> ONNX ${(imported.onnxBytes / 1e6).toFixed(2)} MB`;
    const outputs = Object.entries(imported.fidelity?.outputs ?? {}).map(([name, o]) => `${name} cosine ${o.cosine.toFixed(6)}, max abs error ${o.maxAbsError.toExponential(2)}`);
    lines.push(imported.fidelity ? `${head}, against TF.js: ${outputs.join('; ')}` : `${head}, fidelity not measured: ${imported.fidelityNotMeasured ?? 'no figures'}`);
  }
  if (report.gates) {
    lines.push(report.gates.passed ? '  gates       passed' : `  gates       FAILED: ${report.gates.failures.join('; ')}`);
  }
  if (report.labelMoved) lines.push(`  label       "${report.label ?? ''}" now points at version ${report.version ?? '?'}`);
  else if (report.label === null) lines.push('  label       none moved (the options asked for none)');
  else lines.push(`  label       "${report.label ?? 'stable'}" not moved`);
  if (report.reason) lines.push(`  note        ${report.reason}`);
  return lines;
}
