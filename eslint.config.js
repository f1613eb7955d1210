// Lint = the layer boundaries of docs/ARCHITECTURE.md, enforced.
import tsParser from '@typescript-eslint/parser';
import xenport from './tools/eslint-plugin-xenport.js';

const TS = '{ts,mts,cts,tsx}';
export const GUEST_FILES = [`{sys,arch,dev}/**/*.${TS}`];
/** Code that runs inside the guest: the guest itself and the ABI it imports. */
export const GUEST_RUN_FILES = [...GUEST_FILES, `hypervisor/public/**/*.${TS}`];

// Host facilities guest code could reach without an import. Guest time is
// Xen time (vcpu_time_info), guest timers are hypervisor timers, and guest
// state lives in guest memory, never on the host's global object.
const HOST_GLOBALS = [
  ['globalThis', 'guest code keeps no state on the host global object'],
  ['global', 'guest code keeps no state on the host global object'],
  ['process', 'guest code reaches the host only through hypervisor/public/'],
  ['Buffer', 'guest code reaches memory through its MMU, not Node buffers'],
  ['setTimeout', 'guest code has no host timers: use the hypervisor timer'],
  ['setInterval', 'guest code has no host timers: use the hypervisor timer'],
  ['setImmediate', 'guest code has no host timers: use the hypervisor timer'],
  ['queueMicrotask', 'guest code runs to a stop point and returns: no host callbacks'],
  ['fetch', 'guest code reaches the network through netfront'],
  ['performance', 'guest time is Xen time (vcpu_time_info)'],
  ['Date', 'guest time is Xen time (vcpu_time_info, wc_sec/wc_nsec)'],
].map(([name, message]) => ({ name, message }));

export default [
  { ignores: ['build/**', 'dist/**', 'node_modules/**', 'coverage/**', 'tests/fixtures/**'] },
  {
    files: [`**/*.${TS}`, '**/*.{js,mjs,cjs}'],
    languageOptions: { parser: tsParser, sourceType: 'module', ecmaVersion: 2022 },
    plugins: { xenport },
    rules: { 'xenport/layer-boundaries': 'error' },
  },
  {
    files: GUEST_RUN_FILES,
    rules: { 'xenport/no-module-state': 'error', 'no-restricted-globals': ['error', ...HOST_GLOBALS] },
  },
];
