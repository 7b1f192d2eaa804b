/**
 * CPU profile of Tollgate under load: `node --import tsx bench/profile.ts`.
 *
 * `tollgate serve` refuses --cpu-prof (D11), so this script builds the same server in-process
 * (loadConfig → buildDeps → buildServer, the code `serve` runs) and re-runs itself under
 * `node --cpu-prof`: the main thread and the decision-writer thread each write a profile. The mock
 * upstream and the load generator run as separate processes so they are not in the profile. Only
 * the load window is analysed (start-up, migrations and warm-up are cut out by timestamp).
 *
 * Knobs: PROFILE_NICE=0 (priority; the children inherit it) PROFILE_DURATION=10 (s) PROFILE_CONNS=50 PROFILE_SCENARIO=openai-json|openai-sse|anthropic-json
 *   PROFILE_INTERVAL_US=250 (sampling interval) PROFILE_WARMUP=3 (s)
 * Output: bench/results/profile-<timestamp>/ (*.cpuprofile, summary.md, summary.json); the summary
 * is printed too.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { setPriority, tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeBodies, PATHS, type Api, type Mode } from './lib/bodies.ts'
import { summarizeProfile, type ProfileSummary, type Row } from './lib/cpuprofile.ts'
import { pickLoadGen, runLoad, type LoadResult } from './lib/load.ts'
import { verify } from './lib/probe.ts'
import { installCleanup, startChild, stopAll, waitForLine } from './lib/procs.ts'
import { createKey, ROOT, tollgateEnv } from './lib/tollgate.ts'

const DURATION = Number(process.env['PROFILE_DURATION'] ?? 10)
const CONNS = Number(process.env['PROFILE_CONNS'] ?? 50)
const WARMUP = Number(process.env['PROFILE_WARMUP'] ?? 3)
const INTERVAL_US = Number(process.env['PROFILE_INTERVAL_US'] ?? 250)
const SCENARIO = (process.env['PROFILE_SCENARIO'] ?? 'openai-json') as `${Api}-${Mode}`
for (const [k, v, lo, hi] of [['PROFILE_DURATION', DURATION, 1, 120], ['PROFILE_CONNS', CONNS, 1, 1000], ['PROFILE_WARMUP', WARMUP, 0, 60], ['PROFILE_INTERVAL_US', INTERVAL_US, 50, 10_000]] as const) {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`${k} must be an integer from ${lo} to ${hi}`)
}
if (!['openai-json', 'openai-sse', 'anthropic-json', 'anthropic-sse'].includes(SCENARIO)) throw new Error('PROFILE_SCENARIO must be openai-json, openai-sse, anthropic-json or anthropic-sse')

const log = (msg: string) => process.stderr.write(`[profile ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)

interface ChildReport {
  readonly scenario: string
  readonly conns: number
  readonly durationS: number
  readonly window: { startUs: number; endUs: number }
  readonly load: LoadResult
  readonly loadgen: string
  readonly cpuUs: { user: number; system: number }
  readonly elu: number
  readonly memory: { before: NodeJS.MemoryUsage; peak: NodeJS.MemoryUsage; afterGc: NodeJS.MemoryUsage }
}

/** The profiled process: Tollgate in-process, load from outside, then a clean exit (profiles are written on exit). */
async function child(outDir: string): Promise<void> {
  installCleanup()
  const work = mkdtempSync(join(tmpdir(), 'tollgate-profile-'))
  const fd = openSync(join(work, 'tollgate.log'), 'a')
  try {
    const mock = startChild('mock', process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'mock-upstream.ts')], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '', MOCK_PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] })
    const mockPort = Number((await waitForLine(mock, mock.proc.stdout, /"mock":\{"port":(\d+)\}/, 30_000))[1])
    mock.proc.stdout!.resume()

    const { loadConfig } = await import('../src/config/load.ts')
    const { buildDeps } = await import('../src/deps.ts')
    const { buildServer } = await import('../src/server.ts')
    const { createLogger } = await import('../src/observe/log.ts')
    const env = tollgateEnv(join(work, 'data'), mockPort)
    // The org and key come from the real CLI (its own process), as in `npm run bench`.
    const { key } = await createKey(env, 'bench')
    const loaded = loadConfig(env, ROOT)
    if (!loaded.ok) throw new Error(`config: ${loaded.problems.join('; ')}`)
    // The same logger `serve` gets, but writing to a file instead of this process's stdout.
    const { default: pino } = await import('pino')
    const deps = await buildDeps(loaded.config, { log: createLogger(loaded.config.log.level, pino.destination({ fd, sync: false })) })
    const app = await buildServer(deps)
    await app.listen({ host: '127.0.0.1', port: 0 })
    const port = (app.server.address() as import('node:net').AddressInfo).port
    log(`tollgate in-process on 127.0.0.1:${port}, mock on ${mockPort}`)

    const [api, mode] = SCENARIO.split('-') as [Api, Mode]
    const target = { name: 'tollgate', base: `http://127.0.0.1:${port}`, pid: process.pid, headers: { openai: { authorization: `Bearer ${key}` }, anthropic: { 'x-api-key': key, 'anthropic-version': '2023-06-01' } } }
    const headers: Record<string, string> = target.headers[api]
    const ok = await verify(target, api, mode)
    if (!ok.ok) throw new Error(`pre-flight failed: ${ok.reason}`)
    const bodies = writeBodies(work)
    const gen = pickLoadGen(process.env['BENCH_LOADGEN'])
    const spec = { url: target.base + PATHS[api], bodyFile: bodies[SCENARIO], headers, connections: CONNS }
    if (WARMUP > 0) await runLoad(gen, { ...spec, durationS: WARMUP })
    // Wait for the decision writer to drain the warm-up, and collect its garbage.
    await new Promise((r) => setTimeout(r, 500))
    global.gc?.()

    const before = process.memoryUsage()
    let peak = before
    const sampler = setInterval(() => {
      const m = process.memoryUsage()
      if (m.rss > peak.rss) peak = m
    }, 200)
    const elu0 = performance.eventLoopUtilization()
    const cpu0 = process.cpuUsage()
    const startUs = Number(process.hrtime.bigint() / 1000n)
    log(`profiling ${SCENARIO} at c=${CONNS} for ${DURATION}s with ${gen.name}`)
    const load = await runLoad(gen, { ...spec, durationS: DURATION })
    const endUs = Number(process.hrtime.bigint() / 1000n)
    const cpu = process.cpuUsage(cpu0)
    const elu = performance.eventLoopUtilization(elu0).utilization
    clearInterval(sampler)
    await new Promise((r) => setTimeout(r, 500))
    global.gc?.()
    const afterGc = process.memoryUsage()

    await app.close()
    await deps.close()
    const report: ChildReport = { scenario: SCENARIO, conns: CONNS, durationS: DURATION, window: { startUs, endUs }, load, loadgen: `${gen.name} ${gen.version}`, cpuUs: cpu, elu, memory: { before, peak, afterGc } }
    writeFileSync(join(outDir, 'child-report.json'), JSON.stringify(report, null, 2))
  } finally {
    await stopAll()
    rmSync(work, { recursive: true, force: true })
  }
}

