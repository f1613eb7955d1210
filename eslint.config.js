// Lint = the layer boundaries of docs/ARCHITECTURE.md, enforced.
import tsParser from '@typescript-eslint/parser';
import xenport from './tools/eslint-plugin-xenport.js';

export const GUEST_FILES = ['sys/**/*.ts', 'arch/**/*.ts', 'dev/**/*.ts'];

export default [
  { ignores: ['build/**', 'dist/**', 'node_modules/**', 'coverage/**', 'tests/fixtures/**'] },
  {
    files: ['**/*.ts', '**/*.js'],
    languageOptions: { parser: tsParser, sourceType: 'module', ecmaVersion: 2022 },
    plugins: { xenport },
    rules: { 'xenport/layer-boundaries': 'error' },
  },
  {
    files: GUEST_FILES,
    rules: { 'xenport/no-module-state': 'error' },
  },
];
