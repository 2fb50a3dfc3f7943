import { checkApiKey } from '../auth/api-key';
import { InvalidRequestError, toErrorBody, UnsupportedMediaTypeError } from '../errors';
import type { InferBody, InferenceService, ServiceAnswer } from '../service/inference-service';
import { chooseResponseEncoding, compressBody, readBody } from './body';
import { isImageBody, isTextBody, readImageBody, readTextBody, wantsPng } from './plain-body';
import { isPublic, matchRoute, type Route } from './routes';

/** An HTTP request, whatever carried it (API Gateway v2, a test). Header names are lower-case. */
export interface HttpRequest {
  method: string;
  path: string;
  headers: Readonly<Record<string, string | undefined>>;
  body?: string;
  isBase64Encoded?: boolean;
}

export interface HttpResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  /** The body is base64 of binary content (binary tensors, a PNG mask); API Gateway decodes it before the client sees it. */
  isBase64Encoded?: boolean;
}

/** What the handler logs and counts about one request. */
export interface HttpOutcome {
  response: HttpResponse;
  route?: Route['kind'];
  model?: string;
  version?: number;
  /** Stable error code when the answer is an error. */
  errorCode?: string;
  /** The error, for the logs when it is a fault of ours. */
  error?: unknown;
}

export interface HttpSettings {
  apiKeyHashes: readonly Buffer[];
  authDisabled: boolean;
  maxBodyBytes: number;
}

const JSON_HEADERS = { 'content-type': 'application/json' };
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;
const BINARY_TYPE = /^application\/octet-stream\s*(?:;|$)/i;
const HEADER_LENGTH = 'inference-header-content-length';
// A byte-order mark is kept, so it makes the JSON invalid rather than vanishing.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** How a request declared its body: JSON, binary (octet-stream), nothing, or something else (415). */
function bodyKind(req: HttpRequest, binaryAllowed: boolean): 'json' | 'binary' | 'none' {
  const type = req.headers['content-type']?.trim();
  if (type === undefined || type === '') return 'none';
  if (JSON_TYPE.test(type)) return 'json';
  if (binaryAllowed && BINARY_TYPE.test(type)) return 'binary';
  const offer = binaryAllowed ? 'application/json, or application/octet-stream with Inference-Header-Content-Length (binary tensors)' : 'application/json';
  throw new UnsupportedMediaTypeError(`content-type "${type.slice(0, 100)}" is not supported; send ${offer}`);
}

function parseJsonBytes(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new InvalidRequestError('request body is not valid UTF-8');
  }
  if (text.trim() === '') throw new InvalidRequestError('request body is empty; send a JSON object');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidRequestError(`request body is not valid JSON: ${(err as Error).message.slice(0, 200)}`);
  }
}

/**
 * The request body as parsed JSON: decompressed and within the size limit (413), declared as
 * JSON if declared at all (415), valid UTF-8 and valid JSON (400).
 */
export function parseJsonBody(req: HttpRequest, maxBytes: number): unknown {
  bodyKind(req, false);
  return parseJsonBytes(readBody(req, maxBytes));
}

/**
 * An inference body: JSON, or Triton's binary tensor data extension (a JSON header of
 * `Inference-Header-Content-Length` bytes, then the tensors; 0 means the whole body is the only
 * input's data). Binary data needs a binary (or no) content type, and an uncompressed
 * octet-stream body needs the header: each mismatch is a 400 that says so.
 */
export function parseInferBody(req: HttpRequest, maxBytes: number): InferBody {
  const kind = bodyKind(req, true);
  const bytes = readBody(req, maxBytes);
  const declared = req.headers[HEADER_LENGTH];
  if (declared === undefined) {
    // A compressed JSON body may be declared binary: API Gateway passes JSON-typed bodies as
    // text, so compressed ones can only travel as binary.
    if (kind === 'binary' && req.headers['content-encoding'] === undefined) {
      throw new InvalidRequestError('a binary body (content-type application/octet-stream) needs an Inference-Header-Content-Length header: the length of its JSON part (0 for a raw tensor)');
    }
    return { json: parseJsonBytes(bytes) };
  }
  const length = /^\s*\d{1,15}\s*$/.test(declared) ? Number(declared) : NaN;
  if (!Number.isSafeInteger(length)) {
    throw new InvalidRequestError(`Inference-Header-Content-Length "${declared.slice(0, 40)}" is not a byte count`);
  }
  if (length > bytes.byteLength) {
    throw new InvalidRequestError(`Inference-Header-Content-Length ${length} is past the end of the ${bytes.byteLength}-byte body`);
  }
  if (length === 0) return { raw: true, binary: bytes };
  if (kind === 'json' && length < bytes.byteLength) {
    throw new InvalidRequestError(
      `the body carries ${bytes.byteLength - length} bytes of binary tensor data after its JSON header, but its content-type is JSON; send application/octet-stream (or no content-type)`,
    );
  }
  return { json: parseJsonBytes(bytes.subarray(0, length)), binary: bytes.subarray(length) };
}

