/**
 * Medians per scenario × target, the side-by-side markdown tables and the issue's targets
 * (PASS/MISS; never an exit code: this 2-core box is noisy, compare only within one run).
 */
import { quantile, type SseTiming } from './probe.ts'

export interface Scenario {
  readonly id: string
  readonly api: 'openai' | 'anthropic'
  readonly mode: 'json' | 'sse'
  readonly conns: number
}

export interface RunRecord {
  readonly rep: number
  readonly scenario: string
  readonly target: string
  readonly loadgen: string
  readonly connections: number
  readonly requests: number
  readonly durationS: number
  readonly rps: number
  readonly p50Ms: number
  readonly p90Ms: number | null
  readonly p99Ms: number
  readonly maxMs: number
  readonly errors: number
  readonly non2xx: number
  /** CPU of the target's process tree (for `direct`: the mock). */
  readonly cpuUsPerReq: number
  /** The part of it spent on the target's main thread (its event loop); the rest is worker threads, GC helpers, libuv. */
  readonly mainThreadUsPerReq: number
  readonly cpuPctOfCore: number
  /** The mock's CPU during the run: it must stay well below a core, or the mock is the bottleneck. */
  readonly mockCpuPctOfCore: number
  readonly peakRssMb: number
  /** CPU used by processes outside the bench, % of one core; hypervisor steal, % of the machine. */
  readonly otherCpuPct: number
  readonly stealPct: number
  readonly noisy: boolean
}

export interface Cell {
  readonly runs: number
  readonly noisyRuns: number
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly cpuUsPerReq: number
  readonly mainThreadUsPerReq: number
  readonly cpuPctOfCore: number
  readonly mockCpuPctOfCore: number
  readonly peakRssMb: number
  readonly errors: number
  readonly non2xx: number
  readonly rpsMin: number
  readonly rpsMax: number
}

const med = (xs: number[]) => quantile(xs, 0.5)

/** Medians over the clean runs when there are at least two, else over every run. */
export function summarize(runs: readonly RunRecord[]): Map<string, Map<string, Cell>> {
  const out = new Map<string, Map<string, Cell>>()
  const groups = new Map<string, RunRecord[]>()
  for (const r of runs) {
    const k = `${r.scenario}\0${r.target}`
    groups.set(k, [...(groups.get(k) ?? []), r])
  }
  for (const [k, all] of groups) {
    const [scenario, target] = k.split('\0') as [string, string]
    const clean = all.filter((r) => !r.noisy)
    const use = clean.length >= 2 ? clean : all
    const cell: Cell = {
      runs: all.length,
      noisyRuns: all.length - clean.length,
      rps: med(use.map((r) => r.rps)),
      p50Ms: med(use.map((r) => r.p50Ms)),
      p99Ms: med(use.map((r) => r.p99Ms)),
      cpuUsPerReq: med(use.map((r) => r.cpuUsPerReq)),
      mainThreadUsPerReq: med(use.map((r) => r.mainThreadUsPerReq)),
      cpuPctOfCore: med(use.map((r) => r.cpuPctOfCore)),
      mockCpuPctOfCore: med(use.map((r) => r.mockCpuPctOfCore)),
      peakRssMb: Math.max(...all.map((r) => r.peakRssMb)),
      errors: all.reduce((s, r) => s + r.errors, 0),
      non2xx: all.reduce((s, r) => s + r.non2xx, 0),
      rpsMin: Math.min(...use.map((r) => r.rps)),
      rpsMax: Math.max(...use.map((r) => r.rps)),
    }
    if (!out.has(scenario)) out.set(scenario, new Map())
    out.get(scenario)!.set(target, cell)
  }
  return out
}

const f0 = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? '—' : Math.round(n).toLocaleString('en-US'))
const f2 = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? '—' : n.toFixed(2))
const sign = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? '—' : `${n >= 0 ? '+' : ''}${n.toFixed(2)}`)
const pct = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? '—' : `${Math.round(n * 100)}%`)

