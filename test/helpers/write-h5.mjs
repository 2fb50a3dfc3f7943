// Writes a Keras 2 HDF5 model file with h5wasm (the HDF5 C library as WASM). h5wasm ships ES
// modules only, so tests run this as a child process: `node write-h5.mjs <out.h5> < spec.json`,
// spec = {attrs: {name: string}, groups: {path: {attrs: {name: string | string[]}}},
//         datasets: [{path, shape, data: number[] | zeros: true, compression?: gzip level, attrs?: {name: string}}]}.
import { readFileSync } from 'node:fs';
import h5wasm from 'h5wasm/node';

await h5wasm.ready;
const spec = JSON.parse(readFileSync(0, 'utf8'));
const file = new h5wasm.File(process.argv[2], 'w');
for (const [name, value] of Object.entries(spec.attrs ?? {})) file.create_attribute(name, value);
for (const [path, group] of Object.entries(spec.groups ?? {})) {
  const g = file.create_group(path);
  for (const [name, value] of Object.entries(group.attrs ?? {})) g.create_attribute(name, value);
}
const made = new Set(Object.keys(spec.groups ?? {}));
for (const d of spec.datasets ?? []) {
  const parts = d.path.split('/');
  for (let i = 1; i < parts.length; i++) {
    const parent = parts.slice(0, i).join('/');
    if (!made.has(parent)) {
      file.create_group(parent);
      made.add(parent);
    }
  }
  const data = d.zeros ? new Float32Array(d.shape.reduce((a, b) => a * b, 1)) : new Float32Array(d.data);
  const chunked = d.compression === undefined ? {} : { chunks: d.shape.map((n, i) => (i === 0 ? Math.min(n, 64) : n)), compression: d.compression };
  const dataset = file.create_dataset({ name: d.path, data, shape: d.shape, dtype: '<f', ...chunked });
  for (const [name, value] of Object.entries(d.attrs ?? {})) dataset.create_attribute(name, value);
}
file.close();
