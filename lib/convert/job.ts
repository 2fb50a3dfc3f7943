import { performance } from 'node:perf_hooks';
import { InferenceSession, type Tensor } from 'onnxruntime-node';
import { AppError, ServiceUnavailableError } from '../errors';
import { toSpecs } from '../runtime/model-session';
import { keys, versionOfManifestKey } from '../registry/keys';
import { MODEL_NAME_PATTERN, parseManifest, type Manifest, type TensorSpec } from '../registry/manifest';
import { nextVersion, publishVersion, setAlias } from '../registry/registry';
import { sha256Hex } from '../storage/hash';
import { isNotFound, type ObjectStore } from '../storage/object-store';
import { checkDeclarations, DeclarationError, type Declarations } from '../prepost/declarations';
import { TextTokenizer } from '../prepost/text';
import { imageSampleFeeds } from '../prepost/samples';
import { parseUploadOptions, type TextSample } from './options';
import { readSampleFiles, sampleLocation } from './sample-files';
import { resolveEvaluationSet } from './evaluation-set';
import { ConversionError } from './errors';
import { convertModel, validateModel, type PipelineResult } from './pipeline';
import { checkImportFidelity, measureImportFidelity } from './import/fidelity';
import { importUpload } from './import/import-upload';
import { DEFAULT_ZIP_LIMITS } from './import/zip';
import { describeUpload, failedReport, type JobReport, type UploadRef } from './upload-job';

export { jobIdFor, type JobReport, type UploadRef } from './upload-job';

export interface ConvertDeps {
  store: ObjectStore;
  maxModelBytes: number;
  intraOpNumThreads: number;
}

const modelLocks = new Map<string, Promise<unknown>>();

/**
 * Runs `work` after every earlier publish of the same model in this process has finished.
 * Across processes S3's conditional write (If-None-Match) keeps versions distinct; the local
 * S3 ignores that header, and its uploads all convert in one process, where this lock does.
 */
async function withModelLock<T>(model: string, work: () => Promise<T>): Promise<T> {
  const previous = modelLocks.get(model) ?? Promise.resolve();
  const run = previous.then(work, work);
  const settled = run.catch(() => undefined);
  modelLocks.set(model, settled);
  try {
    return await run;
  } finally {
    if (modelLocks.get(model) === settled) modelLocks.delete(model);
  }
}

/** Publishes under the next free version, taking the one after when another publisher was first. */
async function publishNextVersion(
  store: ObjectStore,
  manifest: Omit<Parameters<typeof publishVersion>[1], 'version'>,
  artifact: Uint8Array,
  label: string | undefined,
  files: Readonly<Record<string, Uint8Array>>,
): Promise<number> {
  let version = await nextVersion(store, manifest.model);
  for (let attempt = 0; attempt < 20; attempt++, version++) {
    if (await publishVersion(store, { ...manifest, version }, artifact, label, files)) return version;
  }
  throw new ServiceUnavailableError(`could not claim a version of ${manifest.model}: 20 attempts were taken by other publishers`);
}

/** What a conversion writes into its manifest, besides the registry's own fields. */
interface ConversionRecord {
  version: number;
  conversion: { jobId: string; outcome: PipelineResult['outcome']; reason?: string; warning?: string; modeChoice?: PipelineResult['modeChoice']; opsetUpgrade?: PipelineResult['opsetUpgrade'] };
  evaluation: PipelineResult['evaluation'] & { passed: boolean; gates: PipelineResult['gates'] };
}

/**
 * The version an earlier delivery of this job published, if any. A fault after the manifest
 * was written (label or report write, a lost answer) makes the job throw, and S3 delivers again:
 * that delivery must finish the job, not publish the upload a second time. Only manifests S3
 * stored since the upload can be this job's, so a first delivery reads none.
 */
async function versionOfJob(store: ObjectStore, model: string, jobId: string, since: Date | undefined): Promise<(Manifest & ConversionRecord) | undefined> {
  const candidates = (await store.list(keys.modelPrefix(model)))
    .filter((o) => versionOfManifestKey(model, o.key) !== undefined && !(since && o.lastModified && o.lastModified < since))
    .sort((a, b) => (versionOfManifestKey(model, b.key) ?? 0) - (versionOfManifestKey(model, a.key) ?? 0));
  for (const { key } of candidates) {
    const raw = await store.getJson(key);
    if (raw === undefined) continue;
    const manifest = parseManifest(raw, key) as Manifest & Partial<ConversionRecord>;
    if (manifest.conversion?.jobId === jobId && manifest.evaluation?.gates) return manifest as Manifest & ConversionRecord;
  }
  return undefined;
}

