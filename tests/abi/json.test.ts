/*
 * ABI test 1: our mirrors of Xen's public headers against
 * ../shared/abi/xen-public-abi.json (sizes, offsets and constants of Xen
 * 4.17, x86_64), and the Xen 2.0 ctrl_if layout against ARCHITECTURE §5.
 *
 * Each test collects every difference and fails listing them all, so one
 * run names everything that is wrong. Anything in the JSON that we have no
 * mapping for is a difference too.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { struct, u8, u16, u64 } from '../../hypervisor/public/layout.js';
import * as arch from '../../hypervisor/public/arch-x86_64.js';
import { XSD_ERRORS } from '../../hypervisor/public/io/xs_wire.js';
import * as dc from '../../hypervisor/public/domain_controller.js';
import { findRepoRoot, collectExports, JSON_STRUCTS, CONST_ALIASES, compareStruct } from './abi-tables.js';

interface AbiJson {
  structs: Record<string, { size: number; fields: Record<string, number> }>;
  constants: Record<string, number>;
  x86_64_layout: Record<string, string | number>;
  xs_errors: [number, string][];
}

const jsonPath = path.join(findRepoRoot(), '..', 'shared', 'abi', 'xen-public-abi.json');
const abi = JSON.parse(fs.readFileSync(jsonPath, 'utf8')) as AbiJson;
const ours = collectExports();

test('the JSON is the x86_64 one and lists structs and constants', (t) => {
  t.true(Object.keys(abi.structs).length > 30, `${jsonPath}: expected the struct table`);
  t.true(Object.keys(abi.constants).length > 200, `${jsonPath}: expected the constant table`);
});

test('every JSON struct has our layout with the same size and field offsets', (t) => {
  const diffs: string[] = [];
  for (const [name, want] of Object.entries(abi.structs)) {
    const layout = JSON_STRUCTS[name];
    if (layout === undefined) {
      diffs.push(`${name}: no mapping in JSON_STRUCTS (tests/abi/abi-tables.ts)`);
      continue;
    }
    diffs.push(...compareStruct(name, layout, want.size, want.fields));
  }
  for (const name of Object.keys(JSON_STRUCTS))
    if (!(name in abi.structs)) diffs.push(`${name}: mapped in JSON_STRUCTS but absent from the JSON`);
  t.deepEqual(diffs, [], `layouts differ from ${jsonPath}`);
});

test('every JSON constant equals ours', (t) => {
  const diffs: string[] = [];
  for (const [name, want] of Object.entries(abi.constants)) {
    const ourName = CONST_ALIASES[name] ?? name;
    const got = ours.constants.get(ourName);
    if (got === undefined) diffs.push(`${name}: we export no ${ourName}`);
    else if (got.value !== want) diffs.push(`${name}: ours (${got.module} ${ourName}) is ${String(got.value)}, expected ${want}`);
  }
  t.deepEqual(diffs, [], `constants differ from ${jsonPath}`);
});

test('no two modules export one name with different values, or two layouts with one name', (t) => {
  t.deepEqual(ours.conflicts, []);
});

test('x86_64 address layout and flat selectors equal the JSON', (t) => {
  const table: Record<string, bigint | number> = {
    HYPERVISOR_VIRT_START: arch.HYPERVISOR_VIRT_START,
    HYPERVISOR_VIRT_END: arch.HYPERVISOR_VIRT_END,
    MACH2PHYS_VIRT_START: arch.MACH2PHYS_VIRT_START,
    MACH2PHYS_VIRT_END: arch.MACH2PHYS_VIRT_END,
    FLAT_KERNEL_CS: arch.FLAT_KERNEL_CS,
    FLAT_KERNEL_SS: arch.FLAT_KERNEL_SS,
  };
  const diffs: string[] = [];
  for (const [name, want] of Object.entries(abi.x86_64_layout)) {
    const got = table[name];
    if (got === undefined) diffs.push(`${name}: not mapped in this test`);
    else if (typeof want === 'string' ? got !== BigInt(want) : got !== want)
      diffs.push(`${name}: ours is ${typeof got === 'bigint' ? `0x${got.toString(16)}` : got}, expected ${want}`);
  }
  t.deepEqual(diffs, []);
});

test('the 48-bit forms of the address constants are the canonical ones truncated', (t) => {
  t.is(arch.HYPERVISOR_VIRT_START_VA as number, 0x8000_0000_0000);
  t.is(arch.MACH2PHYS_VIRT_END_VA as number, 0x8040_0000_0000);
  t.is(arch.MACH2PHYS_NR_ENTRIES, (0x8040_0000_0000 - 0x8000_0000_0000) / 8);
});

test('xenstored error table equals the JSON, in order', (t) => {
  t.deepEqual(
    XSD_ERRORS.map(([n, s]) => [n, s]),
    abi.xs_errors,
  );
});

test('Xen 2.0 ctrl_if layout matches ARCHITECTURE §5', (t) => {
  const diffs = [
    ...compareStruct('control_msg_t', dc.control_msg, 64, { type: 0, subtype: 1, id: 2, length: 3, msg: 4 }),
    ...compareStruct('control_if_t', dc.control_if, 1040, {
      tx_ring: 0,
      rx_ring: 512,
      tx_req_prod: 1024,
      tx_resp_prod: 1028,
      rx_req_prod: 1032,
      rx_resp_prod: 1036,
    }),
  ];
  t.deepEqual(diffs, []);
  t.deepEqual(
    {
      CONTROL_RING_SIZE: dc.CONTROL_RING_SIZE,
      CONTROL_RING_IDX: dc.CONTROL_RING_IDX.size,
      CMSG_CONSOLE: dc.CMSG_CONSOLE,
      CMSG_BLKIF_BE: dc.CMSG_BLKIF_BE,
      CMSG_BLKIF_FE: dc.CMSG_BLKIF_FE,
      CMSG_NETIF_BE: dc.CMSG_NETIF_BE,
      CMSG_NETIF_FE: dc.CMSG_NETIF_FE,
      CMSG_SHUTDOWN: dc.CMSG_SHUTDOWN,
      CMSG_MEM_REQUEST: dc.CMSG_MEM_REQUEST,
      CMSG_SHUTDOWN_POWEROFF: dc.CMSG_SHUTDOWN_POWEROFF,
      CMSG_SHUTDOWN_REBOOT: dc.CMSG_SHUTDOWN_REBOOT,
      CMSG_SHUTDOWN_SUSPEND: dc.CMSG_SHUTDOWN_SUSPEND,
      CMSG_SHUTDOWN_SYSRQ: dc.CMSG_SHUTDOWN_SYSRQ,
      CMSG_CONSOLE_DATA: dc.CMSG_CONSOLE_DATA,
    },
    {
      CONTROL_RING_SIZE: 8,
      CONTROL_RING_IDX: 4,
      CMSG_CONSOLE: 0,
      CMSG_BLKIF_BE: 1,
      CMSG_BLKIF_FE: 2,
      CMSG_NETIF_BE: 3,
      CMSG_NETIF_FE: 4,
      CMSG_SHUTDOWN: 6,
      CMSG_MEM_REQUEST: 7,
      CMSG_SHUTDOWN_POWEROFF: 0,
      CMSG_SHUTDOWN_REBOOT: 1,
      CMSG_SHUTDOWN_SUSPEND: 2,
      CMSG_SHUTDOWN_SYSRQ: 3,
      CMSG_CONSOLE_DATA: 0,
    },
  );
  t.is(dc.MASK_CONTROL_IDX(2 ** 32 + 9), 1, 'ring indices wrap at 2^32, then mask to 8 slots');
});

test('the comparison reports a wrong size, a wrong offset and a missing member', (t) => {
  const wrong = struct('struct wrong', { a: u8, b: u16, c: u64 });
  t.deepEqual(compareStruct('wrong', wrong, 24, { a: 0, b: 4, d: 8 }), [
    'wrong: size is 16, expected 24',
    'wrong.b: offset is 2, expected 4',
    'wrong: has no member d (expected at offset 8)',
  ]);
});
