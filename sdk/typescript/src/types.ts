// The server's responses, as they come over the wire (snake_case, as the OpenAI SDKs keep them).
// Mirrors the Python SDK's alveare/types.py, which the server itself encodes with.

export interface InferResponse {
  id: string;
  specialist: string;
  result: string;
  tokens_used: number;
  latency_ms: number;
  prompt_tokens: number;
  completion_tokens: number;
  finish_reason: string;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: string; content: string | null; refusal?: string | null };
    finish_reason: string;
    logprobs: null;
  }>;
  usage: Usage;
  system_fingerprint?: string | null;
}

export interface Model {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

export interface ModelList {
  object: 'list';
  data: Model[];
}

export interface UsageReport {
  period_start: string;
  period_end: string;
  requests_used: number;
  requests_limit: number;
  tokens_used: number;
  by_specialist: Record<string, number>;
  plan: string;
  overage_requests: number;
  spending: number;
  spending_cap: number | null;
  test_requests: number;
}

export interface Health {
  status: string;
  version: string;
  uptime_seconds: number;
  model_loaded: boolean;
  model: string | null;
}

export interface SpecialistView {
  object: 'specialist';
  name: string;
  model: string;
  description: string;
  system_prompt: string;
  custom: boolean;
  enabled: boolean;
}

export interface SpecialistList {
  object: 'list';
  data: SpecialistView[];
  custom_prompts_allowed: boolean;
}

export interface HiveStatus {
  version: string;
  uptime_seconds: number;
  model: string;
  device: string;
  slots_total: number;
  slots_busy: number;
  queue_depth: number;
  tokens_per_second: number;
  requests_served: number;
  loaded: boolean;
  [field: string]: unknown;
}

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
