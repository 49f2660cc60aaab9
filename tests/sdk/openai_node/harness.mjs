// What parity.mjs and tools.mjs share: named checks that print "ok NAME" or "FAILED NAME: why",
// and the exit status that says whether any failed.
let failed = 0;

export async function check(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`FAILED ${name}: ${err?.stack ?? err}`);
  }
}

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

export function finish() {
  process.exitCode = failed ? 1 : 0;
}
