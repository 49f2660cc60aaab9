// The official openai Node SDK against a live Alveare: what an app migrated from OpenAI does.
// Env: OPENAI_BASE_URL, OPENAI_API_KEY. Prints "ok NAME" per check, "FAILED NAME: why" on failure.
import OpenAI from "openai";
import { assert, check, finish } from "./harness.mjs";

const client = new OpenAI({ maxRetries: 0, timeout: 120_000 });

const ask = [{ role: "user", content: "Say hello in three words." }];

await check("chat, a dated model name", async () => {
  const r = await client.chat.completions.create({ model: "gpt-4o-2024-08-06", messages: ask, max_tokens: 12 });
  assert(r.object === "chat.completion" && r.choices[0].message.role === "assistant", JSON.stringify(r));
  assert(typeof r.choices[0].message.content === "string" && r.usage.completion_tokens > 0, JSON.stringify(r));
});

await check("chat, streamed with usage", async () => {
  const stream = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: ask,
    max_tokens: 12,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      text += choice.delta?.content ?? "";
      finish = choice.finish_reason ?? finish;
    }
  }
  assert(text.length > 0 && usage?.completion_tokens > 0 && finish, `${text} ${JSON.stringify(usage)} ${finish}`);
});

await check("models.list", async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert(ids.includes("alveare-chat"), ids.join(","));
});

await check("an unknown model is a NotFoundError", async () => {
  try {
    await client.chat.completions.create({ model: "no-such-model", messages: ask, max_tokens: 4 });
    throw new Error("no error");
  } catch (err) {
    assert(err instanceof OpenAI.NotFoundError && err.status === 404 && err.code === "model_not_found", `${err}`);
  }
});

await check("a bad key is an AuthenticationError", async () => {
  const bad = new OpenAI({ apiKey: "alv_live_nope", maxRetries: 0 });
  try {
    await bad.models.list();
    throw new Error("no error");
  } catch (err) {
    assert(err instanceof OpenAI.AuthenticationError && err.status === 401, `${err}`);
  }
});

await check("cached_tokens in usage", async () => {
  const messages = [{ role: "system", content: "You answer briefly. ".repeat(10) }, ...ask];
  await client.chat.completions.create({ model: "chat", messages, max_tokens: 4 });
  const r = await client.chat.completions.create({ model: "chat", messages, max_tokens: 4 });
  assert(r.usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(r.usage));
});

await check("json_object mode parses", async () => {
  const r = await client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "A JSON object describing a dog." }],
    response_format: { type: "json_object" },
    max_tokens: 300,
    temperature: 0,
  });
  const text = r.choices[0].message.content;
  assert(text.trimStart().startsWith("{"), text);
  if (r.choices[0].finish_reason === "stop") assert(typeof JSON.parse(text) === "object", text);
});

await check("json_schema streamed validates", async () => {
  const schema = {
    type: "object",
    // Bounded and greedy: a 135M model sampled with an unbounded string can run past max_tokens.
    properties: { city: { type: "string", maxLength: 40 }, population: { type: "integer" } },
    required: ["city", "population"],
    additionalProperties: false,
  };
  const stream = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "Name a city and its population." }],
    response_format: { type: "json_schema", json_schema: { name: "city", schema, strict: true } },
    max_tokens: 100,
    temperature: 0,
    stream: true,
  });
  let text = "";
  let finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert(finish === "stop", `finish ${finish}: ${text}`);
  const value = JSON.parse(text);
  assert(typeof value.city === "string" && Number.isInteger(value.population), text);
  assert(Object.keys(value).sort().join() === "city,population", text);
});

await check("a schema without a name is a BadRequestError naming it", async () => {
  try {
    await client.chat.completions.create({
      model: "chat",
      messages: ask,
      response_format: { type: "json_schema", json_schema: { schema: { type: "object" } } },
    });
    throw new Error("no error");
  } catch (err) {
    assert(err instanceof OpenAI.BadRequestError && err.param === "response_format.json_schema.name", `${err}`);
  }
});

await check("logprobs, streamed", async () => {
  const stream = await client.chat.completions.create({
    model: "chat",
    messages: ask,
    max_tokens: 5,
    temperature: 0,
    logprobs: true,
    top_logprobs: 2,
    stream: true,
  });
  const content = [];
  for await (const chunk of stream) content.push(...(chunk.choices[0]?.logprobs?.content ?? []));
  assert(content.length >= 1 && content.every((t) => t.logprob <= 0 && t.top_logprobs.length === 2), JSON.stringify(content));
});

await check("n choices, streamed, by index", async () => {
  const stream = await client.chat.completions.create({ model: "chat", messages: ask, n: 3, max_tokens: 8, stream: true });
  const done = new Set();
  for await (const chunk of stream) for (const c of chunk.choices) if (c.finish_reason) done.add(c.index);
  assert([...done].sort().join() === "0,1,2", [...done].join());
});

await check("seed repeats the text", async () => {
  const body = { model: "chat", messages: ask, max_tokens: 12, temperature: 1, seed: 99 };
  await client.chat.completions.create(body);
  const a = await client.chat.completions.create(body);
  const b = await client.chat.completions.create(body);
  assert(a.choices[0].message.content === b.choices[0].message.content, "seeded answers differ");
});

await check("legacy completions: prompt list with logprobs", async () => {
  const r = await client.completions.create({
    model: "gpt-3.5-turbo-instruct",
    prompt: ["Roses are", "Violets are"],
    max_tokens: 4,
    logprobs: 1,
    temperature: 0,
  });
  assert(r.choices.map((c) => c.index).join() === "0,1", JSON.stringify(r.choices));
  assert(r.choices.every((c) => c.logprobs.tokens.join("") === c.text), JSON.stringify(r.choices));
});

await check("logit_bias forces a token", async () => {
  const body = { model: "chat", messages: ask, max_tokens: 3, temperature: 0, logprobs: true };
  const forced = async (id) =>
    (await client.chat.completions.create({ ...body, logit_bias: { [id]: 100 } })).choices[0].logprobs.content.map(
      (t) => t.token,
    );
  const a = await forced(1000);
  const b = await forced(2000);
  assert(a.length === 3 && new Set(a).size === 1 && new Set(b).size === 1 && a[0] !== b[0], `${a} / ${b}`);
});

await check("stop, penalties, max_completion_tokens, user and unknown fields", async () => {
  const r = await client.chat.completions.create({
    model: "chat",
    messages: [{ role: "user", content: "Count from one to ten in words, separated by commas." }],
    max_completion_tokens: 30,
    stop: ["five"],
    presence_penalty: 0.5,
    frequency_penalty: 0.5,
    temperature: 0,
    user: "user-123",
    // @ts-ignore an unknown field a newer SDK might send
    some_future_field: { x: 1 },
  });
  assert(!r.choices[0].message.content.includes("five") && r.usage.completion_tokens <= 30, JSON.stringify(r));
});

await check("legacy completions: echo, streamed", async () => {
  const stream = await client.completions.create({ model: "chat", prompt: "The sky is", max_tokens: 3, echo: true, stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
  assert(text.startsWith("The sky is") && text.length > "The sky is".length, text);
});

finish();
