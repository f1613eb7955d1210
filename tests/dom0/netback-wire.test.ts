import test from 'ava';
import {
  netif_tx_request, netif_rx_request, netif_rx_response, netif_tx_response, NETTXF_csum_blank, NETTXF_extra_info,
  NETTXF_more_data, NETRXF_more_data, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
  XEN_NETIF_EXTRA_TYPE_MAX, XEN_NETIF_GSO_TYPE_TCPV4,
} from '../../hypervisor/public/io/netif.js';
import { bytesMem } from '../../hypervisor/public/layout.js';
import {
  TX_FATAL_SLOTS, TX_MAX_SLOTS, decodeExtraInfo, decodeRxRequest, decodeRxResponse, decodeTxRequest, decodeTxResponse,
  encodeExtraInfo, encodeRxRequest, encodeRxResponse, encodeTxRequest, encodeTxResponse, parseTxPacket, rxFlags, rxSlotsFor,
  type ExtraInfo, type TxRequestFields,
} from '../../hypervisor/dom0/netback/wire.js';
import { backendNodes, parseFrontendNodes } from '../../hypervisor/dom0/netback/nodes.js';
import { NETIF_RX_GEOMETRY, NETIF_TX_GEOMETRY } from '../../hypervisor/dom0/netback/transport.js';
import { seededRandom } from './netback-fixture.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function txSlot(r: TxRequestFields): Uint8Array {
  const b = new Uint8Array(netif_tx_request.size);
  encodeTxRequest(bytesMem(b), 0, r);
  return b;
}

function extraSlot(e: ExtraInfo): Uint8Array {
  const b = new Uint8Array(netif_tx_request.size);
  encodeExtraInfo(bytesMem(b), 0, e);
  return b;
}

const parse = (slots: readonly Uint8Array[]) => parseTxPacket(slots.length, (i) => slots[i]!);

test('ring geometry: 256 slots each way, 12-byte TX and 8-byte RX slots', (t) => {
  t.deepEqual(NETIF_TX_GEOMETRY, { entrySize: 12, size: 256 });
  t.deepEqual(NETIF_RX_GEOMETRY, { entrySize: 8, size: 256 });
});

test('netif_tx_request golden bytes: gref, offset, flags, id, size little-endian', (t) => {
  const s = txSlot({ gref: 0x01020304, offset: 0x0506, flags: NETTXF_more_data | NETTXF_csum_blank, id: 0x0708, size: 0x090a });
  t.is(hex(s), '04030201' + '0605' + '0500' + '0807' + '0a09');
  t.deepEqual(decodeTxRequest(s), { gref: 0x01020304, offset: 0x0506, flags: 5, id: 0x0708, size: 0x090a });
});

test('netif_tx_response, netif_rx_request and netif_rx_response golden bytes', (t) => {
  const b = new Uint8Array(12);
  const m = bytesMem(b);
  encodeTxResponse(m, 0, { id: 0x1234, status: -1 });
  t.is(hex(b.subarray(0, netif_tx_response.size)), '3412ffff');
  t.deepEqual(decodeTxResponse(m, 0), { id: 0x1234, status: -1 });
  b.fill(0);
  encodeRxRequest(m, 0, { id: 0xabcd, gref: 0x11223344 });
  t.is(hex(b.subarray(0, netif_rx_request.size)), 'cdab0000' + '44332211');
  t.deepEqual(decodeRxRequest(b), { id: 0xabcd, gref: 0x11223344 });
  b.fill(0);
  encodeRxResponse(m, 0, { id: 2, offset: 0, flags: NETRXF_more_data, status: 4096 });
  t.is(hex(b.subarray(0, netif_rx_response.size)), '0200' + '0000' + '0400' + '0010');
  t.deepEqual(decodeRxResponse(m, 0), { id: 2, offset: 0, flags: NETRXF_more_data, status: 4096 });
});

test('extra-info slots round-trip, GSO read as the union member its type names', (t) => {
  const gso: ExtraInfo = { type: XEN_NETIF_EXTRA_TYPE_GSO, flags: 0, gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4, features: 0 } };
  t.deepEqual(decodeExtraInfo(extraSlot(gso)), gso);
  t.deepEqual(decodeExtraInfo(extraSlot({ type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD, flags: 1 })), { type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD, flags: 1 });
});

test('a one-slot packet: one fragment, one OKAY-able answer', (t) => {
  const p = parse([txSlot({ gref: 9, offset: 100, flags: 0, id: 4, size: 60 })]);
  t.deepEqual(p, {
    kind: 'packet',
    packet: { size: 60, flags: 0, fragments: [{ gref: 9, offset: 100, size: 60 }], extras: [], answers: [{ id: 4, extra: false }] },
  });
});

