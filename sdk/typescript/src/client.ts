// The Alveare client: fetch (Node 18+ and browsers), typed errors, retries with backoff and jitter.

import {
  AlveareError,
  APIConnectionError,
  APITimeoutError,
  AuthenticationError,
  QuotaExceededError,
  ServerError,
  errorFromResponse,
  retryAfterSeconds,
  streamError,
} from './errors.js';
import type {
  ChatCompletion,
  ChatParams,
  Health,
  HiveStatus,
  InferParams,
  InferResponse,
  ModelList,
  RequestOptions,
  SpecialistList,
  SpecialistView,
  UsageReport,
} from './types.js';

export const VERSION = '0.1.0';
export const DEFAULT_BASE_URL = 'http://127.0.0.1:8080';
const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_RETRIES = 2;
const INITIAL_BACKOFF_S = 0.5;
const MAX_BACKOFF_S = 8;
// A server asking for a longer wait than this gets an error back instead of a stalled caller.
const MAX_RETRY_AFTER_S = 60;
const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);
const NEVER_RETRY_STATUSES = new Set([400, 401, 403, 404]);

export interface ClientOptions {
  /** Default: the ALVEARE_API_KEY environment variable (Node). */
  apiKey?: string;
  /** The server, with or without /v1. Default: ALVEARE_BASE_URL (Node), else http://127.0.0.1:8080. */
  baseURL?: string;
  /** Milliseconds to wait for an answer (for a stream: for its start). Default 60000. */
  timeout?: number;
  /** Retries of a failed request (429, 5xx, connection failures). Default 2. */
  maxRetries?: number;
  /** A fetch implementation; default the global one. */
  fetch?: typeof fetch;
}

interface Call {
  method: string;
  path: string;
  body?: unknown;
  auth?: boolean;
}

function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name] || undefined;
}

/**
 * The server on this machine, by the variables `alveare serve` reads (ALVEARE_HOST, ALVEARE_PORT):
 * HTTP on loopback, HTTPS where serve listens beyond it (unless ALVEARE_INSECURE_HTTP is set), a
 * wildcard address reached on loopback. The Python SDK's alveare.config.local_server, the same rule.
 */
export function localServer(): string {
  let host = env('ALVEARE_HOST') ?? '127.0.0.1';
  const port = env('ALVEARE_PORT') ?? '8080';
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new AlveareError(`ALVEARE_PORT must be a port number (1-65535), not ${JSON.stringify(port)}.`);
  }
  const loopback = host === 'localhost' || host.startsWith('127.') || host === '::1';
  const insecure = ['1', 'true', 'yes', 'on'].includes((env('ALVEARE_INSECURE_HTTP') ?? '').toLowerCase());
  if (host === '0.0.0.0' || host === '::') host = '127.0.0.1';
  if (host.includes(':')) host = `[${host}]`;
  return `${!loopback && !insecure ? 'https' : 'http'}://${host}:${port}`;
}

function serverRoot(url: string): string {
  const trimmed = url.trim().replace(/\/+$/, '');
  if (!/^https?:\/\//.test(trimmed)) {
    throw new AlveareError(`The base URL must start with http:// or https://, not ${JSON.stringify(url)}.`);
  }
  return trimmed.replace(/\/v1$/, '');
}

function headersOf(response: Response): Record<string, string> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    headers[name.toLowerCase()] = value;
  });
  return headers;
}

/** Seconds to wait before retrying after `error` on try number `attempt` (0-based), or undefined: give up.
 * Retried: 429, 500, 502, 503, 504 and connection failures; Retry-After (or retry-after-ms) is the least
 * wait. Never: 400, 401, 403, 404, a spent quota, x-should-retry: false, or a timeout waiting for an answer. */
