/**
 * Typed errors thrown anywhere below the API and rendered once, as problem+json, by the
 * error middleware. `slug` names a documented problem type (`/problems/<slug>`).
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export interface FieldError {
  path: string;
  message: string;
}

export class ValidationError extends AppError {
  constructor(message: string, readonly errors: FieldError[]) {
    super(400, 'validation-error', message, { errors });
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = 'Authentication is required: send a valid bearer token.') {
    super(401, 'unauthorized', message, {}, { 'WWW-Authenticate': 'Bearer' });
  }
}

export class ForbiddenError extends AppError {
  constructor(message = 'Your role does not allow this action.') {
    super(403, 'forbidden', message);
  }
}

export class NotFoundError extends AppError {
  constructor(what = 'Resource') {
    super(404, 'not-found', `${what} not found.`);
  }
}

export class ConflictError extends AppError {
  constructor(message: string, extra: Record<string, unknown> = {}) {
    super(409, 'conflict', message, extra);
  }
}

export class TooManyRequestsError extends AppError {
  constructor(message: string, retryAfterSeconds: number) {
    super(429, 'too-many-requests', message, { retryAfter: retryAfterSeconds }, { 'Retry-After': String(retryAfterSeconds) });
  }
}
