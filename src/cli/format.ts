import type { GroupOutcome, StepEvent } from '../handoff/executor.js';
import type { HandoffReport, InspectReport } from '../handoff/engine.js';
import { formatClass } from '../handoff/group.js';
import { vfioIommuBackendAvailable } from '../host/model.js';
import { planSteps, type Plan } from '../handoff/plan.js';
import { describeStep, stepTarget } from '../handoff/steps.js';
import type { Assessment } from '../handoff/verdict.js';

/** The stable `inspect --json` document (version 1). Field names are a public contract. */
export function inspectJson(report: InspectReport): object {
  const s = report.snapshot;
  return {
    version: 1,
    host: {
      kernelRelease: s.kernel.release ?? null,
      iommuEnabled: s.iommuEnabled,
      vfioPci: s.vfioPci,
      iommufd: s.iommufd,
      vfioIommuBackend: { available: vfioIommuBackendAvailable(s), type1: s.vfioIommuType1, iommufd: s.iommufd },
      vfioGroupNodes: s.vfioGroupNodes,
      framebuffers: s.framebuffers.map((f) => ({
        device: f.device,
        type: f.type,
        driver: f.driver ?? null,
        claim: f.claim ?? null,
        range: f.range ? { start: hex(f.range.start), end: hex(f.range.end) } : null,
        owner: f.owner ? { address: f.owner.address, bar: f.owner.bar } : null,
      })),
      vtconsoles: s.vtconsoles.map((v) => ({ name: v.name, description: v.description, bound: v.bound, kind: v.kind })),
      unreadable: s.unreadable ?? [],
    },
    gpus: report.assessments.map((a) => gpuJson(a, report.plans.get(a.gpu.fn.address))),
  };
}

function gpuJson(a: Assessment, plan: Plan | undefined): object {
  const fn = a.gpu.fn;
  return {
    address: fn.address,
    vendorId: fn.vendorId,
    deviceId: fn.deviceId,
    class: formatClass(fn.classCode),
    kind: a.gpu.kind,
    driver: fn.driver ?? null,
    iommuGroup: fn.iommuGroup ?? null,
    numaNode: fn.numaNode ?? null,
    bootGpu: a.gpu.isBootGpu,
    resetMethods: fn.resetMethods,
    functions: a.members.map((m) => ({ address: m.fn.address, class: formatClass(m.fn.classCode), driver: m.fn.driver ?? null, role: m.role })),
    framebuffers: a.gpu.framebuffers,
    verdict: a.verdict,
    reasons: a.reasons,
    warnings: a.warnings,
    plan: plan ? planSteps(plan).map((st) => ({ kind: st.kind, target: stepTarget(st), description: describeStep(st) })) : [],
  };
}

export function handoffJson(report: HandoffReport): object {
  const byGpu = new Map<string, GroupOutcome>();
  for (const o of report.outcomes) for (const g of o.gpus) byGpu.set(g, o);
  const planned = new Map<string, number>();
  for (const g of report.plan.groups) for (const a of g.gpus) planned.set(a, g.group);
  return {
    operation: report.operation,
    dryRun: report.dryRun,
    recovered: report.recovered.map(outcomeJson),
    preamble: report.preamble.map(stepJson),
    plan: planSteps(report.plan).map((st) => ({ kind: st.kind, target: stepTarget(st), description: describeStep(st) })),
    results: report.assessments.map((a) => {
      const o = byGpu.get(a.gpu.fn.address);
      return {
        address: a.gpu.fn.address,
        group: a.gpu.fn.iommuGroup ?? null,
        outcome: o ? o.outcome : report.dryRun ? 'planned' : 'already',
        warnings: a.warnings,
        steps: o ? o.steps.map(stepJson) : [],
        rollback: o?.rollback?.map(stepJson) ?? [],
        ...(o?.error ? { error: o.error } : {}),
        ...(o?.rollbackError ? { rollbackError: o.rollbackError } : {}),
      };
    }),
    skipped: report.skipped.map((a) => ({ address: a.gpu.fn.address, verdict: a.verdict, reasons: a.reasons })),
  };
}

