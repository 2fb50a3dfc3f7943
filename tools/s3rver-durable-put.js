// The local S3 (s3rver 3.7) answers a PUT before the object's file is written: it resolves on
// `writeStream.end()` (or when its hashing transform finishes), writes straight to the final
// path, and writes the metadata file the same way. A GET right after a PUT, or during an
// overwrite, can then read a truncated object (seen here as "Unexpected end of JSON input" on a
// job report just written, under load). This patches its filesystem store so that a PUT
// answers only once the object is on disk, and both files appear whole (temp file + rename).
//
// Loaded by the tests' in-process S3 (test/helpers/local-s3.ts) and, as a local serverless
// plugin, by the local stack (serverless.yml), whose serverless-s3-local uses the same s3rver.
'use strict';

const crypto = require('node:crypto');
const { createWriteStream } = require('node:fs');
const { mkdir, rename, rm, writeFile } = require('node:fs/promises');
const path = require('node:path');
const { Readable, Transform } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const S3Object = require('s3rver/lib/models/object');
const FilesystemStore = require('s3rver/lib/stores/filesystem');

const PATCHED = Symbol.for('onnx-lambda.s3rver-durable-put');

/** Writes `path` whole or not at all: to a temp name beside it, then a rename. */
async function writeWhole(target, write) {
  // The temp name does not end in s3rver's `._S3rver_object` suffix, so listings skip it.
  const temp = `${target}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  try {
    await write(temp);
    await rename(temp, target);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

if (!FilesystemStore.prototype[PATCHED]) {
  const putMetadata = FilesystemStore.prototype.putMetadata;

  FilesystemStore.prototype.putObject = async function putObject(object) {
    const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
    await mkdir(path.dirname(objectPath), { recursive: true });
    const md5 = crypto.createHash('md5');
    let size = 0;
    const source = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
    const count = new Transform({
      transform(chunk, _encoding, done) {
        md5.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    await writeWhole(objectPath, (temp) => pipeline(source, count, createWriteStream(temp)));
    const digest = md5.digest('hex');
    await this.putMetadata(object.bucket, object.key, object.metadata, digest);
    return { size, md5: digest };
  };

  // The original writes object.md5 and metadata.json in place; the same content, written whole.
  FilesystemStore.prototype.putMetadata = async function putMetadata(bucket, key, metadata, md5) {
    const json = {};
    for (const [name, value] of Object.entries(metadata ?? {})) {
      if (S3Object.ALLOWED_METADATA.includes(name) || name.startsWith('x-amz-meta-')) json[name] = value;
    }
    if (md5) await writeWhole(this.getResourcePath(bucket, key, 'object.md5'), (temp) => writeFile(temp, md5));
    await writeWhole(this.getResourcePath(bucket, key, 'metadata.json'), (temp) => writeFile(temp, JSON.stringify(json, null, 2)));
  };

  FilesystemStore.prototype[PATCHED] = true;
}

/** As a serverless plugin: nothing to hook; loading this file is the point. */
class S3rverDurablePut {
  constructor() {
    this.hooks = {};
  }
}

module.exports = S3rverDurablePut;
