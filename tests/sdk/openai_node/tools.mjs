// Function calling with the official openai Node SDK against a live Alveare (the embedded model's
// template has no tool format: the documented fallback). Calls may be silly; their shape never is.
// Env: OPENAI_BASE_URL, OPENAI_API_KEY. Prints "ok NAME" per check, "FAILED NAME: why" on failure.
import OpenAI from "openai";
import { assert, check, finish } from "./harness.mjs";

const client = new OpenAI({ maxRetries: 0, timeout: 180_000 });

const schemas = {
  get_weather: {
    type: "object",
    properties: { city: { type: "string", maxLength: 24 }, unit: { enum: ["celsius", "fahrenheit"] } },
    required: ["city", "unit"],
    additionalProperties: false,
  },
  add: {
    type: "object",
    properties: { a: { type: "integer" }, b: { type: "integer" } },
    required: ["a", "b"],
    additionalProperties: false,
  },
};
const tools = Object.entries(schemas).map(([name, parameters]) => ({
  type: "function",
  function: { name, description: name === "add" ? "Add two integers." : "The weather in a city.", parameters },
}));
const ask = [{ role: "user", content: "What is the weather like in Paris today?" }];

// Just enough JSON Schema for the schemas above.
function valid(value, schema) {
  if (schema.enum) return schema.enum.includes(value);
  if (schema.type === "object") {
    const props = schema.properties ?? {};
    if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
    if (!(schema.required ?? []).every((k) => k in value)) return false;
    if (schema.additionalProperties === false && !Object.keys(value).every((k) => k in props)) return false;
    return Object.entries(value).every(([k, v]) => !(k in props) || valid(v, props[k]));
  }
  if (schema.type === "string") return typeof value === "string" && value.length <= (schema.maxLength ?? Infinity);
  if (schema.type === "integer") return Number.isInteger(value);
  return true;
}

function checkCall(call, allowed) {
  assert(call.id?.startsWith("call_") && call.type === "function", JSON.stringify(call));
  assert(allowed.includes(call.function.name), JSON.stringify(call));
  const args = JSON.parse(call.function.arguments);
  assert(valid(args, schemas[call.function.name]), call.function.arguments);
}

// Accumulate a stream as the SDKs do: one delta per index in a chunk; id, type, name and the first
// arguments once per index, then argument fragments.
async function streamed(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  const calls = [];
  let content = null;
  let finish = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    finish = choice.finish_reason ?? finish;
    if (choice.delta?.content) content = (content ?? "") + choice.delta.content;
    const indexes = (choice.delta?.tool_calls ?? []).map((d) => d.index);
    assert(new Set(indexes).size === indexes.length, `two deltas for one index in a chunk ${JSON.stringify(chunk)}`);
    for (const d of choice.delta?.tool_calls ?? []) {
      if (!calls[d.index]) {
        assert(d.id && d.type === "function" && d.function?.name && d.function?.arguments, `first delta ${JSON.stringify(d)}`);
        calls[d.index] = { id: d.id, type: d.type, function: { name: d.function.name, arguments: "" } };
      } else {
        assert(!d.id && !d.type && !d.function?.name, `repeated head ${JSON.stringify(d)}`);
      }
      calls[d.index].function.arguments += d.function?.arguments ?? "";
    }
  }
  return { content, calls, finish };
}

await check("required call, not streamed", async () => {
  const r = await client.chat.completions.create({
    model: "gpt-4o",
    messages: ask,
    tools,
    tool_choice: "required",
    parallel_tool_calls: false,
    max_tokens: 80,
  });
  const choice = r.choices[0];
  assert(choice.finish_reason === "tool_calls" && choice.message.content === null, JSON.stringify(choice));
  assert(choice.message.tool_calls.length === 1, JSON.stringify(choice));
  checkCall(choice.message.tool_calls[0], Object.keys(schemas));
});

