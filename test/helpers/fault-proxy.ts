import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** What a request to the bucket does, as S3 names it. */
export type S3Operation = 'GetObject' | 'HeadObject' | 'PutObject' | 'ListObjects' | 'Other';

/** One request the proxy saw, and what it did to it. */
export interface ProxiedRequest {
  /** Order of arrival over the proxy's life, from 1. */
  seq: number;
  method: string;
  operation: S3Operation;
  /** The object key, URL-decoded; '' for bucket-level requests (listing). */
  key: string;
  /** The Range header of a ranged GET. */
  range?: string;
  /** The prefix of a listing. */
  prefix?: string;
  /** The fault applied, if any. */
  fault?: Fault['kind'];
}

/**
 * A fault the proxy can apply to one request. Faults on answers (`reset-mid-body`,
 * `stall-mid-body`, `truncate`, `corrupt`) forward the request and spoil what comes back; faults
 * on requests (`reset`, `reset-mid-upload`, `error`, `stall`) never reach S3;
 * `reset-after-forward` lets S3 act and loses the answer, the ambiguous case a writer must survive.
 * An answer without a body (HEAD, PUT) passes `truncate` and `corrupt` untouched; `reset-mid-body`
 * and `stall-mid-body` reset or stall it whole.
 */
export type Fault =
  /** Wait, then forward as is. */
  | { kind: 'delay'; ms: number }
  /** Never answer; the connection stays open until the client gives up (or the proxy closes). */
  | { kind: 'stall' }
  /** Drop the connection (TCP RST) before any answer; the request does not reach S3. */
  | { kind: 'reset' }
  /** Read part of the request body, then drop the connection; S3 keeps nothing of a broken PUT. */
  | { kind: 'reset-mid-upload' }
  /** Forward the request (S3 acts on it), then drop the connection before the answer. */
  | { kind: 'reset-after-forward' }
  /** Send the status line, headers and part of the body, then drop the connection (RST). */
  | { kind: 'reset-mid-body' }
  /** Send the status line, headers and part of the body, then nothing more (the connection stays open). */
  | { kind: 'stall-mid-body' }
  /** S3's own error answers: 500 InternalError, 503 SlowDown (throttling). */
  | { kind: 'error'; status: 500 | 503 }
  /**
   * Send only part of the body. `full`: the Content-Length of the whole answer, then a clean close
   * before it is complete (premature end). `honest`: a Content-Length that matches the bytes
   * sent, so the HTTP framing is sound and only the content is short.
   */
  | { kind: 'truncate'; contentLength: 'full' | 'honest' }
  /** One byte of the body flipped, the length kept. */
  | { kind: 'corrupt' };

/** An answer the proxy makes up in S3's name. */
interface Synthetic {
  statusCode: number;
  headers: Record<string, string>;
}

/** Decides the fault (if any) for a request; called once per request, in arrival order. */
export type FaultRule = (request: ProxiedRequest) => Fault | undefined;

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: give it to an S3 client as its endpoint. */
  endpoint: string;
  /** Every request seen since start (or the last {@link FaultProxy.resetLog}). */
  readonly requests: readonly ProxiedRequest[];
  /** Sets the rule for the requests that follow; `undefined` forwards everything untouched. */
  setRule(rule: FaultRule | undefined): void;
  /** Number of requests seen that match. */
  count(match: (request: ProxiedRequest) => boolean): number;
  resetLog(): void;
  close(): Promise<void>;
}

/** Where a truncated or broken body stops: past the first byte, before the last. */
function cutPoint(length: number): number {
  return Math.max(1, Math.floor(length / 2));
}

function operationOf(method: string, key: string, query: URLSearchParams): S3Operation {
  if (method === 'GET' && key !== '') return 'GetObject';
  if (method === 'HEAD' && key !== '') return 'HeadObject';
  if (method === 'PUT' && key !== '' && !query.has('uploadId') && !query.has('partNumber')) return 'PutObject';
  if (method === 'GET' && key === '' && (query.has('list-type') || query.has('prefix'))) return 'ListObjects';
  return 'Other';
}

