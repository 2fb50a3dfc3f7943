/**
 * Errors that carry their HTTP status. Everything the service throws on purpose is an
 * {@link AppError}; {@link toErrorBody} is the one place that turns any error into what a
 * client sees, so no branch builds an error response of its own.
 */
export abstract class AppError extends Error {
  abstract readonly statusCode: number;
  abstract readonly code: string;
  /** Extra response headers (e.g. `Retry-After`). */
  readonly headers: Record<string, string> = {};

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }

  /** Client errors say what went wrong; server faults keep their details in the logs. */
  get expose(): boolean {
    return this.statusCode < 500;
  }
}

/** 400: the request is malformed or does not fit the model. */
export class InvalidRequestError extends AppError {
  readonly statusCode = 400;
  readonly code = 'invalid_request';
}

/** 400: the answer to a valid request is larger than the transport carries; the message says what to ask for instead. */
export class ResponseTooLargeError extends AppError {
  readonly statusCode = 400;
  readonly code = 'response_too_large';
}

/** 401: no credentials were presented. */
export class UnauthorizedError extends AppError {
  readonly statusCode = 401;
  readonly code = 'unauthorized';
  override readonly headers = { 'www-authenticate': 'Bearer' };
}

/** 403: credentials were presented and are not valid. */
export class ForbiddenError extends AppError {
  readonly statusCode = 403;
  readonly code = 'forbidden';
}

/** 404: unknown route, model, version or label. */
export class NotFoundError extends AppError {
  readonly statusCode = 404;
  readonly code = 'not_found';
}

/** 405: the route exists, the method does not. */
export class MethodNotAllowedError extends AppError {
  readonly statusCode = 405;
  readonly code = 'method_not_allowed';
}

/** 413: the request body is over the configured limit. */
export class PayloadTooLargeError extends AppError {
  readonly statusCode = 413;
  readonly code = 'payload_too_large';
}

/** 415: a content type or content encoding the route does not speak. */
export class UnsupportedMediaTypeError extends AppError {
  readonly statusCode = 415;
  readonly code = 'unsupported_media_type';
}

/** 422: the model exists but cannot be served by this runtime (refused before it reaches ORT). */
export class UnservableModelError extends AppError {
  readonly statusCode = 422;
  readonly code = 'unservable_model';
  override get expose(): boolean {
    return true;
  }
}

/** 503: a dependency (S3) failed or returned bad data; the client may retry. */
export class ServiceUnavailableError extends AppError {
  readonly statusCode = 503;
  readonly code = 'service_unavailable';
  override readonly headers: Record<string, string>;

  constructor(message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message, options);
    this.headers = { 'retry-after': String(options?.retryAfterSeconds ?? 1) };
  }

  /** The reason is ours to tell (S3 or an artifact is at fault, not the client) and holds no secrets. */
  override get expose(): boolean {
    return true;
  }
}

/** 500: a fault of ours. Its message stays in the logs. */
export class InternalError extends AppError {
  readonly statusCode = 500;
  readonly code = 'internal';
}

export interface ErrorBody {
  statusCode: number;
  code: string;
  headers: Record<string, string>;
  body: { error: string };
}

/** The response for any thrown value: an exposed message for client errors, a generic one otherwise. */
export function toErrorBody(err: unknown): ErrorBody {
  const appError = err instanceof AppError ? err : new InternalError('internal error', { cause: err });
  const message = appError.expose ? appError.message : 'internal error';
  return {
    statusCode: appError.statusCode,
    code: appError.code,
    headers: appError.headers,
    body: { error: message },
  };
}
