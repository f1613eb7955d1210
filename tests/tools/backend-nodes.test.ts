import test from 'ava';
import { vdevToDevid, parseBackendPath, vbdNodes } from '../../hypervisor/tools/backend/nodes.js';
import { parseBlkFrontendNodes } from '../../hypervisor/tools/backend/kinds.js';
import { config, host } from './builder-fixture.js';
import { disk, diskImage, vif } from './backend-fixture.js';

test('vdev -> devid as Xen encodes it: xvda 51712, partitions, the extended form from the 17th disk', (t) => {
  const cases: [string, number | undefined][] = [
    ['xvda', 51712], ['xvdb', 51728], ['xvda1', 51713], ['xvdp', 51952], ['xvdp15', 51967],
    ['xvdq', (1 << 28) | (16 << 8)], ['xvdz', (1 << 28) | (25 << 8)], ['xvdaa', (1 << 28) | (26 << 8)],
    ['xvda16', (1 << 28) | 16], ['xvdb255', (1 << 28) | (1 << 8) | 255],
    ['xvdb256', undefined], ['sda', undefined], ['xvd', undefined], ['xvda0', undefined], ['XVDA', undefined],
  ];
  for (const [vdev, want] of cases) t.is(vdevToDevid(vdev), want, vdev);
});

test('backend paths are cut into kind, domain, device and node; anything else is not ours', (t) => {
  t.deepEqual(parseBackendPath('/local/domain/0/backend/vbd'), { kind: 'vbd' });
  t.deepEqual(parseBackendPath('/local/domain/0/backend/vif/3'), { kind: 'vif', domid: 3 });
  t.deepEqual(parseBackendPath('/local/domain/0/backend/vbd/3/51712'), { kind: 'vbd', domid: 3, devid: 51712 });
  t.deepEqual(parseBackendPath('/local/domain/0/backend/vbd/3/51712/state'), { kind: 'vbd', domid: 3, devid: 51712, node: 'state' });
  for (const bad of ['/local/domain/0/backend/console/3/0', '/local/domain/1/backend/vbd/3/0', '/local/domain/0/backend/vbd/x/0', '/local/domain/0/backend/vbd/3/01']) {
    t.is(parseBackendPath(bad), undefined, bad);
  }
});

test('blkif frontend nodes: ring-ref and event-channel required, multi-page rings and queues refused, never throws', (t) => {
  const reader = (o: Record<string, string>) => (n: string): string | undefined => o[n];
  t.deepEqual(parseBlkFrontendNodes(reader({ 'ring-ref': '9', 'event-channel': '5', protocol: 'x86_64-abi' })),
    { ok: true, value: { ringRef: 9, eventChannel: 5, protocol: 'x86_64-abi' } });
  t.deepEqual(parseBlkFrontendNodes(reader({ 'ring-ref': '9', 'event-channel': '5' })), { ok: true, value: { ringRef: 9, eventChannel: 5 } });
  const refusals: [Record<string, string>, RegExp][] = [
    [{ 'event-channel': '5' }, /^ring-ref is missing$/],
    [{ 'ring-ref': 'x', 'event-channel': '5' }, /^ring-ref = "x" is not a 32-bit unsigned number$/],
    [{ 'ring-ref': '4294967296', 'event-channel': '5' }, /not a 32-bit/],
    [{ 'ring-ref': '9' }, /^event-channel is missing$/],
    [{ 'ring-ref0': '9', 'event-channel': '5' }, /multi-page rings are not offered/],
    [{ 'ring-ref': '9', 'event-channel': '5', 'ring-page-order': '2' }, /multi-page rings are not offered/],
    [{ 'ring-ref': '9', 'event-channel': '5', 'multi-queue-num-queues': '4' }, /one queue is offered/],
  ];
  for (const [nodes, why] of refusals) {
    const r = parseBlkFrontendNodes(reader(nodes));
    t.false(r.ok, JSON.stringify(nodes));
    if (!r.ok) t.regex(r.error, why);
  }
});

test('the nodes of a disk, as libxl writes them', (t) => {
  const n = vbdNodes(4, 51712, disk('/srv/g.img', 'xvda', true));
  t.deepEqual(n.frontend, {
    backend: '/local/domain/0/backend/vbd/4/51712', 'backend-id': '0', state: '1', 'virtual-device': '51712', 'device-type': 'disk',
  });
  t.deepEqual(n.backend, {
    frontend: '/local/domain/4/device/vbd/51712', 'frontend-id': '4', state: '1', online: '1',
    params: '/srv/g.img', mode: 'r', type: 'file', dev: 'xvda', removable: '0', bootable: '1',
  });
});

