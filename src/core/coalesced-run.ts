/**
 * "Run now, or once more after the current run": serialises an async job so runs never overlap, and
 * folds every request that arrives during a run into exactly one follow-up run. The device plugin's host
 * rescans, the node agent's passes and the simulated agents' answers all need this: a trigger during a
 * run must not be lost (the run may have read the world before the change), yet ten triggers during one
 * run are worth one more run, not ten.
 */
export class CoalescedRun {
  private current: Promise<void> | undefined;
  private again = false;

  /**
   * @param job one run; a rejection ends the chain (no follow-up) and rejects the promise every caller of
   *   this chain got.
   * @param keepGoing asked before each follow-up run; false drops it (e.g. the owner is stopping).
   */
  constructor(
    private readonly job: () => Promise<void>,
    private readonly keepGoing: () => boolean = () => true,
  ) {}

  /**
   * Starts a run, or — while one is running — asks for one more after it. Resolves (or rejects) when the
   * chain of runs that covers this request has finished. A request made from inside the job itself also
   * asks for one more run; its promise must not be awaited there (it waits for the chain it is part of).
   */
  trigger(): Promise<void> {
    if (this.current) {
      this.again = true;
      return this.current;
    }
    const chain = (async () => {
      try {
        do {
          this.again = false;
          await this.job();
        } while (this.again && this.keepGoing());
      } finally {
        this.again = false;
        this.current = undefined;
      }
    })();
    this.current = chain;
    return chain;
  }

  /** Whether a run is in progress. */
  get running(): boolean {
    return this.current !== undefined;
  }

  /** Resolves when no run is in progress; never rejects. */
  async settled(): Promise<void> {
    await this.current?.catch(() => undefined);
  }
}
