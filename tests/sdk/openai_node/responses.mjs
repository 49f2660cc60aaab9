// The Responses API with the official openai Node SDK against a live Alveare (stateless): text,
// streamed events, function tools and text.format json_schema. Env: OPENAI_BASE_URL, OPENAI_API_KEY.
import OpenAI from "openai";
import { assert, check, finish } from "./harness.mjs";

const client = new OpenAI({ maxRetries: 0, timeout: 180_000 });
const tools = [
  {
    type: "function",
    name: "get_weather",
    description: "The current weather in a city.",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
    strict: true,
  },
];

await check("responses.create with instructions", async () => {
  const r = await client.responses.create({ model: "chat", instructions: "Be brief.", input: "Capital of France?", max_output_tokens: 40 });
  assert(r.object === "response" && r.output_text.length > 0 && r.usage.output_tokens > 0, JSON.stringify(r));
});

await check("responses.stream assembles the final response", async () => {
  const stream = client.responses.stream({ model: "chat", input: "What is the capital of France? One sentence.", max_output_tokens: 200, temperature: 0 });
  let text = "";
  for await (const event of stream) if (event.type === "response.output_text.delta") text += event.delta;
  const final = await stream.finalResponse();
  const said = final.output.filter((o) => o.type === "message").flatMap((o) => o.content.map((c) => c.text)).join("");
  assert(text.length > 0 && said === text && final.status === "completed", JSON.stringify(final));
});

await check("function tools", async () => {
  const r = await client.responses.create({ model: "chat", input: "Weather in Paris?", tools, tool_choice: "required", max_output_tokens: 120 });
  const calls = r.output.filter((o) => o.type === "function_call");
  assert(calls.length >= 1 && calls.every((c) => c.name === "get_weather" && typeof JSON.parse(c.arguments).city === "string"), JSON.stringify(r.output));
});

await check("text.format json_schema", async () => {
  const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false };
  const r = await client.responses.create({
    model: "chat",
    input: "Weather in Paris?",
    text: { format: { type: "json_schema", name: "weather", schema, strict: true } },
    max_output_tokens: 60,
  });
  assert(typeof JSON.parse(r.output_text).city === "string", r.output_text);
});

await check("previous_response_id is a BadRequestError", async () => {
  try {
    await client.responses.create({ model: "chat", input: "hi", previous_response_id: "resp_1" });
  } catch (err) {
    assert(err instanceof OpenAI.BadRequestError && err.param === "previous_response_id", String(err));
    return;
  }
  throw new Error("no error");
});

finish();
