import type { VtConsole } from './model.js';

/** Classifies a vtconsole by its `name` text: `(M) frame buffer device` is fbcon, `(S) VGA+` vgacon. */
export function vtConsoleKind(description: string): VtConsole['kind'] {
  const d = description.trim();
  if (/frame buffer device/i.test(d)) return 'fbcon';
  if (/VGA\+?$/.test(d)) return 'vgacon';
  if (/dummy device/i.test(d)) return 'dummy';
  return 'other';
}

/** `vtcon2` before `vtcon10`. */
export function compareVtConsoleNames(a: string, b: string): number {
  const na = /(\d+)$/.exec(a);
  const nb = /(\d+)$/.exec(b);
  if (na && nb && a.slice(0, na.index) === b.slice(0, nb.index)) return Number(na[1]) - Number(nb[1]);
  return a < b ? -1 : a > b ? 1 : 0;
}
