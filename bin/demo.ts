/*
 * `make demo`: the furthest end-to-end run that works today, driven the way
 * a user would drive it — through ./bin/xl in child processes, against a
 * machine daemon in a fresh directory — with a timeline of what it
 * measured. Every number printed is measured in this run.
 *
 * Today: start a machine, create the netbsd guest from an embedded config,
 * follow its console to the end of boot, show `xl list` and the guest's
 * xenstore nodes through Debian's xenstore-read, destroy it, stop the
 * machine. (Save/restore joins when issue 7 lands.)
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const XL = path.join(ROOT, 'bin', 'xl');

const CONFIG = `# embedded demo guest
name = "demo"
kernel = "netbsd"
memory = 64
vcpus = 1
on_crash = "preserve"
`;

interface Step { what: string; ms: number }
const timeline: Step[] = [];
const t0 = performance.now();

function say(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
}

function xl(dir: string, args: string[]): string {
  const start = performance.now();
  const r = spawnSync(XL, ['--dir', dir, ...args], { encoding: 'utf8' });
  const ms = performance.now() - start;
  if (r.status !== 0) throw new Error(`xl ${args.join(' ')} failed (exit ${r.status}): ${r.stderr.trim()}`);
  timeline.push({ what: `xl ${args.join(' ')}`, ms });
  return r.stdout;
}

/** Follow `xl console DOM` until a line matches, then detach with Ctrl-]. */
function followConsole(dir: string, dom: string, until: RegExp, limitMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(XL, ['--dir', dir, 'console', dom], { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let buf = '';
    let done = false;
    const guard = setTimeout(() => {
      if (!done) {
        done = true;
        child.kill();
        reject(new Error(`no line matching ${until} on the console within ${limitMs} ms; got:\n${lines.join('\n')}`));
      }
    }, limitMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        lines.push(line);
        say(`  | ${line}`);
        if (!done && until.test(line)) {
          done = true;
          timeline.push({ what: `console: "${line.slice(0, 40)}"`, ms: performance.now() - start });
          child.stdin.write('\x1d');
        }
      }
    });
    child.on('exit', () => {
      clearTimeout(guard);
      if (done) resolve(lines);
      else reject(new Error(`xl console exited before a line matched ${until}`));
    });
  });
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'xl.js'))) throw new Error('dist/xl.js is missing: run make');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xenport-demo-'));
  const cfg = path.join(dir, 'demo.cfg');
  fs.writeFileSync(cfg, CONFIG);
  say(`xenport demo: machine dir ${dir}\n`);
  let started = false;
  try {
    say('== xl machine start --memory 256M');
    say(xl(dir, ['machine', 'start', '--memory', '256M']).trim());
    started = true;

    say('\n== xl create demo.cfg (64 MiB netbsd guest)');
    const consoleDone = followConsole(dir, 'demo', /^boot complete/, 60_000);
    // The console follower attaches first so no boot line is missed.
    const domid = xl(dir, ['create', cfg]).trim();
    say(`domid ${domid}; its console:`);
    await consoleDone;

    say('\n== xl list');
    say(xl(dir, ['list']).trimEnd());

    const xsPath = path.join(dir, 'xenstored.sock');
    say(`\n== XENSTORED_PATH=${xsPath} xenstore-read (Debian xenstore-utils)`);
    for (const node of [`/local/domain/${domid}/name`, `/local/domain/${domid}/memory/target`, `/local/domain/${domid}/console/ring-ref`]) {
      const start = performance.now();
      const r = spawnSync('xenstore-read', [node], { encoding: 'utf8', env: { ...process.env, XENSTORED_PATH: xsPath } });
      if (r.error) throw new Error(`xenstore-read: ${r.error.message} (make deps installs xenstore-utils)`);
      if (r.status !== 0) throw new Error(`xenstore-read ${node}: ${r.stderr.trim()}`);
      timeline.push({ what: `xenstore-read ${node}`, ms: performance.now() - start });
      say(`  ${node} = ${r.stdout.trim()}`);
    }

    say('\n== xl destroy demo; xl machine stop');
    xl(dir, ['destroy', 'demo']);
    say(xl(dir, ['machine', 'stop']).trim());
    started = false;
  } finally {
    if (started) spawnSync(XL, ['--dir', dir, 'machine', 'stop'], { encoding: 'utf8' });
  }

  say('\n== timeline (measured in this run)');
  for (const s of timeline) say(`  ${s.ms.toFixed(1).padStart(9)} ms  ${s.what}`);
  say(`  ${(performance.now() - t0).toFixed(1).padStart(9)} ms  total`);
  say('\nNot in this demo yet: disk and network devices, save and restore (issues 6 and 7).');
}

main().catch((e: unknown) => {
  process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
