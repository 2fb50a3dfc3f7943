import { performance } from 'node:perf_hooks';
import type { WarmModel } from '../config';
import { AppError, InvalidRequestError } from '../errors';
import { answerAsDeclared, classLabelsOf, declarationsOf, decodeDeclaredOip, decodeImagePost, needsDeclaredPath, onlyPng } from '../prepost/serve-oip';
import { decodeDeclaredPredict } from '../prepost/serve-tfserving';
import { decodeOipRequest, encodeOipResponse } from '../protocol/oip';
import { decodePredictRequest, encodePredictResponse } from '../protocol/tfserving';
import type { Manifest, TensorSpec } from '../registry/manifest';
import type { ModelSelector, Registry } from '../registry/registry';
import type { ModelSession } from '../runtime/model-session';
import type { SessionCache } from '../runtime/session-cache';

/** Where the service reports what it measured; the handler maps these to metrics. */
export interface Telemetry {
  modelLoaded(event: { model: string; version: number; loadMs: number; downloadedBytes: number; source: 'disk' | 's3' }): void;
  inferred(event: { model: string; version: number; inferenceMs: number }): void;
}

/** A JSON answer with the model it concerned (for logs and metrics). */
export interface ServiceAnswer {
  body: string;
  /** A binary answer instead of JSON: a mask model's PNG, when the client asked for one. */
  png?: Buffer;
  model?: string;
  version?: number;
}

export interface InferenceServiceDeps {
  registry: Registry;
  sessions: SessionCache;
  telemetry: Telemetry;
  serverName: string;
  serverVersion: string;
}

function specsJson(specs: readonly TensorSpec[]): { name: string; datatype: string; shape: number[] }[] {
  return specs.map(({ name, datatype, shape }) => ({ name, datatype, shape }));
}

/** A model run failing on input that passed every declared check is still the input's fault. */
function runFailed(err: unknown, manifest: Manifest): never {
  if (err instanceof AppError) throw err;
  const message = (err as Error)?.message ?? String(err);
  throw new InvalidRequestError(
    `model ${manifest.model} version ${manifest.version} could not run on this input: ${message.slice(0, 500)}`,
    { cause: err },
  );
}

/**
 * The inference use cases, protocol by protocol: resolve the model, hold its session, decode
 * and check the request against the model, run, encode. Transport-free: the HTTP layer
 * parses bodies and maps errors.
 */
export class InferenceService {
  constructor(private readonly deps: InferenceServiceDeps) {}

  serverMetadata(): ServiceAnswer {
    return { body: JSON.stringify({ name: this.deps.serverName, version: this.deps.serverVersion, extensions: [] }) };
  }

  /** Model metadata from the manifest alone: no model is loaded to answer it. */
  async modelMetadata(selector: ModelSelector): Promise<ServiceAnswer> {
    const manifest = await this.deps.registry.resolve(selector);
    const versions = await this.deps.registry.versions(manifest.model);
    const body = {
      name: manifest.model,
      versions: versions.map(String),
      platform: 'onnx',
      inputs: specsJson(manifest.inputs),
      outputs: specsJson(manifest.outputs),
      // What the upload declared, so a client knows an input takes an image or an output answers labels.
      ...(manifest.preprocess ? { preprocess: manifest.preprocess } : {}),
      ...(manifest.postprocess ? { postprocess: manifest.postprocess } : {}),
    };
    return { body: JSON.stringify(body), model: manifest.model, version: manifest.version };
  }

  /** Ready means the session is loaded; asking loads it, so this doubles as a warm-up call. */
  async modelReady(selector: ModelSelector): Promise<ServiceAnswer> {
    const manifest = await this.deps.registry.resolve(selector);
    await this.deps.sessions.get(manifest);
    return { body: JSON.stringify({ name: manifest.model, ready: true }), model: manifest.model, version: manifest.version };
  }

