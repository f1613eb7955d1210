/*
 * Every constant of shared/abi/migration-stream.json (the project's
 * authoritative copy of Xen 4.17's stream numbers, taken from the verifier's
 * sources) against the codec's own. A key of the JSON file with no mapping
 * here fails the test, so a new constant cannot be silently ignored.
 */
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as C from '../../hypervisor/tools/stream/constants.js';
import * as W from '../../hypervisor/tools/stream/wire.js';

const ABI_DIR = process.env['XENPORT_ABI_DIR'] ?? path.resolve(process.cwd(), '..', 'shared', 'abi');

/** JSON.parse, but integers stay exact: u64 constants do not fit in a double. */
function parseExact(text: string): unknown {
  const tagged = text.replace(/(:\s*)(-?\d+)(\s*[,}\n])/g, '$1"#int:$2"$3');
  return JSON.parse(tagged, (_k, v: unknown) => (typeof v === 'string' && v.startsWith('#int:') ? BigInt(v.slice(5)) : v));
}

function loadJson(name: string): Record<string, unknown> | undefined {
  const file = path.join(ABI_DIR, name);
  return existsSync(file) ? (parseExact(readFileSync(file, 'utf8')) as Record<string, unknown>) : undefined;
}

/** JSON key -> our value. Formats map to the wire struct that reads/writes those bytes. */
const MAPPING: Record<string, unknown> = {
  'xl.MAGIC': C.XL_MAGIC,
  'xl.HEADER_FORMAT': W.XL_HEADER.format,
  'xl.MANDATORY_FLAG_STREAMV2': C.XL_MANDATORY_FLAG_STREAMV2,

  'libxl.HDR_FORMAT': W.LIBXL_HEADER.format,
  'libxl.HDR_IDENT': C.LIBXL_IDENT,
  'libxl.HDR_VERSION': C.LIBXL_VERSION,
  'libxl.HDR_OPT_BIT_ENDIAN': C.LIBXL_OPT_BIT_ENDIAN,
  'libxl.HDR_OPT_BIT_LEGACY': C.LIBXL_OPT_BIT_LEGACY,
  'libxl.HDR_OPT_LE': C.LIBXL_OPT_LE,
  'libxl.HDR_OPT_BE': C.LIBXL_OPT_BE,
  'libxl.HDR_OPT_LEGACY': C.LIBXL_OPT_LEGACY,
  // verify.py masks only bits 2..15; the spec (and our reader) reserve 2..31.
  'libxl.HDR_OPT_RESZ_MASK': C.LIBXL_OPT_RESERVED & 0xffff,
  'libxl.RH_FORMAT': W.RECORD_HEADER.format,
  'libxl.REC_TYPE_end': C.LIBXL_REC.END,
  'libxl.REC_TYPE_libxc_context': C.LIBXL_REC.LIBXC_CONTEXT,
  'libxl.REC_TYPE_emulator_xenstore_data': C.LIBXL_REC.EMULATOR_XENSTORE_DATA,
  'libxl.REC_TYPE_emulator_context': C.LIBXL_REC.EMULATOR_CONTEXT,
  'libxl.REC_TYPE_checkpoint_end': C.LIBXL_REC.CHECKPOINT_END,
  'libxl.REC_TYPE_checkpoint_state': C.LIBXL_REC.CHECKPOINT_STATE,
  'libxl.EMULATOR_HEADER_FORMAT': W.EMULATOR_HEADER.format,
  'libxl.EMULATOR_ID_unknown': C.EMULATOR_ID.UNKNOWN,
  'libxl.EMULATOR_ID_qemu_trad': C.EMULATOR_ID.QEMU_TRADITIONAL,
  'libxl.EMULATOR_ID_qemu_upstream': C.EMULATOR_ID.QEMU_UPSTREAM,

  'libxc.IHDR_FORMAT': W.IMAGE_HEADER.format,
  'libxc.IHDR_MARKER': C.IHDR_MARKER,
  'libxc.IHDR_IDENT': C.IHDR_ID,
  'libxc.IHDR_OPT_BIT_ENDIAN': C.IHDR_OPT_BIT_ENDIAN,
  'libxc.IHDR_OPT_LE': C.IHDR_OPT_LE,
  'libxc.IHDR_OPT_BE': C.IHDR_OPT_BE,
  'libxc.IHDR_OPT_RESZ_MASK': C.IHDR_OPT_RESERVED,
  'libxc.DHDR_FORMAT': W.DOMAIN_HEADER.format,
  'libxc.DHDR_TYPE_x86_pv': C.DHDR_TYPE.X86_PV,
  'libxc.DHDR_TYPE_x86_hvm': C.DHDR_TYPE.X86_HVM,
  'libxc.RH_FORMAT': W.RECORD_HEADER.format,
  'libxc.REC_TYPE_end': C.LIBXC_REC.END,
  'libxc.REC_TYPE_page_data': C.LIBXC_REC.PAGE_DATA,
  'libxc.REC_TYPE_x86_pv_info': C.LIBXC_REC.X86_PV_INFO,
  'libxc.REC_TYPE_x86_pv_p2m_frames': C.LIBXC_REC.X86_PV_P2M_FRAMES,
  'libxc.REC_TYPE_x86_pv_vcpu_basic': C.LIBXC_REC.X86_PV_VCPU_BASIC,
  'libxc.REC_TYPE_x86_pv_vcpu_extended': C.LIBXC_REC.X86_PV_VCPU_EXTENDED,
  'libxc.REC_TYPE_x86_pv_vcpu_xsave': C.LIBXC_REC.X86_PV_VCPU_XSAVE,
  'libxc.REC_TYPE_shared_info': C.LIBXC_REC.SHARED_INFO,
  'libxc.REC_TYPE_tsc_info': C.LIBXC_REC.TSC_INFO,
  'libxc.REC_TYPE_hvm_context': C.LIBXC_REC.HVM_CONTEXT,
  'libxc.REC_TYPE_hvm_params': C.LIBXC_REC.HVM_PARAMS,
  'libxc.REC_TYPE_toolstack': C.LIBXC_REC.TOOLSTACK,
  'libxc.REC_TYPE_x86_pv_vcpu_msrs': C.LIBXC_REC.X86_PV_VCPU_MSRS,
  'libxc.REC_TYPE_verify': C.LIBXC_REC.VERIFY,
  'libxc.REC_TYPE_checkpoint': C.LIBXC_REC.CHECKPOINT,
  'libxc.REC_TYPE_checkpoint_dirty_pfn_list': C.LIBXC_REC.CHECKPOINT_DIRTY_PFN_LIST,
  'libxc.REC_TYPE_static_data_end': C.LIBXC_REC.STATIC_DATA_END,
  'libxc.REC_TYPE_x86_cpuid_policy': C.LIBXC_REC.X86_CPUID_POLICY,
  'libxc.REC_TYPE_x86_msr_policy': C.LIBXC_REC.X86_MSR_POLICY,
  'libxc.PAGE_DATA_FORMAT': W.PAGE_DATA_HEADER.format,
  'libxc.PAGE_DATA_PFN_MASK': C.PAGE_DATA_PFN_MASK,
  'libxc.PAGE_DATA_PFN_RESZ_MASK': C.PAGE_DATA_PFN_RESZ_MASK,
  'libxc.PAGE_DATA_TYPE_SHIFT': C.PAGE_DATA_TYPE_SHIFT,
  'libxc.PAGE_DATA_TYPE_NOTAB': C.PAGE_DATA_TYPE_NOTAB,
  'libxc.PAGE_DATA_TYPE_L1TAB': C.PAGE_DATA_TYPE_L1TAB,
  'libxc.PAGE_DATA_TYPE_L2TAB': C.PAGE_DATA_TYPE_L2TAB,
  'libxc.PAGE_DATA_TYPE_L3TAB': C.PAGE_DATA_TYPE_L3TAB,
  'libxc.PAGE_DATA_TYPE_L4TAB': C.PAGE_DATA_TYPE_L4TAB,
  'libxc.PAGE_DATA_TYPE_LPINTAB': C.PAGE_DATA_TYPE_LPINTAB,
  'libxc.PAGE_DATA_TYPE_LTABTYPE_MASK': C.PAGE_DATA_TYPE_LTABTYPE_MASK,
  'libxc.PAGE_DATA_TYPE_LTAB_MASK': C.PAGE_DATA_TYPE_LTAB_MASK,
  'libxc.PAGE_DATA_TYPE_BROKEN': C.PAGE_DATA_TYPE_BROKEN,
  'libxc.PAGE_DATA_TYPE_XALLOC': C.PAGE_DATA_TYPE_XALLOC,
  'libxc.PAGE_DATA_TYPE_XTAB': C.PAGE_DATA_TYPE_XTAB,
  'libxc.X86_PV_INFO_FORMAT': W.X86_PV_INFO.format,
  'libxc.X86_PV_P2M_FRAMES_FORMAT': W.X86_PV_P2M_FRAMES.format,
  'libxc.X86_PV_VCPU_HDR_FORMAT': W.X86_PV_VCPU_HEADER.format,
  'libxc.X86_TSC_INFO_FORMAT': W.TSC_INFO.format,
  'libxc.X86_CPUID_POLICY_FORMAT': W.CPUID_LEAF.format,
  'libxc.X86_MSR_POLICY_FORMAT': W.MSR_POLICY_ENTRY.format,
};

