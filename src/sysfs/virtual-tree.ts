/**
 * An in-memory file tree with relative symlinks, resolved the way the VFS resolves them. The
 * simulated kernel renders its state into one of these; the materialiser writes the same tree to
 * disk. Reads through both therefore agree by construction, and the contract test checks it.
 */

export type TreeNode =
  | { readonly kind: 'dir' }
  | { readonly kind: 'file'; readonly content: string }
  | { readonly kind: 'link'; readonly target: string };

const MAX_LINK_HOPS = 40; // the kernel's MAXSYMLINKS

export function dirname(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

export function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** The relative link text that, stored at `linkPath`, points to `targetPath` (both relative to the root). */
export function relativeLink(linkPath: string, targetPath: string): string {
  const from = dirname(linkPath).split('/').filter(Boolean);
  const to = targetPath.split('/').filter(Boolean);
  let common = 0;
  while (common < from.length && common < to.length && from[common] === to[common]) common++;
  const ups = from.length - common;
  return [...Array<string>(ups).fill('..'), ...to.slice(common)].join('/');
}

export class VirtualTree {
  private readonly nodes = new Map<string, TreeNode>([['', { kind: 'dir' }]]);
  private readonly children = new Map<string, Set<string>>([['', new Set()]]);

  mkdir(path: string): void {
    if (path === '') return;
    const existing = this.nodes.get(path);
    if (existing) {
      if (existing.kind !== 'dir') throw new Error(`virtual tree: ${path} exists and is not a directory`);
      return;
    }
    this.mkdir(dirname(path));
    this.nodes.set(path, { kind: 'dir' });
    this.children.set(path, new Set());
    this.children.get(dirname(path))!.add(basename(path));
  }

  file(path: string, content: string): void {
    this.put(path, { kind: 'file', content });
  }

  link(path: string, target: string): void {
    this.put(path, { kind: 'link', target });
  }

  /** A link at `path` pointing at `targetPath` (root-relative), stored as relative text like sysfs does. */
  linkTo(path: string, targetPath: string): void {
    this.link(path, relativeLink(path, targetPath));
  }

  private put(path: string, node: TreeNode): void {
    this.mkdir(dirname(path));
    if (this.nodes.get(path)?.kind === 'dir') throw new Error(`virtual tree: ${path} is a directory`);
    this.nodes.set(path, node);
    this.children.get(dirname(path))!.add(basename(path));
  }

  get(path: string): TreeNode | undefined {
    return this.nodes.get(path);
  }

  /** Every node, parents before children (the order the materialiser creates them in). */
  entries(): [string, TreeNode][] {
    return [...this.nodes.entries()].filter(([p]) => p !== '').sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * Resolves `path` component by component, following links in intermediate components and (when
   * `followLast`) in the last one. Returns the canonical path, or `undefined` when something along
   * the way is missing, a dangling link, a loop, or a non-directory used as a directory.
   */
  resolve(path: string, followLast: boolean): string | undefined {
    let hops = 0;
    const walk = (base: string, parts: string[]): string | undefined => {
      let cur = base;
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i]!;
        if (part === '' || part === '.') continue;
        if (part === '..') {
          cur = dirname(cur);
          continue;
        }
        const curNode = this.nodes.get(cur);
        if (curNode?.kind !== 'dir') return undefined;
        const next = cur === '' ? part : `${cur}/${part}`;
        const node = this.nodes.get(next);
        if (!node) return undefined;
        const last = i === parts.length - 1;
        if (node.kind === 'link' && (!last || followLast)) {
          if (++hops > MAX_LINK_HOPS) return undefined;
          const target = node.target.startsWith('/') ? walk('', node.target.split('/')) : walk(cur, node.target.split('/'));
          if (target === undefined) return undefined;
          cur = target;
          continue;
        }
        cur = next;
      }
      return cur;
    };
    return walk('', path.split('/'));
  }

  /** Sorted entry names of a directory (after resolving links). */
  list(canonicalDir: string): string[] {
    return [...(this.children.get(canonicalDir) ?? [])].sort();
  }
}