function table(rows: readonly Row[], limit: number, extra?: (r: Row) => string): string {
  const out = [`| | ms | % of busy |${extra ? ' module |' : ''}`, `|---|--:|--:|${extra ? '---|' : ''}`]
  for (const r of rows.slice(0, limit)) out.push(`| ${r.name.replace(/\|/g, '\\|')} | ${r.ms.toFixed(0)} | ${r.pct.toFixed(1)}% |${extra ? ` ${extra(r)} |` : ''}`)
  return out.join('\n')
}

function threadName(s: ProfileSummary): string {
  if (s.byModuleSelf.some((r) => r.name.includes('sqlite-writer'))) return 'Decision-writer thread'
  if (s.byModuleSelf.some((r) => r.name.startsWith('tsx'))) return 'tsx loader thread'
  return 'Other thread'
}

function render(report: ChildReport, main: ProfileSummary, workers: ProfileSummary[]): string {
  const windowS = (report.window.endUs - report.window.startUs) / 1e6
  const cpuMs = (report.cpuUs.user + report.cpuUs.system) / 1000
  const reqs = report.load.requests
  const mb = (n: number) => `${(n / 1048576).toFixed(0)} MB`
  const md: string[] = []
  md.push(`## Tollgate CPU profile — ${report.scenario}, c=${report.conns}, ${report.durationS}s (${report.loadgen})`)
  md.push('')
  md.push(`Load: ${reqs.toLocaleString('en-US')} requests, ${report.load.rps.toFixed(0)} req/s, p50 ${report.load.p50Ms.toFixed(2)} ms, p99 ${report.load.p99Ms.toFixed(2)} ms, ${report.load.non2xx} non-2xx, ${report.load.errors} errors.`)
  md.push(`Process CPU in the window (all threads): ${cpuMs.toFixed(0)} ms = ${(cpuMs / windowS / 10).toFixed(0)}% of a core, **${((cpuMs * 1000) / reqs).toFixed(0)} µs per request** (user ${(report.cpuUs.user / 1000).toFixed(0)} ms, system ${(report.cpuUs.system / 1000).toFixed(0)} ms). Event-loop utilization ${(report.elu * 100).toFixed(0)}%.`)
  md.push(`Main thread JS profile: busy ${main.busyMs.toFixed(0)} ms (${((main.busyMs * 1000) / reqs).toFixed(0)} µs/req), idle ${main.idleMs.toFixed(0)} ms, ${main.samples} samples.${workers.map((w) => ` ${threadName(w)}: busy ${w.busyMs.toFixed(0)} ms (${((w.busyMs * 1000) / reqs).toFixed(0)} µs/req).`).join('')}`)
  md.push(`Memory (process.memoryUsage): before load rss ${mb(report.memory.before.rss)} heapUsed ${mb(report.memory.before.heapUsed)}; peak rss ${mb(report.memory.peak.rss)} (heapTotal ${mb(report.memory.peak.heapTotal)}, heapUsed ${mb(report.memory.peak.heapUsed)}, external ${mb(report.memory.peak.external)}); after load + GC rss ${mb(report.memory.afterGc.rss)} heapUsed ${mb(report.memory.afterGc.heapUsed)}.`)
  md.push('')
  md.push('### Main thread: self time by module')
  md.push('')
  md.push(table(main.byModuleSelf, 30))
  md.push('')
  md.push('### Main thread: inclusive time by module (stacks that pass through it)')
  md.push('')
  md.push(table(main.byModuleInclusive.filter((r) => r.pct >= 0.5), 40))
  md.push('')
  md.push('### Main thread: top self-time functions')
  md.push('')
  md.push(table(main.topSelf, 40, (r) => (r as Row & { module: string }).module))
  md.push('')
  md.push('### Main thread: inclusive time of Tollgate functions')
  md.push('')
  md.push(table(main.tollgateInclusive, 40))
  for (const w of workers.filter((x) => x.busyMs >= 50)) {
    md.push('')
    md.push(`### ${threadName(w)}: self time by module and top functions`)
    md.push('')
    md.push(table(w.byModuleSelf, 12))
    md.push('')
    md.push(table(w.topSelf, 12, (r) => (r as Row & { module: string }).module))
  }
  return md.join('\n')
}

