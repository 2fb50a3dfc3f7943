/**
 * `npm run model -- <command>`: upload models and watch their conversion, list and inspect
 * published versions, infer, move labels. Talks to the local stack (`npm start`) by default,
 * or to a deployed stage with --api and --bucket (AWS credentials from the usual chain).
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { importTfjsZip } from '../../lib/convert/import/import-upload';
import { importKerasH5 } from '../../lib/convert/import/keras-h5';
import { importKeras3 } from '../../lib/convert/import/keras3';
import { writeZip } from '../../lib/convert/import/zip';
import { parseUploadOptions } from '../../lib/convert/options';
import { outlineModel } from '../../lib/onnx/inspect';
import { keys, versionOfManifestKey } from '../../lib/registry/keys';
import { checkLabel, checkModelName, parseAlias, parseManifest, parseVersion, type Alias, type Manifest } from '../../lib/registry/manifest';
import { DEFAULT_LABEL, setAlias } from '../../lib/registry/registry';
import type { ObjectStore } from '../../lib/storage/object-store';
import { localSettings, openBucket, processAlive, queuedJobState, readLocalApiKey, readStackState, type LocalSettings } from '../stack/local';
import { summarizeReport, uploadModel, waitForReport } from '../stack/uploads';
import { readAnswer, toWire } from './wire';

const USAGE = `usage: npm run model -- <command> [options]

commands
  upload <file.onnx> --name <model> [--options <file.json>]   upload, follow the conversion, print its report
                     (a tokenizer.json the options declare is uploaded first, from beside the options file)
                     (also a Keras 3 .keras, a Keras 2 .h5, a zipped TF.js layers or graph model, or its model.json: the folder is zipped)
  list                                                        models, versions and labels
  show <model>                                                versions with their figures, and labels
  infer <model> --input <request.json> [--version N | --label L] [--json]   (inputs of 1024+ elements go binary)
  infer <model> --image <photo.jpg|png|webp> [--out <mask.png>]  an image to a model that declared one; labels, or the mask written
  infer <model> --text "..." [--text "..."]                   texts to a model that declared a text input (its tokenizer.json)
  promote <model> <version> [--label stable]                  point a label at a version
  rollback <model> [--label stable]                           move a label back to the previous passing version

target (default: the local stack started by \`npm start\`)
  --api <url>        a deployed HTTP API (or API_URL)
  --bucket <name>    its models bucket (or MODELS_BUCKET); S3 through your AWS credentials
  --api-key <key>    the API key for infer (or API_KEY; locally the key \`npm start\` printed)`;

/** A mistake or a situation to explain to the person at the keyboard: printed without a stack. */
class UserError extends Error {}

interface Target {
  apiUrl: string;
  bucket: string;
  s3Endpoint?: string;
  apiKey?: string;
  local: boolean;
  /** The local stack's settings, when the target is the local stack. */
  settings?: LocalSettings;
  store: ObjectStore;
  client: ReturnType<typeof openBucket>['client'];
}

function resolveTarget(values: { api?: string; bucket?: string; 'api-key'?: string }): Target {
  const env = process.env;
  const api = values.api ?? env.API_URL;
  if (api) {
    const bucket = values.bucket ?? env.MODELS_BUCKET;
    if (!bucket) throw new UserError('--api needs --bucket (or MODELS_BUCKET): the models bucket of that stage');
    const s3Endpoint = env.S3_ENDPOINT || undefined;
    return { apiUrl: api.replace(/\/+$/, ''), bucket, s3Endpoint, apiKey: values['api-key'] ?? env.API_KEY, local: false, ...openBucket(bucket, s3Endpoint) };
  }
  const s = localSettings(env);
  const state = readStackState(s);
  const running = state && processAlive(state.pid) ? state : undefined;
  const apiUrl = running?.apiUrl ?? s.apiUrl;
  const s3Endpoint = running?.s3Endpoint ?? s.s3Endpoint;
  const bucket = values.bucket ?? running?.bucket ?? s.bucket;
  return { apiUrl, bucket, s3Endpoint, apiKey: values['api-key'] ?? readLocalApiKey(s, env), local: true, settings: s, ...openBucket(bucket, s3Endpoint) };
}

