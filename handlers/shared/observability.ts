import { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, Metrics } from '@aws-lambda-powertools/metrics';
import type { Telemetry } from '../../lib/service/inference-service';

/** The function's logger and metrics (Powertools: JSON logs, EMF metrics). */
export interface Observability {
  logger: Logger;
  metrics: Metrics;
  telemetry: Telemetry;
}

export const METRICS_NAMESPACE = 'OnnxLambda';

/**
 * Builds the logger and metrics once per container. Powertools reads its own environment
 * (`POWERTOOLS_LOG_LEVEL`, `POWERTOOLS_METRICS_DISABLED`, ...), documented in the README.
 */
export function createObservability(serviceName: string): Observability {
  const logger = new Logger({ serviceName });
  const metrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName });
  const telemetry: Telemetry = {
    modelLoaded: ({ model, version, loadMs, downloadedBytes, source }) => {
      metrics.addMetric('ModelLoadMs', MetricUnit.Milliseconds, loadMs);
      metrics.addMetric('BytesFetched', MetricUnit.Bytes, downloadedBytes);
      logger.info('model loaded', { model, version, loadMs: Math.round(loadMs), downloadedBytes, source });
    },
    inferred: ({ inferenceMs }) => {
      metrics.addMetric('InferenceMs', MetricUnit.Milliseconds, inferenceMs);
    },
  };
  return { logger, metrics, telemetry };
}

/** Counts an error under its stable code, as a metric of its own dimension. */
export function countError(metrics: Metrics, code: string): void {
  const single = metrics.singleMetric();
  single.addDimension('ErrorCode', code);
  single.addMetric('Errors', MetricUnit.Count, 1);
}
