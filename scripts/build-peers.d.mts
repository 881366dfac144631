// Types for scripts/build-peers.mjs (imported by test/support/peers.ts).
export declare const REPO_ROOT: string;
export declare const PEERS_SRC: string;
export declare const PEERS_CACHE: string;
export declare function goVersion(): { version: string; reason?: undefined } | { reason: string; version?: undefined };
export declare function peerModules(): string[];
export declare function peerKey(module: string, version: string): string;
export declare function peerBuildDir(
  module: string,
  version?: ReturnType<typeof goVersion>,
): { dir: string; built: boolean; failedLog: string; reason?: undefined } | { reason: string; dir?: undefined };
export declare function buildPeer(
  module: string,
  opts?: { log?: (line: string) => void },
): Promise<{ dir: string; seconds: number; reused: boolean }>;