async function dispatch(route: Route, req: HttpRequest, service: InferenceService, settings: HttpSettings): Promise<ServiceAnswer> {
  switch (route.kind) {
    case 'live':
      return { body: '{"live":true}' };
    case 'ready':
      return { body: '{"ready":true}' };
    case 'serverMetadata':
      return service.serverMetadata();
    case 'modelMetadata':
      return service.modelMetadata(route.selector);
    case 'modelReady':
      return service.modelReady(route.selector);
    case 'tfStatus':
      return service.tfStatus(route.selector);
    case 'infer':
      if (isImageBody(req)) return service.inferImage(route.selector, readImageBody(req, settings.maxBodyBytes), wantsPng(req));
      if (isTextBody(req)) return service.inferText(route.selector, readTextBody(req, settings.maxBodyBytes));
      return service.infer(route.selector, parseInferBody(req, settings.maxBodyBytes));
    case 'staging':
      return service.stagingTicket();
    case 'tfPredict':
      return service.predict(route.selector, parseJsonBody(req, settings.maxBodyBytes));
  }
}

/**
 * A 200 answer: JSON, a PNG, or the JSON header and binary tensors as one base64 body; compressed
 * when the client accepts gzip or deflate and the body gains from it.
 */
function toResponse(answer: ServiceAnswer, req: HttpRequest): HttpResponse {
  if (answer.png) return { statusCode: 200, headers: { 'content-type': 'image/png' }, body: answer.png.toString('base64'), isBase64Encoded: true };
  let headers: Record<string, string> = JSON_HEADERS;
  let bytes: Buffer | undefined;
  if (answer.binary && answer.binary.length > 0) {
    const head = Buffer.from(answer.body, 'utf8');
    bytes = Buffer.concat([head, ...answer.binary]);
    headers = { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(head.byteLength) };
  }
  const encoding = chooseResponseEncoding(req.headers['accept-encoding']);
  const compressed = encoding && compressBody(bytes ?? Buffer.from(answer.body, 'utf8'), encoding);
  if (encoding && compressed) {
    return { statusCode: 200, headers: { ...headers, 'content-encoding': encoding, vary: 'accept-encoding' }, body: compressed.toString('base64'), isBase64Encoded: true };
  }
  if (bytes) return { statusCode: 200, headers, body: bytes.toString('base64'), isBase64Encoded: true };
  return { statusCode: 200, headers, body: answer.body };
}

/**
 * Serves one HTTP request: route, authenticate, dispatch, and turn any error into its
 * response. Never throws.
 */
export async function handleHttp(req: HttpRequest, service: InferenceService, settings: HttpSettings): Promise<HttpOutcome> {
  let route: Route | undefined;
  try {
    route = matchRoute(req.method, req.path);
    if (!isPublic(route) && !settings.authDisabled) checkApiKey(req.headers, settings.apiKeyHashes);
    const answer = await dispatch(route, req, service, settings);
    return {
      response: toResponse(answer, req),
      route: route.kind,
      model: answer.model,
      version: answer.version,
    };
  } catch (err) {
    const out = toErrorBody(err);
    const selector = route && 'selector' in route ? route.selector : undefined;
    return {
      response: { statusCode: out.statusCode, headers: { ...JSON_HEADERS, ...out.headers }, body: JSON.stringify(out.body) },
      route: route?.kind,
      model: selector?.model,
      version: selector?.version,
      errorCode: out.code,
      error: err,
    };
  }
}
