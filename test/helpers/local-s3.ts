import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
// s3rver answers a PUT before the object is on disk; this makes its writes whole (see the file).
import '../../tools/s3rver-durable-put';

export interface LocalS3 {
  endpoint: string;
  bucket: string;
  /** A client configured as the handlers configure theirs for a local endpoint. */
  client: () => S3Client;
  stop: () => Promise<void>;
}

/** A real s3rver on 127.0.0.1, on a free port, with a fresh data directory and one bucket. */
export async function startLocalS3(bucket = 'models'): Promise<LocalS3> {
  const directory = mkdtempSync(join(tmpdir(), 'local-s3-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', directory, silent: true, configureBuckets: [{ name: bucket, configs: [] }] });
  const info = (await server.run()) as unknown as { port: number };
  const at = localS3At(`http://127.0.0.1:${info.port}`, bucket);
  return {
    ...at,
    stop: async () => {
      await at.stop();
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** A running local S3 (ours or the stack's) at `endpoint`; `stop` destroys the clients it made. */
export function localS3At(endpoint: string, bucket: string): LocalS3 {
  const clients: S3Client[] = [];
  return {
    endpoint,
    bucket,
    client: () => {
      const c = new S3Client({
        region: 'us-east-1',
        endpoint,
        forcePathStyle: true,
        credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
      clients.push(c);
      return c;
    },
    stop: () => {
      for (const c of clients) c.destroy();
      return Promise.resolve();
    },
  };
}
