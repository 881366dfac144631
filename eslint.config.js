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
      // Only the host port (src/sysfs) may touch the host filesystem; everything else goes through it.
      'no-restricted-imports': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/sysfs/**', 'src/state/**', 'src/cli/**', 'src/profiles/**', 'src/bench/**', 'src/testing/**', 'src/**/*.test.ts', 'src/deviceplugin/socket-*.ts', 'src/deviceplugin/grpc-*.ts', 'src/dra/grpc-*.ts', 'src/dra/files-node.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: [
        { name: 'node:fs', message: 'Host access goes through the sysfs port (src/sysfs).' },
        { name: 'node:fs/promises', message: 'Host access goes through the sysfs port (src/sysfs).' },
        { name: 'fs', message: 'Host access goes through the sysfs port (src/sysfs).' },
      ] }],
    },
  },
);
