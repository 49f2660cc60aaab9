// The official openai Node SDK against a live Alveare: what an app migrated from OpenAI does.
// Env: OPENAI_BASE_URL, OPENAI_API_KEY. Prints "ok NAME" per check, "FAILED NAME: why" on failure.
import OpenAI from "openai";

const client = new OpenAI({ maxRetries: 0, timeout: 120_000 });
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`FAILED ${name}: ${err?.stack ?? err}`);
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

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

process.exitCode = failed ? 1 : 0;
