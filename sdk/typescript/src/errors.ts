// The SDK's errors: one class per kind of failure, each carrying what the server's error envelope said
// ({"error": {"message", "type", "param", "code", "request_id"}}). Same classes and rules as the Python SDK.

export class AlveareError extends Error {
  /** HTTP status; undefined when no answer came back. */
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly type: string | undefined;
  readonly param: string | undefined;
  readonly requestId: string | undefined;
  /** Response headers, lower-cased. */
  readonly headers: Record<string, string>;

  constructor(
    message: string,
    init: {
      status?: number;
      code?: string;
      type?: string;
      param?: string;
      requestId?: string;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.name = new.target.name;
    this.status = init.status;
    this.code = init.code;
    this.type = init.type;
    this.param = init.param;
    this.requestId = init.requestId;
    this.headers = init.headers ?? {};
  }
}

/** The server could not be reached (refused, reset, DNS, TLS, CORS). */
export class APIConnectionError extends AlveareError {}
/** No answer within the client's timeout (no status), or the server's own generation timeout (504). */
export class APITimeoutError extends AlveareError {}
/** The server answered with an error status. */
export class APIStatusError extends AlveareError {}
/** 400 (and other 4xx without a class of their own): a bad parameter, named in `param`. */
export class BadRequestError extends APIStatusError {}
/** 401: a missing, malformed, unknown or revoked API key. */
export class AuthenticationError extends APIStatusError {}
/** 403: the key's plan, account or role does not include this. */
export class PermissionDeniedError extends APIStatusError {}
/** 404: an unknown specialist, model or URL. */
export class NotFoundError extends APIStatusError {}
/** 409: the change conflicts with the current state. */
export class ConflictError extends APIStatusError {}
/** 429 rate_limit_exceeded: the key's requests or tokens per minute are used up. */
export class RateLimitError extends APIStatusError {
  /** Seconds the server asked to wait (retry-after-ms, else Retry-After), when it said. */
  get retryAfter(): number | undefined {
    return retryAfterSeconds(this.headers);
  }
}
/** 429 insufficient_quota: the account's spending cap is reached for this period; retrying won't help. */
export class QuotaExceededError extends APIStatusError {}
/** 500 and other 5xx: a failure on the server's side. */
export class ServerError extends APIStatusError {}
/** 503: every slot is busy and the queue is full, or the model is still loading. */
export class OverloadedError extends ServerError {}

type ErrorClass = new (message: string, init?: ConstructorParameters<typeof AlveareError>[1]) => AlveareError;

const BY_STATUS: Record<number, ErrorClass> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  429: RateLimitError,
  503: OverloadedError,
  504: APITimeoutError,
};

export function retryAfterSeconds(headers: Record<string, string>): number | undefined {
  for (const [name, scale] of [
    ['retry-after-ms', 0.001],
    ['retry-after', 1],
  ] as const) {
    const raw = headers[name];
    if (raw === undefined) continue;
    const value = Number(raw) * scale;
    if (raw.trim() !== '' && Number.isFinite(value) && value >= 0) return value;
  }
  return undefined;
}

function classFor(status: number, code: string | undefined): ErrorClass {
  if (status === 429 && code === 'insufficient_quota') return QuotaExceededError;
  return BY_STATUS[status] ?? (status >= 400 && status < 500 ? BadRequestError : ServerError);
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** The error for an error response, from its status, headers and body text. */
export function errorFromResponse(status: number, headers: Record<string, string>, text: string): AlveareError {
  let error: Record<string, unknown> = {};
  try {
    const body = JSON.parse(text);
    if (body && typeof body === 'object' && body.error && typeof body.error === 'object') error = body.error;
  } catch {
    // a proxy's HTML page or an empty body: the raw text is the message
  }
  const code = str(error.code);
  const message = str(error.message) || text.trim().slice(0, 200) || `HTTP ${status}`;
  const Cls = classFor(status, code);
  return new Cls(message, {
    status,
    code,
    type: str(error.type),
    param: str(error.param),
    requestId: str(error.request_id) ?? headers['x-request-id'],
    headers,
  });
}

/** An error event inside a stream: the server's own failure after the answer began. */
export function streamError(error: Record<string, unknown>): AlveareError {
  const code = str(error.code);
  const Cls = code === 'timeout' ? APITimeoutError : ServerError;
  return new Cls(str(error.message) ?? 'The stream ended with an error.', {
    status: code === 'timeout' ? 504 : 500,
    code,
    type: str(error.type),
    requestId: str(error.request_id),
  });
}
