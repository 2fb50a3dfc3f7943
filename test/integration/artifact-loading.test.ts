import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { InferenceSession } from 'onnxruntime-node';
import { keys } from '../../lib/registry/keys';
import { Registry, setAlias } from '../../lib/registry/registry';
import { sha256Hex } from '../../lib/storage/hash';
import { ObjectStore } from '../../lib/storage/object-store';
import { createTestApp, publishModel, type TestApp } from '../helpers/app';
import { httpEvent, lambdaContext } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { convNetModel, denseStackModel, mlpModel } from '../helpers/models';

let s3: LocalS3;
const apps: TestApp[] = [];

beforeAll(async () => {
  s3 = await startLocalS3();
});

afterAll(async () => {
  for (const a of apps) await a.dispose();
  await s3?.stop();
});

function app(overrides: Record<string, string> = {}): TestApp {
  const made = createTestApp(s3, overrides);
  apps.push(made);
  return made;
}

const mlpBody = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };

async function infer(t: TestApp, model: string, body: unknown = mlpBody) {
  const res = (await t.handler(httpEvent('POST', `/v2/models/${model}/infer`, { body }), lambdaContext())) as {
    statusCode: number;
    headers: Record<string, string>;
    body: string;
  };
  return { status: res.statusCode, headers: res.headers, json: JSON.parse(res.body) as { error?: string; outputs?: unknown } };
}

/** Counts the GetObject calls a client makes for keys matching `pattern`, ranged ones apart. */
function countGets(client: S3Client, pattern: RegExp) {
  const counts = { whole: 0, ranged: 0 };
  client.middlewareStack.add(
    (next) => async (args) => {
      const input = args.input as { Key?: string; Range?: string };
      if (input.Key && pattern.test(input.Key) && (args as { request?: { method?: string } }).request?.method === 'GET') {
        if (input.Range) counts.ranged++;
        else counts.whole++;
      }
      return next(args);
    },
    { step: 'build', name: 'countGets' },
  );
  return counts;
}

function clientOf(t: TestApp): S3Client {
  return (t.app.store as unknown as { s3: S3Client }).s3;
}

