// Module resolve hook used on the host to learn which files the built CLI loads (see cli-bundle.ts).
// Registered with module.register(); every resolved file: URL is appended to $VFIO_E2E_TRACE.
import { appendFileSync } from 'node:fs';

export async function resolve(specifier, context, nextResolve) {
  const result = await nextResolve(specifier, context);
  const file = process.env.VFIO_E2E_TRACE;
  if (file && result.url.startsWith('file:')) appendFileSync(file, `${result.url}\n`);
  return result;
}
