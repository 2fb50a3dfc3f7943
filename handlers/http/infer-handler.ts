import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { performance } from 'node:perf_hooks';
import { handleHttp, type HttpRequest } from '../../lib/http/handle';
import type { InferenceApp } from '../../lib/service/app';
import { countError, type Observability } from '../shared/observability';

/** A scheduled keep-warm ping (EventBridge schedule or serverless-plugin-warmup). */
export interface WarmupEvent {
  source: string;
  'detail-type'?: string;
}

export type InferEvent = APIGatewayProxyEventV2 | WarmupEvent;
export type InferResult = APIGatewayProxyStructuredResultV2 | { warmed: unknown[] };

function isWarmup(event: InferEvent): event is WarmupEvent {
  const source = (event as WarmupEvent).source;
  return source === 'aws.events' || source === 'serverless-plugin-warmup';
}

/**
 * The body as text. API Gateway always sends a string; serverless-offline parses a JSON body
 * itself and hands over a falsy result (`false`, `0`) as that value, not as its text.
 */
function bodyText(body: unknown): string | undefined {
  if (body === undefined || body === null || typeof body === 'string') return body ?? undefined;
  return JSON.stringify(body);
}

/** API Gateway HTTP API (payload v2) event -> transport-free request. */
export function toHttpRequest(event: APIGatewayProxyEventV2): HttpRequest {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(event.headers ?? {})) headers[name.toLowerCase()] = value;
  const stage = event.requestContext?.stage;
  let path = event.rawPath ?? '/';
  if (stage && stage !== '$default' && path.startsWith(`/${stage}/`)) path = path.slice(stage.length + 1);
  return {
    method: event.requestContext?.http?.method ?? 'GET',
    path,
    headers,
    body: bodyText(event.body),
    isBase64Encoded: event.isBase64Encoded,
  };
}

/**
 * The inference function without Lambda plumbing: warm-up pings return once the configured
 * models are loaded; HTTP events are served by `lib/http`, logged (never the payload) and
 * counted.
 */
export function inferFn(app: InferenceApp, obs: Observability) {
  return async (event: InferEvent, _context?: Context): Promise<InferResult> => {
    // Every invocation counts one metric, so the flush never finds the set empty (Powertools
    // warns on every empty flush: one log line per health check otherwise).
    if (isWarmup(event)) {
      obs.metrics.addMetric('WarmUps', MetricUnit.Count, 1);
      return { warmed: await app.service.warm(app.config.warmModels) };
    }
    obs.metrics.addMetric('Requests', MetricUnit.Count, 1);
    const started = performance.now();
    const request = toHttpRequest(event);
    const outcome = await handleHttp(request, app.service, app.config);
    const latencyMs = Math.round((performance.now() - started) * 1000) / 1000;
    const status = outcome.response.statusCode;
    const fields = { route: outcome.route, model: outcome.model, version: outcome.version, status, latencyMs };
    if (outcome.errorCode) {
      countError(obs.metrics, outcome.errorCode);
      if (status >= 500) obs.logger.error('request failed', { ...fields, errorCode: outcome.errorCode, error: outcome.error as Error });
      else obs.logger.info('request refused', { ...fields, errorCode: outcome.errorCode });
    } else {
      obs.logger.info('request served', fields);
    }
    const binary = outcome.response.isBase64Encoded ? { isBase64Encoded: true } : {};
    return { statusCode: status, headers: outcome.response.headers, body: outcome.response.body, ...binary };
  };
}

/** The Lambda handler: middy with Powertools' context injection and metrics flushing. */
export function buildInferHandler(app: InferenceApp, obs: Observability) {
  return middy<InferEvent, InferResult>()
    .use(injectLambdaContext(obs.logger))
    .use(logMetrics(obs.metrics, { captureColdStartMetric: true }))
    .handler(inferFn(app, obs));
}
