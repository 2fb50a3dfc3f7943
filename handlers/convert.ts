import { Logger } from '@aws-lambda-powertools/logger';
import { loadConvertConfig } from '../lib/config';
import { ObjectStore } from '../lib/storage/object-store';
import { buildConvertHandler } from './s3/convert-handler';
import { createS3Client } from './shared/s3-client';

// Composition root of the convert function, run once per container.
const config = loadConvertConfig();
const store = new ObjectStore(createS3Client(config), config.bucket);

export const handler = buildConvertHandler(
  { store, maxModelBytes: config.maxModelBytes, intraOpNumThreads: config.intraOpNumThreads },
  new Logger({ serviceName: config.serviceName }),
);
