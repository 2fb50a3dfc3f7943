import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { env as ortEnv } from 'onnxruntime-node';
import { mib } from './lib/stats';

/** Section 0: what the figures were measured on. */
function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'));
    if (line) return line.split(':').slice(1).join(':').trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

const versions = ortEnv.versions as { common?: string; node?: string };
console.log('# onnx-lambda bench');
console.log('');
console.log(`- CPU: ${cpuModel()}`);
console.log(`- cores: ${cpus().length} (availableParallelism ${availableParallelism()})`);
console.log(`- memory: ${mib(totalmem())}`);
console.log(`- node: ${process.version} (V8 ${process.versions.v8})`);
console.log(`- onnxruntime-node: ${versions.node ?? '?'} (onnxruntime-common ${versions.common ?? '?'})`);
console.log(`- platform: ${process.platform} ${process.arch}`);
console.log(`- date: ${new Date().toISOString()}`);
console.log('');
