/**
 * Child processes the bench starts (each in its own process group, so stopping one stops
 * everything it spawned) and what /proc says about them: CPU ticks, RSS, machine busy/steal.
 * Every child is registered here and stopped by PID / process group on exit, error or Ctrl-C.
 */
import { spawn, execFileSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'

export interface Child {
  readonly name: string
  readonly pid: number
  readonly proc: ChildProcess
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  readonly exited: Promise<number | string>
  exitedAlready: boolean
}

const children = new Set<Child>()

/** Starts a command in a new session (own process group whose id is its pid) and tracks it. */
export function startChild(name: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): Child {
  const proc = spawn(cmd, args, { ...opts, detached: true })
  if (proc.pid === undefined) throw new Error(`${name}: could not start ${cmd}`)
  let resolveExit!: (v: number | string) => void
  const exited = new Promise<number | string>((r) => (resolveExit = r))
  const child: Child = { name, pid: proc.pid, proc, exited, exitedAlready: false }
  proc.once('exit', (code, signal) => {
    child.exitedAlready = true
    children.delete(child)
    resolveExit(code ?? signal ?? 'unknown')
  })
  proc.once('error', () => {
    child.exitedAlready = true
    children.delete(child)
    resolveExit('spawn-error')
  })
  children.add(child)
  return child
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig)
  } catch {
    try {
      process.kill(pid, sig)
    } catch {
      // already gone
    }
  }
}

/** SIGTERM to the child's process group, then SIGKILL after `graceMs`. */
export async function stopChild(c: Child, graceMs = 5000): Promise<void> {
  if (c.exitedAlready) return
  signalGroup(c.pid, 'SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const killed = await Promise.race([
    c.exited.then(() => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs))),
  ])
  clearTimeout(timer)
  if (killed) {
    signalGroup(c.pid, 'SIGKILL')
    await Promise.race([c.exited, new Promise((r) => setTimeout(r, 2000))])
  } else {
    // The leader exited; make sure nothing it spawned lingers in its group.
    signalGroup(c.pid, 'SIGKILL')
  }
}

export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)))
}

let cleanupInstalled = false
let interrupted = false
/** True once Ctrl-C / SIGTERM asked the bench to stop (errors after that are expected). */
export function wasInterrupted(): boolean {
  return interrupted
}
/**
 * Stops every child on Ctrl-C / SIGTERM (then exits 130/143), and SIGKILLs any left on exit
 * (the synchronous last resort, e.g. after an uncaught error).
 */
export function installCleanup(onSignal: () => Promise<void> = async () => {}): void {
  if (cleanupInstalled) return
  cleanupInstalled = true
  let stopping = false
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(sig, () => {
      if (stopping) {
        for (const c of children) signalGroup(c.pid, 'SIGKILL')
        process.exit(code)
      }
      stopping = true
      interrupted = true
      process.stderr.write(`\n[bench] ${sig}: stopping everything it started…\n`)
      void Promise.race([onSignal().then(stopAll), new Promise((r) => setTimeout(r, 10_000))]).finally(() => process.exit(code))
    })
  }
  process.on('exit', () => {
    for (const c of children) signalGroup(c.pid, 'SIGKILL')
  })
}

/** Resolves with the first line matching `re` (from stdout or stderr); rejects on exit or timeout. */
export function waitForLine(c: Child, stream: Readable | null, re: RegExp, timeoutMs: number, onLine?: (l: string) => void): Promise<RegExpExecArray> {
  if (!stream) return Promise.reject(new Error(`${c.name}: stream not piped`))
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: stream })
    let done = false
    const finish = (fn: () => void) => {
      if (done) return
      done = true
      clearTimeout(timer)
      fn()
    }
    const timer = setTimeout(() => finish(() => reject(new Error(`${c.name}: no line matching ${re} within ${timeoutMs} ms`))), timeoutMs)
    rl.on('line', (line) => {
      onLine?.(line)
      const m = re.exec(line)
      if (m) finish(() => resolve(m))
    })
    void c.exited.then((code) => finish(() => reject(new Error(`${c.name}: exited (${code}) before it was ready`))))
  })
}

// ------------------------------------------------------------------ /proc

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

interface Stat {
  readonly ppid: number
  /** utime + stime + cutime + cstime, in clock ticks. */
  readonly ticks: number
}

function readStat(pid: number | 'self'): Stat | undefined {
  let s: string
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) }
}

/** The pid and every live descendant of it. */
export function processTree(root: number): number[] {
  const parent = new Map<number, number>()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    const st = readStat(Number(d))
    if (st) parent.set(Number(d), st.ppid)
  }
  const out: number[] = []
  for (const pid of parent.keys()) {
    let p: number | undefined = pid
    for (let depth = 0; p !== undefined && p > 1 && depth < 64; depth++) {
      if (p === root) {
        out.push(pid)
        break
      }
      p = parent.get(p)
    }
  }
  return out
}

/** CPU ticks of a process tree (live processes plus the children they reaped). */
export function treeTicks(pids: readonly number[]): number {
  let t = 0
  for (const p of pids) t += readStat(p)?.ticks ?? 0
  return t
}

/** CPU ticks of one process's main thread only (the JS event loop of a Node process). */
export function mainThreadTicks(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8')
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return Number(f[11]) + Number(f[12])
  } catch {
    return 0
  }
}

/** This process, including the children it reaped (the load generator after it exits). */
export function selfTicks(): number {
  return readStat('self')?.ticks ?? 0
}

export function ticksToUs(ticks: number): number {
  return (ticks * 1e6) / CLK_TCK
}

/** Resident set size and its high-water mark (kB), summed over the pids. */
export function memoryKb(pids: readonly number[]): { rssKb: number; hwmKb: number } {
  let rssKb = 0
  let hwmKb = 0
  for (const p of pids) {
    try {
      const s = readFileSync(`/proc/${p}/status`, 'utf8')
      rssKb += Number(/^VmRSS:\s+(\d+)/m.exec(s)?.[1] ?? 0)
      hwmKb += Number(/^VmHWM:\s+(\d+)/m.exec(s)?.[1] ?? 0)
    } catch {
      // exited
    }
  }
  return { rssKb, hwmKb }
}

/**
 * Machine-wide ticks from /proc/stat: busy in processes (user+nice+system: comparable with the
 * per-process utime+stime; interrupt time, which loopback traffic itself causes, is left out),
 * steal, total.
 */
export function machineTicks(): { busy: number; steal: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v
  return { busy: user + nice + system, steal, total: user + nice + system + idle + iowait + irq + softirq + steal }
}
