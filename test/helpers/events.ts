import type { APIGatewayProxyEventV2, Context, S3Event } from 'aws-lambda';

/** The key every test app accepts, and its configured digest. */
export const TEST_API_KEY = 'test-key-0123456789';

/**
 * A fresh API Gateway HTTP API (payload format 2.0) event, shaped as API Gateway sends it:
 * lower-case headers, rawPath, requestContext.http, a string body.
 */
export function httpEvent(
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string>; apiKey?: string | null; base64?: boolean } = {},
): APIGatewayProxyEventV2 {
  const headers: Record<string, string> = { host: 'api.example.test', 'user-agent': 'jest' };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.apiKey !== null) headers['x-api-key'] = options.apiKey ?? TEST_API_KEY;
  Object.assign(headers, options.headers ?? {});
  let body = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  if (body !== undefined && options.base64) body = Buffer.from(body, 'utf8').toString('base64');
  const [rawPath = path, rawQueryString = ''] = path.split('?');
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    headers,
    requestContext: {
      accountId: '123456789012',
      apiId: 'api',
      domainName: 'api.example.test',
      domainPrefix: 'api',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'jest' },
      requestId: `req-${Math.random().toString(36).slice(2)}`,
      routeKey: '$default',
      stage: '$default',
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
    body,
    isBase64Encoded: options.base64 ?? false,
  };
}

/** A fresh Lambda context. */
export function lambdaContext(name = 'infer'): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: name,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:${name}`,
    memoryLimitInMB: '1769',
    awsRequestId: `ctx-${Math.random().toString(36).slice(2)}`,
    logGroupName: `/aws/lambda/${name}`,
    logStreamName: 'stream',
    getRemainingTimeInMillis: () => 30000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/**
 * An S3 ObjectCreated:Put event as AWS delivers it: the key URL-encoded with spaces as '+'
 * (`encode: false` gives the raw key, as the local S3 sends it), fresh each time; `copies`
 * repeats the record within one event.
 */
export function s3PutEvent(bucket: string, key: string, etag: string, options: { size?: number; encode?: boolean; copies?: number } = {}): S3Event {
  const { size = 0, encode = true, copies = 1 } = options;
  const eventKey = encode ? encodeURIComponent(key).replace(/%2F/g, '/').replace(/%20/g, '+') : key;
  const record = (): S3Event['Records'][number] => ({
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: 'us-east-1',
    eventTime: new Date().toISOString(),
    eventName: 'ObjectCreated:Put',
    userIdentity: { principalId: 'AWS:EXAMPLE' },
    requestParameters: { sourceIPAddress: '127.0.0.1' },
    responseElements: { 'x-amz-request-id': 'req', 'x-amz-id-2': 'id2' },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: 'convert',
      bucket: { name: bucket, ownerIdentity: { principalId: 'EXAMPLE' }, arn: `arn:aws:s3:::${bucket}` },
      object: { key: eventKey, size, eTag: etag, sequencer: '0055AED6DCD90281E5' },
    },
  });
  return { Records: Array.from({ length: copies }, record) };
}
