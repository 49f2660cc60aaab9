// The server's responses, as they come over the wire (snake_case, as the OpenAI SDKs keep them).
// Generated: src/openapi.ts is openapi-typescript's output for the server's own OpenAPI schema
// (openapi.json; `python sdk/typescript/scripts/openapi_schema.py` writes both), whose answers are the
// Python SDK's alveare/types.py, which the server itself encodes with. Only the names are given here.

import type { components } from './openapi.js';

export type { components, operations, paths } from './openapi.js';

type Schemas = components['schemas'];

export type InferResponse = Schemas['InferResponse'];
export type Usage = Schemas['Usage'];
export type ChatCompletion = Schemas['ChatCompletion'];
export type Completion = Schemas['Completion'];
export type Model = Schemas['Model'];
export type ModelList = Schemas['ModelList'];
export type ModelInfo = Schemas['ModelInfo'];
export type UsageReport = Schemas['UsageReport'];
export type Health = Schemas['Health'];
export type SpecialistView = Schemas['SpecialistView'];
export type SpecialistList = Schemas['SpecialistList'];
/** GET /v1/hive/status: nested by subject (model, kv, cpu, tuning), then the counters and traffic. */
export type HiveStatus = Schemas['HiveStatus'];
export type ModelStatus = Schemas['ModelStatus'];
export type KvStatus = Schemas['KvStatus'];
export type CpuStatus = Schemas['CpuStatus'];
/** One machine-tuning piece: its name, whether it is on, the serve flag that governs it, its state. */
export type TuningLine = Schemas['TuningLine'];
export type HiveSample = Schemas['HiveSample'];
export type ErrorEnvelope = Schemas['ErrorEnvelope'];

// What the caller passes in (camelCase options, not wire shapes).

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant';
  content: string;
}

export interface InferParams {
  specialist: string;
  prompt: string;
  maxTokens?: number;
  temperature?: number;
}

export interface ChatParams {
  /** Any model name the server accepts: summarise, alveare-summarise, gpt-4o, ... */
  specialist: string;
  /** The conversation, or one user message. */
  messages: ChatMessage[] | string;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  stop?: string | string[];
}

export interface RequestOptions {
  /** Milliseconds; overrides the client's timeout for this call. */
  timeout?: number;
  /** Overrides the client's maxRetries for this call. */
  maxRetries?: number;
  signal?: AbortSignal;
}
