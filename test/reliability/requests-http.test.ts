/**
 * The seeded hostile and valid requests of request-cases.ts, sent over real HTTP to the local
 * stack exactly as `npm start` runs it (serverless-offline in front of the bundled infer
 * function, serverless-s3-local behind it), on free ports with a temporary data directory.
 *
 * Never a 5xx, never a hung request, never a dead stack (health/live answers 200 throughout
 * and at the end); every refusal a 4xx whose body is JSON with a message. Requests that
 * serverless.yml forwards to the function must get the status the in-process fuzz
 * (requests.test.ts) expects, with the same message or the right answer, except where a
 * request over HTTP is not the event that test builds: each such difference is listed in
 * DIFFERENCES, with why, and is counted apart. Ctrl-C then stops the stack with exit code 130
 * and frees every port.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceSession } from 'onnxruntime-node';
import { LOCAL_BUCKET, type StackState } from '../../tools/stack/local';
import { TEST_API_KEY } from '../helpers/events';
import { localS3At, type LocalS3 } from '../helpers/local-s3';
import { freeStackPorts, groupAlive, portIsFree, ROOT, stackEnv, stackRunning, startStack, stopStack, withLogTail, type StackPorts, type StartedStack } from '../helpers/local-stack';
import { mlpModel } from '../helpers/models';
import { checkAnswer } from './answer-checks';
import { FULL_RUN, recordReliability } from './record';
import { publishFuzzModels } from './fuzz-models';
import { ANY_ANSWER, MODELS, requestCase, type RequestCase, wellFormedAnswer } from './request-cases';

/** requests.test.ts's seed: case `i` here is case `i` there. To replay one: `requestCase(SEED, i)`. */
const SEED = 0x5eed_2024;
/** The `npm test` share is the first 2,000 cases; the full reliability run sends 10,000. */
const CASES = FULL_RUN ? 10_000 : 2_000;
/** Requests in flight at once: a few clients, not a load test (2 cores run jest and the stack). */
const CONCURRENCY = 4;
/** Every request gets its answer within this or counts as hung. */
const REQUEST_TIMEOUT_MS = 30_000;
/** health/live is asked after every this many cases, and after any connection the stack closed. */
const LIVE_EVERY = 100;
const MAX_MESSAGE_LENGTH = 1024;
/** Node's default --max-http-header-size: a longer request line + headers is refused by its parser. */
const MAX_HEAD_BYTES = 16 * 1024;
/** serverless-offline's payload limit on POST routes (hapi `payload.maxBytes`). */
const OFFLINE_MAX_BODY = 10 * 1024 * 1024;

jest.setTimeout(600_000);

// ---------------------------------------------------------------------------------------------
// The stack, started and stopped by test/helpers/local-stack.ts, as local-stack.test.ts does it

let dataDir: string;
let esbuildFolder: string;
let env: NodeJS.ProcessEnv;
let ports: StackPorts;
let apiUrl: string;
let stack: StartedStack | undefined;
/** The same weights as mlp and mlp-dyn, run directly: the expected probabilities. */
let reference: InferenceSession | undefined;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'requests-http-'));
  esbuildFolder = `.esbuild-requests-http-${process.pid}`;
  ports = await freeStackPorts();
  apiUrl = `http://127.0.0.1:${ports.http}`;
  env = stackEnv(ports, dataDir, esbuildFolder, {
    // The key the generator's cases send (and deliberately get wrong).
    API_KEY: TEST_API_KEY,
    // Refusals are logged at INFO, one line each: thousands here; warnings and errors are kept.
    POWERTOOLS_LOG_LEVEL: 'WARN',
  });
  reference = await InferenceSession.create(mlpModel({ batch: 'N' }));
});

afterAll(async () => {
  // Only when the test itself could not stop it (a timeout): the same Ctrl-C, then cleanup.
  if (stack && stackRunning(stack)) await stopStack(stack);
  await reference?.release();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(join(ROOT, esbuildFolder), { recursive: true, force: true });
});

/** The stack's bucket as publishModel wants it. */
const stackBucket = (): LocalS3 => localS3At(`http://127.0.0.1:${ports.s3}`, LOCAL_BUCKET);

