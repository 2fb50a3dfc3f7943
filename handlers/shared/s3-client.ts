import { S3Client } from '@aws-sdk/client-s3';
import type { StorageConfig } from '../../lib/config';

/**
 * The one S3 client of a container. A custom endpoint means a local S3 (s3rver): path-style
 * addressing, and checksums only where S3 requires them (s3rver stores streamed uploads with
 * the SDK's default checksum trailers corrupted).
 */
export function createS3Client(config: StorageConfig): S3Client {
  const local = config.s3Endpoint !== undefined;
  return new S3Client({
    region: config.region,
    endpoint: config.s3Endpoint,
    forcePathStyle: config.s3ForcePathStyle,
    ...(local
      ? {
          requestChecksumCalculation: 'WHEN_REQUIRED' as const,
          responseChecksumValidation: 'WHEN_REQUIRED' as const,
          credentials: {
            accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'S3RVER',
            secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'S3RVER',
          },
        }
      : {}),
  });
}