function errorXml(status: 500 | 503, resource: string, seq: number): string {
  const [code, message] =
    status === 503 ? ['SlowDown', 'Please reduce your request rate.'] : ['InternalError', 'We encountered an internal error. Please try again.'];
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${message}</Message><Resource>${resource}</Resource>` +
    `<RequestId>FAULT${String(seq).padStart(12, '0')}</RequestId></Error>`
  );
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A small HTTP proxy between an S3 client and a local S3 server (path-style addressing),
 * applying programmable faults per request and counting requests. Request bodies are read whole
 * before anything is forwarded, so S3 either gets a complete request or none (as real S3 keeps
 * nothing of a broken PUT; s3rver would keep a partial file). Signed headers, Host included, are
 * forwarded unchanged, so the signature still holds.
 *
 * It also gives S3's conditional write the local server lacks: a PUT with `If-None-Match: *`
 * on a key that exists is answered 412 PreconditionFailed, as S3 does (s3rver ignores the header).
 */
export async function startFaultProxy(upstream: string, bucket: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  let rule: FaultRule | undefined;
  let seq = 0;

  const forward = (req: IncomingMessage, body: Buffer, method = req.method ?? 'GET'): Promise<{ res: IncomingMessage; body: Buffer }> =>
    new Promise((resolve, reject) => {
      const headers = { ...req.headers };
      delete headers.expect; // the whole body is already here; never signed
      if (method === 'HEAD') {
        // A probe of our own: unsigned (s3rver serves anonymous requests), no body.
        for (const name of ['authorization', 'content-length', 'content-type', 'content-md5', 'if-none-match']) delete headers[name];
        for (const name of Object.keys(headers)) if (name.startsWith('x-amz-')) delete headers[name];
      }
      const out = httpRequest(
        { host: target.hostname, port: target.port, method, path: req.url, headers, agent: false },
        (res) => {
          readBody(res).then((b) => resolve({ res, body: b }), reject);
        },
      );
      out.on('error', reject);
      out.end(method === 'HEAD' ? undefined : body);
    });

  /** What S3 does with the request: the conditional write s3rver lacks, else s3rver's answer. */
  const actOn = async (req: IncomingMessage, body: Buffer): Promise<{ res: IncomingMessage | Synthetic; body: Buffer }> => {
    if (req.method === 'PUT' && req.headers['if-none-match'] === '*') {
      const probe = await forward(req, Buffer.alloc(0), 'HEAD');
      if (probe.res.statusCode === 200) {
        const xml =
          '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>' +
          '<Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-None-Match</Condition></Error>';
        return { res: { statusCode: 412, headers: { 'content-type': 'application/xml' } }, body: Buffer.from(xml) };
      }
    }
    return forward(req, body);
  };

  const answer = (res: ServerResponse, upstreamRes: IncomingMessage | Synthetic, body: Buffer, contentLength?: number): void => {
    const headers = { ...upstreamRes.headers };
    delete headers['transfer-encoding'];
    delete headers.connection;
    delete headers['keep-alive'];
    if (contentLength !== undefined) headers['content-length'] = String(contentLength);
    else if (headers['content-length'] === undefined) headers['content-length'] = String(body.length);
    res.writeHead(upstreamRes.statusCode ?? 502, headers);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://proxy.invalid');
    const prefix = `/${bucket}/`;
    const key = url.pathname.startsWith(prefix) ? decodeURIComponent(url.pathname.slice(prefix.length)) : '';
    const method = req.method ?? 'GET';
    const record: ProxiedRequest = { seq: ++seq, method, operation: operationOf(method, key, url.searchParams), key };
    const range = req.headers.range;
    if (typeof range === 'string') record.range = range;
    const listed = url.searchParams.get('prefix');
    if (record.operation === 'ListObjects' && listed !== null) record.prefix = listed;
    requests.push(record);
    const fault = rule?.(record);
    if (fault) record.fault = fault.kind;
    const socket = req.socket;

    switch (fault?.kind) {
      case 'stall':
        return; // the client's timeout (or close()) ends it
      case 'reset':
        socket.resetAndDestroy();
        return;
      case 'reset-mid-upload': {
        let seen = 0;
        const expected = Number(req.headers['content-length'] ?? 0);
        req.on('data', (chunk: Buffer) => {
          seen += chunk.length;
          if (seen >= cutPoint(expected)) socket.resetAndDestroy();
        });
        req.on('end', () => socket.resetAndDestroy());
        return;
      }
      case 'delay':
        await new Promise((r) => setTimeout(r, fault.ms));
        break;
      default:
        break;
    }

    const body = await readBody(req);
    if (fault?.kind === 'error') {
      const xml = method === 'HEAD' ? '' : errorXml(fault.status, url.pathname, record.seq);
      res.writeHead(fault.status, { 'content-type': 'application/xml', 'content-length': String(Buffer.byteLength(xml)) });
      res.end(xml);
      return;
    }

    const upstreamAnswer = await actOn(req, body);
    const data = upstreamAnswer.body;
    const hasBody = method !== 'HEAD' && data.length > 0;
    switch (fault?.kind) {
      case 'reset-after-forward':
        socket.resetAndDestroy();
        return;
      case 'reset-mid-body':
        if (!hasBody) {
          socket.resetAndDestroy();
          return;
        }
        answer(res, upstreamAnswer.res, data);
        res.write(data.subarray(0, cutPoint(data.length)), () => socket.resetAndDestroy());
        return;
      case 'stall-mid-body':
        if (!hasBody) return; // nothing to send part of: never answer
        answer(res, upstreamAnswer.res, data);
        res.write(data.subarray(0, cutPoint(data.length)));
        return;
      case 'truncate':
        if (!hasBody) break;
        if (fault.contentLength === 'honest') {
          const part = data.subarray(0, cutPoint(data.length));
          answer(res, upstreamAnswer.res, part, part.length);
          res.end(part);
        } else {
          answer(res, upstreamAnswer.res, data);
          res.write(data.subarray(0, cutPoint(data.length)), () => socket.end());
        }
        return;
      case 'corrupt':
        if (!hasBody) break;
        {
          const bad = Buffer.from(data);
          const at = cutPoint(bad.length);
          bad[at] = (bad[at] ?? 0) ^ 0x5a;
          answer(res, upstreamAnswer.res, bad);
          res.end(bad);
        }
        return;
      default:
        break;
    }
    answer(res, upstreamAnswer.res, data);
    res.end(method === 'HEAD' ? undefined : data);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      // The client went away mid-request, or the upstream failed: end this connection.
      req.socket.destroy();
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    setRule: (next) => {
      rule = next;
    },
    count: (match) => requests.filter(match).length,
    resetLog: () => {
      requests.length = 0;
    },
    close: async () => {
      rule = undefined;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A fault schedule over the requests that match: the first `times` of them (after `skip`) get
 * `fault`, the rest pass; `times: Infinity` faults every one. Counting starts when the rule is
 * made, so a schedule is deterministic whatever the timing.
 */
export function faultSchedule(
  match: (request: ProxiedRequest) => boolean,
  fault: Fault,
  options: { times: number; skip?: number },
): FaultRule & { matched: () => number } {
  let seen = 0;
  const skip = options.skip ?? 0;
  const rule = (request: ProxiedRequest): Fault | undefined => {
    if (!match(request)) return undefined;
    seen++;
    return seen > skip && seen <= skip + options.times ? fault : undefined;
  };
  return Object.assign(rule, { matched: () => seen });
}
