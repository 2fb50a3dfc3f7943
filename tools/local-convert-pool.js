// A local serverless plugin for the local stack (`npm start`): on Lambda each function runs in
// a sandbox of its own, so a conversion cannot slow the API down. serverless-s3-local would run
// the convert function inside serverless offline's own process, on the event loop that serves
// the HTTP API and the local S3. This plugin makes it queue those S3 events on a pool of worker
// processes instead (tools/stack/convert-pool.ts), with the function's memory size and timeout
// applied. Set LOCAL_CONVERT_IN_PROCESS=true to get serverless-s3-local's own behaviour back
// (the benchmark measures both). `serverless package`, `invoke local` and the deployed template
// are not affected: only serverless-s3-local's event delivery is.
'use strict';

const { rmSync } = require('node:fs');
const path = require('node:path');
const { TOOL_BUILD } = require('./tool-build.cjs');

const PATCHED = Symbol.for('onnx-lambda.local-convert-pool');

/** Bundles the pool (TypeScript, with the project's lib/) once per process, next to node_modules. */
function loadPool(root) {
  const outdir = path.join(root, '.tools-out', `convert-pool-${process.pid}`);
  require('esbuild').buildSync({
    absWorkingDir: root,
    entryPoints: { plugin: 'tools/stack/convert-pool-plugin.ts', worker: 'tools/stack/convert-worker.ts' },
    outdir,
    ...TOOL_BUILD,
  });
  process.once('exit', () => rmSync(outdir, { recursive: true, force: true }));
  return { plugin: require(path.join(outdir, 'plugin.js')), workerFile: path.join(outdir, 'worker.js') };
}

class LocalConvertPool {
  constructor(serverless) {
    // serverless offline answers an uncaught exception by cleaning up its functions, and that
    // cleanup can throw over the original error: log the original first (to stack.log).
    process.on('uncaughtExceptionMonitor', (err, origin) => {
      process.stderr.write(`local stack: ${origin}: ${err && err.stack ? err.stack : String(err)}\n`);
    });
    const S3Local = require('serverless-s3-local');
    if (S3Local.prototype[PATCHED]) return;
    S3Local.prototype[PATCHED] = true;
    const own = S3Local.prototype.getEventHandlers;
    S3Local.prototype.getEventHandlers = function getEventHandlers() {
      if (process.env.LOCAL_CONVERT_IN_PROCESS === 'true') return own.call(this);
      const root = serverless.serviceDir || serverless.config.serviceDir || serverless.config.servicePath;
      const { plugin, workerFile } = loadPool(root);
      return plugin.pooledEventHandlers(this, S3Local, workerFile);
    };
  }
}

module.exports = LocalConvertPool;
