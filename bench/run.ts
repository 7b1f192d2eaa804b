/**
 * `npm run bench`: what one Tollgate hop costs, on loopback, next to the floor.
 *
 * Starts (127.0.0.1 only) a mock LLM upstream, a bare pass-through proxy and Tollgate itself
 * (`serve`, fresh data dir, production key made with the CLI), checks each answers every API/mode
 * correctly, probes SSE event timing, warms up, then drives each target with wrk (or autocannon)
 * interleaved, REPS times per scenario. Prints markdown tables and PASS/MISS per target of the
 * issue, writes bench/results/<timestamp>.json, stops everything it started and exits 0 (a
 * MISS is a finding, not a failure: this box is noisy).
 *
 * Knobs (env): BENCH_TOLLGATE_ENV="" (extra Tollgate settings, NAME=value …) BENCH_NICE=0 (priority of the bench and its children) BENCH_NODE_FLAGS="" (extra node flags for Tollgate only) BENCH_DURATION=5 (s per run) BENCH_REPS=2 BENCH_WARMUP=2 (s per target and API/mode)
 *   BENCH_CONNS=50 BENCH_SCENARIOS="oa-json-c1 …" BENCH_TARGETS="direct proxy tollgate"
 *   BENCH_LOADGEN=wrk|autocannon BENCH_SSE_PROBE=15 (requests per target; 0 skips)
 *   BENCH_RETRY_NOISY=0 (re-measure a noisy run at most this many times) BENCH_KEEP=1 (keep the temp dir)
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, setPriority, tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { writeBodies, type Api, type Mode } from './lib/bodies.ts'
import { pickLoadGen, runLoad, type LoadGen, type LoadResult } from './lib/load.ts'
import { serverTimingProbe, sqliteCommitFloor, type TimingBreakdown } from './lib/breakdown.ts'
import { sseTimingProbe, verify, type SseTiming, type Target } from './lib/probe.ts'
import {
  installCleanup, machineTicks, mainThreadTicks, memoryKb, processTree, selfTicks, startChild, stopAll, stopChild, ticksToUs, treeTicks, waitForLine,
  wasInterrupted, CLK_TCK, type Child,
} from './lib/procs.ts'
import { checkTargets, resources, sideBySide, sseTable, summarize, targetsTable, type RunRecord, type Scenario } from './lib/report.ts'
import { createKey, ensureBuild, extraSettings, ROOT, startTollgate, tollgateEnv, type RunningTollgate } from './lib/tollgate.ts'
import { MOCK_ANTHROPIC_KEY, MOCK_OPENAI_KEY } from './mock-upstream.ts'

// ------------------------------------------------------------------ settings (all bounded)
function int(name: string, def: number, min: number, max: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return def
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max}`)
  return n
}
const DURATION = int('BENCH_DURATION', 5, 1, 300)
const REPS = int('BENCH_REPS', 2, 1, 50)
const WARMUP = int('BENCH_WARMUP', 2, 0, 60)
const CONNS = int('BENCH_CONNS', 50, 2, 1000)
const SSE_PROBE_N = int('BENCH_SSE_PROBE', 15, 0, 500)
const TIMING_PROBE_N = int('BENCH_TIMING_PROBE', 300, 0, 10_000)
const RETRY_NOISY = int('BENCH_RETRY_NOISY', 0, 0, 3)
const KEEP = process.env['BENCH_KEEP'] === '1'
/**
 * Scheduling priority for the bench and everything it starts (children inherit it). 0 by default:
 * other work on a shared box is not pushed aside unless asked (e.g. BENCH_NICE=-10, as root).
 */
const NICE = int('BENCH_NICE', 0, -20, 19)
/** Extra node flags for the Tollgate process only (experiments, e.g. --max-semi-space-size=4). */
const NODE_FLAGS = (process.env['BENCH_NODE_FLAGS'] ?? '').split(/\s+/).filter(Boolean)
const NOISE_MAX_OTHER_PCT = 25
const NOISE_MAX_STEAL_PCT = 10
const SSE_PROBE = { gapMs: 3, chunks: 16 }