describe('artifact fetch and session cache', () => {
  test('twenty concurrent first requests: one artifact GET, one session create', async () => {
    await publishModel(s3, 'burst', 1, mlpModel({ seed: 5 }), { label: 'stable' });
    const t = app();
    const gets = countGets(clientOf(t), /^models\/burst\/1\/model\.onnx$/);
    const create = jest.spyOn(InferenceSession, 'create');
    try {
      const answers = await Promise.all(Array.from({ length: 20 }, () => infer(t, 'burst')));
      expect(answers.map((a) => a.status)).toEqual(new Array(20).fill(200));
      expect(new Set(answers.map((a) => JSON.stringify(a.json.outputs))).size).toBe(1);
      expect(gets).toEqual({ whole: 1, ranged: 0 });
      expect(create).toHaveBeenCalledTimes(1);
    } finally {
      create.mockRestore();
    }
  });

  test('a corrupt artifact in S3 is a 503, nothing is cached, and once fixed the next request works', async () => {
    const good = mlpModel({ seed: 6 });
    await publishModel(s3, 'corrupt', 1, good, { label: 'stable' });
    const raw = s3.client();
    const key = keys.artifact('corrupt', 1);
    const bad = Buffer.from(good);
    bad.writeUInt8(bad.readUInt8(bad.length - 5) ^ 0xff, bad.length - 5);
    await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: bad }));

    const t = app();
    const gets = countGets(clientOf(t), /^models\/corrupt\/1\/model\.onnx$/);
    const failed = await infer(t, 'corrupt');
    expect(failed.status).toBe(503);
    expect(failed.headers['retry-after']).toBe('5');
    expect(failed.json.error).toBe(
      'artifact models/corrupt/1/model.onnx failed its integrity check twice (sha256 does not match the manifest); nothing was cached',
    );
    expect(gets.whole).toBe(2);
    expect(t.app.sessions.has({ model: 'corrupt', version: 1 })).toBe(false);
    expect(t.app.disk.has(sha256Hex(good))).toBe(false);
    expect(readdirSync(t.app.config.cacheDir)).toEqual([]);

    await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: good }));
    const fixed = await infer(t, 'corrupt');
    expect(fixed.status).toBe(200);
    expect(t.app.disk.has(sha256Hex(good))).toBe(true);
  });

  test('an artifact whose size differs from its manifest is a 503 on both the disk and the memory path', async () => {
    const good = denseStackModel(512, 3); // ~3 MB: over a 1 MB disk cache, so the second app fetches into memory
    await publishModel(s3, 'truncated', 1, good, { label: 'stable' });
    await s3.client().send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: keys.artifact('truncated', 1), Body: Buffer.from(good).subarray(0, good.length - 10) }),
    );
    const body = { inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(0.01) }] };
    for (const t of [app(), app({ DISK_CACHE_MB: '1' })]) {
      const res = await infer(t, 'truncated', body);
      expect(res.status).toBe(503);
      expect(res.json.error).toBe(`storage holds ${good.length - 10} bytes at models/truncated/1/model.onnx, not the ${good.length} expected`);
      expect(readdirSync(t.app.config.cacheDir)).toEqual([]);
    }
  });

  test('/tmp is reused by a restarted runtime, and a corrupt file there is detected and replaced', async () => {
    const bytes = convNetModel({ classes: 5 });
    await publishModel(s3, 'disk', 1, bytes, { label: 'stable' });
    const body = { inputs: [{ name: 'image', shape: [1, 1, 8, 8], datatype: 'FP32', data: new Array(64).fill(0.25) }] };
    const first = app();
    const firstAnswer = await infer(first, 'disk', body);
    expect(firstAnswer.status).toBe(200);
    const file = join(first.app.config.cacheDir, sha256Hex(bytes));
    expect(readFileSync(file)).toEqual(Buffer.from(bytes));

    // A new runtime in the same container: same cache dir, empty memory. No artifact GET.
    const second = app({ MODEL_CACHE_DIR: first.app.config.cacheDir });
    const secondGets = countGets(clientOf(second), /model\.onnx$/);
    expect((await infer(second, 'disk', body)).json).toEqual(firstAnswer.json);
    expect(secondGets.whole).toBe(0);

    // Damage the cached file; the next cold load must notice, refetch and rewrite it.
    const damaged = Buffer.from(bytes);
    damaged.writeUInt8(damaged.readUInt8(100) ^ 0x01, 100);
    writeFileSync(file, damaged);
    const third = app({ MODEL_CACHE_DIR: first.app.config.cacheDir });
    const thirdGets = countGets(clientOf(third), /model\.onnx$/);
    expect((await infer(third, 'disk', body)).json).toEqual(firstAnswer.json);
    expect(thirdGets.whole).toBe(1);
    expect(sha256Hex(readFileSync(file))).toBe(sha256Hex(bytes));
  });

  test('large artifacts are fetched with parallel ranged GETs', async () => {
    const bytes = denseStackModel(512, 3); // ~3 MB of weights
    await publishModel(s3, 'ranged', 1, bytes, { label: 'stable' });
    const t = app({ RANGED_GET_THRESHOLD_MB: '1', RANGED_GET_PART_MB: '1', RANGED_GET_CONCURRENCY: '4' });
    const gets = countGets(clientOf(t), /^models\/ranged\/1\/model\.onnx$/);
    const body = { inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(0.01) }] };
    const res = await infer(t, 'ranged', body);
    expect(res.status).toBe(200);
    expect(gets.whole).toBe(0);
    expect(gets.ranged).toBe(Math.ceil(bytes.byteLength / (1024 * 1024)));
  });

  test('a download frees its chunk buffers as it goes: a minor collection every 2 MiB written (with --expose-gc)', async () => {
    const bytes = denseStackModel(512, 5); // ~5 MB, one GET
    await publishModel(s3, 'young-gc', 1, bytes, { label: 'stable' });
    const t = app();
    const calls: unknown[] = [];
    const global = globalThis as { gc?: (options?: unknown) => void };
    const before = global.gc;
    global.gc = (options?: unknown) => void calls.push(options ?? 'full');
    try {
      const body = { inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(0.01) }] };
      expect((await infer(t, 'young-gc', body)).status).toBe(200);
    } finally {
      global.gc = before;
    }
    const minor = calls.filter((c) => (c as { type?: string }).type === 'minor').length;
    expect(minor).toBe(Math.floor(bytes.byteLength / (2 * 1024 * 1024)));
    expect(calls).toContain('full'); // and one full collection before the session is created
  });

  test('an artifact the disk cache cannot hold, or a failing /tmp, is served from memory', async () => {
    const bytes = denseStackModel(512, 3); // ~3 MB
    await publishModel(s3, 'no-disk', 1, bytes, { label: 'stable' });
    const body = { inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(0.01) }] };

    const tooSmall = app({ DISK_CACHE_MB: '1' });
    const first = await infer(tooSmall, 'no-disk', body);
    expect(first.status).toBe(200);
    expect(readdirSync(tooSmall.app.config.cacheDir)).toEqual([]);

    const failing = app();
    rmSync(failing.app.config.cacheDir, { recursive: true }); // writes to /tmp now fail
    const second = await infer(failing, 'no-disk', body);
    expect(second.status).toBe(200);
    expect(second.json).toEqual(first.json);
  });

  test('the session cache is bounded by count; evicted sessions are released', async () => {
    for (const name of ['lru-a', 'lru-b', 'lru-c']) await publishModel(s3, name, 1, mlpModel(), { label: 'stable' });
    const t = app({ SESSION_CACHE_COUNT: '2' });
    // The runtime class behind onnxruntime's InferenceSession interface: its release() frees native memory.
    const sessionClass = InferenceSession as unknown as { prototype: { release(): Promise<void> } };
    const release = jest.spyOn(sessionClass.prototype, 'release');
    try {
      expect((await infer(t, 'lru-a')).status).toBe(200);
      expect((await infer(t, 'lru-b')).status).toBe(200);
      expect((await infer(t, 'lru-a')).status).toBe(200); // a is now the most recent
      expect((await infer(t, 'lru-c')).status).toBe(200); // evicts b
      expect(t.app.sessions.size).toBe(2);
      expect(t.app.sessions.has({ model: 'lru-b', version: 1 })).toBe(false);
      expect(t.app.sessions.has({ model: 'lru-a', version: 1 })).toBe(true);
      expect(release).toHaveBeenCalledTimes(1);
      expect((await infer(t, 'lru-b')).status).toBe(200); // reloads b, evicts a
      expect(t.app.sessions.has({ model: 'lru-a', version: 1 })).toBe(false);
    } finally {
      release.mockRestore();
    }
  });

  test('the session cache is bounded by bytes', async () => {
    const big = denseStackModel(256, 4); // ~1 MB
    await publishModel(s3, 'bytes-a', 1, big, { label: 'stable' });
    await publishModel(s3, 'bytes-b', 1, big, { label: 'stable' });
    const t = app({ SESSION_CACHE_MB: '1' });
    const body = { inputs: [{ name: 'x', shape: [1, 256], datatype: 'FP32', data: new Array(256).fill(0.1) }] };
    expect((await infer(t, 'bytes-a', body)).status).toBe(200);
    expect((await infer(t, 'bytes-b', body)).status).toBe(200);
    expect(t.app.sessions.size).toBe(1);
    expect(t.app.sessions.has({ model: 'bytes-b', version: 1 })).toBe(true);
  });

  test('a miss is cached for the TTL too, so unknown names cannot cost an S3 call each', async () => {
    const t = app();
    expect((await infer(t, 'late')).status).toBe(404);
    await publishModel(s3, 'late', 1, mlpModel(), { label: 'stable' });
    expect((await infer(t, 'late')).status).toBe(404);
    t.app.registry.clear(); // what the TTL's expiry does
    expect((await infer(t, 'late')).status).toBe(200);
  });
});

