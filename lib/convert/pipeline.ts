import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { InferenceSession } from 'onnxruntime-node';
import { GraphView, OnnxModel } from '../onnx/model';
import { collectGarbage } from '../runtime/gc';
import { checkServable } from '../runtime/model-session';
import { compareWith, DEFAULT_EVALUATE_OPTIONS, evaluate, measureReference, ModelLoadError, type EvaluateOptions, type Evaluation } from './evaluate';
import { fuseAttention } from './attention';
import { canonicalizeGelu } from './gelu';
import { fuseHardSwish } from './hard-swish';
import { measureSensitivity } from './sensitivity';
import { OpsetUpgradeError, upgradeOpset, type OpsetUpgrade } from './opset-upgrade';
import { quantizeModel, type QuantizationMode, type QuantizeReport } from './quantize';
import { DEFAULT_CALIBRATION_OPTIONS, type CalibrationOptions, type TensorRange } from './calibrate';
import { calibrateStatic, quantizeStaticModel } from './static-int8-mode';
import { ConversionError } from './errors';
import { chooseInt8Mode, reconsiderStatic, slowStaticWarning, staticIsSlower, staticLatency, type Int8Choice } from './int8-choice';
import { accuracyReport, scoreModel, type LabelledSet } from './accuracy';

/** Accuracy gates a converted model must pass to move its label. */
export interface Gates {
  /** Minimum cosine similarity of every output. */
  minCosine: number;
  /** Minimum top-1 agreement of classification-shaped outputs. */
  minTop1: number;
  /** Most accuracy (percentage points) the conversion may lose on a labelled `evaluationSet`, when one is given. */
  maxAccuracyDrop: number;
}

export const DEFAULT_GATES: Gates = { minCosine: 0.99, minTop1: 0.99, maxAccuracyDrop: 1 };

/** A mode an upload asks for: a quantization mode, or `int8`, which picks static or dynamic per model. */
export type ConversionMode = QuantizationMode | 'int8';

export interface PipelineOptions {
  mode: ConversionMode;
  gates: Gates;
  minElements: number;
  minGatherElements: number;
  keepFloat: string[];
  reduceRange: boolean;
  /** Offline graph optimization level; `extended` stays portable across x86-64 CPUs. */
  optimizationLevel: 'basic' | 'extended';
  evaluate: EvaluateOptions;
  /** How int8-static picks activation ranges from its calibration samples. */
  calibration: CalibrationOptions;
  /** The upload's labelled examples: accuracy of both models, gated by `maxAccuracyDrop`. */
  evaluationSet?: LabelledSet;
  /** int8-static: keep in float each Conv that, quantized alone, costs more than this of the output cosine. */
  sensitivityThreshold?: number;
  /** int8-static activation type (uint8 when absent). Internal, for the bench: not an upload option. */
  staticActivations?: 'uint8' | 'int8';
}

export const DEFAULT_PIPELINE_OPTIONS: PipelineOptions = {
  mode: 'int8-dynamic',
  gates: DEFAULT_GATES,
  minElements: 4096,
  minGatherElements: 65536,
  keepFloat: [],
  reduceRange: false,
  optimizationLevel: 'extended',
  evaluate: DEFAULT_EVALUATE_OPTIONS,
  calibration: DEFAULT_CALIBRATION_OPTIONS,
};

export interface GateResult {
  passed: boolean;
  failures: string[];
}

