import { ConfigError, loadConfig, parseWarmModels, threadsForMemory } from '../../lib/config';
import { servingLevel } from '../../lib/runtime/model-session';

const base = { MODELS_BUCKET: 'b', API_KEY_HASHES: 'a'.repeat(64) };

describe('config', () => {
  test('defaults', () => {
    const c = loadConfig({ ...base, AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1769' });
    expect(c).toMatchObject({
      bucket: 'b',
      s3Endpoint: undefined,
      s3ForcePathStyle: false,
      manifestTtlMs: 30000,
      rangedGetThresholdBytes: 64 * 1024 * 1024,
      intraOpNumThreads: 1,
      graphOptimizationLevel: 'auto',
      maxBodyBytes: 6 * 1024 * 1024,
      authDisabled: false,
      warmModels: [],
    });
    expect(c.apiKeyHashes).toHaveLength(1);
  });

  test('a local endpoint turns on path-style addressing; an empty one is unset', () => {
    expect(loadConfig({ ...base, S3_ENDPOINT: 'http://127.0.0.1:4569' })).toMatchObject({ s3Endpoint: 'http://127.0.0.1:4569', s3ForcePathStyle: true });
    expect(loadConfig({ ...base, S3_ENDPOINT: '' })).toMatchObject({ s3Endpoint: undefined, s3ForcePathStyle: false });
  });

  test('ORT threads follow Lambda memory: 1,769 MB per vCPU, at most six', () => {
    expect(threadsForMemory(128, 8)).toBe(1);
    expect(threadsForMemory(1769, 8)).toBe(1);
    expect(threadsForMemory(3008, 8)).toBe(2);
    expect(threadsForMemory(10240, 8)).toBe(6);
    expect(threadsForMemory(undefined, 2)).toBe(2);
    expect(loadConfig({ ...base, AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '10240', ORT_INTRA_OP_THREADS: '3' }).intraOpNumThreads).toBe(3);
  });

  test.each([
    [{ API_KEY_HASHES: undefined }, /API_KEY_HASHES is required \(or set AUTH_DISABLED=true\)/],
    [{ API_KEY_HASHES: 'not-a-hash' }, /API_KEY_HASHES must be comma-separated SHA-256 hex digests/],
    [{ MODELS_BUCKET: '' }, /MODELS_BUCKET is required/],
    [{ MANIFEST_TTL_MS: '-1' }, /MANIFEST_TTL_MS must be an integer >= 0, got "-1"/],
    [{ SESSION_CACHE_COUNT: 'lots' }, /SESSION_CACHE_COUNT must be an integer >= 1, got "lots"/],
    [{ ORT_GRAPH_OPTIMIZATION_LEVEL: 'max' }, /ORT_GRAPH_OPTIMIZATION_LEVEL must be auto or one of disabled, basic, extended, layout, all/],
    [{ AUTH_DISABLED: 'maybe' }, /AUTH_DISABLED must be true or false/],
    [{ WARM_MODELS: 'a,../b' }, /WARM_MODELS entry "..\/b" is not model, model@version or model:label/],
  ])('bad environment %p fails at cold start', (env, message) => {
    expect(() => loadConfig({ ...base, ...env })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, ...env })).toThrow(message);
  });

  test('auth may be disabled explicitly, never by omission', () => {
    expect(loadConfig({ MODELS_BUCKET: 'b', AUTH_DISABLED: 'true' })).toMatchObject({ authDisabled: true, apiKeyHashes: [] });
  });

  test('warm models: names, versions, labels', () => {
    expect(parseWarmModels(' vad , mlp@3, bert:canary ')).toEqual([
      { model: 'vad' },
      { model: 'mlp', version: 3 },
      { model: 'bert', label: 'canary' },
    ]);
  });
});

describe('servingLevel: the graph optimization level a model is served at', () => {
  const converted = (servingLevel: unknown) => ({ conversion: { optimization: { servingLevel } } });
  test('auto takes what the conversion recorded, else all', () => {
    expect(servingLevel(converted('disabled'), 'auto')).toBe('disabled');
    expect(servingLevel(converted('all'), 'auto')).toBe('all');
    expect(servingLevel({}, 'auto')).toBe('all');
    expect(servingLevel(converted('fastest'), 'auto')).toBe('all'); // not a level: ignored
  });
  test('an explicit ORT_GRAPH_OPTIMIZATION_LEVEL wins over the manifest', () => {
    expect(servingLevel(converted('disabled'), 'all')).toBe('all');
    expect(servingLevel(converted('all'), 'basic')).toBe('basic');
  });
});
