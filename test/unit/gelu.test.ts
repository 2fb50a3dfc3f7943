import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { canonicalizeGelu } from '../../lib/convert/gelu';
import { OnnxModel } from '../../lib/onnx/model';
import { bertEncoderModel, geluModel, prng } from '../helpers/models';


/** The op types of the graph onnxruntime runs (level all), read back from its optimized file. */
async function runtimeOps(bytes: Uint8Array): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'gelu-'));
  try {
    const path = join(dir, 'optimized.onnx');
    const s = await InferenceSession.create(bytes, { graphOptimizationLevel: 'all', optimizedModelFilePath: path, logSeverityLevel: 3 });
    await s.release();
    return OnnxModel.decode(new Uint8Array(readFileSync(path))).graph().nodes().map((n) => n.opType);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function run(bytes: Uint8Array, feeds: Record<string, Tensor>): Promise<Float32Array[]> {
  const s = await InferenceSession.create(bytes, { logSeverityLevel: 3 });
  try {
    const out = await s.run(feeds);
    return s.outputNames.map((n) => out[n]!.data as Float32Array);
  } finally {
    await s.release();
  }
}

function rewritten(bytes: Uint8Array): { count: number; bytes: Uint8Array } {
  const model = OnnxModel.decode(bytes);
  const count = canonicalizeGelu(model);
  return { count, bytes: model.encode() };
}

describe('GELU written the way onnxruntime fuses it', () => {
  test('Mul(x, 1/sqrt2) -> Erf becomes Div(x, sqrt2): onnxruntime then runs one Gelu, same values', async () => {
    const mul = geluModel('Mul', Math.SQRT1_2);
    expect(await runtimeOps(mul)).not.toContain('Gelu'); // why the rewrite exists
    const out = rewritten(mul);
    expect(out.count).toBe(1);
    expect(OnnxModel.decode(out.bytes).graph().nodes().map((n) => n.opType)).toEqual(['Div', 'Erf', 'Add', 'Mul', 'Mul']);
    expect(await runtimeOps(out.bytes)).toEqual(['Gelu']);
    const rand = prng(5);
    const x = new Tensor('float32', Float32Array.from({ length: 128 }, () => rand() * 8 - 4), [2, 64]);
    const [before] = await run(mul, { x });
    const [after] = await run(out.bytes, { x });
    for (let i = 0; i < 128; i++) expect(Math.abs(after![i]! - before![i]!)).toBeLessThan(1e-6);
  });

  test('other multipliers, and Mul not feeding Erf, stay as they are', () => {
    expect(rewritten(geluModel('Mul', 0.5)).count).toBe(0);
    expect(rewritten(geluModel('Div', Math.SQRT2)).count).toBe(0);
  });

  test('every layer of the BERT-shaped encoder is rewritten, and its outputs keep their values', async () => {
    const bert = bertEncoderModel({ layers: 2 });
    const out = rewritten(bert);
    expect(out.count).toBe(2);
    const ids = new Tensor('int64', BigInt64Array.from({ length: 16 }, (_, i) => BigInt((i * 7) % 100)), [1, 16]);
    const model = OnnxModel.decode(bert);
    const feeds: Record<string, Tensor> = {};
    for (const name of model.graph().inputNames()) feeds[name] = name.includes('mask') ? new Tensor('int64', new BigInt64Array(16).fill(1n), [1, 16]) : ids;
    const before = await run(bert, feeds);
    const after = await run(out.bytes, feeds);
    expect(after.length).toBe(before.length);
    before.forEach((b, k) => {
      for (let i = 0; i < b.length; i++) expect(Math.abs(after[k]![i]! - b[i]!)).toBeLessThan(1e-4);
    });
  });
});
