import { readAnswer, toWire, BINARY_ELEMENTS } from '../../tools/cli/wire';
import { decodeElements } from '../helpers/binary-wire';

/** The CLI's wire choice: small requests stay JSON; large numeric inputs go as binary tensors. */
describe('the CLI request on the wire', () => {
  test('a small request is sent as the JSON it is', () => {
    const request = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
    const wire = toWire(request);
    expect(wire.headers).toEqual({ 'content-type': 'application/json' });
    expect(JSON.parse(wire.body.toString('utf8'))).toEqual(request);
  });

  test('a large numeric input goes binary, a BYTES one stays JSON, and binary outputs are asked for', () => {
    const n = BINARY_ELEMENTS;
    const x = Array.from({ length: n }, (_, i) => i / 4);
    const wire = toWire({ id: 'r', inputs: [{ name: 'x', shape: [1, n], datatype: 'FP32', data: [x] }, { name: 's', shape: [1], datatype: 'BYTES', data: ['hi'] }] });
    expect(wire.binaryInputs).toBe(1);
    expect(wire.headers['content-type']).toBe('application/octet-stream');
    const headerLength = Number(wire.headers['inference-header-content-length']);
    expect(JSON.parse(wire.body.subarray(0, headerLength).toString('utf8'))).toEqual({
      id: 'r',
      inputs: [{ name: 'x', shape: [1, n], datatype: 'FP32', parameters: { binary_data_size: 4 * n } }, { name: 's', shape: [1], datatype: 'BYTES', data: ['hi'] }],
      parameters: { binary_data_output: true },
    });
    const tail = wire.body.subarray(headerLength);
    expect(decodeElements('FP32', tail)).toEqual(x);
  });

  test('a binary answer is read back into values, 64-bit integers as exact digits', () => {
    const header = Buffer.from(JSON.stringify({ outputs: [{ name: 'a', datatype: 'INT64', shape: [2], parameters: { binary_data_size: 16 } }, { name: 'b', datatype: 'FP32', shape: [1], data: [0.5] }] }));
    const a = Buffer.alloc(16);
    a.writeBigInt64LE(9007199254740993n, 0);
    a.writeBigInt64LE(-2n, 8);
    const { outputs } = readAnswer(Buffer.concat([header, a]), header.byteLength);
    expect(outputs.map((o) => o.data)).toEqual([['9007199254740993', '-2'], [0.5]]);
  });
});