export interface PipelineResult {
  artifact: Uint8Array;
  /** What was published: the quantized model, or the optimized float model when quantization failed its gates. */
  outcome: 'converted' | 'float-fallback';
  reason?: string;
  quantization: QuantizeReport;
  /** For `mode: "int8"`: the mode it picked and why. */
  modeChoice?: Int8Choice;
  /** The default-domain opset upgrade the quantization needed, when the upload was older. */
  opsetUpgrade?: OpsetUpgrade;
  /** Something the published model does worse than asked, said plainly (an int8-static slower than float). */
  warning?: string;
  optimization: {
    level: string;
    /** GELUs written in the form onnxruntime fuses (`Mul(x, 1/sqrt2)` -> `Div(x, sqrt2)`). */
    geluRewritten: number;
    /** Hard-swish chains written out (x * Clip(x + 3, 0, 6) / 6) rewritten as one HardSwish node. */
    hardSwishFused: number;
    /** Self-attention blocks fused into one com.microsoft Attention node (QAttention once quantized). */
    attentionFused: number;
    /** Why the fused blocks were given up (onnxruntime refused them), when they were. */
    attentionNotFused?: string;
    kept: boolean;
    /** The level to serve the artifact at (what ORT_GRAPH_OPTIMIZATION_LEVEL=auto uses). */
    servingLevel: 'disabled' | 'all';
    agrees: boolean;
    createMs: { before: number; after: number };
    bytes: { before: number; after: number };
  };
  evaluation: Evaluation;
  gates: Gates & GateResult;
  timingsMs: Record<string, number>;
}

/**
 * The checks every upload passes before any conversion work: size, readable, servable types,
 * a supported opset. Loadability is checked by convertModel's first step (one session, not two).
 */
export function validateModel(bytes: Uint8Array, maxBytes: number): void {
  if (bytes.byteLength > maxBytes) throw new ConversionError(`model is ${bytes.byteLength} bytes, over the ${maxBytes}-byte limit`);
  try {
    checkServable(bytes, 'upload');
  } catch (err) {
    throw new ConversionError((err as Error).message.replace(/^model upload /, ''));
  }
  const model = OnnxModel.decode(bytes);
  const main = model.opsets.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  if (!main) throw new ConversionError('the model imports no default (ai.onnx) opset');
  if (main.version > MAX_OPSET) {
    throw new ConversionError(`opset ${main.version} is newer than onnxruntime-node 1.30 supports (at most ${MAX_OPSET})`);
  }
  // Whether onnxruntime loads it is the first thing convertModel learns (measureReference):
  // a second session here would only add a model-sized heap the conversion then works beside.
}

/** Any convolution (Conv, ConvTranspose, QLinearConv, FusedConv...) in the graph or its subgraphs. */
function hasConvolution(graph: GraphView): boolean {
  return graph.nodes().some((node) => node.opType.includes('Conv') || node.subgraphs().some(hasConvolution));
}

/**
 * The default-domain opset each quantization needs; older uploads are upgraded to it. int8-static
 * takes 14: per-channel weights need 13, and HardSwish (which hard-swish chains become) 14.
 */
const QUANTIZATION_OPSET: Partial<Record<QuantizationMode, number>> = { 'int8-dynamic': 11, 'int8-static': 14 };

/** Highest default-domain opset onnxruntime-node 1.30 loads (measured: 26 loads, 27 is refused). */
export const MAX_OPSET = 26;

function checkGates(evaluation: Evaluation, gates: Gates): Gates & GateResult {
  const failures: string[] = [];
  for (const [name, o] of Object.entries(evaluation.outputs)) {
    if (!(o.cosine >= gates.minCosine)) failures.push(`output "${name}": cosine ${o.cosine.toFixed(5)} < ${gates.minCosine}`);
    // Top-1 is judged on decisive rows (see OutputAgreement): near-ties flip on noise.
    if (o.top1DecisiveAgreement !== undefined && !(o.top1DecisiveAgreement >= gates.minTop1)) {
      failures.push(
        `output "${name}": top-1 agreement ${(o.top1DecisiveAgreement * 100).toFixed(2)}% on ${o.decisiveRows} decisive rows < ${gates.minTop1 * 100}%`,
      );
    }
  }
  const accuracy = evaluation.accuracy;
  if (accuracy && !(accuracy.drop <= gates.maxAccuracyDrop)) {
    failures.push(
      `output "${accuracy.output}": accuracy on the evaluation set fell ${accuracy.drop.toFixed(2)} points (${accuracy.original.percent.toFixed(2)}% -> ${accuracy.converted.percent.toFixed(2)}%) > ${gates.maxAccuracyDrop}`,
    );
  }
  return { ...gates, passed: failures.length === 0, failures };
}

