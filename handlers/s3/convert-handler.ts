import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Context, S3Event } from 'aws-lambda';
import { runConversionJob, type ConvertDeps, type JobReport } from '../../lib/convert/job';
import { resolveEventKey } from '../../lib/convert/upload-job';

/** The convert function without Lambda plumbing: every record of the batch, one after another. */
export function convertFn(deps: ConvertDeps, logger: Logger) {
  return async (event: S3Event, _context?: Context): Promise<{ reports: JobReport[] }> => {
    const reports: JobReport[] = [];
    for (const record of event.Records ?? []) {
      if (record.s3?.bucket?.name && record.s3.bucket.name !== deps.store.bucket) {
        logger.warn('event for another bucket ignored', { bucket: record.s3.bucket.name });
        continue;
      }
      const key = await resolveEventKey(deps.store, record.s3.object.key);
      const report = await runConversionJob(deps, { key, etag: record.s3.object.eTag });
      if (!report) continue;
      reports.push(report);
      const fields = { jobId: report.jobId, model: report.model, version: report.version, status: report.status };
      if (report.status === 'succeeded') logger.info('conversion finished', { ...fields, outcome: report.outcome, labelMoved: report.labelMoved });
      else logger.warn('conversion failed', { ...fields, reason: report.reason });
    }
    return { reports };
  };
}

export function buildConvertHandler(deps: ConvertDeps, logger: Logger) {
  return middy<S3Event, { reports: JobReport[] }>().use(injectLambdaContext(logger)).handler(convertFn(deps, logger));
}