/** Fills a succeeded report from what the job published (one way for both first and later deliveries). */
function succeeded(report: JobReport, published: ConversionRecord, label: string | null, labelMoved: boolean): void {
  const { evaluation, conversion } = published;
  const passed = evaluation.gates.passed;
  Object.assign(report, {
    status: 'succeeded',
    version: published.version,
    label,
    labelMoved,
    outcome: conversion.outcome,
    ...(conversion.modeChoice ? { modeChoice: conversion.modeChoice } : {}),
    ...(conversion.opsetUpgrade ? { opsetUpgrade: conversion.opsetUpgrade } : {}),
    ...(conversion.warning ? { warning: conversion.warning } : {}),
    reason: conversion.reason ?? (passed ? undefined : `gates failed: ${evaluation.gates.failures.join('; ')}; published as a candidate, no label moved`),
    figures: {
      compressionPercent: evaluation.bytes.compressionPercent,
      speedup: evaluation.latencyMs.speedup,
      outputs: evaluation.outputs,
      bytes: evaluation.bytes,
      latencyMs: evaluation.latencyMs,
      sessionCreateMs: evaluation.sessionCreateMs,
      ...(evaluation.accuracy ? { accuracy: evaluation.accuracy } : {}),
    },
    gates: evaluation.gates,
  });
}

async function specsOf(bytes: Uint8Array): Promise<{ inputs: TensorSpec[]; outputs: TensorSpec[] }> {
  let session: InferenceSession;
  try {
    session = await InferenceSession.create(bytes, { logSeverityLevel: 3, graphOptimizationLevel: 'disabled' });
  } catch (err) {
    throw new ConversionError(`onnxruntime cannot load the model: ${((err as Error)?.message ?? String(err)).slice(0, 400)}`, { cause: err });
  }
  try {
    return { inputs: toSpecs(session.inputMetadata), outputs: toSpecs(session.outputMetadata) };
  } finally {
    await session.release();
  }
}