await check("named function, streamed", async () => {
  const { content, calls, finish } = await streamed({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "What is 2 plus 3?" }],
    tools,
    tool_choice: { type: "function", function: { name: "add" } },
    parallel_tool_calls: false,
    max_tokens: 80,
  });
  assert(finish === "tool_calls" && content === null && calls.length === 1, JSON.stringify({ content, calls, finish }));
  checkCall(calls[0], ["add"]);
});

await check("the SDK's stream helper assembles the call", async () => {
  const runner = client.chat.completions.stream({
    model: "chat",
    messages: ask,
    tools,
    tool_choice: "required",
    parallel_tool_calls: false,
    max_tokens: 80,
  });
  const final = await runner.finalChatCompletion();
  const choice = final.choices[0];
  assert(choice.finish_reason === "tool_calls" && choice.message.tool_calls.length === 1, JSON.stringify(choice));
  checkCall(choice.message.tool_calls[0], Object.keys(schemas));
});

await check("forced calls with parallel calls allowed end with tool_calls, never a repeat", async () => {
  for (const tool_choice of ["required", { type: "function", function: { name: "get_weather" } }]) {
    const { calls, finish } = await streamed({ model: "chat", messages: ask, tools, tool_choice, max_tokens: 200, temperature: 0 });
    assert(finish === "tool_calls" && calls.length >= 1, JSON.stringify({ calls, finish }));
    const keys = calls.map((c) => c.function.name + JSON.stringify(JSON.parse(c.function.arguments)));
    assert(new Set(keys).size === keys.length, `a repeated call ${JSON.stringify(calls)}`);
    if (typeof tool_choice === "object") assert(calls.length === 1, "a named function is one call");
    calls.forEach((c) => checkCall(c, Object.keys(schemas)));
  }
});

await check("auto answers in text or calls, and both parse", async () => {
  for (const stream of [false, true]) {
    const params = { model: "chat", messages: ask, tools, parallel_tool_calls: false, max_tokens: 40, seed: 7 };
    let content, calls, finish;
    if (stream) {
      ({ content, calls, finish } = await streamed(params));
    } else {
      const r = await client.chat.completions.create(params);
      ({ content } = r.choices[0].message);
      calls = r.choices[0].message.tool_calls ?? [];
      finish = r.choices[0].finish_reason;
    }
    if (calls.length) {
      assert(content === null && ["tool_calls", "length"].includes(finish), JSON.stringify({ content, finish }));
      calls.forEach((c) => checkCall(c, Object.keys(schemas)));
    } else {
      assert(content && !content.startsWith("<") && ["stop", "length"].includes(finish), `${content} ${finish}`);
    }
  }
});

await check("tool_choice none is plain text", async () => {
  const r = await client.chat.completions.create({ model: "chat", messages: ask, tools, tool_choice: "none", max_tokens: 12 });
  const { message } = r.choices[0];
  assert(!message.tool_calls && message.content && r.choices[0].finish_reason !== "tool_calls", JSON.stringify(r));
});

await check("history with a call and its result", async () => {
  const r = await client.chat.completions.create({
    model: "chat",
    messages: [
      { role: "user", content: "What is 2 plus 3?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "call_1", type: "function", function: { name: "add", arguments: '{"a": 2, "b": 3}' } }],
      },
      { role: "tool", tool_call_id: "call_1", content: "5" },
    ],
    tools,
    tool_choice: "none",
    max_tokens: 12,
  });
  assert(typeof r.choices[0].message.content === "string", JSON.stringify(r));
});

async function badRequest(params, param) {
  try {
    await client.chat.completions.create({ model: "chat", messages: ask, max_tokens: 4, ...params });
    throw new Error("no error");
  } catch (err) {
    assert(err instanceof OpenAI.BadRequestError && err.status === 400 && err.param === param, `${err} ${err.param}`);
  }
}

await check("a bad tool schema is a BadRequestError naming it", async () => {
  const bad = [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { tags: { type: "array", uniqueItems: true } } } } }];
  await badRequest({ tools: bad }, "tools[0].function.parameters");
});

await check("tool_choice naming an unknown function is a BadRequestError", async () => {
  await badRequest({ tools, tool_choice: { type: "function", function: { name: "nope" } } }, "tool_choice");
});

finish();
