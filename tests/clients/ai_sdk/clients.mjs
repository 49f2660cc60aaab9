// The Vercel AI SDK (ai 5, @ai-sdk/openai-compatible) against a live Alveare, in its documented usage:
// text, streamed text, tools (required, named, auto, streamed, a round trip with a tool result) and
// structured objects. Run by tests/clients/test_node_clients.py with OPENAI_BASE_URL and OPENAI_API_KEY.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, streamObject, streamText, tool } from "ai";
import { z } from "zod";
import { assert, check, finish } from "../../sdk/openai_node/harness.mjs";

const provider = createOpenAICompatible({
  name: "alveare",
  baseURL: process.env.OPENAI_BASE_URL,
  apiKey: process.env.OPENAI_API_KEY,
  supportsStructuredOutputs: true,
});
const model = provider("chat");
const base = { model, maxOutputTokens: 100, temperature: 0, maxRetries: 0 };
const ask = "What is the weather like in Paris today?";
const ran = [];
const tools = {
  getWeather: tool({
    description: "The current weather in a city.",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => {
      ran.push(city);
      return "18 C, sunny";
    },
  }),
};
const Weather = z.object({ city: z.string(), unit: z.enum(["celsius", "fahrenheit"]) });

await check("generateText", async () => {
  const r = await generateText({ ...base, prompt: "Say hi" });
  assert(r.text.length > 0 && ["stop", "length"].includes(r.finishReason), JSON.stringify(r.finishReason));
});

await check("streamText", async () => {
  const whole = await generateText({ ...base, prompt: "Say hi" });
  const r = streamText({ ...base, prompt: "Say hi" });
  let text = "";
  for await (const piece of r.textStream) text += piece;
  assert(text === whole.text, `${JSON.stringify(text)} != ${JSON.stringify(whole.text)}`);
});

for (const [name, toolChoice] of [
  ["required", "required"],
  ["named", { type: "tool", toolName: "getWeather" }],
]) {
  await check(`tools ${name}: the SDK runs the tool`, async () => {
    ran.length = 0;
    const r = await generateText({ ...base, prompt: ask, tools, toolChoice });
    assert(r.finishReason === "tool-calls", `finishReason ${r.finishReason}`);
    assert(r.toolCalls.length >= 1 && r.toolCalls.every((c) => c.toolName === "getWeather"), JSON.stringify(r.toolCalls));
    assert(r.toolResults.length === r.toolCalls.length && ran.length === r.toolCalls.length, JSON.stringify(r.toolResults));
    if (name === "named") assert(r.toolCalls.length === 1, "a named tool is called once");
  });
}

await check("tools streamed: the SDK runs the tool", async () => {
  ran.length = 0;
  const r = streamText({ ...base, prompt: ask, tools, toolChoice: "required" });
  const calls = await r.toolCalls;
  const results = await r.toolResults;
  assert((await r.finishReason) === "tool-calls", "finishReason");
  assert(calls.length >= 1 && results.length === calls.length && typeof calls[0].input.city === "string", JSON.stringify(calls));
});

await check("tools auto: text or calls", async () => {
  const r = await generateText({ ...base, prompt: ask, tools });
  assert(r.text.length > 0 || r.toolCalls.length > 0, "an empty answer");
});

await check("tool round trip", async () => {
  const r = await generateText({
    ...base,
    tools,
    messages: [
      { role: "user", content: ask },
      { role: "assistant", content: [{ type: "tool-call", toolCallId: "call_1", toolName: "getWeather", input: { city: "Paris" } }] },
      { role: "tool", content: [{ type: "tool-result", toolCallId: "call_1", toolName: "getWeather", output: { type: "text", value: "18 C, sunny" } }] },
    ],
  });
  assert(r.text.length > 0 || r.toolCalls.length > 0, "an empty answer");
  assert(r.response.messages.length >= 1, "no response messages");
});

await check("generateObject", async () => {
  const r = await generateObject({ ...base, schema: Weather, prompt: ask });
  Weather.parse(r.object);
});

await check("streamObject", async () => {
  const r = streamObject({ ...base, schema: Weather, prompt: ask });
  for await (const _ of r.partialObjectStream);
  Weather.parse(await r.object);
});

finish();