async function parent(): Promise<void> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const outDir = join(ROOT, 'bench', 'results', `profile-${stamp}`)
  mkdirSync(outDir, { recursive: true })
  log(`writing to ${outDir}`)
  const nice = Number(process.env['PROFILE_NICE'] ?? 0)
  if (!Number.isInteger(nice) || nice < -20 || nice > 19) throw new Error('PROFILE_NICE must be an integer from -20 to 19')
  if (nice !== 0) setPriority(0, nice)
  const args = ['--cpu-prof', `--cpu-prof-dir=${outDir}`, `--cpu-prof-interval=${INTERVAL_US}`, '--expose-gc', '--import', 'tsx', join(ROOT, 'bench', 'profile.ts')]
  execFileSync(process.execPath, args, { cwd: ROOT, stdio: 'inherit', env: { ...process.env, PROFILE_CHILD_OUT: outDir }, timeout: (DURATION + WARMUP + 120) * 1000, killSignal: 'SIGKILL' })
  analyze(outDir)
}

/** Summarizes the profiles in `outDir` (also: `node --import tsx bench/profile.ts --analyze <dir>`). */
function analyze(outDir: string): void {
  const report = JSON.parse(readFileSync(join(outDir, 'child-report.json'), 'utf8')) as ChildReport
  const profiles = readdirSync(outDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(outDir, f))
  if (profiles.length === 0) throw new Error('no .cpuprofile written')
  const summaries = profiles.map((f) => summarizeProfile(f, ROOT, report.window))
  // The main thread is the one that served the requests: the most busy time in the window.
  // (The others: tsx's module-loader thread, idle under load, and the decision-writer thread.)
  summaries.sort((a, b) => b.busyMs - a.busyMs)
  const [main, ...rest] = summaries
  const workers = rest.filter((s) => s.busyMs > 1)
  const md = render(report, main!, workers)
  process.stdout.write(`\n${md}\n`)
  writeFileSync(join(outDir, 'summary.md'), `${md}\n`)
  writeFileSync(join(outDir, 'summary.json'), JSON.stringify({ report, main, workers }, null, 2))
  log(`summary: ${join(outDir, 'summary.md')}`)
}

const childOut = process.env['PROFILE_CHILD_OUT']
const analyzeAt = process.argv.indexOf('--analyze')
if (analyzeAt > 0 && process.argv[analyzeAt + 1]) {
  analyze(process.argv[analyzeAt + 1]!)
} else if (childOut) {
  await child(childOut)
  process.exit(0)
} else {
  installCleanup()
  await parent()
}
