import { performance } from 'node:perf_hooks';
import type { Tensor } from 'onnxruntime-node';
import type { WarmModel } from '../config';
import { AppError, InvalidRequestError, ResponseTooLargeError } from '../errors';
import { answerAsDeclared, classLabelsOf, declarationsOf, decodeDeclaredOip, decodeImagePost, decodeTextPost, needsDeclaredPath, onlyPng, type DeclaredOipRequest, type TokenizerSource } from '../prepost/serve-oip';
import { decodeDeclaredPredict } from '../prepost/serve-tfserving';
import type { TokenizerCache } from '../prepost/tokenizer-cache';
import { binarySize, chunksSize, decodeBinaryTensor, encodeBinaryTensor } from '../protocol/binary-tensor';
import { infoOf } from '../protocol/feeds';
import { decodeOipRequest, decodeRawBinaryRequest, encodeOipResponse, type OipAnswer, type OipRequest, type StagedOutput } from '../protocol/oip';
import { decodePredictRequest, encodePredictResponse } from '../protocol/tfserving';
import type { Manifest, TensorSpec } from '../registry/manifest';
import type { ModelSelector, Registry } from '../registry/registry';
import type { ModelSession } from '../runtime/model-session';
import type { SessionCache } from '../runtime/session-cache';
import type { TensorStaging } from '../storage/staging';

/** Where the service reports what it measured; the handler maps these to metrics. */
export interface Telemetry {
  modelLoaded(event: { model: string; version: number; loadMs: number; downloadedBytes: number; source: 'disk' | 's3' }): void;
  inferred(event: { model: string; version: number; inferenceMs: number }): void;
}

/** An answer with the model it concerned (for logs and metrics). */
export interface ServiceAnswer {
  /** JSON text. */
  body: string;
  /** Binary tensors that follow the JSON (Triton's binary tensor data extension). */
  binary?: Uint8Array[];
  /** A binary answer instead of JSON: a mask model's PNG, when the client asked for one. */
  png?: Buffer;
  model?: string;
  version?: number;
}

export interface InferenceServiceDeps {
  registry: Registry;
  sessions: SessionCache;
  telemetry: Telemetry;
  staging: TensorStaging;
  serverName: string;
  serverVersion: string;
  /** Largest response the transport carries; larger OIP outputs are staged. */
  maxResponseBytes: number;
  /** Tokenizers of models with text inputs, fetched on first use. */
  tokenizers: TokenizerCache;
}

/** An inference request body as the HTTP layer read it. */
export interface InferBody {
  /** The JSON part (absent in a raw binary request). */
  json?: unknown;
  /** The binary tensor data after the JSON part, or the whole body of a raw binary request. */
  binary?: Uint8Array;
  /** Inference-Header-Content-Length: 0: the body is the only input's data. */
  raw?: boolean;
}

/** The extensions of the Open Inference Protocol this server implements, for server metadata. */
export const EXTENSIONS = ['binary_tensor_data', 'classification', 'staged_tensors'];

/** Room left in a response for its headers and the Lambda envelope. */
const ENVELOPE_BYTES = 2048;

/** Bytes an answer occupies in the response: binary bodies travel base64-encoded. */
function answerBytes(answer: OipAnswer): number {
  const json = Buffer.byteLength(answer.json, 'utf8');
  return answer.binary.length === 0 ? json : Math.ceil((json + chunksSize(answer.binary)) / 3) * 4;
}

function specsJson(specs: readonly TensorSpec[]): { name: string; datatype: string; shape: number[] }[] {
  return specs.map(({ name, datatype, shape }) => ({ name, datatype, shape }));
}

