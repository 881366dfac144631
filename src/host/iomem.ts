/**
 * `/proc/iomem` parser. Each line is `<indent><start>-<end> : <name>` with hex addresses and the
 * nesting shown by indentation (two spaces per level in the kernel's output; we only rely on
 * "deeper indent = child" so odd whitespace still nests correctly). Names may contain spaces and
 * colons (`PCI Bus 0000:00`, `0000:00:02.0`).
 */
export interface IomemEntry {
  readonly start: bigint;
  readonly end: bigint; // inclusive
  readonly name: string;
  readonly depth: number; // 0 = top level
  /** Names of the enclosing entries, outermost first. */
  readonly ancestors: readonly string[];
}

const LINE = /^([ \t]*)([0-9a-fA-F]+)-([0-9a-fA-F]+)\s*:\s*(.*?)\s*$/;

export function parseIomem(text: string): IomemEntry[] {
  const out: IomemEntry[] = [];
  // Stack of open entries with their indentation width.
  const stack: { indent: number; name: string }[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const indent = m[1]!.replace(/\t/g, '        ').length;
    while (stack.length > 0 && stack[stack.length - 1]!.indent >= indent) stack.pop();
    const entry: IomemEntry = {
      start: BigInt(`0x${m[2]!}`),
      end: BigInt(`0x${m[3]!}`),
      name: m[4]!,
      depth: stack.length,
      ancestors: stack.map((s) => s.name),
    };
    out.push(entry);
    stack.push({ indent, name: entry.name });
  }
  return out;
}

/**
 * Whether addresses are real. Without CAP_SYS_ADMIN the kernel prints every range as zeros
 * (`00000000-00000000`), which would make every claim look like it sits at address 0.
 */
export function iomemHasAddresses(entries: readonly IomemEntry[]): boolean {
  return entries.some((e) => e.start !== 0n || e.end !== 0n);
}
