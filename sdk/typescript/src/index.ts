// @alveare/sdk: the TypeScript/JavaScript client of an Alveare server.
//
//   import { Alveare } from '@alveare/sdk';
//   const client = new Alveare({ apiKey: 'alv_live_...', baseURL: 'http://127.0.0.1:8080' });
//   const response = await client.infer({ specialist: 'summarise', prompt: '...', maxTokens: 256 });
//   console.log(response.result);

export { Alveare, DEFAULT_BASE_URL, VERSION, retryWait } from './client.js';
export type { ClientOptions } from './client.js';
export {
  AlveareError,
  APIConnectionError,
  APIStatusError,
  APITimeoutError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  NotFoundError,
  OverloadedError,
  PermissionDeniedError,
  QuotaExceededError,
  RateLimitError,
  ServerError,
} from './errors.js';
export type * from './types.js';
