#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { InvalidArgumentError } from '../core/errors.js';
import { parseSelectors } from '../handoff/select.js';
import type { Selection } from '../handoff/engine.js';
import { EXIT, exitCodeFor, exitCodeForOutcomes } from './exit-codes.js';
import { handoffJson, handoffText, inspectJson, inspectText, progressLine } from './format.js';
import { crashHookFromEnv, createEngine, openHost } from './host.js';
import { createLineLogger } from './line-logger.js';
import { VERSION } from './version.js';

const DEFAULT_STATE_DIR = '/var/lib/vfio-handoff';

interface GlobalOpts {
  writeTimeout: number;
  hostRoot: string;
  stateDir?: string;
  profile?: string;
  json?: boolean;
  logLevel: string;
}

function hostOptions(cmd: Command): Command {
  return cmd
    .option('--host-root <dir>', 'where the host filesystem is mounted (the DaemonSet mounts it at /host)', '/')
    .option('--state-dir <dir>', `journal and records of what prepare changed (default ${DEFAULT_STATE_DIR}; not with --profile)`)
    .addOption(
      new Option(
        '--profile <name|file>',
        'run against a simulated kernel built from a host profile instead of the real host: a built-in name, or a file (a path with "/" or ending in .yaml, .yml, .json); its changes and journal live only in this process',
      ),
    )
    .option('--json', 'machine-readable output')
    .option('--log-level <level>', 'log level for stderr JSON logs', 'warn');
}

/** Progress on stderr as each step starts and ends: a run stuck in a write shows where it is. */
function progress(event: Parameters<typeof progressLine>[0]): void {
  const line = progressLine(event);
  if (line) process.stderr.write(line + '\n');
}

function writeTimeoutOption(): Option {
  return new Option('--write-timeout <seconds>', 'give up on a host write that has not returned after this long (a driver unbind can hang)')
    .default(10)
    .argParser((v: string) => {
      const n = Number(v);
      if (!/^\d+(\.\d+)?$/.test(v) || !(n >= 0.1 && n <= 3600)) throw new InvalidArgumentError(`--write-timeout must be seconds between 0.1 and 3600, not ${JSON.stringify(v)}`);
      return n;
    });
}

/** Host options with the state-dir default; --state-dir with --profile is refused rather than silently ignored. */
function hostOpts(opts: GlobalOpts): { hostRoot: string; stateDir: string; profile?: string } {
  if (opts.profile && opts.stateDir !== undefined) {
    throw new InvalidArgumentError('--state-dir cannot be used with --profile: a simulated host keeps its journal in memory, for this process only');
  }
  return { hostRoot: opts.hostRoot, stateDir: opts.stateDir ?? DEFAULT_STATE_DIR, ...(opts.profile ? { profile: opts.profile } : {}) };
}

function selection(selectors: string[], all: boolean | undefined): Selection {
  if (all && selectors.length > 0) throw new InvalidArgumentError('give GPU selectors or --all, not both');
  if (!all && selectors.length === 0) throw new InvalidArgumentError('name the GPUs (PCI address or vendor:device) or pass --all');
  return all ? { all: true } : { all: false, selectors: parseSelectors(selectors) };
}

/**
 * The long-running commands pull in client-node, grpc-js and prom-client (about half a second of module
 * loading; many seconds in the TCG guests of the kernel e2e tests), so they are only loaded when the
 * command line may need them: their own subcommand, or a help/usage listing.
 */
const LIGHT_COMMANDS = new Set(['inspect', 'prepare', 'release', 'demo']);
function needsHeavyCommands(argv: readonly string[]): boolean {
  const sub = argv.find((a) => !a.startsWith('-'));
  return sub === undefined || !LIGHT_COMMANDS.has(sub);
}

