import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import type { Manifest } from '../../lib/registry/manifest';
import { ModelSession } from '../../lib/runtime/model-session';
import { SessionCache } from '../../lib/runtime/session-cache';
import { DiskCache } from '../../lib/storage/disk-cache';
import { sha256Hex } from '../../lib/storage/hash';
import * as hashModule from '../../lib/storage/hash';
import { mlpModel } from '../helpers/models';

const settings = { intraOpNumThreads: 1, graphOptimizationLevel: 'all' as const };

function manifest(model: string, version = 1, bytes = 1000): Manifest {
  return {
    schemaVersion: 1, model, version, createdAt: '',
    artifact: { key: `models/${model}/${version}/model.onnx`, sha256: '0'.repeat(64), bytes },
    inputs: [], outputs: [],
  };
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe('SessionCache', () => {
  test('concurrent gets share one load; a failed load is forgotten', async () => {
    let calls = 0;
    let pending = deferred<ModelSession>();
    const cache = new SessionCache(() => (calls++, pending.promise), { maxBytes: 1e9, maxCount: 4 });
    const m = manifest('a');
    const gets = Array.from({ length: 5 }, () => cache.get(m));
    expect(calls).toBe(1);
    pending.reject(new Error('S3 is down'));
    for (const g of gets) await expect(g).rejects.toThrow('S3 is down');
    expect(cache.has(m)).toBe(false);

    pending = deferred<ModelSession>();
    const retry = cache.get(m);
    expect(calls).toBe(2);
    pending.resolve(await ModelSession.create({ bytes: mlpModel() }, settings, 'a@1'));
    await retry;
    expect(cache.has(m)).toBe(true);
    await cache.get(m);
    expect(calls).toBe(2);
    await cache.clear();
  });

  test('an evicted session is released only after the request holding it ends', async () => {
    const sessionClass = InferenceSession as unknown as { prototype: { release(): Promise<void> } };
    const release = jest.spyOn(sessionClass.prototype, 'release');
    const cache = new SessionCache((m) => ModelSession.create({ bytes: mlpModel() }, settings, `${m.model}@1`), { maxBytes: 1e9, maxCount: 1 });
    try {
      const gate = deferred<void>();
      const inUse = cache.use(manifest('a'), async (session) => {
        await gate.promise;
        return session.run({ x: new Tensor('float32', Float32Array.from([1, 2, 3, 4]), [1, 4]) });
      });
      await new Promise((r) => setImmediate(r));
      await cache.get(manifest('b')); // evicts a while a request holds it
      expect(cache.has(manifest('a'))).toBe(false);
      expect(release).not.toHaveBeenCalled();
      gate.resolve();
      const out = await inUse;
      expect(out.probs?.dims).toEqual([1, 3]);
      expect(release).toHaveBeenCalledTimes(1);
    } finally {
      release.mockRestore();
      await cache.clear();
    }
  });

  test('a request that finds its session already released loads it again', async () => {
    let loads = 0;
    const cache = new SessionCache((m) => (loads++, ModelSession.create({ bytes: mlpModel() }, settings, `${m.model}@1`)), { maxBytes: 1e9, maxCount: 4 });
    const session = await cache.get(manifest('a'));
    await cache.clear();
    await session.release();
    expect(session.retain()).toBe(false);
    const dims = await cache.use(manifest('a'), async (s) => (await s.run({ x: new Tensor('float32', new Float32Array(4), [1, 4]) })).probs?.dims);
    expect(dims).toEqual([1, 3]);
    expect(loads).toBe(2);
    await cache.clear();
  });
});

describe('DiskCache', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'disk-cache-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const blob = (n: number, fill: number) => Buffer.alloc(n, fill);

  /** Stores bytes the way the fetcher does: reserve, write the temp file, commit under the hash. */
  async function store(cache: DiskCache, bytes: Buffer): Promise<string | undefined> {
    const reservation = await cache.reserve(bytes.length);
    if (!reservation) return undefined;
    writeFileSync(reservation.tempPath, bytes);
    return cache.commit(reservation, sha256Hex(bytes));
  }

  test('commits under the hash and evicts least recently used by bytes, reservations included', async () => {
    const cache = new DiskCache(dir, 250);
    const [a, b, c] = [blob(100, 1), blob(100, 2), blob(100, 3)];
    expect(await store(cache, a)).toBe(join(dir, sha256Hex(a)));
    await store(cache, b);
    expect(await cache.verify(sha256Hex(a))).toBe(join(dir, sha256Hex(a))); // a is now the most recent
    await store(cache, c); // evicts b
    expect(cache.has(sha256Hex(b))).toBe(false);
    expect(readdirSync(dir).sort()).toEqual([sha256Hex(a), sha256Hex(c)].sort());
    expect(cache.bytes).toBe(200);

    // An open reservation counts: a second one that does not fit evicts, a third cannot fit at all.
    const pending = await cache.reserve(150);
    expect(pending).toBeDefined();
    expect(cache.bytes).toBeLessThanOrEqual(100);
    expect(await cache.reserve(150)).toBeUndefined();
    await cache.abandon(pending!);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  test('a pinned file is never evicted', async () => {
    const cache = new DiskCache(dir, 150);
    const a = blob(100, 1);
    await store(cache, a);
    const unpin = cache.pin(sha256Hex(a));
    expect(await cache.reserve(100)).toBeUndefined();
    expect(cache.has(sha256Hex(a))).toBe(true);
    unpin();
    expect(await cache.reserve(100)).toBeDefined();
    expect(cache.has(sha256Hex(a))).toBe(false);
  });

  test('rebuilds its index from the directory and drops a corrupt file on verify', async () => {
    const a = blob(64, 9);
    await store(new DiskCache(dir, 1000), a);
    writeFileSync(join(dir, '.leftover.tmp'), 'partial');
    const reopened = new DiskCache(dir, 1000);
    expect(reopened.has(sha256Hex(a))).toBe(true);
    expect(reopened.bytes).toBe(64);
    writeFileSync(join(dir, sha256Hex(a)), blob(64, 8));
    expect(await reopened.verify(sha256Hex(a))).toBeUndefined();
    expect(reopened.has(sha256Hex(a))).toBe(false);
    expect(readdirSync(dir)).not.toContain(sha256Hex(a));
  });

  test('the start-up hash of the newest file stands in for a new one only while the file is unchanged', async () => {
    const [a, b] = [blob(64, 1), blob(64, 2)];
    const first = new DiskCache(dir, 1000);
    await store(first, a);
    await store(first, b); // b is the most recent: its access time says so to the next runtime
    expect(await first.verify(sha256Hex(a))).toBeDefined(); // ...until a is read again
    const path = join(dir, sha256Hex(a));

    const hashes = jest.spyOn(hashModule, 'sha256File');
    try {
      // Unchanged since the start-up hash: verified with no second pass over the file.
      const restarted = new DiskCache(dir, 1000);
      await restarted.hashNewest();
      expect(hashes.mock.calls).toEqual([[path]]);
      expect(await restarted.verify(sha256Hex(a))).toBe(path);
      expect(hashes).toHaveBeenCalledTimes(1);

      // Changed after the start-up hash was taken (same size, new content): hashed again, dropped.
      const again = new DiskCache(dir, 1000);
      await again.hashNewest();
      writeFileSync(path, blob(64, 3));
      expect(await again.verify(sha256Hex(a))).toBeUndefined();
      expect(hashes).toHaveBeenCalledTimes(3);
      expect(readdirSync(dir)).not.toContain(sha256Hex(a));
      expect(await again.verify(sha256Hex(b))).toBe(join(dir, sha256Hex(b)));
    } finally {
      hashes.mockRestore();
    }
  });

  test('an artifact larger than the whole cache gets no reservation', async () => {
    expect(await new DiskCache(dir, 10).reserve(20)).toBeUndefined();
  });
});