export function sideBySide(scenarios: readonly Scenario[], cells: Map<string, Map<string, Cell>>): string {
  const rows = [
    '| scenario | req/s direct | req/s proxy | req/s tollgate | tollgate / proxy | p50 ms direct | p50 ms proxy | p50 ms tollgate | Δp50 ms | p99 ms direct | p99 ms proxy | p99 ms tollgate | Δp99 ms |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ]
  for (const s of scenarios) {
    const c = cells.get(s.id)
    if (!c) continue
    const d = c.get('direct')
    const p = c.get('proxy')
    const t = c.get('tollgate')
    rows.push(`| ${s.id} | ${f0(d?.rps)} | ${f0(p?.rps)} | ${f0(t?.rps)} | ${t && p ? pct(t.rps / p.rps) : '—'} | ${f2(d?.p50Ms)} | ${f2(p?.p50Ms)} | ${f2(t?.p50Ms)} | ${t && p ? sign(t.p50Ms - p.p50Ms) : '—'} | ${f2(d?.p99Ms)} | ${f2(p?.p99Ms)} | ${f2(t?.p99Ms)} | ${t && p ? sign(t.p99Ms - p.p99Ms) : '—'} |`)
  }
  return rows.join('\n')
}

export function resources(scenarios: readonly Scenario[], cells: Map<string, Map<string, Cell>>): string {
  const rows = [
    '| scenario | CPU µs/req direct (mock) | CPU µs/req proxy | CPU µs/req tollgate (main thread) | tollgate / proxy CPU | tollgate CPU % of a core | mock CPU % (when proxied / tollgate) | peak RSS MB proxy | peak RSS MB tollgate | errors / non-2xx (all targets) | noisy runs | req/s range tollgate |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ]
  for (const s of scenarios) {
    const c = cells.get(s.id)
    if (!c) continue
    const d = c.get('direct')
    const p = c.get('proxy')
    const t = c.get('tollgate')
    const all = [...c.values()]
    rows.push(`| ${s.id} | ${f0(d?.cpuUsPerReq)} | ${f0(p?.cpuUsPerReq)} | ${f0(t?.cpuUsPerReq)}${t ? ` (${f0(t.mainThreadUsPerReq)})` : ''} | ${t && p ? `${(t.cpuUsPerReq / p.cpuUsPerReq).toFixed(1)}x` : '—'} | ${f0(t?.cpuPctOfCore)} | ${f0(p?.mockCpuPctOfCore)} / ${f0(t?.mockCpuPctOfCore)} | ${f0(p?.peakRssMb)} | ${f0(t?.peakRssMb)} | ${all.reduce((n, x) => n + x.errors, 0)} / ${all.reduce((n, x) => n + x.non2xx, 0)} | ${all.reduce((n, x) => n + x.noisyRuns, 0)}/${all.reduce((n, x) => n + x.runs, 0)} | ${t ? `${f0(t.rpsMin)}–${f0(t.rpsMax)}` : '—'} |`)
  }
  return rows.join('\n')
}

export function sseTable(probes: readonly { api: string; rows: readonly SseTiming[] }[]): string {
  const rows = [
    '| API | target | head ms | first delta ms | span first→last delta ms | gap median ms | gap p99 ms | last delta → terminator ms | total ms |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|',
  ]
  for (const p of probes) {
    for (const r of p.rows) rows.push(`| ${p.api} | ${r.target} | ${f2(r.headMs)} | ${f2(r.firstDeltaMs)} | ${f2(r.spanMs)} | ${f2(r.gapMedianMs)} | ${f2(r.gapP99Ms)} | ${f2(r.tailMs)} | ${f2(r.totalMs)} |`)
  }
  return rows.join('\n')
}

export interface TargetCheck {
  readonly id: string
  readonly target: string
  readonly measured: string
  readonly limit: string
  /** null: not measured in this run. */
  readonly pass: boolean | null
}

export const LIMITS = {
  rpsRatioJsonC50: 0.6,
  dP50MsC1: 0.5,
  dP99MsC1: 2,
  ssePerChunkMs: 0.25,
  rssMb: 150,
} as const

export function checkTargets(cells: Map<string, Map<string, Cell>>, conns: number, probes: readonly { api: string; rows: readonly SseTiming[] }[], peakRssMb: number | undefined): TargetCheck[] {
  const out: TargetCheck[] = []
  const get = (s: string) => ({ p: cells.get(s)?.get('proxy'), t: cells.get(s)?.get('tollgate') })
  for (const api of ['oa', 'an'] as const) {
    const name = api === 'oa' ? 'OpenAI' : 'Anthropic'
    const { p, t } = get(`${api}-json-c${conns}`)
    out.push({
      id: `${api}-throughput`, target: `${name} JSON c=${conns}: Tollgate req/s ≥ 60% of the bare proxy`,
      measured: t && p ? `${pct(t.rps / p.rps)} (${f0(t.rps)} vs ${f0(p.rps)} req/s)` : 'not measured', limit: '≥ 60%',
      pass: t && p ? t.rps / p.rps >= LIMITS.rpsRatioJsonC50 : null,
    })
  }
  for (const api of ['oa', 'an'] as const) {
    const name = api === 'oa' ? 'OpenAI' : 'Anthropic'
    const { p, t } = get(`${api}-json-c1`)
    out.push({
      id: `${api}-p50-c1`, target: `${name} JSON c=1: Δp50 over the bare proxy`,
      measured: t && p ? `${sign(t.p50Ms - p.p50Ms)} ms (${f2(t.p50Ms)} vs ${f2(p.p50Ms)})` : 'not measured', limit: '≤ +0.5 ms',
      pass: t && p ? t.p50Ms - p.p50Ms <= LIMITS.dP50MsC1 : null,
    })
    out.push({
      id: `${api}-p99-c1`, target: `${name} JSON c=1: Δp99 over the bare proxy`,
      measured: t && p ? `${sign(t.p99Ms - p.p99Ms)} ms (${f2(t.p99Ms)} vs ${f2(p.p99Ms)})` : 'not measured', limit: '≤ +2 ms',
      pass: t && p ? t.p99Ms - p.p99Ms <= LIMITS.dP99MsC1 : null,
    })
  }
  for (const probe of probes) {
    const p = probe.rows.find((r) => r.target === 'proxy')
    const t = probe.rows.find((r) => r.target === 'tollgate')
    const perChunk = t && p ? (t.spanMs - p.spanMs) / Math.max(1, t.chunks - 1) : undefined
    out.push({
      id: `${probe.api}-sse-per-chunk`, target: `${probe.api} SSE: added delay per streamed chunk vs the bare proxy (paced stream)`,
      measured: perChunk === undefined ? 'not measured' : `${sign(perChunk)} ms/chunk (span ${f2(t!.spanMs)} vs ${f2(p!.spanMs)} ms over ${t!.chunks} deltas; gap p99 ${f2(t!.gapP99Ms)} vs ${f2(p!.gapP99Ms)} ms)`,
      limit: `≤ +${LIMITS.ssePerChunkMs} ms (timer noise)`,
      pass: perChunk === undefined ? null : perChunk <= LIMITS.ssePerChunkMs,
    })
  }
  out.push({
    id: 'rss', target: 'Tollgate peak RSS under load',
    measured: peakRssMb === undefined ? 'not measured' : `${f0(peakRssMb)} MB`, limit: `≤ ${LIMITS.rssMb} MB`,
    pass: peakRssMb === undefined ? null : peakRssMb <= LIMITS.rssMb,
  })
  return out
}

export function targetsTable(checks: readonly TargetCheck[]): string {
  const rows = ['| target | measured | limit | result |', '|---|---|---|---|']
  for (const c of checks) rows.push(`| ${c.target} | ${c.measured} | ${c.limit} | ${c.pass === null ? 'n/a' : c.pass ? 'PASS' : '**MISS**'} |`)
  return rows.join('\n')
}
