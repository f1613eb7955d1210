/*
 * Stand-alone xenstored on a unix socket:
 *   node build/hypervisor/tools/xenstored/main.js --socket PATH [--keep-orphans]
 * Prints "xenstored: listening on PATH" once ready; stops on SIGINT/SIGTERM.
 * Host clients find it with XENSTORED_PATH=PATH. (The machine daemon embeds
 * the server in-process instead; this entry point is for tests and demos.)
 */
import { startXenstored } from './server.js';

function usage(): never {
  process.stderr.write('usage: xenstored --socket PATH [--keep-orphans]\n');
  process.exit(2);
}

async function main(argv: readonly string[]): Promise<void> {
  let socketPath: string | undefined;
  let keepOrphans = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--socket') socketPath = argv[++i];
    else if (a?.startsWith('--socket=') === true) socketPath = a.slice('--socket='.length);
    else if (a === '--keep-orphans') keepOrphans = true;
    else usage();
  }
  if (socketPath === undefined || socketPath === '') usage();
  const handle = await startXenstored({ socketPath, keepOrphans });
  process.stdout.write(`xenstored: listening on ${handle.socketPath}\n`);
  const stop = (): void => {
    void handle.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`xenstored: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