/** Runs onnxruntime's graph optimizations offline and returns the optimized model's bytes. */
async function optimizeOffline(bytes: Uint8Array, level: 'basic' | 'extended', threads: number): Promise<Uint8Array> {
  const dir = mkdtempSync(join(tmpdir(), 'optimize-'));
  const path = join(dir, 'optimized.onnx');
  collectGarbage();
  try {
    const session = await InferenceSession.create(bytes, {
      graphOptimizationLevel: level,
      optimizedModelFilePath: path,
      intraOpNumThreads: threads,
      logSeverityLevel: 3,
    });
    await session.release();
    return readFileSync(path); // a Buffer is a Uint8Array: no second copy of the model
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function createMs(bytes: Uint8Array, threads: number): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    const s = await InferenceSession.create(bytes, { intraOpNumThreads: threads, logSeverityLevel: 3 });
    best = Math.min(best, performance.now() - started);
    await s.release();
  }
  return best;
}

/** The sensitivity pass's answer: costs by Conv output, and the Convs it keeps float with why. */
type Sensitivity = { threshold: number; costs: Record<string, number>; sensitive: Record<string, string> };

/**
 * The graph rewrites and the quantization, as encoded bytes. Only the bytes leave this function:
 * the decoded tree and its new weight tensors are garbage before any session is created.
 */
function rewrite(source: Uint8Array, mode: QuantizationMode, options: PipelineOptions, fuse: boolean, ranges?: ReadonlyMap<string, TensorRange>, sensitivity?: Sensitivity) {
  const model = OnnxModel.decode(source);
  const geluRewritten = canonicalizeGelu(model);
  const hardSwishFused = fuseHardSwish(model);
  const attentionFused = fuse ? fuseAttention(model, options.keepFloat) : 0;
  const quantization = ranges ? quantizeStaticModel(model, ranges, options, sensitivity) : quantizeModel(model, { ...options, mode });
  const quantized = mode === 'none' && geluRewritten === 0 && hardSwishFused === 0 && attentionFused === 0 ? source : model.encode();
  return { quantized, quantization, geluRewritten, hardSwishFused, attentionFused };
}

/**
 * Quantizes (per mode), then optimizes offline; keeps the optimized graph if it loads faster and
 * agrees. Its steps are timed under `quantize` and `optimize` plus `suffix`, so a fallback pass
 * does not overwrite the first pass's timings.
 */