const norm = (v: unknown): unknown => (typeof v === 'number' ? BigInt(v) : v);

test('every constant in migration-stream.json has a mapping and the same value', (t) => {
  const json = loadJson('migration-stream.json');
  if (json === undefined) return t.fail(`migration-stream.json not found under ${ABI_DIR} (set XENPORT_ABI_DIR)`);
  const keys: string[] = [];
  for (const [section, body] of Object.entries(json)) {
    if (section === 'note') continue;
    for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
      const key = `${section}.${k}`;
      keys.push(key);
      if (!(key in MAPPING)) {
        t.fail(`${key} (= ${String(v)}) has no mapping in tests/stream/constants.test.ts`);
        continue;
      }
      t.deepEqual(norm(MAPPING[key]), norm(v), key);
    }
  }
  t.deepEqual(Object.keys(MAPPING).filter((k) => !keys.includes(k)), [], 'no mapping for a key the JSON file lacks');
});

test('wire structs have the sizes Xen gives them', (t) => {
  t.is(W.XL_HEADER.size + C.XL_MAGIC.length, C.XL_HEADER_SIZE);
  t.is(C.XL_MAGIC.length, 32);
  t.is(W.LIBXL_HEADER.size, 16);
  t.is(W.IMAGE_HEADER.size, 24);
  t.is(W.DOMAIN_HEADER.size, 16);
  t.is(W.TSC_INFO.size, C.TSC_INFO_LENGTH);
  t.is(W.CPUID_LEAF.size, C.CPUID_LEAF_SIZE);
  t.is(W.MSR_POLICY_ENTRY.size, C.MSR_ENTRY_SIZE);
  t.is(W.X86_PV_INFO.size, 8);
});

