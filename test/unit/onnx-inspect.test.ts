import { outlineModel } from '../../lib/onnx/inspect';
import { WireFormatError } from '../../lib/onnx/wire';
import { encodeModel, floatTensor } from '../../lib/onnx/writer';
import { checkServable } from '../../lib/runtime/model-session';
import { mlpModel, ONNX, sileroVadModel, uncarriableOutputModel } from '../helpers/models';

describe('ONNX outline (read without onnxruntime)', () => {
  test('a generated MLP: IR, opset, inputs, outputs, initializers', () => {
    const o = outlineModel(mlpModel({ batch: 'N' }));
    expect(o.irVersion).toBe(8);
    expect(o.opsets).toEqual([{ domain: '', version: 17 }]);
    expect(o.inputs).toEqual([{ name: 'x', kind: 'tensor', elemType: ONNX.FLOAT, shape: [-1, 4] }]);
    expect(o.outputs).toEqual([{ name: 'probs', kind: 'tensor', elemType: ONNX.FLOAT, shape: [-1, 3] }]);
    expect(o.initializers).toEqual(['w1', 'b1', 'w2', 'b2']);
    expect(o.externalTensors).toEqual([]);
  });

  test('Silero VAD from npm: walks If subgraphs, finds the int64 scalar', () => {
    const o = outlineModel(sileroVadModel());
    expect(o.inputs.map((i) => [i.name, i.elemType, i.shape])).toEqual([
      ['input', ONNX.FLOAT, [-1, -1]],
      ['state', ONNX.FLOAT, [2, -1, 128]],
      ['sr', ONNX.INT64, []],
    ]);
  });

  test('truncated or foreign bytes are a WireFormatError, never a crash', () => {
    const bytes = mlpModel();
    for (const cut of [1, 7, 50, bytes.length - 3]) {
      expect(() => outlineModel(bytes.subarray(0, cut))).toThrow(WireFormatError);
    }
    expect(() => outlineModel(Buffer.from('{"not": "onnx"}'))).toThrow(WireFormatError);
    expect(() => outlineModel(new Uint8Array(0))).toThrow('no graph in the model');
  });

  test('external data is found, also inside a subgraph', () => {
    const external = { name: 'w', dataType: ONNX.FLOAT, dims: [1], externalData: { location: '../../etc/passwd', offset: '0', length: '4' } };
    const withExternal = (where: 'main' | 'sub') => {
      const bytes = encodeModel({
        graph: {
          name: 'g',
          inputs: [{ name: 'c', elemType: ONNX.BOOL, shape: [] }],
          outputs: [{ name: 'y', elemType: ONNX.FLOAT, shape: [1] }],
          initializers: where === 'main' ? [external] : [],
          nodes: [{
            opType: 'If', inputs: ['c'], outputs: ['y'],
            attributes: ['then_branch', 'else_branch'].map((name) => ({
              name,
              g: {
                name,
                inputs: [],
                outputs: [{ name: `${name}_y`, elemType: ONNX.FLOAT, shape: [1] }],
                nodes: [{ opType: 'Constant', inputs: [], outputs: [`${name}_y`], attributes: [{ name: 'value', t: where === 'sub' ? external : floatTensor('v', [1], [2]) }] }],
              },
            })),
          }],
        },
      });
      return bytes;
    };
    expect(outlineModel(withExternal('main')).externalTensors).toEqual(['w']);
    expect(outlineModel(withExternal('sub')).externalTensors).toEqual(['w', 'w']); // both branches
    expect(() => checkServable(withExternal('sub'), 'm@1')).toThrow('model m@1 cannot be served: tensor "w" keeps its data in an external file');
  });

  test('uncarriable datatypes are refused by name', () => {
    expect(() => checkServable(uncarriableOutputModel(ONNX.INT4), 'q@2')).toThrow('output "y" has datatype INT4');
    expect(() => checkServable(uncarriableOutputModel(ONNX.BFLOAT16), 'q@2')).toThrow('output "y" has datatype BFLOAT16');
    expect(() => checkServable(mlpModel(), 'ok@1')).not.toThrow();
  });
});

