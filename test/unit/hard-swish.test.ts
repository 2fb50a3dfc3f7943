import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { fuseHardSwish } from '../../lib/convert/hard-swish';
import { ATTRIBUTE, OnnxModel } from '../../lib/onnx/model';
import { hardSwishNet, prng } from '../helpers/models';

/**
 * The nodes onnxruntime runs after its own optimizations (level all, as conv graphs are
 * served), from its optimized file: op type, with a fused activation after a colon.
 */
async function runtimeOps(bytes: Uint8Array): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'hardswish-'));
  try {
    const path = join(dir, 'optimized.onnx');
    const s = await InferenceSession.create(bytes, { graphOptimizationLevel: 'all', optimizedModelFilePath: path, intraOpNumThreads: 1, logSeverityLevel: 3 });
    await s.release();
    return OnnxModel.decode(new Uint8Array(readFileSync(path)))
      .graph()
      .nodes()
      .map((n) => {
        const activation = n.attribute('activation')?.string(ATTRIBUTE.s);
        return activation ? `${n.opType}:${activation}` : n.opType;
      });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function run(bytes: Uint8Array, image: Tensor): Promise<Float32Array> {
  const s = await InferenceSession.create(bytes, { intraOpNumThreads: 1, logSeverityLevel: 3 });
  try {
    return (await s.run({ image })).y!.data as Float32Array;
  } finally {
    await s.release();
  }
}

function fused(bytes: Uint8Array): { count: number; bytes: Uint8Array; ops: string[] } {
  const model = OnnxModel.decode(bytes);
  const count = fuseHardSwish(model);
  return { count, bytes: model.encode(), ops: model.graph().nodes().map((n) => n.opType) };
}

describe('hard-swish written out becomes one HardSwish node', () => {
  const rand = prng(8);
  const image = new Tensor('float32', Float32Array.from({ length: 256 }, () => rand() * 6 - 3), [1, 4, 8, 8]);

  test.each(['div', 'mul-sixth', 'div-first', 'mul-sixth-first'] as const)('%s: rewritten, fused by onnxruntime into the Conv before it, same values', async (form) => {
    const source = hardSwishNet(form);
    // Why the rewrite exists: onnxruntime leaves the spelt-out form as element-wise passes.
    expect((await runtimeOps(source)).filter((op) => !op.startsWith('Conv') && op !== 'ReorderOutput').length).toBeGreaterThan(0);
    const out = fused(source);
    expect(out.count).toBe(1);
    expect(out.ops).toEqual(['Conv', 'HardSwish', 'Conv']);
    // Rewritten, it becomes the activation of the (NCHWc) Conv that produces its input.
    expect(await runtimeOps(out.bytes)).toEqual(['Conv:HardSwish', 'ReorderOutput', 'Conv', 'ReorderOutput']);
    const before = await run(source, image);
    const after = await run(out.bytes, image);
    for (let i = 0; i < before.length; i++) expect(Math.abs(after[i]! - before[i]!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(before[i]!)));
  });

  test('x * HardSigmoid(x) with the hard-swish slope is left alone: onnxruntime already fuses it into the Conv', async () => {
    const source = hardSwishNet('hardsigmoid');
    expect(fused(source).count).toBe(0);
    expect(await runtimeOps(source)).toEqual(['Conv:HardSwish', 'ReorderOutput', 'Conv', 'ReorderOutput']);
  });

  test.each([
    ['a HardSigmoid of another slope (0.2, as PaddlePaddle writes it)', 'paddle-hardsigmoid'],
    ['a Clip to 5', 'clip-5'],
    ['an intermediate that is also a graph output', 'shared'],
  ] as const)('%s is left as it is', (_name, form) => {
    expect(fused(hardSwishNet(form)).count).toBe(0);
  });

  test('below opset 14 (no HardSwish op) nothing is rewritten', () => {
    expect(fused(hardSwishNet('div', 13)).count).toBe(0);
  });
});