export async function buildProgram(out: (s: string) => void = (s) => process.stdout.write(s), argv: readonly string[] = []): Promise<Command> {
  const program = new Command('vfio-handoff')
    .description('Hand whole GPUs (boot GPU included) to vfio-pci for KubeVirt passthrough, and give them back.')
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: (s) => process.stderr.write(s) });

  hostOptions(program.command('inspect'))
    .description('explain, per GPU, whether it can be passed through and why not (read-only)')
    .option('--allow-boot-gpu', 'judge the boot GPU as if --allow-boot-gpu were given to prepare')
    .action(async (opts: GlobalOpts & { allowBootGpu?: boolean }) => {
      const logger = createLineLogger(opts.logLevel);
      const { host, store, simulated } = await openHost(hostOpts(opts));
      const engine = createEngine(host, store, logger, { simulated });
      const report = await engine.inspect({ allowBootGpu: opts.allowBootGpu ?? false });
      out(opts.json ? JSON.stringify(inspectJson(report), null, 2) + '\n' : inspectText(report));
    });

  hostOptions(program.command('prepare'))
    .description('move each selected GPU and its whole IOMMU group to vfio-pci')
    .argument('[gpus...]', 'PCI addresses (0000:65:00.0) or vendor:device ids (10de:2331)')
    .option('--all', 'every GPU whose verdict allows it (blocked ones are skipped and listed)')
    .option('--allow-boot-gpu', 'also take the boot GPU (its firmware console goes dark)')
    .option('--dry-run', 'print the plan, change nothing')
    .addOption(writeTimeoutOption())
    .action(async (gpus: string[], opts: GlobalOpts & { all?: boolean; allowBootGpu?: boolean; dryRun?: boolean }) => {
      const sel = selection(gpus, opts.all);
      const logger = createLineLogger(opts.logLevel);
      const { host, store, simulated } = await openHost(hostOpts(opts));
      const engine = createEngine(host, store, logger, { simulated, afterStep: crashHookFromEnv(process.env), writeTimeoutMs: opts.writeTimeout * 1000, onStep: progress });
      const report = await engine.prepare(sel, { allowBootGpu: opts.allowBootGpu ?? false, dryRun: opts.dryRun ?? false });
      out(opts.json ? JSON.stringify(handoffJson(report), null, 2) + '\n' : handoffText(report));
      process.exitCode = exitCodeForOutcomes(report.outcomes, report.recovered);
    });

  hostOptions(program.command('release'))
    .description('give each selected GPU and its IOMMU group back to the host drivers')
    .argument('[gpus...]', 'PCI addresses or vendor:device ids')
    .option('--all', 'every GPU on vfio-pci or prepared by vfio-handoff')
    .option('--force', 'release even if a process (a VM) holds /dev/vfio/<group>')
    .option('--dry-run', 'print the plan, change nothing')
    .addOption(writeTimeoutOption())
    .action(async (gpus: string[], opts: GlobalOpts & { all?: boolean; force?: boolean; dryRun?: boolean }) => {
      const sel = selection(gpus, opts.all);
      const logger = createLineLogger(opts.logLevel);
      const { host, store, simulated } = await openHost(hostOpts(opts));
      const engine = createEngine(host, store, logger, { simulated, afterStep: crashHookFromEnv(process.env), writeTimeoutMs: opts.writeTimeout * 1000, onStep: progress });
      const report = await engine.release(sel, { force: opts.force ?? false, dryRun: opts.dryRun ?? false });
      out(opts.json ? JSON.stringify(handoffJson(report), null, 2) + '\n' : handoffText(report));
      process.exitCode = exitCodeForOutcomes(report.outcomes, report.recovered);
    });

  // Only the module of the requested subcommand is loaded (all of them for help and usage errors).
  if (needsHeavyCommands(argv)) {
    const sub = argv.find((a) => !a.startsWith('-'));
    if (sub !== 'operator') {
      const { registerAgentCommand, registerPluginCommand } = await import('./agent-command.js');
      registerAgentCommand(program);
      registerPluginCommand(program);
    }
    if (sub !== 'agent' && sub !== 'plugin') {
      const { registerOperatorCommand } = await import('./operator-command.js');
      registerOperatorCommand(program);
    }
  }

  program
    .command('demo')
    .description('on built-in simulated hosts: inspect → prepare → release, the device plugin, a DRA claim prepared and unprepared, and the operator (no cluster, no root)')
    .action(async () => {
      const { runDemo } = await import('./demo.js');
      const { demoDevicePlugin, demoOperator } = await import('./demo-cluster.js');
      const { demoDra } = await import('./demo-dra.js');
      await runDemo(out, [demoDevicePlugin, demoDra, demoOperator]);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(undefined, argv);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.OK : EXIT.INVALID_ARGUMENT;
    }
    const code = exitCodeFor(err);
    const e = err as { code?: string; message?: string; reasons?: unknown };
    if (process.argv.includes('--json')) {
      process.stdout.write(JSON.stringify({ error: { code: e.code ?? 'INTERNAL', message: e.message ?? String(err), ...(e.reasons ? { reasons: e.reasons } : {}) } }, null, 2) + '\n');
    }
    process.stderr.write(`vfio-handoff: ${e.message ?? String(err)}\n`);
    if (code === EXIT.INTERNAL && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    return code;
  }
}

// Run when executed directly (not when imported by tests).
if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/cli/main.js')) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    // A serving command (agent, plugin, operator) that fails after it opened its metrics server or sockets
    // would otherwise stay alive doing nothing, and its SIGTERM handler no longer ends it. The timer is
    // unref'd: a process that ends by itself never waits for it; output to pipes and files is synchronous.
    if (code !== EXIT.OK) setTimeout(() => process.exit(code), 1000).unref();
  });
}
