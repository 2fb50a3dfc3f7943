'use strict';
// The local stack's HTTP API carries binary request bodies as API Gateway does.
//
// An HTTP API hands the function every body whose content type is not text (JSON, XML,
// JavaScript, text/*) base64-encoded, a body with no content type included. serverless offline
// base64-encodes only octet-stream and multipart bodies and decodes the rest as UTF-8, which
// corrupts binary data. Triton's Python client sends its binary tensors and its compressed
// bodies with no content type at all. This plugin marks such requests (a body framed by
// Inference-Header-Content-Length, or one with a Content-Encoding) as application/octet-stream
// before serverless offline reads them, on the HTTP API's port only, so they reach the
// function base64-encoded as on AWS (where the function sees no content type, which it reads
// the same way). Requests with a content type are left as they are.
const http = require('node:http');

const PATCHED = Symbol.for('onnx-lambda.offline-binary-bodies');

class OfflineBinaryBodies {
  constructor(serverless) {
    if (http.Server.prototype[PATCHED]) return;
    http.Server.prototype[PATCHED] = true;
    const emit = http.Server.prototype.emit;
    http.Server.prototype.emit = function patchedEmit(event, req, ...rest) {
      if (event === 'request' && req && req.headers && !req.headers['content-type']) {
        const framed = req.headers['inference-header-content-length'] !== undefined || req.headers['content-encoding'] !== undefined;
        const port = Number(serverless.service.custom?.['serverless-offline']?.httpPort);
        if (framed && this.address()?.port === port) {
          // Both views of the headers: serverless offline decides the encoding from one and
          // builds the event's headers from the other (where it would default to JSON).
          req.headers['content-type'] = 'application/octet-stream';
          req.rawHeaders.push('content-type', 'application/octet-stream');
        }
      }
      return emit.call(this, event, req, ...rest);
    };
  }
}

module.exports = OfflineBinaryBodies;
