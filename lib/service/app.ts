import { TokenizerCache } from '../prepost/tokenizer-cache';
import { performance } from 'node:perf_hooks';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Config } from '../config';
import { Registry } from '../registry/registry';
import { collectGarbage } from '../runtime/gc';
import { ModelSession, servingLevel } from '../runtime/model-session';
import { SessionCache, sessionKey } from '../runtime/session-cache';
import { ArtifactFetcher } from '../storage/artifact-fetcher';
import { DiskCache } from '../storage/disk-cache';
import { ObjectStore } from '../storage/object-store';
import { TensorStaging } from '../storage/staging';
import { InferenceService, type Telemetry } from './inference-service';

/** Everything one container serves with, built once. */
export interface InferenceApp {
  config: Config;
  store: ObjectStore;
  registry: Registry;
  disk: DiskCache;
  sessions: SessionCache;
  service: InferenceService;
}

export const NO_TELEMETRY: Telemetry = { modelLoaded: () => undefined, inferred: () => undefined };

/**
 * The composition root of the inference path: given the checked config and an S3 client,
 * wires storage, registry, session cache and service. Nothing below builds its own client
 * or reads the environment.
 */
export function createInferenceApp(config: Config, s3: S3Client, telemetry: Telemetry = NO_TELEMETRY): InferenceApp {
  const store = new ObjectStore(s3, config.bucket);
  const registry = new Registry(store, config.manifestTtlMs);
  const disk = new DiskCache(config.cacheDir, config.diskCacheBytes);
  void disk.hashNewest();
  const fetcher = new ArtifactFetcher(store, disk, {
    rangedThresholdBytes: config.rangedGetThresholdBytes,
    partBytes: config.rangedGetPartBytes,
    concurrency: config.rangedGetConcurrency,
  });
  const sessions = new SessionCache(
    async (manifest) => {
      const started = performance.now();
      const artifact = await fetcher.fetch(manifest.artifact);
      // A download leaves about the artifact's size of buffers behind.
      if (artifact.source === 's3') collectGarbage();
      let session: ModelSession;
      try {
        const settings = { intraOpNumThreads: config.intraOpNumThreads, graphOptimizationLevel: servingLevel(manifest, config.graphOptimizationLevel) };
        session = await ModelSession.create(artifact.location, settings, sessionKey(manifest));
      } finally {
        artifact.release();
      }
      telemetry.modelLoaded({
        model: manifest.model,
        version: manifest.version,
        loadMs: performance.now() - started,
        downloadedBytes: artifact.downloadedBytes,
        source: artifact.source,
      });
      return session;
    },
    { maxBytes: config.sessionCacheBytes, maxCount: config.sessionCacheCount },
  );
  const service = new InferenceService({
    registry,
    sessions,
    telemetry,
    staging: new TensorStaging(store, { urlTtlSeconds: config.stagedUrlTtlSeconds, maxBytes: config.maxStagedBytes }),
    serverName: config.serviceName,
    serverVersion: config.serverVersion,
    maxResponseBytes: config.maxResponseBytes,
    tokenizers: new TokenizerCache(store),
  });
  return { config, store, registry, disk, sessions, service };
}
