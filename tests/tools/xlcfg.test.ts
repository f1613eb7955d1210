import test from 'ava';
import { parseConfig, parseDiskSpec, parseVifSpec, formatConfig, ConfigError } from '../../hypervisor/tools/xl/config.js';

const GOOD = `# a guest
name = "guest1"
kernel = "netbsd"
memory = 64
vcpus = 2
disk = [ 'file:/srv/g1.img,xvda,w',
         'format=raw, vdev=xvdb, access=ro, target=/srv/a,b.img' ]
vif = [ 'mac=00:16:3E:00:00:07,ip=10.0.0.2,bridge=xenbr0,forward=udp:5555:7' ]
extra = "workload=blk,net"; on_crash = "preserve"
`;

test('parses a full xl.cfg', (t) => {
  const c = parseConfig(GOOD, 'g1.cfg');
  t.is(c.name, 'guest1');
  t.is(c.kernel, 'netbsd');
  t.is(c.memory, 64);
  t.is(c.vcpus, 2);
  t.deepEqual(c.disks[0], { target: '/srv/g1.img', vdev: 'xvda', readOnly: false, format: 'raw' });
  t.deepEqual(c.disks[1], { target: '/srv/a,b.img', vdev: 'xvdb', readOnly: true, format: 'raw' }, 'target= takes the rest, commas included');
  t.deepEqual(c.vifs[0], { mac: '00:16:3e:00:00:07', ip: '10.0.0.2', bridge: 'xenbr0', forwards: [{ hostPort: 5555, guestPort: 7 }] });
  t.is(c.extra, 'workload=blk,net');
  t.is(c.onCrash, 'preserve');
  t.is(c.onReboot, 'restart', 'default as xl');
});

test('formatConfig round-trips through parseConfig', (t) => {
  const c = parseConfig(GOOD);
  t.deepEqual(parseConfig(formatConfig(c)), c);
});

const bad: [string, string, RegExp][] = [
  ['unknown key', 'name="a"\nkernel="netbsd"\nmemroy=64\n', /:3: unknown key memroy/],
  ['bad memory size', 'name="a"\nkernel="netbsd"\nmemory=2\n', /memory = 2: expected MiB/],
  ['memory not a number', 'name="a"\nkernel="netbsd"\nmemory="lots"\n', /memory must be a number/],
  ['missing kernel', 'name="a"\n', /kernel is required/],
  ['unterminated string', 'name="a\nkernel="x"', /:1: unterminated string/],
  ['duplicate key', 'name="a"\nname="b"\nkernel="k"', /:2: name is set twice \(first at line 1\)/],
  ['phy disk', 'name="a"\nkernel="k"\ndisk=["phy:/dev/sda,xvda,w"]', /phy: devices are not supported/],
  ['bad vif mac', 'name="a"\nkernel="k"\nvif=["mac=zz"]', /vif mac zz is not a MAC address/],
  ['bad forward', 'name="a"\nkernel="k"\nvif=["forward=tcp:1:2"]', /must be udp:HOSTPORT:GUESTPORT/],
  ['bad on_crash', 'name="a"\nkernel="k"\non_crash="explode"', /on_crash = explode: expected one of/],
  ['hvm', 'name="a"\nkernel="k"\ntype="hvm"', /only pv guests/],
  ['garbage', 'name="a" junk\n', /unexpected "j" after value of name/],
];
for (const [what, text, re] of bad) {
  test(`rejects ${what} with a clear error`, (t) => {
    const e = t.throws(() => parseConfig(text, 'bad.cfg'), { instanceOf: ConfigError });
    t.regex(e?.message ?? '', re);
    t.true((e?.message ?? '').startsWith('bad.cfg:'), 'error names the file');
  });
}

test('disk and vif specs: defaults and refusals', (t) => {
  t.deepEqual(parseDiskSpec('/x.img,xvdc,r'), { target: '/x.img', vdev: 'xvdc', readOnly: true, format: 'raw' });
  t.regex(parseDiskSpec('file:/x.img,sda,w') as string, /vdev sda must be xvdX/);
  t.regex(parseDiskSpec('format=qcow2,vdev=xvda,target=/x') as string, /only raw/);
  const v = parseVifSpec('bridge=br1', 2);
  t.deepEqual(v, { mac: '00:16:3e:00:00:03', bridge: 'br1', forwards: [] });
  t.regex(parseVifSpec('ip=10.0.0.300', 0) as string, /not an IPv4 address/);
});