/** Turns "nothing listens there" into advice; other errors pass through. */
function explain(err: unknown, target: Target | undefined): string {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: string }).code;
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND') {
      return target?.local
        ? `the local stack is not running (nothing answers at ${target.apiUrl} and ${target.s3Endpoint ?? ''}): start it with \`npm start\`, or use --api and --bucket for a deployed stage`
        : `cannot reach ${target?.apiUrl ?? 'the stage'}: ${(e as Error).message}`;
    }
  }
  if (err instanceof UserError) return err.message;
  return (err as Error)?.message ?? String(err);
}

function readFileOrExplain(file: string, what: string): Buffer {
  try {
    const stat = statSync(file);
    if (!stat.isFile()) throw new UserError(`${file} is not a file`);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${what} ${file} does not exist`);
  }
  return readFileSync(file);
}

function readJsonFile(file: string, what: string): unknown {
  const text = readFileOrExplain(file, what).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UserError(`${what} ${file} is not valid JSON: ${(err as Error).message}`);
  }
}

function userCheck<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw new UserError((err as Error).message);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading the registry

async function modelNames(store: ObjectStore): Promise<string[]> {
  const names = new Set<string>();
  for (const key of await store.listKeys('models/')) {
    const name = key.split('/')[1];
    if (name) names.add(name);
  }
  return [...names].sort();
}

interface ModelView {
  manifests: Manifest[];
  aliases: Alias[];
}

async function readModel(store: ObjectStore, model: string): Promise<ModelView> {
  const listed = await store.listKeys(keys.modelPrefix(model));
  const versions = listed.map((k) => versionOfManifestKey(model, k)).filter((v): v is number => v !== undefined).sort((a, b) => a - b);
  if (versions.length === 0) {
    const known = await modelNames(store);
    throw new UserError(`no model named "${model}"${known.length ? `; models: ${known.join(', ')}` : '; nothing is published yet (npm run model -- upload ...)'}`);
  }
  const manifests = await Promise.all(
    versions.map(async (v) => parseManifest(await store.getJson(keys.manifest(model, v)), keys.manifest(model, v))),
  );
  const aliasKeys = listed.filter((k) => k.startsWith(`${keys.modelPrefix(model)}aliases/`) && k.endsWith('.json'));
  const aliases = await Promise.all(aliasKeys.map(async (k) => parseAlias(await store.getJson(k), k)));
  return { manifests, aliases };
}

function figuresOf(m: Manifest): { mode: string; size: string; compression: string; speedup: string; cosine: string; passed: string } {
  const conversion = m.conversion as { mode?: string; outcome?: string } | undefined;
  const evaluation = m.evaluation as
    | { passed: boolean; bytes?: { compressionPercent?: number }; latencyMs?: { speedup?: number }; outputs?: Record<string, { cosine?: number }> }
    | undefined;
  const cosines = Object.values(evaluation?.outputs ?? {}).map((o) => o.cosine).filter((c): c is number => typeof c === 'number');
  return {
    mode: `${conversion?.mode ?? '-'}${conversion?.outcome && conversion.outcome !== 'converted' ? ` (${conversion.outcome})` : ''}`,
    size: `${(m.artifact.bytes / 1e6).toFixed(2)} MB`,
    compression: evaluation?.bytes?.compressionPercent === undefined ? '-' : `${evaluation.bytes.compressionPercent.toFixed(1)}%`,
    speedup: evaluation?.latencyMs?.speedup === undefined ? '-' : `${evaluation.latencyMs.speedup.toFixed(2)}x`,
    cosine: cosines.length ? Math.min(...cosines).toFixed(5) : '-',
    passed: evaluation === undefined ? '-' : evaluation.passed ? 'yes' : 'no',
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

// ---------------------------------------------------------------------------------------------
// Commands

/** A TF.js model folder zipped from its model.json: the file and the weight shards it names. */
function zipTfjsFolder(modelJson: string): Buffer {
  const json = readJsonFile(modelJson, 'model.json') as { weightsManifest?: { paths?: unknown }[] };
  const dir = dirname(modelJson);
  const files = [{ name: 'model.json', data: new Uint8Array(readFileOrExplain(modelJson, 'model.json')) }];
  for (const group of json.weightsManifest ?? []) {
    for (const path of Array.isArray(group.paths) ? group.paths : []) {
      if (typeof path !== 'string') throw new UserError(`${modelJson}: a weightsManifest path is not a string`);
      files.push({ name: path, data: new Uint8Array(readFileOrExplain(join(dir, path), `weight file named by ${modelJson}:`)) });
    }
  }
  return Buffer.from(writeZip(files));
}

/** The bytes to upload and their suffix: an ONNX file, a zipped TF.js folder, or a model.json whose folder is zipped. */
function readUpload(file: string): { bytes: Buffer; suffix: 'onnx' | 'zip' | 'h5' | 'keras'; base: string } {
  if (basename(file) === 'model.json') {
    const bytes = zipTfjsFolder(file);
    userCheck(() => importTfjsZip(bytes));
    return { bytes, suffix: 'zip', base: basename(resolve(dirname(file))) };
  }
  const ext = extname(file).toLowerCase();
  const bytes = readFileOrExplain(file, 'model file');
  if (bytes.byteLength === 0) throw new UserError(`${file} is empty`);
  if (ext === '.zip') {
    userCheck(() => importTfjsZip(bytes));
    return { bytes, suffix: 'zip', base: basename(file, extname(file)) };
  }
  if (ext === '.h5') {
    userCheck(() => importKerasH5(bytes));
    return { bytes, suffix: 'h5', base: basename(file, extname(file)) };
  }
  if (ext === '.keras') {
    userCheck(() => importKeras3(bytes));
    return { bytes, suffix: 'keras', base: basename(file, extname(file)) };
  }
  userCheck(() => {
    try {
      outlineModel(bytes);
    } catch (err) {
      throw new Error(`${file} is not an ONNX model: ${(err as Error).message}`);
    }
  });
  return { bytes, suffix: 'onnx', base: basename(file, extname(file)) };
}

async function upload(t: Target, file: string, name: string | undefined, optionsFile: string | undefined): Promise<number> {
  const { bytes, suffix, base } = readUpload(file);
  const model = userCheck(() => checkModelName(name ?? base.toLowerCase()));
  let options: unknown;
  if (optionsFile !== undefined) {
    options = readJsonFile(optionsFile, 'options file');
    userCheck(() => parseUploadOptions(options));
  }
  const fileName = base.replace(/[^A-Za-z0-9._-]/g, '_') || 'model';
  const tty = process.stderr.isTTY;
  const bar = (sent: number, total: number): void => {
    if (!tty) return;
    const width = 30;
    const done = Math.round((sent / total) * width);
    process.stderr.write(`\ruploading ${basename(file)} [${'#'.repeat(done)}${'-'.repeat(width - done)}] ${((sent / total) * 100).toFixed(0).padStart(3)}% ${(sent / 1e6).toFixed(1)}/${(total / 1e6).toFixed(1)} MB`);
  };
  await uploadDeclaredFiles(t, model, options, optionsFile);
  const uploadedAt = new Date().toISOString();
  const uploaded = await uploadModel(t.client, t.store, { model, name: fileName, bytes, suffix, options, onProgress: bar });
  if (tty) process.stderr.write('\n');
  console.log(`uploaded s3://${t.bucket}/${uploaded.key} (${(bytes.byteLength / 1e6).toFixed(2)} MB); conversion job ${uploaded.jobId}`);
  let shownState = '';
  const report = await waitForReport(t.store, uploaded.reportKey, {
    timeoutMs: 20 * 60_000,
    intervalMs: 500,
    onTick: (ms) => {
      // A local stack says where the job is in its queue; a deployed one only that it is not done.
      const queued = t.settings ? queuedJobState(t.settings, uploaded.jobId) : undefined;
      const state = queued?.state === 'queued' ? `queued (${queued.ahead} ahead)` : queued?.state === 'converting' ? 'converting' : 'waiting for the job report';
      if (tty) process.stderr.write(`\r\x1b[K${state} (${Math.round(ms / 1000)} s)`);
      else if (state !== shownState) process.stderr.write(`${state}\n`);
      shownState = state;
    },
  });
  if (tty) process.stderr.write('\r\x1b[K');
  if (report.finishedAt < uploadedAt) console.log(`this exact file was converted before (job ${report.jobId}, ${report.finishedAt}); its report:`);
  for (const line of summarizeReport(report)) console.log(line);
  return report.status === 'succeeded' ? 0 : 1;
}

async function list(t: Target): Promise<number> {
  const names = await modelNames(t.store);
  if (names.length === 0) {
    console.log(`no models in s3://${t.bucket}/models/ yet: npm run model -- upload <file.onnx> --name <model>`);
    return 0;
  }
  const rows = [['MODEL', 'VERSIONS', 'LABELS', 'LATEST']];
  for (const name of names) {
    const view = await readModel(t.store, name).catch(() => undefined);
    if (!view) continue; // a prefix with no manifest yet (a publish in progress)
    const latest = view.manifests[view.manifests.length - 1];
    rows.push([
      name,
      view.manifests.map((m) => m.version).join(','),
      view.aliases.map((a) => `${a.label}->${a.version}`).join(' ') || '-',
      latest ? `v${latest.version} ${figuresOf(latest).mode}, ${figuresOf(latest).size}` : '-',
    ]);
  }
  console.log(table(rows));
  return 0;
}

async function show(t: Target, model: string): Promise<number> {
  userCheck(() => checkModelName(model));
  const view = await readModel(t.store, model);
  const rows = [['VERSION', 'CREATED', 'MODE', 'SIZE', 'SMALLER', 'SPEEDUP', 'MIN COSINE', 'GATES', 'LABELS']];
  for (const m of view.manifests) {
    const f = figuresOf(m);
    const labels = view.aliases.filter((a) => a.version === m.version).map((a) => a.label).join(' ');
    rows.push([String(m.version), m.createdAt.slice(0, 19).replace('T', ' '), f.mode, f.size, f.compression, f.speedup, f.cosine, f.passed, labels]);
  }
  console.log(`${model}`);
  console.log(table(rows));
  const latest = view.manifests[view.manifests.length - 1];
  if (latest) {
    const io = (specs: Manifest['inputs']): string => specs.map((s) => `${s.name} ${s.datatype}[${s.shape.join(',')}]`).join(', ');
    console.log(`inputs   ${io(latest.inputs)}`);
    console.log(`outputs  ${io(latest.outputs)}`);
  }
  return 0;
}

/**
 * The files the options' declarations name (a text input's tokenizer.json), read from beside
 * the options file and uploaded before the model, whose upload starts the conversion.
 */
async function uploadDeclaredFiles(t: Target, model: string, options: unknown, optionsFile: string | undefined): Promise<void> {
  if (optionsFile === undefined) return;
  const declarations = parseUploadOptions(options).declarations;
  const files = new Set(Object.values(declarations?.preprocess ?? {}).flatMap((d) => (d.type === 'text' ? [d.tokenizer] : [])));
  for (const file of files) {
    const path = join(dirname(optionsFile), file);
    const bytes = readFileOrExplain(path, 'tokenizer file (declared in the options; it must sit beside the options file)');
    await t.store.put(`uploads/${model}/${file}`, bytes, 'application/json');
    console.log(`uploaded ${path} as s3://${t.bucket}/uploads/${model}/${file}`);
  }
}

/** The one text input a model declares (read from its metadata), for `--text`. */
async function textInputOf(t: Target, modelPath: string): Promise<string> {
  const res = await fetch(`${t.apiUrl}/v2/models/${modelPath}`, { headers: t.apiKey ? { 'x-api-key': t.apiKey } : {} });
  const meta = (await res.json().catch(() => ({}))) as { preprocess?: Record<string, { type?: string }>; error?: string };
  if (!res.ok) throw new UserError(`${res.status}: ${meta.error ?? 'model metadata unavailable'}`);
  const texts = Object.entries(meta.preprocess ?? {}).filter(([, d]) => d.type === 'text').map(([name]) => name);
  if (texts.length !== 1) throw new UserError(texts.length === 0 ? `model ${modelPath} declares no text input; use --input <request.json>` : `model ${modelPath} declares several text inputs (${texts.join(', ')}); use --input <request.json>`);
  return texts[0] as string;
}

const IMAGE_TYPES: Readonly<Record<string, string>> = { '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.png': 'image/png', '.webp': 'image/webp' };

/** The request body: an OIP JSON file, or an image file POSTed as it is (`content-type: image/*`). */
function inferBody(inputFile: string | undefined, imageFile: string | undefined): { type: string; body: string | Buffer } {
  if (inputFile !== undefined && imageFile !== undefined) throw new UserError('give --input or --image, not both');
  if (imageFile !== undefined) {
    const type = IMAGE_TYPES[extname(imageFile).toLowerCase()];
    if (!type) throw new UserError(`--image ${imageFile}: use a .jpg, .jpeg, .png or .webp file`);
    try {
      return { type, body: readFileSync(imageFile) };
    } catch (err) {
      throw new UserError(`cannot read ${imageFile}: ${(err as Error).message}`);
    }
  }
  if (!inputFile) throw new UserError('infer needs --input <request.json> (an Open Inference Protocol v2 request) or --image <photo>');
  return { type: 'application/json', body: JSON.stringify(readJsonFile(inputFile, 'input file')) };
}

const PNG_SIGNATURE = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);