function outcomeJson(o: GroupOutcome): object {
  return {
    group: o.group,
    gpus: o.gpus,
    operation: o.operation,
    outcome: o.outcome,
    steps: o.steps.map(stepJson),
    rollback: o.rollback?.map(stepJson) ?? [],
    ...(o.error ? { error: o.error } : {}),
    ...(o.rollbackError ? { rollbackError: o.rollbackError } : {}),
  };
}

function stepJson(s: GroupOutcome['steps'][number]): object {
  return {
    kind: s.step.kind,
    target: stepTarget(s.step),
    outcome: s.outcome,
    ...(s.note ? { note: s.note } : {}),
    ...(s.error ? { error: s.error } : {}),
  };
}

/** Human-readable inspect: a table, then per GPU the reasons, warnings and plan. */
export function inspectText(report: InspectReport): string {
  const s = report.snapshot;
  const lines: string[] = [];
  lines.push(
    `kernel ${s.kernel.release ?? '?'} · IOMMU ${s.iommuEnabled ? 'on' : 'OFF'} · vfio-pci ${s.vfioPci.loaded ? 'loaded' : s.vfioPci.loadable ? 'loadable' : 'MISSING'}` +
      ` · VFIO IOMMU backend ${iommuBackendText(s)}` +
      (s.framebuffers.length ? ` · framebuffers ${s.framebuffers.map((f) => `${f.device}(${f.claim ?? f.driver ?? 'unbound'})`).join(', ')}` : ''),
  );
  for (const u of s.unreadable ?? []) lines.push(`! ${u.address} is unreadable and was left out: ${u.error}`);
  if (report.assessments.length === 0) {
    lines.push('no GPUs found');
    return lines.join('\n') + '\n';
  }
  const rows = report.assessments.map((a) => [
    a.gpu.fn.address,
    `${a.gpu.fn.vendorId}:${a.gpu.fn.deviceId}`,
    formatClass(a.gpu.fn.classCode),
    a.gpu.fn.driver ?? '-',
    a.gpu.fn.iommuGroup === undefined ? '-' : String(a.gpu.fn.iommuGroup),
    a.gpu.fn.numaNode === undefined ? '-' : String(a.gpu.fn.numaNode),
    a.gpu.isBootGpu ? 'yes' : '',
    a.verdict.toUpperCase(),
  ]);
  lines.push(...table(['ADDRESS', 'ID', 'CLASS', 'DRIVER', 'GROUP', 'NUMA', 'BOOT', 'VERDICT'], rows));
  for (const a of report.assessments) {
    const extra: string[] = [];
    const others = a.members.filter((m) => m.fn.address !== a.gpu.fn.address);
    if (others.length) extra.push(`  group: ${others.map((m) => `${m.fn.address} ${m.role} (${m.fn.driver ?? 'no driver'})`).join(', ')}`);
    for (const r of a.reasons) extra.push(`  ✗ ${r.code}: ${r.message}`);
    for (const w of a.warnings) extra.push(`  ! ${w.code}: ${w.message}`);
    const plan = report.plans.get(a.gpu.fn.address);
    if (plan) {
      extra.push('  plan:');
      planSteps(plan).forEach((st, i) => extra.push(`    ${i + 1}. ${describeStep(st)}`));
    }
    if (extra.length) {
      lines.push('', `${a.gpu.fn.address} — ${a.verdict}`);
      lines.push(...extra);
    }
  }
  return lines.join('\n') + '\n';
}

