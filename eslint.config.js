import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', 'coverage/**', '.stryker-tmp*/**', 'reports/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', Buffer: 'readonly', URL: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-imports': 'off',
    },
  },
  {
    // Host access: node:fs and node:child_process are refused in src/ except where a module's job is a named
    // file or process outside the host port. An import rule sees modules, not paths, so this is as close as
    // lint gets to "no /sys, /dev, /proc outside src/sysfs"; the exceptions are:
    //   src/sysfs                       the host port itself (/sys, /dev, /proc under --host-root)
    //   src/state                       the agent's state directory (journal, records, flock(1))
    //   src/deviceplugin/socket-dir.ts  kubelet's device-plugin socket directory (fs.watch, lstat, unlink)
    //   src/api/v1alpha1/shipped-crds.ts, src/profiles   files shipped with the package (CRDs, host profiles)
    //   src/cli                         composition roots (kubeconfig, config files, log output)
    //   src/bench, src/testing, tests   test support, never on a production path
    files: ['src/**/*.ts'],
    ignores: ['src/sysfs/**', 'src/state/**', 'src/cli/**', 'src/profiles/**', 'src/bench/**', 'src/testing/**', 'src/**/*.test.ts', 'src/deviceplugin/socket-dir.ts', 'src/api/v1alpha1/shipped-crds.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: ['node:fs', 'node:fs/promises', 'fs', 'fs/promises', 'node:child_process', 'child_process'].map((name) => ({
        name,
        message: 'Host access goes through the host port (src/sysfs); see the exceptions in eslint.config.js.',
      })) }],
    },
  },
  {
    // The operator's internals are its own: the contract lives in src/api, and the only entry point is
    // src/operator/run-operator.ts (startOperator), used by the composition roots in src/cli and src/bench.
    files: ['src/**/*.ts'],
    ignores: ['src/operator/**'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: [{
        regex: '(^|/)operator/(?!run-operator\\.js$)[^/]+$',
        message: 'Import the contract from src/api; outside src/operator only run-operator.js may be imported.',
      }] }],
    },
  },
);