async function transform(source: Uint8Array, mode: QuantizationMode, options: PipelineOptions, timings: Record<string, number>, suffix: string, fuse: boolean) {
  let started = performance.now();
  const ranges = mode === 'int8-static' ? await calibrateStatic(source, options) : undefined;
  if (ranges) timings[`calibrate${suffix}`] = performance.now() - started;
  let sensitivity: Sensitivity | undefined;
  const threshold = options.sensitivityThreshold;
  if (ranges && threshold !== undefined) {
    started = performance.now();
    const samples = options.calibration.samples ?? options.evaluate.samples ?? [];
    sensitivity = { threshold, ...(await measureSensitivity(source, ranges, options, samples, threshold, options.evaluate.intraOpNumThreads)) };
    timings[`sensitivity${suffix}`] = performance.now() - started;
  }
  started = performance.now();
  const { quantized, quantization, geluRewritten, hardSwishFused, attentionFused } = rewrite(source, mode, options, fuse, ranges, sensitivity);
  timings[`quantize${suffix}`] = performance.now() - started;

  started = performance.now();
  const threads = options.evaluate.intraOpNumThreads;
  const optimized = await optimizeOffline(quantized, options.optimizationLevel, threads);
  const before = await createMs(quantized, threads);
  const after = await createMs(optimized, threads);
  const check = await evaluate(quantized, optimized, { ...options.evaluate, latencyRuns: 1, sampleCount: 2 });
  const agrees = Object.values(check.outputs).every((o) => o.cosine >= 0.9999);
  // Constant folding can undo compression (a float16 weight's Cast folds back to float32):
  // an optimized graph that grows the artifact is not kept.
  const kept = agrees && after < before && optimized.byteLength <= quantized.byteLength * 1.05;
  timings[`optimize${suffix}`] = performance.now() - started;
  // Served as published, an offline-optimized graph needs no second pass at load, unless it has
  // convolutions, whose layout transforms (level all) are made for the CPU that runs them.
  const servingLevel: 'disabled' | 'all' = kept && !hasConvolution(OnnxModel.decode(optimized).graph()) ? 'disabled' : 'all';
  return {
    artifact: kept ? optimized : quantized,
    quantization,
    optimization: {
      level: options.optimizationLevel,
      geluRewritten,
      hardSwishFused,
      attentionFused,
      kept,
      servingLevel,
      agrees,
      createMs: { before, after },
      bytes: { before: quantized.byteLength, after: optimized.byteLength },
    },
  };
}

/**
 * Converts a validated model: quantize, optimize, evaluate against the original, gate. When
 * the quantized model fails its gates, the optimized float model is evaluated and returned
 * instead (a model that serves correctly beats a smaller one that does not); the result says
 * which and why.
 */
