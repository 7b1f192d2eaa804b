/**
 * A small dudect-style timing-leak detector (Reparaz, Balasch & Verbauwhede, "dude, is my code
 * constant time?", DATE 2017): inputs of several classes are interleaved at random, each call
 * is timed on its own with `process.hrtime.bigint()`, and Welch's t-test compares the classes'
 * mean times. |t| > 4.5 (p < 10⁻⁵) means the classes are told apart by time.
 *
 * Made robust for a loaded 2-core machine:
 * - every sample gets a FRESH input object, built before its chunk is timed (nothing allocated by
 *   the harness in the timed region). Reusing a fixed input or a small pool measures the CPU
 *   cache, not the code: a fixed string was ~20 ns faster than pooled ones, and 4,096-entry
 *   pools gave A/A |t| up to 3.5 (each entry's placement cost does not average out);
 * - the function is warmed up first (JIT);
 * - the class order is a random shuffle, so drift and noise hit every class alike;
 * - samples above a pooled percentile are cropped (pre-emptions and GC pauses are heavy-tailed
 *   and not class-dependent).
 */

export interface ClassSpec<T> {
  readonly name: string
  /** Returns a fresh input of the class; called before timing, never inside the timed region. */
  next(): T
}

export interface PairT {
  readonly a: string
  readonly b: string
  readonly t: number
  /** Smallest difference of means (ns) this run would flag at |t| = 4.5: the harness's sensitivity. */
  readonly mdeNs: number
}

export interface DudectRun {
  readonly samplesPerClass: number
  readonly cropNs: number
  readonly kept: readonly number[]
  readonly meansNs: readonly number[]
  readonly pairs: readonly PairT[]
  readonly maxAbsT: number
  /** How many calls returned true (the caller checks this is what it expects). */
  readonly truthy: number
}

export const T_THRESHOLD = 4.5
const CHUNK = 50_000

/** Welch's t and its standard error, from running sums. */
function welch(n1: number, s1: number, q1: number, n2: number, s2: number, q2: number): { t: number; se: number } {
  const m1 = s1 / n1
  const m2 = s2 / n2
  const v1 = (q1 - n1 * m1 * m1) / (n1 - 1)
  const v2 = (q2 - n2 * m2 * m2) / (n2 - 1)
  const se = Math.sqrt(v1 / n1 + v2 / n2)
  return { t: (m1 - m2) / se, se }
}

/** Uniform integer in [0, n) from Math.random (the schedule need not be cryptographic). */
const randInt = (n: number) => Math.floor(Math.random() * n)

/**
 * Times `fn` on `samplesPerClass` fresh inputs of each class, interleaved at random, and returns
 * Welch's t between every pair of classes after cropping at the pooled `cropPercentile`.
 */
export function dudect<T>(fn: (input: T) => boolean, classes: readonly ClassSpec<T>[], samplesPerClass: number, cropPercentile = 95): DudectRun {
  const k = classes.length
  const total = samplesPerClass * k
  // The schedule: exactly samplesPerClass of each class, Fisher–Yates shuffled.
  const label = new Uint8Array(total)
  for (let i = 0; i < total; i++) label[i] = i % k
  for (let i = total - 1; i > 0; i--) {
    const j = randInt(i + 1)
    const tmp = label[i]!
    label[i] = label[j]!
    label[j] = tmp
  }

  // Warm-up: let the JIT settle on every class before anything is measured.
  let warm = 0
  for (let i = 0; i < Math.min(total, 20_000); i++) warm += fn(classes[label[i]!]!.next()) ? 1 : 0

  const times = new Float64Array(total)
  const inputs: T[] = new Array(Math.min(CHUNK, total))
  let truthy = warm * 0
  for (let start = 0; start < total; start += CHUNK) {
    const end = Math.min(total, start + CHUNK)
    for (let i = start; i < end; i++) inputs[i - start] = classes[label[i]!]!.next()
    for (let i = start; i < end; i++) {
      const x = inputs[i - start]!
      const t0 = process.hrtime.bigint()
      const r = fn(x)
      const t1 = process.hrtime.bigint()
      times[i] = Number(t1 - t0)
      if (r) truthy++
    }
  }

  const sorted = Float64Array.from(times).sort()
  const cropNs = sorted[Math.min(total - 1, Math.floor((cropPercentile / 100) * total))]!
  const n = new Array<number>(k).fill(0)
  const s = new Array<number>(k).fill(0)
  const q = new Array<number>(k).fill(0)
  for (let i = 0; i < total; i++) {
    const x = times[i]!
    if (x > cropNs) continue
    const c = label[i]!
    n[c]!++
    s[c]! += x
    q[c]! += x * x
  }
  const pairs: PairT[] = []
  for (let a = 0; a < k; a++) {
    for (let b = a + 1; b < k; b++) {
      const w = welch(n[a]!, s[a]!, q[a]!, n[b]!, s[b]!, q[b]!)
      pairs.push({ a: classes[a]!.name, b: classes[b]!.name, t: w.t, mdeNs: T_THRESHOLD * w.se })
    }
  }
  return {
    samplesPerClass, cropNs, kept: n, meansNs: s.map((x, i) => x / n[i]!), pairs,
    maxAbsT: Math.max(...pairs.map((p) => Math.abs(p.t))), truthy,
  }
}

export function describe(run: DudectRun): string {
  return `${run.samplesPerClass}/class, crop ${run.cropNs} ns, means ${run.meansNs.map((m) => m.toFixed(1)).join('/')} ns; ` +
    run.pairs.map((p) => `t(${p.a.slice(0, 1)},${p.b.slice(0, 1)}) = ${p.t.toFixed(2)} [MDE ${p.mdeNs.toFixed(1)} ns]`).join(', ')
}