test('a chained packet: slot 0 carries size minus the fragments, fragments their own size', (t) => {
  const p = parse([
    txSlot({ gref: 1, offset: 4000, flags: NETTXF_more_data, id: 1, size: 5000 }),
    txSlot({ gref: 2, offset: 0, flags: NETTXF_more_data, id: 2, size: 4096 }),
    txSlot({ gref: 3, offset: 0, flags: 0, id: 3, size: 808 }),
  ]);
  if (p.kind !== 'packet') return t.fail(`expected a packet, got ${JSON.stringify(p)}`);
  t.deepEqual(p.packet.fragments, [{ gref: 1, offset: 4000, size: 96 }, { gref: 2, offset: 0, size: 4096 }, { gref: 3, offset: 0, size: 808 }]);
  t.deepEqual(p.packet.answers.map((a) => a.id), [1, 2, 3]);
});

test('extra-info slots follow slot 0, are answered as extras, and do not count as data', (t) => {
  const p = parse([
    txSlot({ gref: 1, offset: 0, flags: NETTXF_extra_info | NETTXF_more_data, id: 7, size: 100 }),
    extraSlot({ type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD, flags: XEN_NETIF_EXTRA_FLAG_MORE }),
    extraSlot({ type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD, flags: 0 }),
    txSlot({ gref: 2, offset: 0, flags: 0, id: 8, size: 40 }),
  ]);
  if (p.kind !== 'packet') return t.fail(`expected a packet, got ${JSON.stringify(p)}`);
  t.deepEqual(p.packet.answers, [{ id: 7, extra: false }, { id: 7, extra: true }, { id: 7, extra: true }, { id: 8, extra: false }]);
  t.deepEqual(p.packet.fragments.map((f) => f.size), [60, 40]);
  t.is(p.packet.extras.length, 2);
});

test('a chain that runs past the published slots is incomplete and takes nothing', (t) => {
  const first = txSlot({ gref: 1, offset: 0, flags: NETTXF_more_data, id: 1, size: 200 });
  t.deepEqual(parse([first]), { kind: 'incomplete', seen: 1 });
  t.deepEqual(parse([txSlot({ gref: 1, offset: 0, flags: NETTXF_extra_info, id: 1, size: 200 })]), { kind: 'incomplete', seen: 1 });
  t.deepEqual(parseTxPacket(0, () => { throw new Error('no slot to peek'); }), { kind: 'incomplete', seen: 0 });
});

function chain(n: number, size = 14 * n): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => txSlot({ gref: 10 + i, offset: 0, flags: i < n - 1 ? NETTXF_more_data : 0, id: i, size: i === 0 ? size : 14 }));
}

test(`${TX_MAX_SLOTS} chained requests pass, ${TX_MAX_SLOTS + 1}..${TX_FATAL_SLOTS} are refused, more is fatal`, (t) => {
  t.is(parse(chain(TX_MAX_SLOTS)).kind, 'packet');
  for (const n of [TX_MAX_SLOTS + 1, TX_FATAL_SLOTS]) {
    const p = parse(chain(n));
    t.is(p.kind, 'drop', `${n} slots`);
    if (p.kind === 'drop') t.is(p.answers.length, n, 'every slot of the refused chain is answered');
  }
  const fatal = parse(chain(TX_FATAL_SLOTS + 1));
  t.is(fatal.kind, 'fatal');
  if (fatal.kind === 'fatal') t.regex(fatal.reason, /more than 20 requests chained/);
});