async function infer(t: Target, model: string, inputFile: string | undefined, raw: boolean, version?: string, label?: string, imageFile?: string, outFile?: string, texts?: string[]): Promise<number> {
  userCheck(() => checkModelName(model));
  if (version !== undefined && label !== undefined) throw new UserError('give --version or --label, not both');
  const path = version !== undefined ? `/versions/${userCheck(() => parseVersion(version))}` : label !== undefined ? `/labels/${userCheck(() => checkLabel(label))}` : '';
  let request: { type: string; body: string | Buffer };
  if (texts && texts.length > 0) {
    if (inputFile !== undefined || imageFile !== undefined) throw new UserError('give --text, --input or --image, not several');
    const name = await textInputOf(t, `${model}${path}`);
    request = { type: 'application/json', body: JSON.stringify({ inputs: [{ name, datatype: 'BYTES', shape: [texts.length], data: texts }] }) };
  } else request = inferBody(inputFile, imageFile);
  const { type, body } = request;
  const url = `${t.apiUrl}/v2/models/${model}${path}/infer`;
  // An image goes as it is; a JSON request with large inputs goes as binary tensors.
  const wire = typeof body === 'string' ? userCheck(() => toWire(JSON.parse(body) as unknown)) : { body, headers: { 'content-type': type }, binaryInputs: 0 };
  const res = await fetch(url, { method: 'POST', headers: { ...wire.headers, ...(t.apiKey ? { 'x-api-key': t.apiKey } : {}) }, body: wire.body });
  const bytes = Buffer.from(await res.arrayBuffer());
  if (!res.ok) {
    const text = bytes.toString('utf8');
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {
      // not JSON: print as it came
    }
    throw new UserError(`${res.status}: ${message}${res.status === 401 ? ' (pass --api-key or set API_KEY)' : ''}`);
  }
  const headerLength = res.headers.get('inference-header-content-length');
  const { answer, outputs } = readAnswer(bytes, headerLength === null ? undefined : Number(headerLength));
  if (raw) {
    console.log(JSON.stringify(answer, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2));
    return 0;
  }
  const via = wire.binaryInputs > 0 ? ` (${wire.binaryInputs} input${wire.binaryInputs > 1 ? 's' : ''} sent as binary tensors)` : '';
  console.log(`${(answer.model_name as string | undefined) ?? model} version ${(answer.model_version as string | undefined) ?? '?'}${via}`);
  for (const o of outputs) {
    const stagedUrl = o.parameters?.staged_url;
    if (typeof stagedUrl === 'string') {
      console.log(`  ${o.name} ${o.datatype}[${o.shape.join(',')}]: staged, ${Number(o.parameters?.staged_size)} bytes (binary tensor format) at ${stagedUrl}`);
      continue;
    }
    const data = o.data ?? [];
    const first = data[0];
    // A mask answers base64 PNGs; with --out the first one is written, not printed.
    if (o.datatype === 'BYTES' && typeof first === 'string' && Buffer.from(first.slice(0, 12), 'base64').subarray(0, 8).equals(PNG_SIGNATURE)) {
      if (outFile) {
        writeFileSync(outFile, Buffer.from(first, 'base64'));
        console.log(`  ${o.name}: PNG mask written to ${outFile}${data.length > 1 ? ` (the first of ${data.length})` : ''}`);
      } else console.log(`  ${o.name}: ${data.length} PNG mask${data.length > 1 ? 's' : ''}; --out <file.png> writes it`);
      continue;
    }
    // Classification strings "<score>:<index>[:<label>]": one line per class.
    if (o.datatype === 'BYTES' && data.length > 0 && data.every((v) => typeof v === 'string' && /^[^:]+:\d+(:.*)?$/.test(v))) {
      console.log(`  ${o.name}:`);
      for (const v of data as string[]) {
        const [score = '', index = '', ...name] = v.split(':');
        console.log(`    ${Number(score).toFixed(4)}  ${name.length ? name.join(':') : `class ${index}`}`);
      }
      continue;
    }
    const shown = data.slice(0, 8).map((v) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(6)) : v));
    const more = data.length > shown.length ? ` ... (${data.length} values; --json prints them all)` : '';
    console.log(`  ${o.name} ${o.datatype}[${o.shape.join(',')}]: ${JSON.stringify(shown)}${more}`);
  }
  return 0;
}

