import { loadConfig } from '../lib/config';
import { createInferenceApp } from '../lib/service/app';
import { buildInferHandler } from './http/infer-handler';
import { createObservability } from './shared/observability';
import { createS3Client } from './shared/s3-client';

// Composition root, run once per container at init: a bad environment fails the init.
const config = loadConfig();
const obs = createObservability(config.serviceName);
const app = createInferenceApp(config, createS3Client(config), obs.telemetry);

// Models named in WARM_MODELS start loading during init; a request for one joins its load.
if (config.warmModels.length > 0) {
  void app.service.warm(config.warmModels).then((results) => {
    for (const r of results) {
      if (r.error) obs.logger.warn('warm-up failed', { model: r.model, error: r.error });
    }
  });
}

export const handler = buildInferHandler(app, obs);