/** A declared-processing request, answered in JSON (staged if too large for a response). */
function asJsonAnswer(declared: DeclaredOipRequest): OipRequest {
  return { id: declared.id, feeds: declared.feeds, staged: [], outputs: declared.outputs, delivery: declared.outputs.map(() => 'json' as const) };
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
    return { body: JSON.stringify({ name: this.deps.serverName, version: this.deps.serverVersion, extensions: EXTENSIONS }) };
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

  async infer(selector: ModelSelector, request: InferBody): Promise<ServiceAnswer> {
    const manifest = await this.deps.registry.resolve(selector);
    const answer = await this.deps.sessions.use(manifest, async (session) => {
      if (!request.raw && needsDeclaredPath(manifest, request.json)) {
        // Images in, classification strings or masks out: as the upload declared or the request asks.
        const declared = await decodeDeclaredOip(request.json, session.inputs, session.outputs, declarationsOf(manifest), request.binary, this.tokenizerSource(manifest));
        const results = await answerAsDeclared(await this.run(session, manifest, declared.feeds, declared.outputs), declared, classLabelsOf(manifest));
        return this.encodeFitting(manifest, asJsonAnswer(declared), results);
      }
      const decoded = request.raw
        ? decodeRawBinaryRequest(request.binary ?? new Uint8Array(0), session.inputs, session.outputs)
        : decodeOipRequest(request.json, session.inputs, session.outputs, request.binary);
      for (const s of decoded.staged) {
        const info = infoOf(s.spec);
        const bytes = await this.deps.staging.read(s.spec.name, s.id, binarySize(info, s.shape));
        decoded.feeds[s.spec.name] = decodeBinaryTensor(s.spec.name, info, s.shape, bytes);
      }
      const results = await this.run(session, manifest, decoded.feeds, decoded.outputs);
      return this.encodeFitting(manifest, decoded, results);
    });
    return { body: answer.json, binary: answer.binary, model: manifest.model, version: manifest.version };
  }

  /** A presigned upload URL for a staged input (the staged_tensors extension). */
  async stagingTicket(): Promise<ServiceAnswer> {
    const t = await this.deps.staging.ticket();
    return { body: JSON.stringify({ id: t.id, upload_url: t.uploadUrl, method: 'PUT', expires_in: t.expiresIn, max_bytes: t.maxBytes }) };
  }

  /**
   * Encodes the answer, staging the outputs the request asked to stage, then, while the answer
   * is larger than the transport carries, the largest output still in it.
   */
  private async encodeFitting(manifest: Manifest, request: OipRequest, results: Awaited<ReturnType<InferenceService['run']>>): Promise<OipAnswer> {
    const staged = new Map<string, StagedOutput>();
    const stage = async (name: string): Promise<void> => {
      const tensor = results[name];
      if (tensor) staged.set(name, await this.deps.staging.write(encodeBinaryTensor(tensor)));
    };
    for (const [i, spec] of request.outputs.entries()) if (request.delivery[i] === 'staged') await stage(spec.name);
    let answer = encodeOipResponse(manifest.model, manifest.version, request, results, staged);
    const limit = this.deps.maxResponseBytes - ENVELOPE_BYTES;
    if (answerBytes(answer) <= limit) return answer;
    const sizeOf = (name: string): number => chunksSize(encodeBinaryTensor(results[name] as Tensor));
    const bySize = request.outputs
      .filter((o) => !staged.has(o.name) && results[o.name])
      .sort((a, b) => sizeOf(b.name) - sizeOf(a.name));
    for (const spec of bySize) {
      await stage(spec.name);
      answer = encodeOipResponse(manifest.model, manifest.version, request, results, staged);
      if (answerBytes(answer) <= limit) return answer;
    }
    throw new ResponseTooLargeError(`the answer is ${answerBytes(answer)} bytes even with every output staged, over the ${limit}-byte limit of a response`);
  }

  /** A plain image body (`content-type: image/*`) for a model with one image input. */
  async inferImage(selector: ModelSelector, image: Buffer, asPng = false): Promise<ServiceAnswer> {
    const manifest = await this.deps.registry.resolve(selector);
    let png: Buffer | undefined;
    const answer = await this.deps.sessions.use(manifest, async (session) => {
      const decoded = await decodeImagePost(image, session.inputs, session.outputs, declarationsOf(manifest), asPng);
      const results = await answerAsDeclared(await this.run(session, manifest, decoded.feeds, decoded.outputs), decoded, classLabelsOf(manifest));
      if (asPng) png = onlyPng(results, decoded.outputs);
      return this.encodeFitting(manifest, asJsonAnswer(decoded), results);
    });
    return { body: answer.json, binary: answer.binary, png, model: manifest.model, version: manifest.version };
  }

  /** A plain text body (`content-type: text/plain`) for a model whose one text input fills all its inputs. */
  async inferText(selector: ModelSelector, text: string): Promise<ServiceAnswer> {
    const manifest = await this.deps.registry.resolve(selector);
    const answer = await this.deps.sessions.use(manifest, async (session) => {
      const decoded = await decodeTextPost(text, session.inputs, session.outputs, declarationsOf(manifest), this.tokenizerSource(manifest));
      const results = await answerAsDeclared(await this.run(session, manifest, decoded.feeds, decoded.outputs), decoded, classLabelsOf(manifest));
      return this.encodeFitting(manifest, asJsonAnswer(decoded), results);
    });
    return { body: answer.json, binary: answer.binary, model: manifest.model, version: manifest.version };
  }

  async predict(selector: ModelSelector, request: unknown): Promise<ServiceAnswer> {
    const manifest = await this.deps.registry.resolve(selector);
    const body = await this.deps.sessions.use(manifest, async (session) => {
      if (manifest.preprocess !== undefined || manifest.postprocess !== undefined) {
        const decoded = await decodeDeclaredPredict(request, session.inputs, session.outputs, declarationsOf(manifest), this.tokenizerSource(manifest));
        const results = await answerAsDeclared(await this.run(session, manifest, decoded.feeds, decoded.outputs), decoded, classLabelsOf(manifest));
        return encodePredictResponse(decoded, results);
      }
      const decoded = decodePredictRequest(request, session.inputs, session.outputs);
      const results = await this.run(session, manifest, decoded.feeds, decoded.outputs);
      const text = encodePredictResponse(decoded, results);
      const bytes = Buffer.byteLength(text, 'utf8');
      if (bytes > this.deps.maxResponseBytes - ENVELOPE_BYTES) {
        throw new ResponseTooLargeError(
          `the answer is ${bytes} bytes, over the ${this.deps.maxResponseBytes - ENVELOPE_BYTES} bytes a response can carry: ask for fewer outputs ("output_filter") or a smaller batch, or use the Open Inference Protocol route (POST /v2/models/${manifest.model}/infer), which returns large outputs as binary or stages them in S3`,
        );
      }
      return text;
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

  private tokenizerSource(manifest: Manifest): TokenizerSource {
    return (decl) => this.deps.tokenizers.get(manifest, decl);
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