async function promote(t: Target, model: string, versionText: string | undefined, label: string): Promise<number> {
  userCheck(() => checkModelName(model));
  if (versionText === undefined) throw new UserError('promote needs a version: npm run model -- promote <model> <version>');
  const version = userCheck(() => parseVersion(versionText));
  userCheck(() => checkLabel(label));
  const view = await readModel(t.store, model);
  const target = view.manifests.find((m) => m.version === version);
  if (!target) throw new UserError(`model "${model}" has no version ${version}; versions: ${view.manifests.map((m) => m.version).join(', ')}`);
  const before = view.aliases.find((a) => a.label === label)?.version;
  if (target.evaluation && !target.evaluation.passed) console.log(`note: version ${version} did not pass its gates; promoting it because you asked`);
  await setAlias(t.store, model, label, version);
  console.log(`${model}: label "${label}" ${before === undefined ? 'created at' : `moved from version ${before} to`} version ${version}`);
  return 0;
}

async function rollback(t: Target, model: string, label: string): Promise<number> {
  userCheck(() => checkModelName(model));
  userCheck(() => checkLabel(label));
  const view = await readModel(t.store, model);
  const current = view.aliases.find((a) => a.label === label);
  if (!current) throw new UserError(`model "${model}" has no label "${label}"; labels: ${view.aliases.map((a) => a.label).join(', ') || 'none'}`);
  const previous = view.manifests
    .filter((m) => m.version < current.version && m.evaluation?.passed !== false)
    .map((m) => m.version)
    .pop();
  if (previous === undefined) throw new UserError(`label "${label}" of "${model}" points at version ${current.version}; no earlier version passed its gates`);
  await setAlias(t.store, model, label, previous);
  console.log(`${model}: label "${label}" moved back from version ${current.version} to version ${previous}`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      options: { type: 'string' },
      input: { type: 'string' },
      version: { type: 'string' },
      label: { type: 'string' },
      api: { type: 'string' },
      bucket: { type: 'string' },
      'api-key': { type: 'string' },
      json: { type: 'boolean' },
      image: { type: 'string' },
      text: { type: 'string', multiple: true },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...args] = positionals;
  if (values.help || command === undefined || command === 'help') {
    console.log(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  let target: Target | undefined;
  try {
    target = resolveTarget(values);
    const label = values.label ?? DEFAULT_LABEL;
    switch (command) {
      case 'upload':
        if (!args[0]) throw new UserError('upload needs a file: npm run model -- upload <file.onnx> --name <model>');
        return await upload(target, args[0], values.name, values.options);
      case 'list':
        return await list(target);
      case 'show':
        if (!args[0]) throw new UserError('show needs a model name');
        return await show(target, args[0]);
      case 'infer':
        if (!args[0]) throw new UserError('infer needs a model name');
        return await infer(target, args[0], values.input, values.json === true, values.version, values.label, values.image, values.out, values.text);
      case 'promote':
        if (!args[0]) throw new UserError('promote needs a model name and a version');
        return await promote(target, args[0], args[1] ?? values.version, label);
      case 'rollback':
        if (!args[0]) throw new UserError('rollback needs a model name');
        return await rollback(target, args[0], label);
      default:
        throw new UserError(`unknown command "${command}"\n\n${USAGE}`);
    }
  } catch (err) {
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    console.error(`error: ${explain(err, target)}`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
