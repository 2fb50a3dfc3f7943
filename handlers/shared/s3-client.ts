import { S3Client } from '@aws-sdk/client-s3';
import type { StorageConfig } from '../../lib/config';

/** How long the client waits on S3 before the attempt fails (and the SDK retries it). */
export interface S3Timeouts {
  /** To open a connection. */
  connectionTimeoutMs: number;
  /** Of silence on an open connection: no answer, or a body that stopped coming. */
  socketTimeoutMs: number;
}

/**
 * The SDK waits forever by default, so a stalled S3 connection would hold an invocation until
 * Lambda kills it (and the warm runtime with it). S3 sends its first byte well within a second
 * when it is well; inference has 29 s, in which three SDK attempts times two artifact fetches,
 * each given up after 3 s of silence, still end in a 503 with Retry-After.
 */
export const S3_TIMEOUTS: S3Timeouts = { connectionTimeoutMs: 2_000, socketTimeoutMs: 3_000 };

/**
 * The one S3 client of a container. A custom endpoint means a local S3 (s3rver): path-style
 * addressing, and checksums only where S3 requires them (s3rver stores streamed uploads with
 * the SDK's default checksum trailers corrupted).
 */
export function createS3Client(config: StorageConfig, timeouts: Partial<S3Timeouts> = {}): S3Client {
  const local = config.s3Endpoint !== undefined;
  const { connectionTimeoutMs, socketTimeoutMs } = { ...S3_TIMEOUTS, ...timeouts };
  return new S3Client({
    region: config.region,
    endpoint: config.s3Endpoint,
    forcePathStyle: config.s3ForcePathStyle,
    requestHandler: { connectionTimeout: connectionTimeoutMs, socketTimeout: socketTimeoutMs },
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
