import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';

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