const ALL_SCENARIOS: Scenario[] = [
  { id: 'oa-json-c1', api: 'openai', mode: 'json', conns: 1 },
  { id: `oa-json-c${CONNS}`, api: 'openai', mode: 'json', conns: CONNS },
  { id: 'oa-sse-c1', api: 'openai', mode: 'sse', conns: 1 },
  { id: `oa-sse-c${CONNS}`, api: 'openai', mode: 'sse', conns: CONNS },
  { id: 'an-json-c1', api: 'anthropic', mode: 'json', conns: 1 },
  { id: `an-json-c${CONNS}`, api: 'anthropic', mode: 'json', conns: CONNS },
]
const wantScenarios = process.env['BENCH_SCENARIOS']?.split(/[\s,]+/).filter(Boolean)
const SCENARIOS = wantScenarios ? ALL_SCENARIOS.filter((s) => wantScenarios.includes(s.id)) : ALL_SCENARIOS
if (SCENARIOS.length === 0) throw new Error(`BENCH_SCENARIOS matches none of: ${ALL_SCENARIOS.map((s) => s.id).join(' ')}`)
const TARGET_NAMES = (process.env['BENCH_TARGETS'] ?? 'direct proxy tollgate').split(/[\s,]+/).filter((t) => ['direct', 'proxy', 'tollgate'].includes(t))

const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// ------------------------------------------------------------------ state for cleanup
let workDir: string | undefined
let tollgate: RunningTollgate | undefined
const tollgateStderr: string[] = []
installCleanup(async () => {
  if (workDir && !KEEP) rmSync(workDir, { recursive: true, force: true })
})

async function startNodeServer(name: string, script: string, env: NodeJS.ProcessEnv, ready: RegExp): Promise<{ child: Child; port: number }> {
  const child = startChild(name, process.execPath, ['--import', 'tsx', join(ROOT, 'bench', script)], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] })
  const m = await waitForLine(child, child.proc.stdout, ready, 30_000)
  child.proc.stdout!.resume()
  return { child, port: Number(m[1]) }
}

/** Waits (at most 10 s) until the servers stop burning CPU, so a backlog never leaks into the next run. */
async function quiesce(pids: () => number[]): Promise<void> {
  for (let i = 0; i < 33; i++) {
    const a = treeTicks(pids())
    await sleep(300)
    if (treeTicks(pids()) - a <= 1) return
  }
  log('  (servers still busy after 10 s; measuring anyway)')
}

