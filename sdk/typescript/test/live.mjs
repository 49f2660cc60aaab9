// The built package against a live Alveare server, through its ESM and CommonJS entry points.
// Run by tests/sdk/test_typescript.py:
//   ALVEARE_BASE_URL=... ALVEARE_API_KEY=<scale key> ALVEARE_ADMIN_KEY=... ALVEARE_SOLO_KEY=... node test/live.mjs
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import * as esm from '@alveare/sdk';

const cjs = createRequire(import.meta.url)('@alveare/sdk');
const { ALVEARE_ADMIN_KEY, ALVEARE_SOLO_KEY } = process.env;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (err) {
    console.log(`FAILED ${name}: ${err?.stack ?? err}`);
    process.exitCode = 1;
  }
}

async function rejects(promise, Cls, fields) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof Cls, `expected ${Cls.name}, got ${err?.constructor?.name}: ${err?.message}`);
    assert.ok(err instanceof esm.AlveareError);
    for (const [k, v] of Object.entries(fields)) assert.equal(err[k], v, `${Cls.name}.${k}`);
    assert.match(err.requestId ?? '', /^req_/);
    return err;
  }
  assert.fail(`expected ${Cls.name}, but the call succeeded`);
}

// baseURL and apiKey come from ALVEARE_BASE_URL and ALVEARE_API_KEY.
const client = new esm.Alveare();

await check('the spec example: infer', async () => {
  const response = await client.infer({
    specialist: 'summarise',
    prompt: 'Summarise this quarterly report: revenue grew 23% to $4.2B, driven by cloud.',
    maxTokens: 16,
  });
  assert.equal(typeof response.result, 'string');
  assert.ok(response.result.length > 0);
  assert.equal(response.specialist, 'summarise');
  assert.ok(response.tokens_used > 0);
  assert.ok(response.latency_ms >= 0);
});

await check('chat', async () => {
  const completion = await client.chat({
    specialist: 'alveare-classify',
    messages: [{ role: 'user', content: 'I love this product!' }],
    maxTokens: 4,
    temperature: 0,
  });
  assert.equal(completion.object, 'chat.completion');
  assert.equal(typeof completion.choices[0].message.content, 'string');
  assert.ok(completion.usage.total_tokens > 0);
});

await check('chatStream', async () => {
  const pieces = [];
  for await (const text of client.chatStream({ specialist: 'chat', messages: 'Say hello.', maxTokens: 8 })) {
    pieces.push(text);
  }
  assert.ok(pieces.length > 0);
  assert.ok(pieces.join('').length > 0);
});

await check('models', async () => {
  const models = await client.models();
  assert.ok(models.data.some((m) => m.id === 'alveare-summarise'));
});

await check('usage', async () => {
  const usage = await client.usage();
  assert.ok(usage.requests_used >= 1);
  assert.ok('summarise' in usage.by_specialist);
});

await check('health', async () => {
  const health = await new esm.Alveare({ apiKey: undefined }).health();
  assert.equal(health.status, 'ok');
});

await check('specialists: list, update, reset', async () => {
  const list = await client.specialists.list();
  assert.ok(list.data.some((s) => s.name === 'summarise'));
  const updated = await client.specialists.update('summarise', { systemPrompt: 'Answer in one line.' });
  assert.equal(updated.custom, true);
  assert.equal(updated.system_prompt, 'Answer in one line.');
  const reset = await client.specialists.reset('summarise');
  assert.equal(reset.custom, false);
});

await check('hiveStatus with an admin key', async () => {
  const status = await new esm.Alveare({ apiKey: ALVEARE_ADMIN_KEY }).hiveStatus();
  assert.equal(status.loaded, true);
  assert.ok(status.slots_total >= 1);
  assert.ok(status.model.name && status.kv.cells > 0 && status.cpu.threads >= 1);
  assert.deepEqual(
    status.tuning.map((line) => line.name),
    ['threads', 'idle_cpu', 'context_size', 'flash_attention', 'host_pages', 'solo_lane', 'optimized_copy'],
  );
});

await check('typed errors', async () => {
  const badKey = new esm.Alveare({ apiKey: 'alv_live_' + 'x'.repeat(39) });
  await rejects(badKey.models(), esm.AuthenticationError, { status: 401, code: 'invalid_api_key' });
  await rejects(client.infer({ specialist: 'nope', prompt: 'x' }), esm.NotFoundError, {
    status: 404,
    code: 'model_not_found',
  });
  await rejects(client.infer({ specialist: 'qa', prompt: 'x', maxTokens: 0 }), esm.BadRequestError, {
    status: 400,
    param: 'max_tokens',
  });
  await rejects(new esm.Alveare({ apiKey: 'x' }).hiveStatus(), esm.AuthenticationError, { status: 401 });
});

await check('a connection failure is an APIConnectionError after the retries', async () => {
  const dead = new esm.Alveare({ baseURL: 'http://127.0.0.1:9', maxRetries: 1 });
  try {
    await dead.models();
    assert.fail('no error');
  } catch (err) {
    assert.ok(err instanceof esm.APIConnectionError, String(err));
  }
});

await check('CommonJS: the same client', async () => {
  assert.equal(typeof cjs.Alveare, 'function');
  const response = await new cjs.Alveare().infer({ specialist: 'qa', prompt: 'What is 2+2?', maxTokens: 4 });
  assert.ok(response.tokens_used > 0);
  assert.ok(new cjs.RateLimitError('x') instanceof cjs.AlveareError);
});

await check('retries: a burst past a solo key limit completes', async () => {
  // Solo keys may send 20 requests a minute, then one every 3 s. Of 26 sent at once, 6 are refused with
  // retry-after-ms; each waits as told and asks again (one gets in per 3 s), and the caller sees only answers.
  const statuses = [];
  const counting = (url, init) =>
    fetch(url, init).then((response) => {
      statuses.push(response.status);
      return response;
    });
  const solo = new esm.Alveare({ apiKey: ALVEARE_SOLO_KEY, maxRetries: 8, fetch: counting });
  const answers = await Promise.all(
    Array.from({ length: 26 }, (_, i) => solo.infer({ specialist: 'classify', prompt: `Note ${i}.`, maxTokens: 1 })),
  );
  assert.equal(answers.length, 26);
  assert.equal(statuses.filter((s) => s === 200).length, 26);
  assert.ok(statuses.includes(429), 'the limit was never reached');
});

await check('errors the caller must fix are sent once', async () => {
  const statuses = [];
  const counting = (url, init) =>
    fetch(url, init).then((response) => {
      statuses.push(response.status);
      return response;
    });
  const strict = new esm.Alveare({ maxRetries: 5, fetch: counting });
  await rejects(strict.infer({ specialist: 'nope', prompt: 'x' }), esm.NotFoundError, {});
  await rejects(strict.hiveStatus(), esm.PermissionDeniedError, {});
  assert.deepEqual(statuses, [404, 403]);
});