test('malformed but delimitable packets are refused with a reason', (t) => {
  const cases: Array<[string, Uint8Array[], RegExp]> = [
    ['fragments larger than the packet', [
      txSlot({ gref: 1, offset: 0, flags: NETTXF_more_data, id: 1, size: 100 }),
      txSlot({ gref: 2, offset: 0, flags: 0, id: 2, size: 200 })], /fragments carry 200 bytes, more than the packet's 100/],
    ['slot 0 past its page', [txSlot({ gref: 1, offset: 4000, flags: 0, id: 1, size: 200 })], /slot 0 covers 4000\+200/],
    ['a fragment past its page', [
      txSlot({ gref: 1, offset: 0, flags: NETTXF_more_data, id: 1, size: 300 }),
      txSlot({ gref: 2, offset: 4000, flags: 0, id: 2, size: 200 })], /fragment 1 \(id 2\) covers 4000\+200/],
    ['a runt', [txSlot({ gref: 1, offset: 0, flags: 0, id: 1, size: 13 })], /13 bytes, less than an Ethernet header/],
    ['an undefined extra type', [
      txSlot({ gref: 1, offset: 0, flags: NETTXF_extra_info, id: 1, size: 60 }),
      extraSlot({ type: XEN_NETIF_EXTRA_TYPE_MAX, flags: 0 })], /extra-info type 5 is not defined/],
    ['a GSO extra', [
      txSlot({ gref: 1, offset: 0, flags: NETTXF_extra_info, id: 1, size: 60 }),
      extraSlot({ type: XEN_NETIF_EXTRA_TYPE_GSO, flags: 0, gso: { size: 1448, type: 1, features: 0 } })], /GSO/],
  ];
  for (const [what, slots, reason] of cases) {
    const p = parse(slots);
    if (p.kind !== 'drop') {
      t.fail(`${what}: expected a drop, got ${p.kind}`);
      continue;
    }
    t.regex(p.reason, reason, what);
    t.is(p.answers.length, slots.length, `${what}: every slot answered`);
  }
});

test('more than 4 chained extra-info slots is fatal', (t) => {
  const slots = [txSlot({ gref: 1, offset: 0, flags: NETTXF_extra_info, id: 1, size: 60 })];
  for (let i = 0; i < 5; i++) slots.push(extraSlot({ type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD, flags: XEN_NETIF_EXTRA_FLAG_MORE }));
  const p = parse(slots);
  t.is(p.kind, 'fatal');
});

test('parseTxPacket never throws on random slots (seeded)', (t) => {
  const rand = seededRandom(0x5eed);
  for (let round = 0; round < 2000; round++) {
    const n = 1 + Math.floor(rand() * 24);
    const slots = Array.from({ length: n }, () => Uint8Array.from({ length: 12 }, () => Math.floor(rand() * 256)));
    const p = parse(slots);
    if (p.kind === 'packet') {
      t.true(p.packet.fragments.every((f) => f.offset + f.size <= 4096), `round ${round}: fragments stay in their pages`);
      t.is(p.packet.fragments.reduce((s, f) => s + f.size, 0), p.packet.size, `round ${round}: fragments add up to the size`);
    }
    if (p.kind === 'packet' || p.kind === 'drop') {
      const answers = p.kind === 'packet' ? p.packet.answers : p.answers;
      t.true(answers.length >= 1 && answers.length <= n, `round ${round}: answers within the slots`);
    }
  }
});

test('RX frames take one page-sized buffer per 4096 bytes, more_data on all but the last', (t) => {
  t.deepEqual([14, 4096, 4097, 9014, 65535].map(rxSlotsFor), [1, 1, 2, 3, 16]);
  t.deepEqual([0, 1, 2].map((k) => rxFlags(k, 3)), [NETRXF_more_data, NETRXF_more_data, 0]);
});

test('backend nodes: mac, handle, and the features offered', (t) => {
  t.deepEqual({ ...backendNodes({ mac: '00:16:3e:00:00:01', handle: 2 }) }, {
    mac: '00:16:3e:00:00:01',
    handle: '2',
    'feature-sg': '1',
    'feature-rx-copy': '1',
    'feature-rx-flip': '0',
    'feature-gso-tcpv4': '0',
    'feature-gso-tcpv6': '0',
    'feature-ipv6-csum-offload': '0',
    'feature-split-event-channels': '0',
    'feature-multicast-control': '0',
    'feature-ctrl-ring': '0',
  });
});

const GOOD: Record<string, string> = {
  'tx-ring-ref': '8', 'rx-ring-ref': '9', 'event-channel': '12', 'request-rx-copy': '1', 'feature-rx-notify': '1', 'feature-sg': '1',
};
const reader = (nodes: Record<string, string | undefined>) => (n: string): string | undefined => nodes[n];

test('frontend nodes parse into connect parameters', (t) => {
  t.deepEqual(parseFrontendNodes(reader(GOOD)), {
    ok: true, value: { txRingRef: 8, rxRingRef: 9, eventChannel: 12, requestRxCopy: true, rxNotify: true, sg: true },
  });
  const noSg = parseFrontendNodes(reader({ ...GOOD, 'feature-sg': undefined }));
  t.true(noSg.ok && noSg.value.sg === false, 'feature-sg absent: no scatter-gather RX');
});

test('frontend nodes that ask for what is not offered are refused, naming the node', (t) => {
  const cases: Array<[string, Record<string, string | undefined>, RegExp]> = [
    ['no tx-ring-ref', { ...GOOD, 'tx-ring-ref': undefined }, /tx-ring-ref is missing/],
    ['a ring-ref that is not a number', { ...GOOD, 'rx-ring-ref': '0x10' }, /rx-ring-ref = "0x10" is not a 32-bit/],
    ['a ring-ref past 2^32', { ...GOOD, 'rx-ring-ref': '4294967296' }, /not a 32-bit/],
    ['page flipping', { ...GOOD, 'request-rx-copy': '0' }, /request-rx-copy must be 1: this backend only copies/],
    ['no request-rx-copy', { ...GOOD, 'request-rx-copy': undefined }, /request-rx-copy must be 1/],
    ['no feature-rx-notify', { ...GOOD, 'feature-rx-notify': undefined }, /feature-rx-notify must be 1/],
    ['split event channels', { ...GOOD, 'event-channel': undefined, 'event-channel-tx': '3', 'event-channel-rx': '4' }, /split event channels are not offered/],
    ['multi-queue', { ...GOOD, 'multi-queue-num-queues': '2' }, /one queue is offered/],
    ['a control ring', { ...GOOD, 'ctrl-ring-ref': '20' }, /feature-ctrl-ring is not offered/],
    ['a flag that is not 0/1', { ...GOOD, 'feature-sg': 'yes' }, /feature-sg = "yes" is neither 0 nor 1/],
  ];
  for (const [what, nodes, msg] of cases) {
    const r = parseFrontendNodes(reader(nodes));
    t.false(r.ok, what);
    if (!r.ok) t.regex(r.error, msg, what);
  }
});
