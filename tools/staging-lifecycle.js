'use strict';
// Adds the staged-tensor lifecycle rule to the models bucket the stack creates.
//
// serverless generates the bucket from the convert function's S3 event, under a logical id
// derived from the bucket's name, so the rule cannot be written in `resources:` by id. After
// the events are compiled, this finds that bucket (by its name) and gives it one rule: objects
// under custom.stagedTensors.prefix expire after custom.stagedTensors.expireDays days. With
// EXISTING_MODELS_BUCKET=true there is no bucket in the template; the README says how to add
// the same rule to an existing bucket.
class StagingLifecycle {
  constructor(serverless, _options, { log }) {
    this.hooks = {
      'after:package:compileEvents': () => {
        const { prefix, expireDays } = serverless.service.custom?.stagedTensors ?? {};
        if (!prefix || !expireDays) throw new Error('custom.stagedTensors needs prefix and expireDays');
        const bucket = serverless.service.provider.environment?.MODELS_BUCKET;
        const resources = serverless.service.provider.compiledCloudFormationTemplate.Resources;
        const found = Object.values(resources).filter((r) => r.Type === 'AWS::S3::Bucket' && r.Properties?.BucketName === bucket);
        for (const r of found) {
          r.Properties.LifecycleConfiguration = {
            Rules: [
              { Id: 'expire-staged-tensors', Status: 'Enabled', Prefix: prefix, ExpirationInDays: expireDays, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } },
            ],
          };
        }
        if (found.length === 0) log.info(`No models bucket in the template (existing bucket): give it a lifecycle rule expiring ${prefix} yourself.`);
      },
    };
  }
}

module.exports = StagingLifecycle;
