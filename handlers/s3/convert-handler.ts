import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Context, S3Event } from 'aws-lambda';
import { runConversionJob, type ConvertDeps, type JobReport } from '../../lib/convert/job';
import type { ObjectStore } from '../../lib/storage/object-store';

/**
 * The key an S3 event names. AWS sends keys URL-encoded (spaces as '+'); the local S3
 * (serverless-s3-local) sends them raw. Take the decoded key when it exists, else the raw one.
 */
export async function resolveEventKey(store: ObjectStore, raw: string): Promise<string> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
  if (decoded === raw) return raw;
  return (await store.head(decoded)) ? decoded : raw;
}

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