async function main(): Promise<void> {
  const startedAt = new Date()
  if (NICE !== 0) {
    setPriority(0, NICE)
    log(`running at nice ${NICE} (children inherit it)`)
  }
  const gen: LoadGen = pickLoadGen(process.env['BENCH_LOADGEN'])
  log(`load generator: ${gen.name} ${gen.version} (latency resolution ${gen.resolution})`)
  const runs = SCENARIOS.length * TARGET_NAMES.length * REPS
  log(`plan: ${SCENARIOS.map((s) => s.id).join(', ')} × ${TARGET_NAMES.join('/')} × ${REPS} reps × ${DURATION}s (+${WARMUP}s warm-ups): ~${Math.ceil((runs * (DURATION + 1.5) + 9 * WARMUP + 40) / 60)} min`)

  workDir = mkdtempSync(join(tmpdir(), 'tollgate-bench-'))
  const bodies = writeBodies(workDir)

  // 1. mock upstream
  const mock = await startNodeServer('mock', 'mock-upstream.ts', { ...process.env, MOCK_HOST: '127.0.0.1', MOCK_PORT: '0' }, /"mock":\{"port":(\d+)\}/)
  log(`mock upstream on 127.0.0.1:${mock.port} (pid ${mock.child.pid})`)
  // 2. bare proxy
  const proxy = await startNodeServer('proxy', 'baseline-proxy.ts', { ...process.env, PROXY_HOST: '127.0.0.1', PROXY_PORT: '0', UPSTREAM_URL: `http://127.0.0.1:${mock.port}` }, /"proxy":\{"port":(\d+)\}/)
  log(`bare proxy on 127.0.0.1:${proxy.port} (pid ${proxy.child.pid})`)
  // 3. Tollgate, compiled as `npm start` runs it: CLI org + key, then `serve`
  ensureBuild(log)
  const dataDir = join(workDir, 'data')
  const env = tollgateEnv(dataDir, mock.port)
  const key = await createKey(env, 'bench')
  log(`tollgate: org "bench" and production key ${key.id} created with the CLI (mode ${env['TOLLGATE_MODE'] ?? 'default'})`)
  tollgate = await startTollgate(env, join(workDir, 'tollgate.log'), (l) => {
    if (tollgateStderr.length < 200) tollgateStderr.push(l)
  }, NODE_FLAGS)
  log(`tollgate on 127.0.0.1:${tollgate.port} (pid ${tollgate.child.pid}; data dir ${dataDir})`)
  const tollgateIdleRssMb = memoryKb(processTree(tollgate.child.pid)).rssKb / 1024
  const commitFloor = sqliteCommitFloor(workDir)
  log(`SQLite commit floor on this disk (WAL, synchronous=FULL, 1 row): p50 ${commitFloor.p50Ms.toFixed(2)} ms, p99 ${commitFloor.p99Ms.toFixed(2)} ms`)

  const mockHeaders = { openai: { authorization: `Bearer ${MOCK_OPENAI_KEY}` }, anthropic: { 'x-api-key': MOCK_ANTHROPIC_KEY, 'anthropic-version': '2023-06-01' } }
  const allTargets: Target[] = [
    { name: 'direct', base: `http://127.0.0.1:${mock.port}`, pid: mock.child.pid, headers: mockHeaders },
    { name: 'proxy', base: `http://127.0.0.1:${proxy.port}`, pid: proxy.child.pid, headers: mockHeaders },
    { name: 'tollgate', base: `http://127.0.0.1:${tollgate.port}`, pid: tollgate.child.pid, headers: { openai: { authorization: `Bearer ${key.key}` }, anthropic: { 'x-api-key': key.key, 'anthropic-version': '2023-06-01' } } },
  ]
  const targets = allTargets.filter((t) => TARGET_NAMES.includes(t.name))
  const serverPids = () => [mock.child.pid, proxy.child.pid, tollgate!.child.pid].flatMap((p) => processTree(p))
  let tollgateResponses = 0

  // 4. pre-flight: every target answers every API/mode correctly
  const broken = new Map<string, string>()
  for (const t of targets) {
    for (const api of ['openai', 'anthropic'] as const) {
      for (const mode of ['json', 'sse'] as const) {
        const r = await verify(t, api, mode)
        if (t.name === 'tollgate') tollgateResponses++
        if (!r.ok) broken.set(`${t.name}|${api}|${mode}`, r.reason)
        log(`check ${t.name.padEnd(8)} ${api.padEnd(9)} ${mode.padEnd(4)} ${r.ok ? 'ok (200, answer text' + (mode === 'sse' ? ', terminator)' : ')') : `FAILED: ${r.reason}`}`)
      }
    }
  }

  // 5. SSE timing probe (paced stream, one connection, interleaved)
  const probes: { api: string; rows: SseTiming[] }[] = []
  const probeTargets = targets.filter((t) => !broken.has(`${t.name}|openai|sse`) && !broken.has(`${t.name}|anthropic|sse`))
  if (SSE_PROBE_N > 0 && probeTargets.length > 0) {
    for (const api of ['openai', 'anthropic'] as const) {
      // A few unmeasured rounds first, so connection set-up and JIT warm-up stay out of it.
      await sseTimingProbe(probeTargets, api, 3, 0, SSE_PROBE.chunks)
      const rows = await sseTimingProbe(probeTargets, api, SSE_PROBE_N, SSE_PROBE.gapMs, SSE_PROBE.chunks)
      if (probeTargets.some((t) => t.name === 'tollgate')) tollgateResponses += SSE_PROBE_N + 3
      probes.push({ api, rows })
      log(`SSE probe ${api}: ${rows.map((r) => `${r.target} span ${r.spanMs.toFixed(2)} ms, tail ${r.tailMs.toFixed(2)} ms`).join('; ')}`)
    }
  }

  // 5b. Server-Timing breakdown at c=1 (Tollgate's own view of where a request's time goes)
  const breakdowns: TimingBreakdown[] = []
  const stTargets = targets.filter((t) => t.name !== 'direct' && !broken.has(`${t.name}|openai|json`) && !broken.has(`${t.name}|anthropic|json`))
  if (TIMING_PROBE_N > 10 && stTargets.some((t) => t.name === 'tollgate')) {
    for (const api of ['openai', 'anthropic'] as const) {
      const b = await serverTimingProbe(stTargets, api, TIMING_PROBE_N)
      tollgateResponses += TIMING_PROBE_N
      breakdowns.push(b)
      log(`timing probe ${api}: client p50 ${Object.entries(b.client).map(([k, v]) => `${k} ${v.p50.toFixed(2)} ms`).join(', ')}; tollgate Server-Timing p50 ${Object.entries(b.steps).map(([k, v]) => `${k} ${v.p50.toFixed(2)}`).join(', ')} ms`)
    }
  }

  // 6. warm-up: each target, each API/mode in the plan, at 16 connections
  const modes = [...new Set(SCENARIOS.map((s) => `${s.api}-${s.mode}` as const))]
  if (WARMUP > 0) {
    for (const t of targets) {
      for (const am of modes) {
        const [api, mode] = am.split('-') as [Api, Mode]
        if (broken.has(`${t.name}|${api}|${mode}`)) continue
        const r = await runLoad(gen, { url: t.base + (api === 'openai' ? '/v1/chat/completions' : '/v1/messages'), bodyFile: bodies[am], headers: t.headers[api], connections: 16, durationS: WARMUP })
        if (t.name === 'tollgate') tollgateResponses += r.requests
        log(`warm-up ${t.name.padEnd(8)} ${am.padEnd(14)} ${Math.round(r.rps)} req/s${r.non2xx + r.errors > 0 ? ` (${r.non2xx} non-2xx, ${r.errors} errors)` : ''}`)
      }
    }
  }

  // 7. measured runs: every scenario against every target, target order rotated
  const records: RunRecord[] = []
  let tollgatePeakRssKb = 0
  for (let rep = 1; rep <= REPS; rep++) {
    for (const [si, s] of SCENARIOS.entries()) {
      const order = targets.map((_, i) => targets[(i + si + rep) % targets.length]!)
      for (const t of order) {
        if (broken.has(`${t.name}|${s.api}|${s.mode}`)) continue
        for (let attempt = 0; attempt <= RETRY_NOISY; attempt++) {
          await quiesce(serverPids)
          const rec = await measure(gen, t, s, rep, bodies[`${s.api}-${s.mode}`], mock.child.pid, serverPids)
          if (t.name === 'tollgate') {
            tollgateResponses += rec.result.requests
            tollgatePeakRssKb = Math.max(tollgatePeakRssKb, rec.peakRssKb)
          }
          const r = rec.record
          log(`rep ${rep}/${REPS} ${s.id.padEnd(11)} ${t.name.padEnd(8)} ${Math.round(r.rps).toString().padStart(6)} req/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  ${Math.round(r.cpuUsPerReq)} µs/req  ${Math.round(r.peakRssMb)} MB${r.errors + r.non2xx > 0 ? `  errors ${r.errors} non-2xx ${r.non2xx}` : ''}${r.noisy ? `  NOISY (other ${Math.round(r.otherCpuPct)}% steal ${Math.round(r.stealPct)}%)` : ''}`)
          if (!r.noisy || attempt === RETRY_NOISY) {
            records.push(r)
            break
          }
        }
      }
    }
  }

  // 8. stop Tollgate gracefully (it drains its decision writer), then count what it recorded
  const tollgateHwmKb = memoryKb(processTree(tollgate.child.pid)).hwmKb
  await stopChild(tollgate.child, 20_000)
  const decisions = countDecisions(join(dataDir, 'tollgate.db'))
  const logStats = logFileStats(tollgate.logFile)
  await stopAll()

  // 9. report
  const cells = summarize(records)
  const peakRssMb = targets.some((t) => t.name === 'tollgate') ? tollgatePeakRssKb / 1024 : undefined
  const checks = checkTargets(cells, CONNS, probes, peakRssMb)
  const md: string[] = []
  md.push(`## Tollgate overhead bench — ${startedAt.toISOString()}`)
  md.push('')
  md.push(`Load generator: **${gen.name} ${gen.version}** (latency resolution ${gen.resolution}).${NODE_FLAGS.length > 0 ? ` Tollgate node flags: \`${NODE_FLAGS.join(' ')}\`.` : ''} ${REPS} rep(s) × ${DURATION} s per scenario and target, interleaved, after ${WARMUP} s warm-ups; medians (of clean runs when ≥ 2). Node ${process.version}, ${cpus().length} CPUs${NICE !== 0 ? `, nice ${NICE}` : ''}. All on 127.0.0.1.`)
  const mode = extraSettings()['TOLLGATE_MODE']
  md.push(`Targets: **direct** = load generator → mock; **proxy** = → bare node:http + undici Pool.dispatch proxy → mock; **tollgate** = → \`tollgate serve\` (default settings${mode ? ` in ${mode} mode` : ''}${NODE_FLAGS.length > 0 ? `, node ${NODE_FLAGS.join(' ')}` : ''}, a production key, SQLite decision records, info log to a file) → mock. Δ = Tollgate − proxy.`)
  md.push('')
  md.push(sideBySide(SCENARIOS, cells))
  md.push('')
  md.push('Resources (CPU from /proc utime+stime of each process tree over the run; RSS sampled every 200 ms):')
  md.push('')
  md.push(resources(SCENARIOS, cells))
  md.push('')
  if (probes.length > 0) {
    md.push(`SSE timing probe (${SSE_PROBE_N} requests per target at c=1, mock pacing ${SSE_PROBE.chunks} deltas ${SSE_PROBE.gapMs} ms apart; medians; ms from sending the request). Tollgate holds the stream's terminator until the decision record is durable (D8), which is what "last delta → terminator" shows:`)
    md.push('')
    md.push(sseTable(probes))
    md.push('')
  }
  if (breakdowns.length > 0) {
    md.push(`Tollgate at one connection, sequential requests (${breakdowns[0]!.requests} per API, interleaved with the proxy): client latency and Tollgate's own Server-Timing steps, p50 / p99 ms. SQLite commit floor on this disk (WAL + synchronous=FULL, one row): p50 ${commitFloor.p50Ms.toFixed(2)} / p99 ${commitFloor.p99Ms.toFixed(2)} ms.`)
    md.push('')
    const stepNames = [...new Set(breakdowns.flatMap((b) => Object.keys(b.steps)))]
    md.push(`| API | client proxy | client tollgate | ${stepNames.map((n) => `tollgate ${n}`).join(' | ')} |`)
    md.push(`|---|--:|--:|${stepNames.map(() => '--:|').join('')}`)
    const pq = (v: { p50: number; p99: number } | undefined) => (v ? `${v.p50.toFixed(2)} / ${v.p99.toFixed(2)}` : '—')
    for (const b of breakdowns) md.push(`| ${b.api} | ${pq(b.client['proxy'])} | ${pq(b.client['tollgate'])} | ${stepNames.map((n) => pq(b.steps[n])).join(' | ')} |`)
    md.push('')
  }
  md.push(`Targets (issue; compare only within this run):`)
  md.push('')
  md.push(targetsTable(checks))
  md.push('')
  md.push(`Tollgate RSS: ${Math.round(tollgateIdleRssMb)} MB idle after start, peak ${Math.round(tollgatePeakRssKb / 1024)} MB sampled under load, VmHWM over the whole run ${Math.round(tollgateHwmKb / 1024)} MB (the bare proxy, also run through tsx, peaked at ${Math.round(Math.max(0, ...records.filter((r) => r.target === 'proxy').map((r) => r.peakRssMb)))} MB).`)
  if (decisions) md.push(`Decision records committed: ${decisions.total.toLocaleString('en-US')} (${Object.entries(decisions.byOutcome).map(([o, n]) => `${o} ${n}`).join(', ')}); responses counted by the load generators and probes: ${tollgateResponses.toLocaleString('en-US')} (the difference is requests cut off in flight when a run ends).`)
  md.push(`Tollgate log: ${logStats.lines.toLocaleString('en-US')} lines (${(logStats.bytes / 1e6).toFixed(1)} MB), ${logStats.errors} at level error/fatal.`)
  if (broken.size > 0) md.push(`Skipped (failed the pre-flight check): ${[...broken].map(([k, v]) => `${k}: ${v}`).join('; ')}`)
  const noisy = records.filter((r) => r.noisy).length
  if (noisy > 0) md.push(`${noisy} of ${records.length} runs were noisy (other processes > ${NOISE_MAX_OTHER_PCT}% of a core or steal > ${NOISE_MAX_STEAL_PCT}%); medians use clean runs where there are ≥ 2.`)
  const out = md.join('\n')
  process.stdout.write(`\n${out}\n`)

  const resultsDir = join(ROOT, 'bench', 'results')
  mkdirSync(resultsDir, { recursive: true })
  const file = join(resultsDir, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify({
    startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(),
    settings: { nice: NICE, nodeFlags: NODE_FLAGS, durationS: DURATION, reps: REPS, warmupS: WARMUP, conns: CONNS, scenarios: SCENARIOS.map((s) => s.id), targets: TARGET_NAMES, sseProbe: { n: SSE_PROBE_N, ...SSE_PROBE }, retryNoisy: RETRY_NOISY },
    machine: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, clkTck: CLK_TCK, commit: gitCommit() },
    loadgen: gen,
    tollgate: { env: Object.fromEntries(Object.entries(env).filter(([k]) => /^(TOLLGATE_|ANTHROPIC_BASE|OPENAI_BASE)/.test(k) && k !== 'TOLLGATE_MASTER_KEY')), idleRssMb: tollgateIdleRssMb, peakRssMb, hwmMb: tollgateHwmKb / 1024, decisions, responses: tollgateResponses, log: logStats, stderr: tollgateStderr },
    sqliteCommitFloor: commitFloor,
    timingBreakdown: breakdowns,
    skipped: Object.fromEntries(broken),
    sseProbe: probes,
    summary: Object.fromEntries([...cells].map(([s, m]) => [s, Object.fromEntries(m)])),
    targets: checks,
    runs: records,
    markdown: out,
  }, null, 2))
  log(`results written to ${file}`)
}