  async infer(selector: ModelSelector, request: unknown): Promise<ServiceAnswer> {
    const manifest = await this.deps.registry.resolve(selector);
    const body = await this.deps.sessions.use(manifest, async (session) => {
      if (needsDeclaredPath(manifest, request)) {
        // Images in, classification strings out: as the upload declared or the request asks.
        const decoded = await decodeDeclaredOip(request, session.inputs, session.outputs, declarationsOf(manifest));
        const results = await answerAsDeclared(await this.run(session, manifest, decoded.feeds, decoded.outputs), decoded, classLabelsOf(manifest));
        return encodeOipResponse(manifest.model, manifest.version, decoded.id, decoded.outputs, results);
      }
      const decoded = decodeOipRequest(request, session.inputs, session.outputs);
      const results = await this.run(session, manifest, decoded.feeds, decoded.outputs);
      return encodeOipResponse(manifest.model, manifest.version, decoded.id, decoded.outputs, results);
    });
    return { body, model: manifest.model, version: manifest.version };
  }

  /** A plain image body (`content-type: image/*`) for a model with one image input. */
  async inferImage(selector: ModelSelector, image: Buffer, asPng = false): Promise<ServiceAnswer> {
    const manifest = await this.deps.registry.resolve(selector);
    let png: Buffer | undefined;
    const body = await this.deps.sessions.use(manifest, async (session) => {
      const decoded = await decodeImagePost(image, session.inputs, session.outputs, declarationsOf(manifest), asPng);
      const results = await answerAsDeclared(await this.run(session, manifest, decoded.feeds, decoded.outputs), decoded, classLabelsOf(manifest));
      if (asPng) png = onlyPng(results, decoded.outputs);
      return encodeOipResponse(manifest.model, manifest.version, undefined, decoded.outputs, results);
    });
    return { body, png, model: manifest.model, version: manifest.version };
  }

  async predict(selector: ModelSelector, request: unknown): Promise<ServiceAnswer> {
    const manifest = await this.deps.registry.resolve(selector);
    const body = await this.deps.sessions.use(manifest, async (session) => {
      if (manifest.preprocess !== undefined || manifest.postprocess !== undefined) {
        const decoded = await decodeDeclaredPredict(request, session.inputs, session.outputs, declarationsOf(manifest));
        const results = await answerAsDeclared(await this.run(session, manifest, decoded.feeds, decoded.outputs), decoded, classLabelsOf(manifest));
        return encodePredictResponse(decoded, results);
      }
      const decoded = decodePredictRequest(request, session.inputs, session.outputs);
      const results = await this.run(session, manifest, decoded.feeds, decoded.outputs);
      return encodePredictResponse(decoded, results);
    });
    return { body, model: manifest.model, version: manifest.version };
  }

  /** TensorFlow Serving's model status: every published version, or the one selected. */
  async tfStatus(selector: ModelSelector): Promise<ServiceAnswer> {
    const versions =
      selector.version === undefined && selector.label === undefined
        ? await this.deps.registry.versions(selector.model)
        : [(await this.deps.registry.resolve(selector)).version];
    if (versions.length === 0) await this.deps.registry.resolve(selector); // throws the right 404
    const status = [...versions].reverse().map((v) => ({
      version: String(v),
      state: 'AVAILABLE',
      status: { error_code: 'OK', error_message: '' },
    }));
    return { body: JSON.stringify({ model_version_status: status }), model: selector.model };
  }

  /** Loads the given models; failures are returned, not thrown, so one bad name cannot fail init. */
  async warm(models: readonly WarmModel[]): Promise<{ model: string; version?: number; error?: string }[]> {
    return Promise.all(
      models.map(async (m) => {
        try {
          const manifest = await this.deps.registry.resolve(m);
          await this.deps.sessions.get(manifest);
          return { model: m.model, version: manifest.version };
        } catch (err) {
          return { model: m.model, error: (err as Error).message };
        }
      }),
    );
  }

  private async run(
    session: ModelSession,
    manifest: Manifest,
    feeds: Parameters<ModelSession['run']>[0],
    outputs: readonly TensorSpec[],
  ) {
    const started = performance.now();
    let results;
    try {
      results = await session.run(
        feeds,
        outputs.map((o) => o.name),
      );
    } catch (err) {
      runFailed(err, manifest);
    }
    this.deps.telemetry.inferred({ model: manifest.model, version: manifest.version, inferenceMs: performance.now() - started });
    return results;
  }
}
