/** An AbortSignal that fires on SIGTERM/SIGINT: long-running commands stop serving cleanly on it. */
export function shutdownSignal(): AbortSignal {
  const ac = new AbortController();
  const stop = (sig: NodeJS.Signals): void => {
    if (!ac.signal.aborted) ac.abort(new Error(`received ${sig}`));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return ac.signal;
}

export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
