// @ts-check
/**
 * A Stryker reporter that appends each tested mutant that was not killed (survived, no coverage, timeout)
 * to reports/mutation/<area>.live.txt as it is found, so survivors can be read while a long run goes on
 * (the clear-text and json reporters write only at the end, and a stopped run leaves nothing).
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { PluginKind, declareClassPlugin } from '@stryker-mutator/api/plugin';

class LiveReporter {
  constructor() {
    this.file = `reports/mutation/${process.env.STRYKER_AREA ?? 'handoff'}.live.txt`;
    mkdirSync('reports/mutation', { recursive: true });
    writeFileSync(this.file, '');
    this.counts = {};
  }
  /** @param {import('@stryker-mutator/api/core').MutantResult} m */
  onMutantTested(m) {
    this.counts[m.status] = (this.counts[m.status] ?? 0) + 1;
    if (m.status === 'Killed' || m.status === 'Ignored') return;
    const at = `${m.fileName.replace(process.cwd() + '/', '')}:${m.location.start.line}:${m.location.start.column}`;
    appendFileSync(this.file, `${m.status}\t${at}\t${m.mutatorName}\t${JSON.stringify(m.replacement ?? '')}\n`);
  }
  onAllMutantsTested() {
    appendFileSync(this.file, `# done ${JSON.stringify(this.counts)}\n`);
  }
}
export const strykerPlugins = [declareClassPlugin(PluginKind.Reporter, 'live', LiveReporter)];
