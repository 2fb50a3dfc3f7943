import { createHash } from 'node:crypto';
import { keys } from '../registry/keys';
import { MODEL_NAME_PATTERN } from '../registry/manifest';
import type { ObjectStore } from '../storage/object-store';
import type { ImportFidelity } from './import/fidelity';
import type { PipelineResult } from './pipeline';

/**
 * What names a conversion job and where its report goes, without the conversion itself: the
 * job (lib/convert/job.ts), the S3 handler and the local stack's conversion pool all read an
 * upload the same way, and the pool never loads onnxruntime to do it.
 */

/** An upload the conversion was asked to process. */
export interface UploadRef {
  /** The object key as S3 holds it (already URL-decoded). */
  key: string;
  etag?: string;
}

/** `jobs/<model>/<job-id>.json`: what happened to one upload. */
export interface JobReport {
  jobId: string;
  model: string;
  status: 'succeeded' | 'failed';
  /** Why a job failed, or why the published model is not the one asked for. */
  reason?: string;
  source: { key: string; etag?: string; bytes?: number; sha256?: string };
  version?: number;
  label?: string | null;
  labelMoved?: boolean;
  outcome?: PipelineResult['outcome'];
  /** Something the published model does worse than asked (an int8-static slower than float). */
  warning?: string;
  /** For `mode: "int8"`: which mode it picked and why. */
  modeChoice?: PipelineResult['modeChoice'];
  /** The opset upgrade the quantization needed, when the upload was older. */
  opsetUpgrade?: PipelineResult['opsetUpgrade'];
  figures?: {
    compressionPercent: number;
    speedup: number;
    outputs: PipelineResult['evaluation']['outputs'];
    bytes: PipelineResult['evaluation']['bytes'];
    latencyMs: PipelineResult['evaluation']['latencyMs'];
    sessionCreateMs: PipelineResult['evaluation']['sessionCreateMs'];
    accuracy?: PipelineResult['evaluation']['accuracy'];
  };
  gates?: PipelineResult['gates'];
  /** For an upload converted to ONNX first (a TF.js zip): what was read. */
  import?: { format: string; onnxBytes: number; fidelity?: ImportFidelity; fidelityNotMeasured?: string };
  startedAt: string;
  finishedAt: string;
  timingsMs: Record<string, number>;
}

/** An upload key read as a job: its model, file name, job id and report key. */
export interface UploadJob {
  model: string;
  /** The file name under `uploads/<model>/`, without its suffix. */
  file: string;
  /** `onnx`, or a format converted to ONNX first (`zip`: a TF.js model folder; `h5`: Keras 2 HDF5; `keras`: Keras 3). */
  suffix: 'onnx' | 'zip' | 'h5' | 'keras';
  /** False when the model name is not one the registry accepts; its report goes to `_rejected`. */
  validModel: boolean;
  jobId: string;
  reportKey: string;
}

const UPLOAD_KEY = /^uploads\/([^/]+)\/([^/]+)\.(onnx|zip|h5|keras)$/;
/** Where reports of uploads whose model name is not valid go: never a model's own prefix. */
const REJECTED = '_rejected';

/** A job id stable across deliveries of the same object: S3 delivers events at least once. */
export function jobIdFor(upload: UploadRef): string {
  return createHash('sha256').update(`${upload.key}\n${upload.etag ?? ''}`).digest('hex').slice(0, 24);
}

/** The job an upload key starts, or undefined for keys that are not uploads (sidecars, other files). */
export function describeUpload(upload: UploadRef): UploadJob | undefined {
  const match = UPLOAD_KEY.exec(upload.key);
  if (!match) return undefined;
  const [, model = '', file = '', suffix = 'onnx'] = match;
  const jobId = jobIdFor(upload);
  const validModel = MODEL_NAME_PATTERN.test(model) && !model.includes('..');
  return { model, file, suffix: suffix as UploadJob['suffix'], validModel, jobId, reportKey: keys.job(validModel ? model : REJECTED, jobId) };
}

/** A failed job's report: nothing was published, `reason` says why. */
export function failedReport(job: UploadJob, upload: UploadRef, reason: string, startedAt: string, timingsMs: Record<string, number> = {}): JobReport {
  return {
    jobId: job.jobId,
    model: job.model,
    status: 'failed',
    reason,
    source: { key: upload.key, etag: upload.etag },
    startedAt,
    finishedAt: new Date().toISOString(),
    timingsMs,
  };
}

/**
 * The key an S3 event names. AWS sends keys URL-encoded (spaces as '+'); the local S3
 * (serverless-s3-local) sends them raw. Take the decoded key when it exists, else the raw one.
 */
export async function resolveEventKey(store: ObjectStore, raw: string): Promise<string> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
  if (decoded === raw) return raw;
  return (await store.head(decoded)) ? decoded : raw;
}
