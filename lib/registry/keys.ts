/** The S3 layout (ARCHITECTURE.md): every key the registry reads or writes is built here. */
export const keys = {
  modelPrefix: (model: string): string => `models/${model}/`,
  artifact: (model: string, version: number): string => `models/${model}/${version}/model.onnx`,
  manifest: (model: string, version: number): string => `models/${model}/${version}/manifest.json`,
  /** A file published with a version besides its model (a tokenizer.json); `file` is a checked plain name. */
  versionFile: (model: string, version: number, file: string): string => `models/${model}/${version}/files/${file}`,
  alias: (model: string, label: string): string => `models/${model}/aliases/${label}.json`,
  job: (model: string, jobId: string): string => `jobs/${model}/${jobId}.json`,
  /** A staged tensor (lib/storage/staging.ts): the only prefix a request can name, and it expires. */
  staged: (id: string): string => `${STAGING_PREFIX}${id}`,
};

/** Where staged tensors live; a lifecycle rule deletes them (serverless.yml). */
export const STAGING_PREFIX = 'staging/';

/** The version whose manifest `key` is (`models/<model>/<version>/manifest.json`), else undefined. */
export function versionOfManifestKey(model: string, key: string): number | undefined {
  const rest = key.startsWith(keys.modelPrefix(model)) ? key.slice(keys.modelPrefix(model).length) : '';
  const match = /^([1-9][0-9]{0,9})\/manifest\.json$/.exec(rest);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}
