// One contender for the state lock: prints "got" or "held: <message>", then (if it got it) holds the
// lock until its stdin closes. Used by test/integration/state/lock.test.ts with the built dist/.
import { FileStateStore } from '../../dist/state/file-state-store.js';

const store = new FileStateStore({ dir: process.argv[2] });
try {
  const release = await store.lock();
  process.stdout.write('got\n');
  process.stdin.resume();
  process.stdin.on('end', async () => {
    await release();
    process.exit(0);
  });
} catch (err) {
  process.stdout.write(`held: ${err.code} ${err.message}\n`);
  process.exit(0);
}