export async function convertModel(source: Uint8Array, options: PipelineOptions): Promise<PipelineResult> {
  const timingsMs: Record<string, number> = {};
  // The original is measured first, on a heap no other session has fragmented yet: its session
  // is the largest the conversion makes, and it is gone before any candidate is built.
  const started = performance.now();
  const reference = await measureReference(source, options.evaluate).catch((err: unknown) => {
    if (err instanceof ModelLoadError) throw new ConversionError(`onnxruntime cannot load the model: ${err.message.slice(0, 400)}`);
    throw err;
  });
  timingsMs.reference = performance.now() - started;
  const set = options.evaluationSet;
  const threads = options.evaluate.intraOpNumThreads;
  const originalScore = set ? await scoreModel(source, set, threads) : undefined;

  const attempt = async (mode: QuantizationMode, suffix: string, fuse: boolean, input: Uint8Array = source) => {
    const result = await transform(input, mode, options, timingsMs, suffix, fuse);
    const began = performance.now();
    const evaluation = await compareWith(reference, result.artifact, options.evaluate);
    if (set && originalScore) evaluation.accuracy = accuracyReport(set, originalScore, await scoreModel(result.artifact, set, threads), evaluation.latencyMs);
    timingsMs[`evaluate${suffix}`] = performance.now() - began;
    return { ...result, evaluation };
  };
  /**
   * The attention pattern fixes the projections' input only up to its rank: a block whose
   * input is not [batch, sequence, hidden] runs op by op but not as one Attention node. Such a
   * model converts without fusing, and says so.
   */
  const withFusionGuard = async (mode: QuantizationMode, suffix: string, input: Uint8Array) => {
    try {
      return await attempt(mode, suffix, true, input);
    } catch (err) {
      if (fuseAttention(OnnxModel.decode(input), options.keepFloat) === 0) throw err;
      const result = await attempt(mode, suffix, false, input);
      return { ...result, optimization: { ...result.optimization, attentionNotFused: (err as Error).message.slice(0, 300) } };
    }
  };

  const modeChoice = options.mode === 'int8' ? await chooseInt8Mode(source, options.calibration.samples ?? options.evaluate.samples, threads) : undefined;
  const mode: QuantizationMode = modeChoice ? modeChoice.chosen : (options.mode as QuantizationMode);
  const chosen = modeChoice ? { modeChoice } : {};
  const floatWithReason = async (reason: string): Promise<PipelineResult> => {
    const fallback = await attempt('none', 'Fallback', false);
    return { ...fallback, ...chosen, outcome: 'float-fallback', reason, gates: checkGates(fallback.evaluation, options.gates), timingsMs };
  };
  // A model below the opset its quantization needs is upgraded first, and must answer as before.
  let input = source;
  let opsetUpgrade: OpsetUpgrade | undefined;
  const needed = QUANTIZATION_OPSET[mode];
  if (needed !== undefined) {
    const began = performance.now();
    const upgraded = OnnxModel.decode(source);
    try {
      opsetUpgrade = upgradeOpset(upgraded, needed);
    } catch (err) {
      if (!(err instanceof OpsetUpgradeError)) throw err;
      return floatWithReason(`${mode} needs opset ${needed} and the model's opset cannot be upgraded: ${err.message}; published the optimized float model instead`);
    }
    if (opsetUpgrade.from < opsetUpgrade.to) {
      input = upgraded.encode();
      const check = await compareWith(reference, input, { ...options.evaluate, latencyRuns: 1 });
      const differs = Object.entries(check.outputs).find(([, o]) => !(o.cosine >= 0.9999));
      timingsMs.opsetUpgrade = performance.now() - began;
      if (differs) {
        return floatWithReason(
          `${mode} needs opset ${needed}; the model upgraded from opset ${opsetUpgrade.from} does not answer as the original (output "${differs[0]}": cosine ${differs[1].cosine.toFixed(6)}); published the optimized float model instead`,
        );
      }
    } else opsetUpgrade = undefined;
  }
  const upgradedBy = opsetUpgrade ? { opsetUpgrade } : {};
  type Candidate = Awaited<ReturnType<typeof attempt>>;
  /** Gates a candidate: published when it passes, else the optimized float model with the failures. */
  const publish = async (candidate: Candidate, candidateMode: QuantizationMode, choice: Int8Choice | undefined, warning?: string): Promise<PipelineResult> => {
    const extra = { ...(choice ? { modeChoice: choice } : {}), ...upgradedBy };
    const gates = checkGates(candidate.evaluation, options.gates);
    if (gates.passed || candidateMode === 'none') {
      const nothing = candidateMode !== 'none' && candidate.quantization.tensors === 0;
      const reason = nothing
        ? `${candidateMode} found no weight to convert (none of at least ${options.minElements} elements in a supported op); published the optimized model as it was`
        : undefined;
      return { ...candidate, ...extra, outcome: 'converted', ...(reason ? { reason } : {}), ...(warning ? { warning } : {}), gates, timingsMs };
    }
    // The fallback stays as close to the upload as a float model can: optimized, nothing fused.
    const fallback = await attempt('none', 'Fallback', false);
    return {
      ...fallback,
      ...extra,
      outcome: 'float-fallback',
      reason: `${candidateMode} failed its gates (${gates.failures.join('; ')}); published the optimized float model instead`,
      gates: checkGates(fallback.evaluation, options.gates),
      timingsMs,
    };
  };
  const first = await withFusionGuard(mode, '', input);
  if (mode !== 'int8-static') return publish(first, mode, modeChoice);
  // An int8 model slower than its float one is not published without saying so: mode "int8"
  // falls back to int8-dynamic (which leaves Convs float), an explicit int8-static warns.
  const measured = staticLatency(first.evaluation.latencyMs);
  if (!modeChoice) return publish(first, mode, undefined, slowStaticWarning(measured));
  if (!staticIsSlower(measured)) return publish(first, mode, reconsiderStatic(modeChoice, measured, 'int8-dynamic'));
  const dynamic = await withFusionGuard('int8-dynamic', 'Dynamic', input);
  return publish(dynamic, 'int8-dynamic', reconsiderStatic(modeChoice, measured, dynamic.quantization.tensors > 0 ? 'int8-dynamic' : 'float'));
}