/** The upload's declarations checked against the converted model; a misfit fails the job. */
function fitDeclarations(...args: Parameters<typeof checkDeclarations>): ReturnType<typeof checkDeclarations> {
  try {
    return checkDeclarations(...args);
  } catch (err) {
    if (err instanceof DeclarationError) throw new ConversionError(`options: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Image sample inputs decoded for the evaluation; one that cannot be fails the job with its reason. */
async function fitImageSamples(...args: Parameters<typeof imageSampleFeeds>): ReturnType<typeof imageSampleFeeds> {
  try {
    return await imageSampleFeeds(...args);
  } catch (err) {
    if (err instanceof DeclarationError) throw new ConversionError(`options: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Largest tokenizer.json the job reads; real ones are a few MB (a 250k-token vocabulary is ~20 MB). */
const MAX_TOKENIZER_BYTES = 64 * 1024 * 1024;

/** A text declaration's tokenizer as uploaded beside the model, read and parsed. */
interface UploadedTokenizer {
  bytes: Buffer;
  tokenizer: TextTokenizer;
}

/**
 * Reads the tokenizer files the upload's text declarations name from `uploads/<model>/`;
 * one missing, too large or not a tokenizer fails the job, naming the declaration.
 */
async function readTokenizers(store: ObjectStore, model: string, declarations: Declarations | undefined): Promise<Map<string, UploadedTokenizer>> {
  const out = new Map<string, UploadedTokenizer>();
  for (const [name, decl] of Object.entries(declarations?.preprocess ?? {})) {
    if (decl.type !== 'text' || out.has(decl.tokenizer)) continue;
    const key = `uploads/${model}/${decl.tokenizer}`;
    const where = `options: preprocess.${name}.tokenizer`;
    const head = await store.head(key);
    if (!head) throw new ConversionError(`${where}: ${key} was not found; upload the tokenizer.json before the model`);
    if (head.bytes > MAX_TOKENIZER_BYTES) throw new ConversionError(`${where}: ${key} is ${head.bytes} bytes, over the ${MAX_TOKENIZER_BYTES}-byte limit`);
    const bytes = await store.getBytes(key, { expectedBytes: head.bytes });
    try {
      out.set(decl.tokenizer, { bytes, tokenizer: TextTokenizer.parse(bytes, key) });
    } catch (err) {
      if (err instanceof DeclarationError) throw new ConversionError(`${where}: ${err.message}`, { cause: err });
      throw err;
    }
  }
  return out;
}

/** Text sample inputs tokenized for the evaluation, as the service will tokenize requests. */
function textSampleFeeds(samples: readonly TextSample[], declarations: Declarations, tokenizers: ReadonlyMap<string, UploadedTokenizer>, inputs: readonly TensorSpec[]): { sample: number; feeds: Record<string, Tensor> }[] {
  return samples.map((s) => {
    const decl = declarations.preprocess[s.input];
    const tokenizer = decl?.type === 'text' ? tokenizers.get(decl.tokenizer)?.tokenizer : undefined;
    if (decl?.type !== 'text' || !tokenizer) throw new ConversionError(`options: sampleInputs[${s.sample}].${s.input}: texts are accepted only for an input declared in preprocess as text`);
    try {
      return { sample: s.sample, feeds: tokenizer.toFeeds(s.input, s.texts, decl, inputs) };
    } catch (err) {
      if (err instanceof AppError) throw new ConversionError(`options: sampleInputs[${s.sample}]: ${err.message}`, { cause: err });
      throw err;
    }
  });
}

/** The upload's options file, parsed; a file that is not JSON is the upload's fault, not S3's. */
async function readSidecar(store: ObjectStore, key: string): Promise<unknown> {
  let bytes: Buffer;
  try {
    bytes = await store.getBytes(key);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (err) {
    throw new ConversionError(`options: ${key} is not valid JSON (${(err as Error).message})`);
  }
}

/**
 * Converts one upload and publishes the result: validate, convert, evaluate, then artifact,
 * manifest, label (if the gates pass) and the job report, in that order. A bad upload ends in
 * a failed report and publishes nothing; S3 failures are thrown so Lambda retries. A second
 * delivery of the same object finds its report and does nothing.
 */
export async function runConversionJob(deps: ConvertDeps, upload: UploadRef): Promise<JobReport | undefined> {
  const job = describeUpload(upload);
  if (!job) return undefined; // not an upload (sidecars, other files): nothing to do
  const { model, file, suffix, jobId, validModel, reportKey } = job;

  const existing = await deps.store.getJson(reportKey);
  if (existing !== undefined) return existing as JobReport;

  const startedAt = new Date().toISOString();
  const timingsMs: Record<string, number> = {};
  const report = failedReport(job, upload, 'conversion did not finish', startedAt, timingsMs);
  const finish = async (): Promise<JobReport> => {
    report.finishedAt = new Date().toISOString();
    await deps.store.put(reportKey, JSON.stringify(report, null, 2), 'application/json');
    return report;
  };

  try {
    if (!validModel) throw new ConversionError(`model name "${model}" must match ${MODEL_NAME_PATTERN.source}`);
    let started = performance.now();
    const head = await deps.store.head(upload.key);
    if (!head) throw new ConversionError(`upload ${upload.key} no longer exists`);
    if (head.bytes > deps.maxModelBytes) throw new ConversionError(`model is ${head.bytes} bytes, over the ${deps.maxModelBytes}-byte limit`);
    const options = parseUploadOptions(await readSidecar(deps.store, `uploads/${model}/${file}.json`));

    const earlier = await versionOfJob(deps.store, model, jobId, head.lastModified);
    if (earlier) {
      if (earlier.source) report.source = earlier.source;
      const moveLabel = earlier.evaluation.passed && options.label !== null;
      if (moveLabel) await setAlias(deps.store, model, options.label as string, earlier.version);
      succeeded(report, earlier, options.label, moveLabel);
      timingsMs.resume = performance.now() - started;
      return await finish();
    }

    let source: Uint8Array = await deps.store.getBytes(upload.key, { expectedBytes: head.bytes });
    report.source = { key: upload.key, etag: upload.etag ?? head.etag, bytes: source.byteLength, sha256: sha256Hex(source) };
    timingsMs.fetch = performance.now() - started;

    let imported: ReturnType<typeof importUpload> | undefined;
    if (suffix !== 'onnx') {
      started = performance.now();
      imported = importUpload(suffix, source, { ...DEFAULT_ZIP_LIMITS, maxTotalBytes: deps.maxModelBytes });
      source = imported.onnx;
      report.import = { format: imported.format, onnxBytes: source.byteLength };
      timingsMs.import = performance.now() - started;
    }

    started = performance.now();
    validateModel(source, deps.maxModelBytes);
    timingsMs.validate = performance.now() - started;

    const tokenizers = await readTokenizers(deps.store, model, options.declarations);
    // The upload's inputs and outputs, read once for everything checked against them.
    let sourceSpecs: ReturnType<typeof specsOf> | undefined;
    const specsOfSource = () => (sourceSpecs ??= specsOf(source));
    if (options.imageSamples && options.declarations) {
      // Images among the sample inputs become tensors through the declared pre-processing.
      const fed = await fitImageSamples(options.imageSamples, options.declarations, await specsOfSource());
      for (const { sample, input, tensor } of fed) (options.pipeline.evaluate.samples?.[sample] ?? {})[input] = tensor;
    }
    if (options.textSamples && options.declarations) {
      // Texts likewise, through the uploaded tokenizer.
      const specs = await specsOfSource();
      const fitted = fitDeclarations(options.declarations, specs, options.classLabels);
      for (const { sample, feeds } of textSampleFeeds(options.textSamples, fitted, tokenizers, specs.inputs)) Object.assign(options.pipeline.evaluate.samples?.[sample] ?? {}, feeds);
    }
    if (options.calibration !== undefined) {
      // Calibration files, checked against the model as requests would be; they are also the
      // evaluation's samples when the options give none.
      const location = sampleLocation('calibration', model, options.calibration);
      const files = await readSampleFiles(deps.store, 'calibration', location, await specsOfSource(), options.declarations);
      const samples = files.map((f) => f.feeds);
      options.pipeline.calibration = { ...options.pipeline.calibration, samples };
      options.pipeline.evaluate.samples ??= samples;
    }
    if (options.evaluationSet) {
      options.pipeline.evaluationSet = await resolveEvaluationSet(options.evaluationSet, deps.store, model, await specsOfSource(), options.declarations, options.classLabels);
    }
    if (imported && report.import) {
      // The export is checked against the original on the evaluation's own samples (images and
      // texts through their declarations, else the calibration files), before quantization can
      // blur the two; unless TF.js cannot run the original as it was defined (a Keras 3 layer it
      // lacks): then the report says so and why.
      if (imported.fidelityUnavailable) report.import.fidelityNotMeasured = imported.fidelityUnavailable;
      else {
        started = performance.now();
        const fidelityOptions = { ...options.pipeline.evaluate, intraOpNumThreads: deps.intraOpNumThreads };
        report.import.fidelity = await measureImportFidelity(imported.tfjs, source, fidelityOptions, options.importMinCosine);
        timingsMs.importFidelity = performance.now() - started;
        checkImportFidelity(report.import.fidelity);
      }
      imported = undefined;
    }
    const masks = Object.entries(options.declarations?.postprocess ?? {}).flatMap(([name, d]) => (d.type === 'mask' ? [[name, { activation: d.activation, threshold: d.threshold ?? 0.5 }] as const] : []));
    if (masks.length > 0) options.pipeline.evaluate.masks = Object.fromEntries(masks);
    options.pipeline.evaluate.intraOpNumThreads = deps.intraOpNumThreads;
    const result = await convertModel(source, options.pipeline);
    Object.assign(timingsMs, result.timingsMs);
    const specs = await specsOf(result.artifact);
    const declarations = options.declarations && fitDeclarations(options.declarations, specs, options.classLabels);
    // A text input's tokenizer is published with the version; its hash goes in the manifest.
    const files: Record<string, Uint8Array> = {};
    for (const decl of Object.values(declarations?.preprocess ?? {})) {
      const uploaded = decl.type === 'text' ? tokenizers.get(decl.tokenizer) : undefined;
      if (decl.type !== 'text' || !uploaded) continue;
      decl.tokenizerSha256 = sha256Hex(uploaded.bytes);
      files[decl.tokenizer] = uploaded.bytes;
    }

    started = performance.now();
    const passed = result.gates.passed;
    const moveLabel = passed && options.label !== null;
    const manifest = {
      model,
      ...specs,
      source: report.source,
      ...(report.import ? { import: report.import } : {}),
      conversion: {
        jobId,
        mode: options.pipeline.mode,
        ...(result.modeChoice ? { modeChoice: result.modeChoice } : {}),
        ...(result.opsetUpgrade ? { opsetUpgrade: result.opsetUpgrade } : {}),
        outcome: result.outcome,
        reason: result.reason,
        ...(result.warning ? { warning: result.warning } : {}),
        quantization: result.quantization,
        optimization: result.optimization,
        ...(options.classLabels ? { classLabels: options.classLabels } : {}),
      },
      evaluation: { passed, ...result.evaluation, gates: result.gates },
      ...declarations,
    };
    const label = moveLabel ? (options.label as string) : undefined;
    const published = await withModelLock(model, async () => {
      // Another delivery of this same upload, converted at the same time, may have published
      // first: then its version is this job's, and nothing is published twice.
      const first = await versionOfJob(deps.store, model, jobId, head.lastModified);
      if (first) return first;
      return { ...manifest, version: await publishNextVersion(deps.store, manifest, result.artifact, label, files) };
    });
    timingsMs.publish = performance.now() - started;

    succeeded(report, published, options.label, published.evaluation.passed && options.label !== null);
    return await finish();
  } catch (err) {
    // S3 trouble is transient: throw, so Lambda retries (bounded in serverless.yml). Anything
    // else is about this upload and would fail again: report it and return normally.
    if (err instanceof ServiceUnavailableError) throw err;
    if (err instanceof ConversionError) report.reason = err.message;
    else if (isNotFound(err)) report.reason = `upload ${upload.key} no longer exists`;
    else report.reason = `conversion failed: ${((err as Error)?.message ?? String(err)).slice(0, 500)}`;
    return finish();
  }
}
