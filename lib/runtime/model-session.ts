import { InferenceSession, type Tensor } from 'onnxruntime-node';
import { GRAPH_LEVELS, type GraphOptimizationLevel } from '../config';
import { UnservableModelError } from '../errors';
import { outlineModel, type DeclaredValue } from '../onnx/inspect';
import { FileSource } from '../onnx/file-source';
import { WireFormatError, type ByteSource } from '../onnx/wire';
import { byOnnx, byOrt, UNCARRIABLE_ONNX_TYPES } from '../protocol/dtypes';
import type { Manifest, TensorSpec } from '../registry/manifest';
import type { ArtifactLocation } from '../storage/artifact-fetcher';

export interface SessionSettings {
  intraOpNumThreads: number;
  graphOptimizationLevel: GraphOptimizationLevel;
}

/**
 * The graph optimization level to serve a model at. `auto` takes the level its conversion
 * recorded in the manifest (`conversion.optimization.servingLevel`: `disabled` for a graph
 * already optimized offline that has no convolution, whose layout transforms only run online),
 * and `all` for anything else; an explicit level is used as it is.
 */
export function servingLevel(manifest: Pick<Manifest, 'conversion'>, configured: GraphOptimizationLevel | 'auto'): GraphOptimizationLevel {
  if (configured !== 'auto') return configured;
  const recorded = (manifest.conversion?.optimization as { servingLevel?: unknown } | undefined)?.servingLevel;
  return GRAPH_LEVELS.includes(recorded as GraphOptimizationLevel) ? (recorded as GraphOptimizationLevel) : 'all';
}

/**
 * Session options for Lambda: a fixed thread pool sized to the function's vCPUs, no spinning
 * (a spinning pool burns the CPU share the next request needs and bills idle time), one
 * inter-op thread, and ORT's own warnings kept out of the function logs.
 */
export function sessionOptions(settings: SessionSettings): InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: settings.intraOpNumThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: settings.graphOptimizationLevel,
    logSeverityLevel: 3,
    extra: {
      'session.intra_op.allow_spinning': '0',
      'session.inter_op.allow_spinning': '0',
    },
  };
}

function describe(value: DeclaredValue, role: 'input' | 'output'): string | undefined {
  if (value.kind !== 'tensor') return `${role} "${value.name}" is a ${value.kind}, not a tensor`;
  const unsupported = UNCARRIABLE_ONNX_TYPES.get(value.elemType);
  if (unsupported !== undefined || byOnnx(value.elemType) === undefined) {
    return `${role} "${value.name}" has datatype ${unsupported ?? `#${value.elemType}`}`;
  }
  return undefined;
}

/**
 * Refuses, before onnxruntime sees them, models it cannot serve safely: not ONNX, external
 * data (a model must never make us open a file it names), or inputs/outputs of a datatype
 * onnxruntime-node cannot carry. The last one matters most: a model with an int4 output
 * aborts the Node process from inside ORT, past any try/catch.
 */
export function checkServable(model: Uint8Array | ByteSource, label: string): void {
  let outline;
  try {
    outline = outlineModel(model);
  } catch (err) {
    if (err instanceof WireFormatError) {
      throw new UnservableModelError(`model ${label} is not a readable ONNX file: ${err.message}`, { cause: err });
    }
    throw err;
  }
  if (outline.externalTensors.length > 0) {
    throw new UnservableModelError(
      `model ${label} cannot be served: tensor "${outline.externalTensors[0]}" keeps its data in an external file`,
    );
  }
  const problems = [
    ...outline.inputs.map((v) => describe(v, 'input')),
    ...outline.outputs.map((v) => describe(v, 'output')),
  ].filter((p): p is string => p !== undefined);
  if (problems.length > 0) {
    throw new UnservableModelError(
      `model ${label} cannot be served: ${problems.join('; ')} (onnxruntime-node carries BOOL, (U)INT8-64, FP16, FP32, FP64 and BYTES)`,
    );
  }
}

/** A session's inputs or outputs in protocol terms (dynamic dims as -1); refuses non-tensors. */
export function toSpecs(metadata: readonly InferenceSession.ValueMetadata[]): TensorSpec[] {
  return metadata.map((m) => {
    const info = m.isTensor ? byOrt(m.type) : undefined;
    if (!m.isTensor || !info) throw new UnservableModelError(`"${m.name}" has a type onnxruntime-node cannot carry`);
    return { name: m.name, datatype: info.oip, shape: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) };
  });
}

/**
 * An onnxruntime session with the model's interface in protocol terms. `release()` frees the
 * native session, but never under a running request: it waits for in-flight runs to finish.
 */
export class ModelSession {
  private active = 0;
  private releaseRequested = false;
  private released = false;

  private constructor(
    private readonly session: InferenceSession,
    readonly inputs: TensorSpec[],
    readonly outputs: TensorSpec[],
  ) {}

  /**
   * Checks the model ({@link checkServable}) and creates its session, from a file (onnxruntime
   * reads it itself, so no JS copy of the model is held meanwhile) or from bytes.
   */
  static async create(model: ArtifactLocation, settings: SessionSettings, label: string): Promise<ModelSession> {
    if ('path' in model) FileSource.with(model.path, (source) => checkServable(source, label));
    else checkServable(model.bytes, label);
    let session: InferenceSession;
    try {
      session =
        'path' in model
          ? await InferenceSession.create(model.path, sessionOptions(settings))
          : await InferenceSession.create(model.bytes, sessionOptions(settings));
    } catch (err) {
      throw new UnservableModelError(`model ${label} failed to load in onnxruntime: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      return new ModelSession(session, toSpecs(session.inputMetadata), toSpecs(session.outputMetadata));
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  /**
   * Takes a hold on the session for one request; false if it was already released (evicted
   * between lookup and use). Every successful call is paired with {@link unretain}.
   */
  retain(): boolean {
    if (this.released) return false;
    this.active++;
    return true;
  }

  /** Ends a hold; the last one frees the session if a release was asked for meanwhile. */
  async unretain(): Promise<void> {
    this.active--;
    if (this.active === 0 && this.releaseRequested) await this.releaseNow();
  }

  /** Runs the model under a hold taken with {@link retain}; `outputNames` limits what is computed. */
  run(feeds: Record<string, Tensor>, outputNames?: readonly string[]): Promise<Record<string, Tensor>> {
    if (this.active === 0) throw new Error('ModelSession.run called without retain()');
    return outputNames ? this.session.run(feeds, outputNames) : this.session.run(feeds);
  }

  /** Frees the native session now, or once the last hold ends. */
  async release(): Promise<void> {
    this.releaseRequested = true;
    if (this.active === 0) await this.releaseNow();
  }

  private async releaseNow(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.session.release();
  }
}