async function measure(gen: LoadGen, t: Target, s: Scenario, rep: number, bodyFile: string, mockPid: number, serverPids: () => number[]): Promise<{ record: RunRecord; result: LoadResult; peakRssKb: number }> {
  const tPids = processTree(t.pid)
  const mockPids = processTree(mockPid)
  const servers = serverPids()
  // Everything the bench itself runs: the three servers, this process and the load generator it reaps.
  const oursBefore = treeTicks(servers) + selfTicks()
  const before = { main: mainThreadTicks(t.pid), target: treeTicks(tPids), mock: treeTicks(mockPids), machine: machineTicks(), wall: performance.now() }
  let peakRssKb = memoryKb(tPids).rssKb
  const sampler = setInterval(() => {
    peakRssKb = Math.max(peakRssKb, memoryKb(tPids).rssKb)
  }, 200)
  let result: LoadResult
  try {
    result = await runLoad(gen, { url: t.base + (s.api === 'openai' ? '/v1/chat/completions' : '/v1/messages'), bodyFile, headers: t.headers[s.api], connections: s.conns, durationS: DURATION })
  } finally {
    clearInterval(sampler)
  }
  peakRssKb = Math.max(peakRssKb, memoryKb(tPids).rssKb)
  const wallS = (performance.now() - before.wall) / 1000
  const machine = machineTicks()
  const dTarget = treeTicks(tPids) - before.target
  const dMain = mainThreadTicks(t.pid) - before.main
  const dMock = treeTicks(mockPids) - before.mock
  const dOurs = treeTicks(servers) + selfTicks() - oursBefore
  const core = wallS * CLK_TCK
  const otherCpuPct = Math.max(0, ((machine.busy - before.machine.busy) - dOurs) / core * 100)
  const dTotal = machine.total - before.machine.total
  const stealPct = dTotal > 0 ? (machine.steal - before.machine.steal) / dTotal * 100 : 0
  const record: RunRecord = {
    rep, scenario: s.id, target: t.name, loadgen: gen.name, connections: s.conns,
    requests: result.requests, durationS: result.durationS, rps: result.rps, p50Ms: result.p50Ms, p90Ms: result.p90Ms, p99Ms: result.p99Ms, maxMs: result.maxMs,
    errors: result.errors, non2xx: result.non2xx,
    cpuUsPerReq: result.requests > 0 ? ticksToUs(dTarget) / result.requests : NaN,
    mainThreadUsPerReq: result.requests > 0 ? ticksToUs(dMain) / result.requests : NaN,
    cpuPctOfCore: dTarget / core * 100,
    mockCpuPctOfCore: dMock / core * 100,
    peakRssMb: peakRssKb / 1024,
    otherCpuPct, stealPct,
    noisy: otherCpuPct > NOISE_MAX_OTHER_PCT || stealPct > NOISE_MAX_STEAL_PCT,
  }
  return { record, result, peakRssKb }
}

