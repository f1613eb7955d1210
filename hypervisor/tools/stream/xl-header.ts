/*
 * The xl save-file header and what xenport puts in its optional data.
 *
 *   offset 0   char magic[32]            "Xen saved domain, xl format\n \0 \r"
 *          32  u32 byteorder             0x01020304
 *          36  u32 mandatory_flags       STREAMV2 (bit 1); JSON (bit 0) clear
 *          40  u32 optional_flags        0
 *          44  u32 optional_data_len     length of everything below
 *          48  optional data:
 *                u32  config_len
 *                u8   config[config_len]       xl.cfg text, UTF-8, no NUL
 *              xenport tail (xl skips it: "skip, or skip tail, if not understood"):
 *                char tag[8]                   "xenport\0"
 *                u32  meta_version             1
 *                u32  meta_len
 *                u8   meta[meta_len]           XenportMeta as JSON, UTF-8
 *
 * All integers little-endian. Real xl reads config_len and the config and
 * ignores the rest of the optional data, so a file we write is still a file
 * `xl restore` can parse the configuration of; the tail carries what the
 * libxc stream has no record for (kernel image name and hash, xenstore nodes).
 */
import {
  XL_BYTEORDER,
  XL_HEADER_SIZE,
  XL_MAGIC,
  XL_MANDATORY_FLAG_JSON,
  XL_MANDATORY_FLAG_STREAMV2,
} from './constants.js';
import { streamError, type Where } from './errors.js';
import type { JsonValue, XenportMeta, XenstoreNode, XlConfig } from './records.js';
import { XL_HEADER, ascii, readU32le, u32le } from './wire.js';

export const XL_MAGIC_BYTES = ascii(XL_MAGIC);
export const XENPORT_TAIL_TAG = ascii('xenport\0');
export const XENPORT_META_VERSION = 1;
/** Refuse optional data larger than this: a config is a few KiB. */
export const XL_OPTIONAL_DATA_MAX = 16 << 20;

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** The header and optional data for a stream carrying `config` and `meta`. */
export function encodeXlHeader(config: string, meta: XenportMeta): Uint8Array {
  const problem = xenportMetaProblem(meta);
  if (problem !== undefined) throw new RangeError(`xenport metadata: ${problem}`);
  const cfg = utf8.encode(config);
  if (cfg.includes(0)) throw new RangeError('xl config text contains a NUL byte');
  const json = utf8.encode(JSON.stringify(meta));
  const optLen = 4 + cfg.length + XENPORT_TAIL_TAG.length + 8 + json.length;
  if (optLen > XL_OPTIONAL_DATA_MAX) throw new RangeError(`xl optional data of ${optLen} bytes is too large`);

  const out = new Uint8Array(XL_HEADER_SIZE + optLen);
  out.set(XL_MAGIC_BYTES, 0);
  XL_HEADER.encode(
    { byteorder: XL_BYTEORDER, mandatoryFlags: XL_MANDATORY_FLAG_STREAMV2, optionalFlags: 0, optionalDataLen: optLen },
    out,
    XL_MAGIC_BYTES.length,
  );
  let at = XL_HEADER_SIZE;
  out.set(u32le(cfg.length), at);
  out.set(cfg, (at += 4));
  out.set(XENPORT_TAIL_TAG, (at += cfg.length));
  out.set(u32le(XENPORT_META_VERSION), (at += XENPORT_TAIL_TAG.length));
  out.set(u32le(json.length), (at += 4));
  out.set(json, (at += 4));
  return out;
}

/**
 * Decode the optional data that starts at stream offset `base`. Throws a
 * StreamError (layer xl, record XL_HEADER) when it is malformed.
 */