describe('registry resolution and its TTL cache', () => {
  test('a moved label is seen once the TTL has passed, and not a call to S3 before', async () => {
    await publishModel(s3, 'moving', 1, mlpModel({ seed: 1 }), { label: 'stable' });
    await publishModel(s3, 'moving', 2, mlpModel({ seed: 2 }));
    let now = 1_000;
    const client = s3.client();
    const store = new ObjectStore(client, s3.bucket);
    const registry = new Registry(store, 30_000, () => now);
    expect((await registry.resolve({ model: 'moving' })).version).toBe(1);

    await setAlias(store, 'moving', 'stable', 2);
    const gets = countGets(client, /./);
    now += 29_000;
    expect((await registry.resolve({ model: 'moving' })).version).toBe(1);
    expect(gets.whole).toBe(0);
    now += 2_000;
    expect((await registry.resolve({ model: 'moving' })).version).toBe(2);
  });

  test('without a stable label, the newest version that passed evaluation is served', async () => {
    await publishModel(s3, 'nolabel', 1, mlpModel(), { passed: true });
    await publishModel(s3, 'nolabel', 2, mlpModel(), { passed: true });
    await publishModel(s3, 'nolabel', 3, mlpModel(), { passed: false });
    // An artifact without a manifest is not a version.
    await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: keys.artifact('nolabel', 4), Body: mlpModel() }));
    const registry = new Registry(new ObjectStore(s3.client(), s3.bucket), 0);
    expect((await registry.resolve({ model: 'nolabel' })).version).toBe(2);
    expect(await registry.versions('nolabel')).toEqual([1, 2, 3]);
    const manifest = await s3.client().send(new GetObjectCommand({ Bucket: s3.bucket, Key: keys.manifest('nolabel', 2) }));
    expect(JSON.parse(await manifest.Body!.transformToString())).toMatchObject({ model: 'nolabel', version: 2, evaluation: { passed: true } });
  });
});