test('a domain built with a disk and a vif gets every device node, with libxl\'s owners, and both backends wait in InitWait', async (t) => {
  const h = await host(t);
  const img = diskImage(t, 64);
  const mac = '00:16:3e:00:00:0a';
  const b = await h.create(config('nodes', { extra: 'nostore', disks: [disk(img)], vifs: [vif(mac, '10.0.0.5')] }), true);
  const n = b.domid;
  const fe = `/local/domain/${n}/device`;
  const be = '/local/domain/0/backend';
  const read = (p: string): Promise<string> => h.xs.read(p);
  const perms = (p: string): Promise<string[]> => h.xs.getPerms(p);

  // vbd frontend: the guest's directory, dom0 reads.
  const vbdFe = `${fe}/vbd/51712`;
  t.is(await read(`${vbdFe}/backend`), `${be}/vbd/${n}/51712`);
  t.is(await read(`${vbdFe}/backend-id`), '0');
  t.is(await read(`${vbdFe}/state`), '1');
  t.is(await read(`${vbdFe}/virtual-device`), '51712');
  t.is(await read(`${vbdFe}/device-type`), 'disk');
  for (const p of [vbdFe, `${vbdFe}/state`, `${vbdFe}/backend`]) t.deepEqual(await perms(p), [`n${n}`, 'r0'], `${p} is the guest's`);
  t.deepEqual(await perms(`${fe}/vbd`), ['n0', `r${n}`]);

  // vbd backend: dom0's directory, the guest reads; the probe added the disk's features and InitWait.
  const vbdBe = `${be}/vbd/${n}/51712`;
  const want: Record<string, string> = {
    frontend: vbdFe, 'frontend-id': String(n), params: img, mode: 'w', type: 'file', dev: 'xvda',
    online: '1', removable: '0', bootable: '1', state: '2',
    sectors: '64', 'sector-size': '512', info: '0', 'feature-flush-cache': '1', 'feature-barrier': '1',
  };
  for (const [k, v] of Object.entries(want)) t.is(await read(`${vbdBe}/${k}`), v, `vbd backend ${k}`);
  for (const p of [vbdBe, `${vbdBe}/state`, `${vbdBe}/sectors`, `${be}/vbd/${n}`]) t.deepEqual(await perms(p), ['n0', `r${n}`], `${p} is dom0's`);

  // vif frontend and backend; the address goes in the backend's ip node (xennet reads it there).
  const vifFe = `${fe}/vif/0`;
  for (const [k, v] of Object.entries({ backend: `${be}/vif/${n}/0`, 'backend-id': '0', state: '1', handle: '0', mac })) {
    t.is(await read(`${vifFe}/${k}`), v, `vif frontend ${k}`);
  }
  t.deepEqual(await perms(vifFe), [`n${n}`, 'r0']);
  const vifBe = `${be}/vif/${n}/0`;
  const wantVif: Record<string, string> = {
    frontend: vifFe, 'frontend-id': String(n), mac, bridge: 'xenbr0', handle: '0', online: '1', ip: '10.0.0.5', state: '2',
    'feature-sg': '1', 'feature-rx-copy': '1', 'feature-rx-flip': '0', 'feature-split-event-channels': '0',
  };
  for (const [k, v] of Object.entries(wantVif)) t.is(await read(`${vifBe}/${k}`), v, `vif backend ${k}`);
  t.deepEqual(await perms(vifBe), ['n0', `r${n}`]);

  t.deepEqual(h.backends.driver.status().map((d) => [d.kind, d.devid, d.state]), [['vbd', 51712, 'InitWait'], ['vif', 0, 'InitWait']]);
  t.deepEqual(h.backends.net.bridge('xenbr0').portNames().sort(), ['dom0', `vif${n}.0`]);
});

test('a vif without ip= gets no ip node; a vif on another bridge makes that bridge', async (t) => {
  const h = await host(t);
  const b = await h.create(config('nets', { extra: 'nostore', vifs: [vif('00:16:3e:00:00:0b'), vif('00:16:3e:00:00:0c', undefined, { bridge: 'xenbr1' })] }), true);
  await t.throwsAsync(h.xs.read(`/local/domain/0/backend/vif/${b.domid}/0/ip`), { message: /ENOENT/ });
  t.is(await h.xs.read(`/local/domain/0/backend/vif/${b.domid}/1/bridge`), 'xenbr1');
  t.deepEqual(h.backends.net.bridge('xenbr1').portNames(), [`vif${b.domid}.1`]);
});