/** Publishes the generator's models as requests.test.ts does, then waits until each answers ready. */
async function publishModels(): Promise<void> {
  const s3 = stackBucket();
  try {
    await publishFuzzModels(s3);
  } finally {
    await s3.stop();
  }
  // The stack caches manifest lookups (MANIFEST_TTL_MS, 1 s), a miss included.
  for (const model of Object.values(MODELS)) {
    let last = '';
    for (let i = 0; i < 120; i++) {
      const res = await fetch(`${apiUrl}/v2/models/${model}/ready`, { headers: { 'x-api-key': TEST_API_KEY }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      last = `${res.status} ${await res.text()}`;
      if (res.status === 200) break;
      await new Promise((done) => setTimeout(done, 250));
    }
    expect({ model, ready: last }).toEqual({ model, ready: expect.stringMatching(/^200 /) as unknown });
  }
}

async function live(): Promise<string | undefined> {
  try {
    const res = await fetch(`${apiUrl}/v2/health/live`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const body = await res.text();
    return res.status === 200 && body === '{"live":true}' ? undefined : `health/live answered ${res.status} ${body.slice(0, 200)}`;
  } catch (err) {
    return `health/live failed: ${describeError(err)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// From a case to the request on the wire

/**
 * Where a request over HTTP is not the API Gateway event requests.test.ts hands the handler.
 * A case in one of these is judged by what the HTTP layer legitimately does with it.
 */
const DIFFERENCES = {
  // An empty method cannot be written as a request line, and a NUL in a header value is not
  // HTTP: both go over a raw socket (fetch refuses them) and Node's HTTP parser answers a bare
  // 400 without a body before serverless-offline sees them.
  'not a valid HTTP request': 'Node\'s parser answers 400 without a body',
  // Node refuses a request line + headers over --max-http-header-size (16 KiB: the 5 MiB model
  // name, the 100,000-character key) with a bare 400/431, or closes the connection while the
  // client is still writing, so the answer may never be read. The stack must stay up.
  'head over 16 KiB': 'Node answers 400/431 without a body or closes the connection',
  // hapi decodes the path before routing and refuses one it cannot decode (a bad escape, or
  // escapes that are not UTF-8, e.g. %FF) with its own 400; the handler's own message
  // ("malformed percent-encoding in path segment") is never reached.
  'malformed percent-encoding': 'hapi answers 400 before routing',
  // `.`/`..` segments, raw or as %2e, are resolved by URL parsing: fetch would resolve them
  // before sending, so these go over a raw socket, but hapi resolves them too before routing,
  // and serverless-offline builds rawPath from the resolved URL. The function (if reached) sees
  // another path: /v2/models/mlp/labels/../infer is /v2/models/mlp/infer, which may be a
  // valid request and answer 200. Any 4xx, or a 200 from the function, is right.
  'dot segments resolved': 'any 4xx, or a 200 for the resolved path',
  // The handler collapses doubled slashes (//v2//models//mlp//ready/), hapi does not: its
  // routes do not match, and serverless-offline answers its own 404.
  'doubled slashes not routed': 'serverless-offline answers 404',
  // serverless-offline's payload limit (10 MiB, as API Gateway's) is checked by hapi before the
  // function runs: 413, as the function would answer, but not its message (or the connection
  // is closed while the client still writes the body).
  'body over 10 MiB': 'hapi answers 413 or closes the connection',
  // On POST routes hapi parses the content-type (RFC 7231 media type, @hapi/content) and
  // refuses one that is not `type/subtype[;params]` ("json", "application/", "application /json",
  // 10,000 c's) with 400 "Invalid content-type header", where the function would say 415.
  'content-type hapi cannot parse': 'hapi answers 400',
  // serverless-offline turns a JSON body into a string with Buffer#toString('utf8'), which
  // replaces invalid UTF-8 with U+FFFD instead of passing the bytes base64-encoded: the
  // function gets valid text, and refuses it as JSON or as a value (400) rather than with
  // "request body is not valid UTF-8". The status is compared, not the message.
  'invalid UTF-8 replaced': 'the function answers 400 with another message',
  // (A compressed or binary-framed body sent with a JSON content type is text to API Gateway
  // too: it reaches the function altered, and is refused the same way.)
  // hapi serves HEAD with the GET route (the function answers 405) and, as HTTP requires,
  // sends no body: the status is compared, the message cannot be.
  'HEAD answer has no body': 'the function\'s status, no body',
} as const;
type Difference = keyof typeof DIFFERENCES;

/** Why a request goes over a raw socket rather than fetch. */
type SocketReason = 'method fetch refuses' | 'GET/HEAD with a body' | 'path fetch would rewrite' | 'header fetch refuses';

interface Plan {
  /** The method on the wire: fetch upper-cases the six standard methods, and so does the socket here. */
  method: string;
  /** The path on the wire: the case's path with every byte outside printable ASCII percent-encoded. */
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  transport: 'fetch' | 'socket';
  socketReason?: SocketReason;
  /** serverless.yml forwards this request to the function. */
  forwarded: boolean;
  difference?: Difference;
}

const NORMALIZED_METHODS = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'];
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What fetch and Node's HTTP client refuse in a header value (after UTF-8 as bytes). */
const BAD_HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** @hapi/content's media type: RFC 7231 `type "/" subtype *( OWS ";" OWS parameter )`. */
const MEDIA_TYPE = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+\/[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:[ \t;][^\r\n]*)?$/;
/** Content types serverless-offline passes to the function base64-encoded (its detectEncoding). */
const BINARY_TYPES = ['application/octet-stream', 'multipart/form-data'];
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Every byte outside printable ASCII percent-encoded as UTF-8: what any client puts on the wire. */
function wirePath(path: string): string {
  return path.replace(/[^\x21-\x7e]+/g, (s) => [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

/** A header value as bytes on the wire (UTF-8), in the latin1 string form HTTP clients take. */
const headerBytes = (value: string): string => Buffer.from(value, 'utf8').toString('latin1');

/** Whether serverless.yml's httpApi routes forward this request, as hapi matches them. */
function forwardedBy(method: string, path: string): boolean {
  // hapi strips one trailing slash (router.stripTrailingSlash) and matches case-sensitively.
  const p = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  const get = method === 'GET' || method === 'HEAD'; // hapi serves HEAD with the GET route
  if (get && ['/v2', '/v2/health/live', '/v2/health/ready'].includes(p)) return true;
  // GET/POST /v2/models/{proxy+} and /v1/models/{proxy+}: serverless-offline's {proxy*} also matches no segment.
  return (get || method === 'POST') && /^\/v[12]\/models(?:\/|$)/.test(p);
}

function undecodable(path: string): boolean {
  return path.split('/').some((segment) => {
    try {
      decodeURIComponent(segment);
      return false;
    } catch {
      return true;
    }
  });
}

function planOf(c: RequestCase): Plan {
  const method = NORMALIZED_METHODS.includes(c.method.toUpperCase()) ? c.method.toUpperCase() : c.method;
  const path = wirePath(c.path);
  const [pathOnly = path] = path.split('?');

  // Headers as requests.test.ts's event has them: a JSON content-type when a body is sent.
  const hasBody = c.body !== undefined || c.rawBase64 !== undefined;
  const headers: Record<string, string> = {};
  if (hasBody) headers['content-type'] = 'application/json';
  if (c.apiKey !== null) headers['x-api-key'] = c.apiKey ?? TEST_API_KEY;
  Object.assign(headers, c.headers ?? {});
  if (c.contentType === null) delete headers['content-type'];
  else if (c.contentType !== undefined) headers['content-type'] = c.contentType;
  for (const [name, value] of Object.entries(headers)) headers[name] = headerBytes(value);

  // Over HTTP, base64 is the event's business: the body is the decoded bytes.
  const body = c.rawBase64 !== undefined ? Buffer.from(c.rawBase64, 'base64') : c.body !== undefined ? Buffer.from(c.body, 'utf8') : undefined;

  const resolved = new URL(`${apiUrl}${path}`);
  const rewritten = resolved.pathname + resolved.search !== path;
  const dotSegments = pathOnly.split('/').some((s) => /^(?:\.|%2e){1,2}$/i.test(s));
  let socketReason: SocketReason | undefined;
  if (!TOKEN.test(method) || ['CONNECT', 'TRACE', 'TRACK'].includes(method.toUpperCase())) socketReason = 'method fetch refuses';
  else if ((method === 'GET' || method === 'HEAD') && body !== undefined) socketReason = 'GET/HEAD with a body';
  else if (rewritten) socketReason = 'path fetch would rewrite';
  else if (Object.values(headers).some((v) => BAD_HEADER_VALUE.test(v))) socketReason = 'header fetch refuses';

  const forwarded = forwardedBy(method, resolved.pathname);
  const headBytes = Buffer.byteLength(`${method} ${path} HTTP/1.1\r\n`) + Object.entries(headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0) + 200;
  const type = headers['content-type']?.trim() ?? '';
  let difference: Difference | undefined;
  if (!TOKEN.test(method) || Object.values(headers).some((v) => BAD_HEADER_VALUE.test(v))) difference = 'not a valid HTTP request';
  else if (headBytes > MAX_HEAD_BYTES) difference = 'head over 16 KiB';
  else if (undecodable(pathOnly)) difference = 'malformed percent-encoding';
  else if (dotSegments) difference = 'dot segments resolved';
  else if (!forwarded && forwardedBy(method, resolved.pathname.replace(/\/{2,}/g, '/'))) difference = 'doubled slashes not routed';
  else if (forwarded && method === 'POST' && body && body.length > OFFLINE_MAX_BODY) difference = 'body over 10 MiB';
  else if (forwarded && method === 'POST' && type !== '' && !MEDIA_TYPE.test(type)) difference = 'content-type hapi cannot parse';
  // A body with no content type but binary framing or a content encoding travels base64, as
  // through API Gateway (tools/offline-binary-bodies.js); other bodies without a binary type
  // are turned into text.
  else if (forwarded && body && !BINARY_TYPES.some((t) => type.includes(t)) && !(type === '' && framedOrEncoded(headers)) && !validUtf8(body)) difference = 'invalid UTF-8 replaced';
  else if (forwarded && method === 'HEAD') difference = 'HEAD answer has no body';

  return { method, path, headers, body, transport: socketReason ? 'socket' : 'fetch', socketReason, forwarded, difference };
}

function validUtf8(bytes: Buffer): boolean {
  try {
    STRICT_UTF8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Sending

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

type Sent = { reply: Reply } | { closed: string } | { timedOut: true };

function describeError(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  return [e?.name, e?.message, e?.cause?.code, e?.cause?.message].filter(Boolean).join(': ');
}

const isTimeout = (err: unknown): boolean => (err as Error)?.name === 'TimeoutError' || (err as Error)?.name === 'AbortError';

async function viaFetch(plan: Plan): Promise<Sent> {
  try {
    const res = await fetch(`${apiUrl}${plan.path}`, {
      method: plan.method,
      headers: plan.headers,
      // Bytes, not a string: fetch would add `content-type: text/plain` to a string body.
      body: plan.body,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const body = await res.text();
    return { reply: { status: res.status, headers: Object.fromEntries(res.headers.entries()), body } };
  } catch (err) {
    return isTimeout(err) ? { timedOut: true } : { closed: describeError(err) };
  }
}

/** One HTTP/1.1 request written byte for byte, for what fetch cannot send as the case says. */
function viaSocket(plan: Plan): Promise<Sent> {
  const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  return new Promise((done) => {
    const chunks: Buffer[] = [];
    let failure: unknown;
    const socket = connect({ port: ports.http, host: '127.0.0.1', signal }, () => {
      const lines = [`${plan.method} ${plan.path} HTTP/1.1`, `host: 127.0.0.1:${ports.http}`, 'connection: close'];
      for (const [name, value] of Object.entries(plan.headers)) lines.push(`${name}: ${value}`);
      if (plan.body !== undefined) lines.push(`content-length: ${plan.body.length}`);
      socket.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'));
      if (plan.body !== undefined) socket.write(plan.body);
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err) => (failure = err));
    socket.once('close', () => {
      if (signal.aborted) return done({ timedOut: true });
      const reply = parseReply(Buffer.concat(chunks), plan.method);
      done(reply ? { reply } : { closed: failure ? describeError(failure) : 'closed without an answer' });
    });
  });
}

function parseReply(raw: Buffer, method: string): Reply | undefined {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine = '', ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1];
  if (!status) return undefined;
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = raw.subarray(end + 4);
  if (method === 'HEAD') body = Buffer.alloc(0);
  else if (headers['transfer-encoding']?.includes('chunked')) body = unchunk(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status: Number(status), headers, body: body.toString('utf8') };
}

function unchunk(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < raw.length; ) {
    const eol = raw.indexOf('\r\n', at);
    const size = parseInt(raw.subarray(at, eol).toString('latin1'), 16);
    if (eol < 0 || !(size > 0)) break;
    parts.push(raw.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// Judging one case

type Layer = 'function' | 'HTTP layer';

interface Outcome {
  /** The status, or `closed` when the connection ended without an answer, `timeout` when it hung. */
  status: string;
  layer: Layer;
  /** `as the event`, `not routed by serverless.yml`, or the difference that applied. */
  reason: string;
  problem?: string;
  wrongData?: boolean;
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return undefined;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The function's refusals are exactly `{"error": "..."}`; serverless-offline's and hapi's carry more (or no body). */
function functionError(body: string): string | undefined {
  const json = parseJson(body);
  return isObject(json) && Object.keys(json).length === 1 && typeof json.error === 'string' ? json.error : undefined;
}

/** A message the HTTP layer's JSON refusal carries: hapi's `message` or serverless-offline's `error`. */
function layerMessage(body: string): string | undefined {
  const json = parseJson(body);
  if (!isObject(json)) return undefined;
  const message = typeof json.message === 'string' ? json.message : json.error;
  return typeof message === 'string' && message.trim() !== '' ? message : undefined;
}

/** requests.test.ts's checks of a function's refusal, minus the expected message when `message` is false. */
function checkRefusal(c: RequestCase, reply: Reply, message: boolean): string | undefined {
  const error = functionError(reply.body);
  if (error === undefined) return `not {"error": "..."}: ${reply.body.slice(0, 300)}`;
  if (error.trim() === '') return 'empty error message';
  if (error.length > MAX_MESSAGE_LENGTH) return `error message of ${error.length} characters`;
  if (/\n\s+at |\.ts:\d+|node_modules/.test(error)) return `stack trace in the message: ${reply.body.slice(0, 300)}`;
  if (message && c.expect.message && !c.expect.message.test(error)) return `message ${JSON.stringify(error.slice(0, 300))} does not match ${String(c.expect.message)}`;
  if (reply.status === 401 && reply.headers['www-authenticate'] !== 'Bearer') return '401 without www-authenticate';
  return undefined;
}

/** Whether a request carries binary framing or a content encoding (header names lower-case). */
function framedOrEncoded(headers: Record<string, string>): boolean {
  const names = Object.keys(headers).map((n) => n.toLowerCase());
  return names.includes('inference-header-content-length') || names.includes('content-encoding');
}

async function judge(c: RequestCase, plan: Plan, sent: Sent): Promise<Outcome> {
  const reason = plan.difference ?? (plan.forwarded ? 'as the event' : 'not routed by serverless.yml');
  if ('timedOut' in sent) return { status: 'timeout', layer: 'HTTP layer', reason, problem: `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` };
  if ('closed' in sent) {
    const ok = plan.difference === 'head over 16 KiB' || plan.difference === 'body over 10 MiB';
    return { status: 'closed', layer: 'HTTP layer', reason, problem: ok ? undefined : `connection closed without an answer: ${sent.closed}` };
  }
  const { reply } = sent;
  const status = String(reply.status);
  const excerpt = reply.body.slice(0, 300);
  const byFunction = reply.status < 300 || functionError(reply.body) !== undefined || (plan.difference === 'HEAD answer has no body' && plan.forwarded);
  const layer: Layer = byFunction ? 'function' : 'HTTP layer';
  const outcome = (problem?: string, wrongData?: boolean): Outcome => ({ status, layer, reason, problem, wrongData });

  if (reply.status >= 500) return outcome(`server error ${status}: ${excerpt}`);
  if (reply.status >= 300 && reply.status < 400) return outcome(`status ${status}`);
  if (reply.status >= 400) {
    // Every refusal is JSON with a message, but for the bare answers of Node's parser and HEAD.
    const bare = plan.difference === 'not a valid HTTP request' || plan.difference === 'head over 16 KiB' || plan.method === 'HEAD';
    if (!(bare && reply.body === '') && (byFunction ? functionError(reply.body)?.trim() : layerMessage(reply.body)) === undefined) {
      return outcome(`a ${status} whose body is not JSON with a message: ${excerpt}`);
    }
    if (reply.body !== '' && !/^application\/json\b/.test(reply.headers['content-type'] ?? '')) return outcome(`content-type ${reply.headers['content-type']}`);
  }

  switch (plan.difference) {
    case 'not a valid HTTP request':
    case 'head over 16 KiB':
      return outcome(layer === 'HTTP layer' && (reply.status === 400 || reply.status === 431) ? undefined : `expected a bare 400/431 from Node, got ${status}: ${excerpt}`);
    case 'malformed percent-encoding':
      return outcome(layer === 'HTTP layer' && reply.status === 400 ? undefined : `expected hapi's 400, got ${status}: ${excerpt}`);
    case 'dot segments resolved':
      if (reply.status === 200) return outcome(parseJson(reply.body) === undefined ? `a 200 that is not JSON: ${excerpt}` : undefined);
      return outcome(byFunction ? checkRefusal(c, reply, false) : undefined);
    case 'doubled slashes not routed':
      return outcome(layer === 'HTTP layer' && reply.status === 404 ? undefined : `expected serverless-offline's 404, got ${status}: ${excerpt}`);
    case 'body over 10 MiB':
      return outcome(layer === 'HTTP layer' && reply.status === 413 ? undefined : `expected hapi's 413, got ${status}: ${excerpt}`);
    case 'content-type hapi cannot parse':
      return outcome(layer === 'HTTP layer' && reply.status === 400 ? undefined : `expected hapi's 400, got ${status}: ${excerpt}`);
    case 'invalid UTF-8 replaced':
      // The function gets other bytes than were sent (a compressed body that would have been
      // valid included): it refuses them.
      if (!byFunction || reply.status !== 400) return outcome(`expected the function's 400, got ${status}: ${excerpt}`);
      return outcome(checkRefusal(c, reply, false));
    case 'HEAD answer has no body':
      return outcome(reply.status === c.expect.status && reply.body === '' ? undefined : `expected ${c.expect.status} without a body, got ${status}: ${excerpt}`);
    case undefined:
      break;
  }

  if (!plan.forwarded) {
    // Not one of serverless.yml's routes: serverless-offline's own 404 (or hapi's CORS 404 for OPTIONS).
    return outcome(layer === 'HTTP layer' && reply.status >= 400 && reply.status < 500 ? undefined : `expected the HTTP layer's 4xx, got ${status} from the ${layer}: ${excerpt}`);
  }
  if (!byFunction) return outcome(`a forwarded request answered by the HTTP layer: ${status} ${excerpt}`);
  if (!/^application\/json\b/.test(reply.headers['content-type'] ?? '')) return outcome(`content-type ${reply.headers['content-type']}`);
  if (c.expect.status === ANY_ANSWER) {
    if (reply.status === 200) return outcome(wellFormedAnswer(parseJson(reply.body)) ? undefined : `a 200 that is no answer: ${excerpt}`);
  } else if (reply.status !== c.expect.status) return outcome(`status ${status}, expected ${c.expect.status}: ${excerpt}`);
  if (reply.status !== 200) return outcome(checkRefusal(c, reply, true));
  if (!c.expect.answer) return outcome('a 200 with no answer to check');
  try {
    await checkAnswer(c.expect.answer, reply.body, reference!);
  } catch (err) {
    return outcome(`wrong answer: ${(err as Error).message}`, true);
  }
  return outcome();
}

// ---------------------------------------------------------------------------------------------

const count = (map: Map<string, number>, key: string): void => void map.set(key, (map.get(key) ?? 0) + 1);
const listed = (map: Map<string, number>): string =>
  [...map.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}: ${n}`).join(', ');

test(`${CASES} seeded hostile and valid requests over HTTP: never a 5xx or a hang, the stack stays up, answers as in-process`, async () => {
  await withLogTail(dataDir, run);
});

async function run(): Promise<void> {
  const started = Date.now();
  const current = await startStack(env);
  stack = current;
  const state = JSON.parse(readFileSync(join(dataDir, 'stack.json'), 'utf8')) as StackState;
  let exitCode: number | null | undefined;
  const byStatus = new Map<string, number>();
  const byLayer = new Map<string, number>();
  const byReason = new Map<string, Map<string, number>>();
  const byTransport = new Map<string, number>();
  const failures: string[] = [];
  const liveProblems: string[] = [];
  let liveChecks = 0;
  let endedWell = 0;
  let wrongData = 0;
  let casesSeconds = 0;
  try {
    expect(current.output()).toContain('API key     test-key-0123456789   (from API_KEY)');
    await publishModels();

    const checkLive = async (after: string): Promise<void> => {
      liveChecks++;
      const problem = stackRunning(current) ? await live() : 'the stack exited';
      if (problem) liveProblems.push(`after ${after}: ${problem}`);
    };

    const casesStarted = Date.now();
    let next = 0;
    let done = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < CASES && liveProblems.length === 0; i = next++) {
        const c = requestCase(SEED, i);
        const plan = planOf(c);
        const sent = plan.transport === 'fetch' ? await viaFetch(plan) : await viaSocket(plan);
        const outcome = await judge(c, plan, sent);
        count(byStatus, outcome.status);
        count(byLayer, outcome.layer);
        const statuses = byReason.get(outcome.reason) ?? new Map<string, number>();
        byReason.set(outcome.reason, statuses);
        count(statuses, `${outcome.status} ${outcome.layer === 'function' ? 'function' : 'HTTP'}`);
        count(byTransport, plan.socketReason ? `socket (${plan.socketReason})` : 'fetch');
        if (outcome.problem) failures.push(`#${c.index} [${c.category}] ${c.method} ${c.path.slice(0, 80)} ${c.what} (${outcome.reason}, ${plan.transport}): ${outcome.problem}`);
        else endedWell++;
        if (outcome.wrongData) wrongData++;
        // A connection the stack closed, or every LIVE_EVERY cases: the stack must still answer.
        if ('closed' in sent || ++done % LIVE_EVERY === 0) await checkLive(`case #${c.index}`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    casesSeconds = (Date.now() - casesStarted) / 1000;
    await checkLive('the last case');
  } finally {
    if (stackRunning(current)) exitCode = await stopStack(current);
  }
  const seconds = (Date.now() - started) / 1000;
  const reasons = [...byReason.entries()]
    .map(([reason, statuses]) => [reason, [...statuses.values()].reduce((a, b) => a + b, 0), listed(statuses)] as const)
    .sort(([, a], [, b]) => b - a);

  const detail =
    `seed 0x${SEED.toString(16)}, the first ${CASES} cases of requests (handler), through serverless-offline (npm start) with fetch, ` +
    `${CONCURRENCY} at a time; ended well = no 5xx, hang or dropped connection (but for heads over 16 KiB), a 4xx JSON body with a message, ` +
    `the in-process status, message and answer for what serverless.yml forwards, any 4xx for what it does not, each HTTP-vs-event difference ` +
    `by its own rule; statuses ${listed(byStatus)}; answered by ${listed(byLayer)}; by reason ${reasons.map(([r, n, st]) => `${r} ${n} (${st})`).join('; ')}; ` +
    `health/live 200 at ${liveChecks - liveProblems.length}/${liveChecks} checks; stopped with exit code ${exitCode}`;
  recordReliability({ part: 'requests (over HTTP)', cases: CASES, endedWell, dataLost: wrongData, detail });
  console.log(
    [
      `requests (over HTTP): ${CASES} cases, ${endedWell} ended well, ${failures.length} failed; cases ${casesSeconds.toFixed(1)} s, all ${seconds.toFixed(1)} s`,
      `  statuses  ${listed(byStatus)}`,
      `  layer     ${listed(byLayer)}`,
      '  reason',
      ...reasons.map(([reason, n, statuses]) => `    ${String(n).padStart(5)}  ${reason}: ${statuses}${reason in DIFFERENCES ? ` (${DIFFERENCES[reason as Difference]})` : ''}`),
      `  transport ${listed(byTransport)}`,
      `  health/live checks ${liveChecks}, problems ${liveProblems.length}; exit code ${exitCode}`,
    ].join('\n'),
  );

  expect(liveProblems).toEqual([]);
  expect(failures.slice(0, 40)).toEqual([]);
  expect(endedWell).toBe(CASES);
  expect(wrongData).toBe(0);

  // Ctrl-C: exit code 130, nothing it started is left, every port is free again.
  expect(exitCode).toBe(130);
  expect(groupAlive(state.groupPid)).toBe(false);
  for (const port of Object.values(ports)) expect({ port, free: await portIsFree(port) }).toEqual({ port, free: true });
}
