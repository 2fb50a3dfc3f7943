// How the repository's TypeScript tools are bundled for Node (tools/run-ts.mjs and the local
// stack's conversion pool): the project's own code inside, node_modules loaded as installed.
'use strict';

module.exports.TOOL_BUILD = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  sourcemap: 'inline',
  logLevel: 'warning',
};