export function handoffText(report: HandoffReport): string {
  const lines: string[] = [];
  for (const r of report.recovered) lines.push(`recovered group ${r.group} (${r.gpus.join(', ')}) from an unfinished ${r.operation}: ${outcomeSentence(r)}`);
  for (const a of report.skipped) lines.push(`skipped ${a.gpu.fn.address}: ${a.reasons.map((r) => r.code).join(', ')}`);
  if (report.dryRun) {
    const steps = planSteps(report.plan);
    lines.push(steps.length ? `${report.operation} would run:` : `nothing to ${report.operation}`);
    steps.forEach((st, i) => lines.push(`  ${i + 1}. ${describeStep(st)}`));
    return lines.join('\n') + '\n';
  }
  if (report.outcomes.length === 0 && report.assessments.length === 0) lines.push(`nothing to ${report.operation}`);
  for (const s of report.preamble) lines.push(`${mark(s.outcome)} ${describeStep(s.step)}${s.error ? ` — ${s.error.message}` : ''}`);
  for (const o of report.outcomes) {
    const onVfio = report.assessments.some((a) => a.gpu.fn.iommuGroup === o.group && a.gpu.fn.driver === 'vfio-pci');
    lines.push(`group ${o.group} (${o.gpus.join(', ')}): ${outcomeSentence(o, onVfio)}`);
    for (const s of o.steps) lines.push(`  ${mark(s.outcome)} ${describeStep(s.step)}${s.note ? ` — ${s.note}` : ''}${s.error ? ` — ${s.error.message}` : ''}`);
    if (o.rollback?.length) {
      lines.push('  rollback:');
      for (const s of o.rollback) lines.push(`    ${mark(s.outcome)} ${describeStep(s.step)}${s.note ? ` — ${s.note}` : ''}${s.error ? ` — ${s.error.message}` : ''}`);
    }
    if (o.rollbackError) lines.push(`  ! ${o.rollbackError.message}`);
  }
  // The warnings are about what prepare does to the host (console goes dark, boot GPU): noise under release.
  if (report.operation === 'prepare') for (const a of report.assessments) for (const w of a.warnings) lines.push(`! ${a.gpu.fn.address} ${w.code}: ${w.message}`);
  return lines.join('\n') + '\n';
}

/** The outcome as a finished sentence ("already" alone says nothing about what is already true). */
export function outcomeSentence(o: Pick<GroupOutcome, 'outcome' | 'operation' | 'steps'>, onVfio = false): string {
  const hung = o.steps.some((s) => s.hung);
  switch (o.outcome) {
    case 'prepared':
      return 'prepared — the group is on vfio-pci';
    case 'released':
      return 'released — the group is back on its host drivers';
    case 'already':
      if (o.operation === 'prepare') return 'already on vfio-pci — nothing to do';
      // Release writes only what a record says prepare took: a group someone else put on vfio-pci stays there.
      return onVfio
        ? 'left on vfio-pci — vfio-handoff did not prepare it (no record), so it has nothing to give back'
        : 'already on its host drivers — nothing to do';
    case 'resumed':
      return `resumed — the unfinished ${o.operation} was completed`;
    case 'failed':
      return 'failed before changing the group — nothing was changed';
    case 'rolled_back':
      return hung
        ? 'rolled_back — a write hung, so it failed and was rolled back; the hung write may still land, so the journal is kept for the next run to check'
        : 'rolled_back — a step failed and the group was put back as it was';
    case 'rollback_failed':
      return 'rollback_failed — a step failed and undoing it failed too: the group may be half-bound (see below)';
  }
}

/** One progress line per step start/end (stderr while the run goes on); undefined for nothing to say. */
export function progressLine(event: StepEvent): string | undefined {
  const where = `${event.group === undefined ? 'host' : `group ${event.group}`}${event.rollback ? ' rollback' : ''}`;
  if (event.phase === 'start') return event.step.kind === 'verify-group' ? undefined : `… ${where}: ${describeStep(event.step)}`;
  const o = event.outcome;
  return `${mark(o.outcome)} ${where}: ${describeStep(event.step)}${o.note ? ` — ${o.note}` : ''}${o.error ? ` — ${o.error.message}` : ''}`;
}

function mark(outcome: string): string {
  return outcome === 'done' ? '✓' : outcome === 'skipped' ? '·' : '✗';
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [fmt(header), ...rows.map(fmt)];
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

function iommuBackendText(s: InspectReport['snapshot']): string {
  const loaded = [s.vfioIommuType1.loaded ? 'type1' : '', s.iommufd ? 'iommufd' : ''].filter((b) => b !== '');
  if (loaded.length > 0) return loaded.join('+');
  return s.vfioIommuType1.loadable ? 'none (vfio_iommu_type1 loadable)' : 'MISSING';
}
