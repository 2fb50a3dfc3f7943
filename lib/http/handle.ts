import { checkApiKey } from '../auth/api-key';
import { InvalidRequestError, PayloadTooLargeError, toErrorBody, UnsupportedMediaTypeError } from '../errors';
import type { InferenceService, ServiceAnswer } from '../service/inference-service';
import { isImageBody, readImageBody, wantsPng } from './image-body';
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
  /** The body is base64 of binary content (a PNG mask), as API Gateway expects it. */
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
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The request body as parsed JSON: within the size limit (413), declared as JSON if declared
 * at all (415), valid UTF-8 and valid JSON (400).
 */
export function parseJsonBody(req: HttpRequest, maxBytes: number): unknown {
  const type = req.headers['content-type'];
  if (type !== undefined && type.trim() !== '' && !JSON_TYPE.test(type.trim())) {
    throw new UnsupportedMediaTypeError(`content-type "${type.slice(0, 100)}" is not supported; send application/json`);
  }
  const raw = req.body ?? '';
  let text: string;
  if (req.isBase64Encoded) {
    if (raw.length > Math.ceil((maxBytes * 4) / 3) + 4) throw tooLarge(maxBytes);
    const bytes = Buffer.from(raw, 'base64');
    if (bytes.byteLength > maxBytes) throw tooLarge(maxBytes);
    try {
      text = utf8.decode(bytes);
    } catch {
      throw new InvalidRequestError('request body is not valid UTF-8');
    }
  } else {
    if (raw.length > maxBytes || (raw.length * 3 > maxBytes && Buffer.byteLength(raw, 'utf8') > maxBytes)) {
      throw tooLarge(maxBytes);
    }
    text = raw;
  }
  if (text.trim() === '') throw new InvalidRequestError('request body is empty; send a JSON object');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidRequestError(`request body is not valid JSON: ${(err as Error).message.slice(0, 200)}`);
  }
}

function tooLarge(maxBytes: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`request body is larger than the ${maxBytes}-byte limit`);
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
      return service.infer(route.selector, parseJsonBody(req, settings.maxBodyBytes));
    case 'tfPredict':
      return service.predict(route.selector, parseJsonBody(req, settings.maxBodyBytes));
  }
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
    const response: HttpResponse = answer.png
      ? { statusCode: 200, headers: { 'content-type': 'image/png' }, body: answer.png.toString('base64'), isBase64Encoded: true }
      : { statusCode: 200, headers: JSON_HEADERS, body: answer.body };
    return {
      response,
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
