/**
 * Signals sent to `npx nimify serve` (or `npm run` / `npm exec`), and how they reach nimify.
 *
 * npm 11 runs a bin through a shell: libnpmexec/lib/run-script.js hands `'nimify' serve …` to
 * @npmcli/run-script as a script with stdio 'inherit'; run-script-pkg.js spawns it through
 * @npmcli/promise-spawn as `sh -c "'nimify' serve …"` (make-spawn-args.js: shell = true → 'sh'),
 * and signal-manager.js forwards SIGINT and SIGTERM that npm receives to that shell only, never
 * to its process group. With /bin/sh = dash (Debian, Ubuntu) the shell does not exec the
 * command, so the tree is npm → sh → node, and:
 *  - SIGTERM kills the shell (dash keeps SIGTERM's default action); npm then sees its child die
 *    of SIGTERM and kills itself with it; nimify, never signalled, is re-parented and keeps serving.
 *  - SIGINT is caught by dash (it catches SIGINT under -c) and held until its child exits; npm
 *    waits for the shell; nimify is never told and everything keeps running.
 * A Ctrl-C in a terminal reaches nimify directly (the terminal signals the whole foreground
 * process group), which the ordinary SIGINT handler covers.
 *
 * So when nimify was started by npm through a shell, it watches that shell (Linux /proc): the
 * shell gone (its parent pid changes) means a SIGTERM reached npm; the shell woken while its only
 * child (nimify) still runs means it caught a signal, which under npm is the forwarded SIGINT.
 * Either way serve drains and exits exactly as for its own SIGTERM/SIGINT.
 */
import { readFileSync } from 'node:fs';

const SHELLS = new Set(['sh', 'dash', 'bash', 'zsh', 'ksh', 'mksh', 'ash', 'busybox']);

function read(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** The shell between npm and this process, or null when npm (if any) is the direct parent or /proc is unavailable. */
export function npmShellParent(env: NodeJS.ProcessEnv, ppid: number = process.ppid): { pid: number; comm: string } | null {
  // npm_lifecycle_event is set by @npmcli/run-script for every script it runs ('npx' for npx / npm exec).
  if (env.npm_lifecycle_event === undefined || ppid <= 1) return null;
  const comm = read(`/proc/${ppid}/comm`)?.trim();
  return comm !== undefined && SHELLS.has(comm) ? { pid: ppid, comm } : null;
}

/** How often the shell is looked at; a drain starts at most this long after npm got the signal. */
export const WATCH_INTERVAL_MS = 200;

function wakeups(pid: number): number | null {
  const status = read(`/proc/${pid}/status`);
  const m = status === null ? null : /^voluntary_ctxt_switches:\s*(\d+)/m.exec(status);
  return m ? Number(m[1]) : null;
}

/**
 * Whether this process is the shell's only child. Only then does a wake-up of the shell mean a
 * signal: with a sibling (`sidecar & nimify serve` in an npm script) the shell also wakes when
 * that sibling exits or stops.
 */
function onlyChild(pid: number): boolean {
  const children = read(`/proc/${pid}/task/${pid}/children`);
  return children !== null && children.trim() === String(process.pid);
}

/**
 * Calls `onSignal` once, with the signal npm most likely received, when the npm-spawned shell
 * dies (SIGTERM) or is woken by a signal (SIGINT). Returns a stop function; the timer never keeps
 * the process alive.
 */
export function watchNpmShell(shell: { pid: number }, onSignal: (signal: NodeJS.Signals, why: string) => void): () => void {
  let base = wakeups(shell.pid);
  let wasAlone = onlyChild(shell.pid);
  const timer = setInterval(() => {
    if (process.ppid !== shell.pid) {
      clearInterval(timer);
      onSignal('SIGTERM', `the shell npm started nimify through (pid ${shell.pid}) exited: npm received SIGTERM`);
      return;
    }
    const now = wakeups(shell.pid);
    // While the shell has other children, and in the tick after the last one went (its exit
    // woke the shell too), its wake-ups say nothing: count afresh.
    const alone = onlyChild(shell.pid);
    if (!alone || !wasAlone) {
      wasAlone = alone;
      base = now;
      return;
    }
    if (base !== null && now !== null && now !== base) {
      clearInterval(timer);
      onSignal('SIGINT', `the shell npm started nimify through (pid ${shell.pid}) caught a signal: npm forwarded SIGINT`);
    }
  }, WATCH_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