export function decodeOptionalData(
  data: Uint8Array,
  mandatoryFlags: number,
  base: number,
): { config?: XlConfig; xenportMeta?: XenportMeta } {
  const where: Where = { layer: 'xl', record: 'XL_HEADER', recordOffset: 0 };
  if (data.length === 0) return {};
  if (data.length < 4) throw streamError(where, 'bad-length', base, `optional data of ${data.length} bytes cannot hold the u32 config length`);
  const cfgLen = readU32le(data, 0);
  if (cfgLen > data.length - 4) {
    throw streamError(where, 'bad-length', base, `config length ${cfgLen} exceeds the ${data.length - 4} bytes of optional data after it`);
  }
  let cfgBytes = data.subarray(4, 4 + cfgLen);
  // xl's JSON config carries its terminating NUL; text configs may too.
  if (cfgBytes.length > 0 && cfgBytes[cfgBytes.length - 1] === 0) cfgBytes = cfgBytes.subarray(0, -1);
  let text: string;
  try {
    text = utf8Strict.decode(cfgBytes);
  } catch {
    throw streamError(where, 'bad-value', base + 4, 'config data is not valid UTF-8');
  }
  const config: XlConfig = { format: mandatoryFlags & XL_MANDATORY_FLAG_JSON ? 'json' : 'xl.cfg', text };

  const tailAt = 4 + cfgLen;
  const tail = data.subarray(tailAt);
  if (!startsWith(tail, XENPORT_TAIL_TAG)) return { config };
  const metaAt = base + tailAt;
  if (tail.length < XENPORT_TAIL_TAG.length + 8) {
    throw streamError(where, 'bad-meta', metaAt, `xenport tail of ${tail.length} bytes is shorter than its 16-byte header`);
  }
  const version = readU32le(tail, XENPORT_TAIL_TAG.length);
  if (version !== XENPORT_META_VERSION) {
    throw streamError(where, 'bad-meta', metaAt + 8, `xenport metadata version ${version}, expected ${XENPORT_META_VERSION}`);
  }
  const jsonLen = readU32le(tail, XENPORT_TAIL_TAG.length + 4);
  const jsonAt = XENPORT_TAIL_TAG.length + 8;
  if (jsonLen !== tail.length - jsonAt) {
    throw streamError(where, 'bad-meta', metaAt + 12, `xenport metadata length ${jsonLen}, but ${tail.length - jsonAt} bytes remain in the optional data`);
  }
  let meta: unknown;
  try {
    meta = JSON.parse(utf8Strict.decode(tail.subarray(jsonAt)));
  } catch (e) {
    throw streamError(where, 'bad-meta', metaAt + jsonAt, `xenport metadata is not UTF-8 JSON (${(e as Error).message})`);
  }
  const problem = xenportMetaProblem(meta);
  if (problem !== undefined) throw streamError(where, 'bad-meta', metaAt + jsonAt, `xenport metadata: ${problem}`);
  return { config, xenportMeta: meta as XenportMeta };
}

function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  if (b.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[i] !== prefix[i]) return false;
  return true;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Why `v` is not a XenportMeta, or undefined when it is one. */
export function xenportMetaProblem(v: unknown): string | undefined {
  if (!isObject(v)) return 'not an object';
  for (const k of Object.keys(v)) if (k !== 'kernel' && k !== 'xenstore' && k !== 'extra') return `unknown field ${JSON.stringify(k)}`;
  const kernel = v['kernel'];
  if (!isObject(kernel)) return 'kernel is not an object';
  if (typeof kernel['name'] !== 'string' || kernel['name'] === '') return 'kernel.name is not a non-empty string';
  if (typeof kernel['versionHash'] !== 'string' || kernel['versionHash'] === '') return 'kernel.versionHash is not a non-empty string';
  const xs = v['xenstore'];
  if (!Array.isArray(xs)) return 'xenstore is not an array';
  for (let i = 0; i < xs.length; i++) {
    const n: unknown = xs[i];
    if (!isObject(n) || typeof n['path'] !== 'string' || typeof n['value'] !== 'string') {
      return `xenstore[${i}] is not a {path, value} pair of strings`;
    }
    if (n['path'] === '' || n['path'].includes('\0') || (n as unknown as XenstoreNode).value.includes('\0')) {
      return `xenstore[${i}] has an empty path or a NUL byte`;
    }
  }
  const extra = v['extra'];
  if (extra !== undefined && (!isObject(extra) || !isJson(extra, 0))) return 'extra is not a JSON object';
  return undefined;
}

function isJson(v: unknown, depth: number): v is JsonValue {
  if (depth > 64) return false;
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every((x) => isJson(x, depth + 1));
  if (isObject(v)) return Object.values(v).every((x) => isJson(x, depth + 1));
  return false;
}