export function retryWait(
  error: AlveareError,
  attempt: number,
  maxRetries: number,
  rand: () => number = Math.random,
): number | undefined {
  if (attempt >= maxRetries) return undefined;
  const shouldRetry = error.headers['x-should-retry'];
  if (shouldRetry === 'false' || error instanceof QuotaExceededError) return undefined;
  if (error.status === undefined) {
    if (!(error instanceof APIConnectionError)) return undefined;
  } else if (NEVER_RETRY_STATUSES.has(error.status)) {
    return undefined;
  } else if (!RETRY_STATUSES.has(error.status) && shouldRetry !== 'true') {
    return undefined;
  }
  const backoff = Math.min(INITIAL_BACKOFF_S * 2 ** attempt, MAX_BACKOFF_S) * (1 - 0.25 * rand());
  const asked = retryAfterSeconds(error.headers);
  if (asked === undefined) return backoff;
  if (asked > MAX_RETRY_AFTER_S) return undefined;
  return asked + Math.min(asked, 1) * 0.25 * rand();
}

const DONE = Symbol('done');

/** The text one SSE line of a chat stream adds (undefined: none), DONE at the end; an error event throws. */
function sseText(line: string): string | typeof DONE | undefined {
  if (!line.startsWith('data:')) return undefined;
  const data = line.slice(5).trim();
  if (data === '[DONE]') return DONE;
  let event: { error?: Record<string, unknown>; choices?: Array<{ delta?: { content?: unknown } }> };
  try {
    event = JSON.parse(data);
  } catch {
    throw new ServerError(`The server's stream was not understood: ${data.slice(0, 120)}`);
  }
  if (event.error && typeof event.error === 'object') throw streamError(event.error);
  let text = '';
  for (const choice of event.choices ?? []) {
    const piece = choice?.delta?.content;
    if (typeof piece === 'string') text += piece;
  }
  return text || undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function chatBody(params: ChatParams, stream: boolean): Record<string, unknown> {
  const messages =
    typeof params.messages === 'string' ? [{ role: 'user', content: params.messages }] : params.messages;
  return {
    model: params.specialist,
    messages,
    max_tokens: params.maxTokens,
    temperature: params.temperature,
    top_p: params.topP,
    stop: params.stop,
    ...(stream ? { stream: true } : {}),
  };
}

export class Alveare {
  readonly apiKey: string | undefined;
  readonly baseURL: string;
  readonly timeout: number;
  readonly maxRetries: number;
  private readonly fetchImpl: typeof fetch;

  /** The account's view of the specialists and its own system prompts. */
  readonly specialists = {
    /** Every specialist with the system prompt in force for this account. */
    list: (options?: RequestOptions): Promise<SpecialistList> =>
      this.request({ method: 'GET', path: '/v1/specialists' }, options),
    /** Set this account's own system prompt for a specialist (professional and scale plans). */
    update: (name: string, params: { systemPrompt: string }, options?: RequestOptions): Promise<SpecialistView> =>
      this.request(
        { method: 'PUT', path: `/v1/specialists/${encodeURIComponent(name)}`, body: { system_prompt: params.systemPrompt } },
        options,
      ),
    /** Go back to the specialist's default system prompt. */
    reset: (name: string, options?: RequestOptions): Promise<SpecialistView> =>
      this.request({ method: 'DELETE', path: `/v1/specialists/${encodeURIComponent(name)}` }, options),
  };

  constructor(options: ClientOptions = {}) {
    this.apiKey = options.apiKey ?? env('ALVEARE_API_KEY');
    this.baseURL = serverRoot(options.baseURL ?? env('ALVEARE_BASE_URL') ?? localServer());
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    const found = options.fetch ?? globalThis.fetch;
    if (typeof found !== 'function') {
      throw new AlveareError('No fetch() here: use Node 18 or newer, or pass { fetch }.');
    }
    this.fetchImpl = found.bind(globalThis);
  }

  /** POST /v1/infer: a specialist's answer to a prompt (result, tokens_used, latency_ms, ...). */
  infer(params: InferParams, options?: RequestOptions): Promise<InferResponse> {
    const body = {
      specialist: params.specialist,
      prompt: params.prompt,
      max_tokens: params.maxTokens,
      temperature: params.temperature,
    };
    return this.request({ method: 'POST', path: '/v1/infer', body }, options);
  }

  /** POST /v1/chat/completions (an OpenAI chat completion). */
  chat(params: ChatParams, options?: RequestOptions): Promise<ChatCompletion> {
    return this.request({ method: 'POST', path: '/v1/chat/completions', body: chatBody(params, false) }, options);
  }

  /** chat(), streamed: yields the answer's text as it arrives (`for await (const text of ...)`). */
  async *chatStream(params: ChatParams, options?: RequestOptions): AsyncGenerator<string, void, undefined> {
    const call = { method: 'POST', path: '/v1/chat/completions', body: chatBody(params, true) };
    const { response, done } = await this.send(call, options, true);
    if (!response.body) {
      done();
      throw new ServerError('The server sent no stream.');
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          throw new APIConnectionError(`The stream from ${this.baseURL} broke off: ${String(err)}`);
        }
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n')) >= 0) {
          const text = sseText(buffer.slice(0, end).replace(/\r$/, ''));
          buffer = buffer.slice(end + 1);
          if (text === DONE) return;
          if (text) yield text;
        }
      }
    } finally {
      done();
      reader.cancel().catch(() => undefined);
    }
  }

  /** GET /v1/models: the specialists this account may use, as models. */
  models(options?: RequestOptions): Promise<ModelList> {
    return this.request({ method: 'GET', path: '/v1/models' }, options);
  }

  /** GET /v1/usage: this account's requests and tokens in the current period. */
  usage(options?: RequestOptions): Promise<UsageReport> {
    return this.request({ method: 'GET', path: '/v1/usage' }, options);
  }

  /** GET /health (no key needed). */
  health(options?: RequestOptions): Promise<Health> {
    return this.request({ method: 'GET', path: '/health', auth: false }, options);
  }

  /** GET /v1/hive/status (an admin key). */
  hiveStatus(options?: RequestOptions): Promise<HiveStatus> {
    return this.request({ method: 'GET', path: '/v1/hive/status' }, options);
  }

  private async request<T>(call: Call, options: RequestOptions = {}): Promise<T> {
    const { response, done } = await this.send(call, options, false);
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw this.transportError(err, false);
    } finally {
      done();
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ServerError(`The server's answer to ${call.method} ${call.path} was not JSON.`);
    }
  }

  private transportError(err: unknown, timedOut: boolean): AlveareError {
    if (timedOut) return new APITimeoutError(`The Alveare server at ${this.baseURL} did not answer within ${this.timeout} ms.`);
    const cause = (err as { cause?: unknown })?.cause;
    return new APIConnectionError(
      `Could not reach the Alveare server at ${this.baseURL} (${String(cause ?? err)}).`,
    );
  }

  /** The response to a call, after any retries; an error status throws. `done` clears its timer. */
  private async send(
    call: Call,
    options: RequestOptions = {},
    stream: boolean,
  ): Promise<{ response: Response; done: () => void }> {
    const auth = call.auth ?? true;
    if (auth && !this.apiKey) {
      throw new AuthenticationError('No API key: pass { apiKey } or set ALVEARE_API_KEY.');
    }
    const headers: Record<string, string> = { Accept: stream ? 'text/event-stream' : 'application/json' };
    if (auth) headers.Authorization = `Bearer ${this.apiKey}`;
    if (call.body !== undefined) headers['Content-Type'] = 'application/json';
    const timeout = options.timeout ?? this.timeout;
    const maxRetries = options.maxRetries ?? this.maxRetries;
    for (let attempt = 0; ; attempt++) {
      const controller = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeout);
      const onAbort = () => controller.abort();
      options.signal?.addEventListener('abort', onAbort);
      const done = () => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      let error: AlveareError;
      try {
        const response = await this.fetchImpl(this.baseURL + call.path, {
          method: call.method,
          headers,
          body: call.body === undefined ? undefined : JSON.stringify(call.body),
          signal: controller.signal,
        });
        if (response.ok) {
          if (stream) clearTimeout(timer); // the server bounds a stream with its own generation timeout
          return { response, done };
        }
        const text = await response.text();
        done();
        error = errorFromResponse(response.status, headersOf(response), text);
      } catch (err) {
        done();
        if (options.signal?.aborted) throw new AlveareError('The request was aborted.');
        error = this.transportError(err, timedOut);
      }
      const wait = retryWait(error, attempt, maxRetries);
      if (wait === undefined) throw error;
      await sleep(wait * 1000);
    }
  }
}