function countDecisions(path: string): { total: number; byOutcome: Record<string, number> } | undefined {
  try {
    // Read-only, after Tollgate stopped: what it made durable.
    const out = execFileSync(process.execPath, ['-e', `
      const Db = require('better-sqlite3-multiple-ciphers');
      const db = new Db(process.argv[1], { readonly: true, fileMustExist: true });
      const rows = db.prepare('select outcome, count(*) as n from decision group by outcome').all();
      process.stdout.write(JSON.stringify(rows));`, path], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
    const rows = JSON.parse(out) as { outcome: string; n: number }[]
    return { total: rows.reduce((s, r) => s + r.n, 0), byOutcome: Object.fromEntries(rows.map((r) => [r.outcome, r.n])) }
  } catch (err) {
    log(`could not count decision records: ${(err as Error).message}`)
    return undefined
  }
}

function logFileStats(path: string): { lines: number; bytes: number; errors: number } {
  try {
    const bytes = statSync(path).size
    if (bytes > 512e6) return { lines: NaN, bytes, errors: NaN }
    const text = readFileSync(path, 'utf8')
    let lines = 0
    let errors = 0
    for (const l of text.split('\n')) {
      if (l.length === 0) continue
      lines++
      if (/"level":"(error|fatal)"/.test(l)) errors++
    }
    return { lines, bytes, errors }
  } catch {
    return { lines: 0, bytes: 0, errors: 0 }
  }
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
  } catch {
    return undefined
  }
}

try {
  await main()
} catch (err) {
  if (wasInterrupted()) await new Promise(() => {}) // the signal handler stops everything and exits
  log(`ERROR: ${(err as Error).stack ?? String(err)}`)
  if (tollgateStderr.length > 0) log(`tollgate stderr:\n${tollgateStderr.join('\n')}`)
  process.exitCode = 1
} finally {
  await stopAll()
  if (workDir && !KEEP) rmSync(workDir, { recursive: true, force: true })
  else if (workDir) log(`kept ${workDir}`)
}