test('page types: what carries data, what is a table, what is reserved', (t) => {
  t.deepEqual([0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15].map(C.isKnownPageType), Array(12).fill(true));
  t.deepEqual([5, 6, 7, 8].map(C.isKnownPageType), [false, false, false, false]);
  t.deepEqual([C.PageType.XTAB, C.PageType.XALLOC, C.PageType.BROKEN].map(C.pageTypeHasData), [false, false, false]);
  t.deepEqual([C.PageType.L1TAB_PIN, C.PageType.L4TAB, C.PageType.NOTAB, C.PageType.XTAB].map(C.pageTableLevel), [1, 4, 0, 0]);
});

test('vcpu_guest_context and shared_info offsets match xen-public-abi.json', (t) => {
  const abi = loadJson('xen-public-abi.json');
  if (abi === undefined) return t.fail(`xen-public-abi.json not found under ${ABI_DIR} (set XENPORT_ABI_DIR)`);
  const structs = abi['structs'] as Record<string, { size: bigint; fields: Record<string, bigint> }>;
  const ctx = structs['vcpu_guest_context_t']!;
  const regs = structs['struct cpu_user_regs']!;
  const shinfo = structs['shared_info_t']!;
  t.is(Number(ctx.size), C.VCPU_CONTEXT_SIZE);
  t.is(Number(ctx.fields['ctrlreg']) + 3 * 8, C.VCPU_CONTEXT_CR3);
  t.is(Number(ctx.fields['user_regs']) + Number(regs.fields['rdx']), C.VCPU_CONTEXT_RDX);
  t.is(Number(ctx.fields['gdt_frames']), C.VCPU_CONTEXT_GDT_FRAMES);
  t.is(Number(ctx.fields['gdt_ents']), C.VCPU_CONTEXT_GDT_ENTS);
  t.is(Number(shinfo.fields['arch.max_pfn']), C.SHARED_INFO_ARCH_MAX_PFN);
});
