import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../../tools/s3rver-durable-put';

/** s3rver's filesystem store, as the local S3 uses it (patched by tools/s3rver-durable-put.js). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const FilesystemStore = require('s3rver/lib/stores/filesystem') as new (root: string) => {
  getResourcePath(bucket: string, key: string, resource: string): string;
  putObject(object: { bucket: string; key: string; content: Buffer; metadata: Record<string, string> }): Promise<{ size: number; md5: string }>;
};

describe('the local S3 answers a PUT only once the object is on disk, whole', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 's3rver-put-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  test('right after putObject resolves, the file holds every byte and no temp file is left', async () => {
    const store = new FilesystemStore(root);
    const content = Buffer.alloc(64 * 1024 * 1024, 7); // large enough that an unflushed write shows
    const out = await store.putObject({ bucket: 'b', key: 'jobs/m/report.json', content, metadata: { 'content-type': 'application/json', 'x-amz-meta-a': '1', other: 'dropped' } });
    const path = store.getResourcePath('b', 'jobs/m/report.json', 'object');
    expect(statSync(path).size).toBe(content.length);
    expect(out.size).toBe(content.length);
    expect(readdirSync(join(root, 'b', 'jobs', 'm')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
