/**
 * Small-cell suppression for cohort analytics (RBAC-3, D10). Pure: no I/O, no clock.
 *
 * The model. Records fall into *atoms* (the finest groups a report distinguishes, e.g.
 * environment × domain within one period); each atom knows the distinct people (pseudonyms) who
 * contributed to it. A published *cell* is a union of atoms (a domain across both environments,
 * an environment's total…). Every value a cell shows is a sum over its records, so what a reader
 * can compute from the shown cells is exactly the linear span of their atom-indicator rows.
 *
 * The rules, applied until nothing changes:
 * 1. Floor: a cell with fewer than k distinct people is suppressed (shown as "<5", never a number).
 * 2. Differencing guard: for two nested cells (inner ⊆ outer) both shown, if their people differ
 *    by 1..k−1 — or the records in outer but not inner come from 1..k−1 people — the INNER cell is
 *    suppressed (the outer one is the more general figure; a pinned inner cell makes it the outer).
 * 3. Complementary suppression: in a family (a total and the parts that partition it), when the
 *    total is shown and the suppressed parts together involve 1..k−1 people, the next
 *    smallest shown part is suppressed too; when the total is suppressed and every part is shown,
 *    the smallest part is suppressed (else the total is their sum).
 * 4. Audit: no vector in the span of the shown rows may be supported only on atoms with fewer
 *    than k people (after merging atoms no shown cell tells apart). While one is, the smallest
 *    (fewest people, then id) shown cell taking part in such a combination is suppressed. This is
 *    exact linear algebra, so multi-way tables (time × environment × value, every margin) are
 *    covered where rule 3 alone is known to fail.
 *
 * `pinned` cells keep a visibility decided earlier (the totals a breakdown shares with the
 * over-time report), so every response that shows a total agrees on it.
 */

export const K = 5

export interface Atom {
  readonly id: string
  readonly people: ReadonlySet<string>
}

export interface Cell {
  readonly id: string
  readonly atoms: readonly string[]
}

export interface Family {
  readonly total: string
  readonly parts: readonly string[]
}

export interface Nest {
  readonly inner: string
  readonly outer: string
}

export interface Plan {
  readonly atoms: readonly Atom[]
  readonly cells: readonly Cell[]
  readonly families?: readonly Family[]
  readonly nests?: readonly Nest[]
  /** Visibility decided earlier; never changed here. */
  readonly pinned?: ReadonlyMap<string, boolean>
}

/** The ids of the cells that may be shown. */
export function suppress(plan: Plan, k = K): Set<string> {
  const atomPeople = new Map(plan.atoms.map((a) => [a.id, a.people]))
  const people = new Map(plan.cells.map((c) => [c.id, union(c.atoms.map((a) => atomPeople.get(a)))]))
  const pinned = plan.pinned ?? new Map<string, boolean>()
  const shown = new Set<string>()
  for (const c of plan.cells) if (pinned.get(c.id) ?? people.get(c.id)!.size >= k) shown.add(c.id)

  const size = (id: string) => people.get(id)!.size
  /** Smallest first: fewest people, then id (deterministic). */
  const bySize = (a: string, b: string) => size(a) - size(b) || (a < b ? -1 : a > b ? 1 : 0)
  const hide = (id: string): boolean => {
    if (!shown.has(id) || pinned.has(id)) return false
    shown.delete(id)
    return true
  }
  // Rule 2 depends on the records only: the nests that may not both be shown, found once.
  const small = (n: number) => n >= 1 && n < k
  const cellAtoms = new Map(plan.cells.map((c) => [c.id, c.atoms]))
  const clashes = (plan.nests ?? []).filter((n) => {
    const inner = new Set(cellAtoms.get(n.inner)!)
    const outside = union(cellAtoms.get(n.outer)!.filter((a) => !inner.has(a)).map((a) => atomPeople.get(a))).size
    return small(size(n.outer) - size(n.inner)) || small(outside)
  })

  for (;;) {
    let changed = false
    for (const n of clashes) {
      if (!shown.has(n.inner) || !shown.has(n.outer)) continue
      const done = hide(n.inner) || hide(n.outer)
      if (!done) throw new Error('suppress: two pinned cells break the differencing guard')
      changed = true
    }
    for (const f of plan.families ?? []) {
      const open = f.parts.filter((p) => shown.has(p) && !pinned.has(p)).sort(bySize)
      const hidden = f.parts.filter((p) => !shown.has(p))
      if (open.length === 0) continue
      // (Hidden parts of no person — empty cells — reveal no one: rule 4 still audits records of no person.)
      const needs = shown.has(f.total) ? small(fewPeople(hidden.map((p) => people.get(p)!), k)) : hidden.length === 0
      if (needs) changed = hide(open[0]!) || changed
    }
    if (changed) continue

    const witnesses = audit(plan, shown, k)
    if (witnesses.length === 0) return shown
    // One cell per combination found (the smallest taking part), unless one is already going.
    const picks = new Set<string>()
    for (const w of witnesses) {
      const candidates = w.filter((id) => !pinned.has(id)).sort(bySize)
      if (candidates.length === 0) throw new Error('suppress: the pinned cells alone reveal a small group')
      if (!candidates.some((id) => picks.has(id))) picks.add(candidates[0]!)
    }
    for (const id of picks) hide(id)
  }
}

/**
 * The exact audit (rule 4). Returns the combinations of the shown cells (each as the cells taking
 * part) that add up records of fewer than k people only, a basis of them: none when nothing
 * about a small group can be derived.
 *
 * Atoms that every shown cell treats alike are merged; an atom without records (not in
 * plan.atoms) is 0 and known to be, so it reveals no one. A combination isolates a small group
 * iff it vanishes on every merged atom of ≥ k people: Gaussian elimination with those columns
 * first leaves such combinations as the rows that are zero there and not on the small columns.
 * A shown total whose parts are all shown adds nothing to what can be derived (it is their sum,
 * and parts are finer than totals, so dropping all such totals at once keeps the span).
 */
export function audit(plan: Plan, shown: ReadonlySet<string>, k = K): string[][] {
  const redundant = new Set((plan.families ?? []).filter((f) => shown.has(f.total) && f.parts.every((p) => shown.has(p))).map((f) => f.total))
  const rows = plan.cells.filter((c) => shown.has(c.id) && !redundant.has(c.id))
  if (rows.length === 0) return []
  const atomPeople = new Map(plan.atoms.map((a) => [a.id, a.people]))
  const signature = new Map<string, number[]>()
  rows.forEach((c, i) => {
    for (const a of c.atoms) {
      if (!atomPeople.has(a)) continue
      const s = signature.get(a) ?? []
      s.push(i)
      signature.set(a, s)
    }
  })
  const merged = new Map<string, { rows: number[]; people: Set<string>; atom: string }>()
  for (const [a, s] of signature) {
    const key = s.join(',')
    const m = merged.get(key) ?? { rows: s, people: new Set<string>(), atom: a }
    for (const p of atomPeople.get(a)!) m.people.add(p)
    merged.set(key, m)
  }
  const large = [...merged.values()].filter((c) => c.people.size >= k)
  const smallCols = [...merged.values()].filter((c) => c.people.size < k)
  if (smallCols.length === 0) return []
  const columns = [...large, ...smallCols]
  const build = (track: boolean) => {
    const width = columns.length + (track ? rows.length : 0)
    const m = rows.map((_, i) => {
      const r = new Float64Array(width)
      if (track) r[columns.length + i] = 1
      return r
    })
    columns.forEach((c, j) => { for (const i of c.rows) m[i]![j] = 1 })
    return m
  }
  const smallRows = (m: Float64Array[], from: number) => m.map((_, i) => i).filter((i) => i >= from && m[i]!.some((x, j) => j >= large.length && j < columns.length && Math.abs(x) > 1e-9))
  const plain = build(false)
  if (smallRows(plain, eliminate(plain, large.length)).length === 0) return []
  // Pinned cells were audited in a coarser block (the totals'), where each of their combinations
  // involves a group of ≥ k people; splitting atoms finer can make such a combination look
  // small here without making it so. The witness is a combination outside their span.
  const pinned = plan.cells.filter((c) => shown.has(c.id) && plan.pinned?.has(c.id)).map((c) => new Set(c.atoms))
  // (A shown cell holds all of a merged atom or none of it: one atom stands for it.)
  const inPinnedSpan = spanOf(pinned.map((atoms) => Float64Array.from(columns, (col) => (atoms.has(col.atom) ? 1 : 0))))
  const m = build(true)
  return smallRows(m, eliminate(m, large.length))
    .filter((i) => !inPinnedSpan(m[i]!.subarray(0, columns.length)))
    .map((i) => rows.filter((_, r) => Math.abs(m[i]![columns.length + r]!) > 1e-9).map((c) => c.id))
}

/** A test of whether a vector lies in the span of `rows` (reduced once to echelon form). */
function spanOf(rows: Float64Array[]): (v: Float64Array) => boolean {
  const width = rows[0]?.length ?? 0
  const basis = rows.slice(0, eliminate(rows, width))
  const lead = basis.map((b) => b.findIndex((x) => Math.abs(x) > 1e-9))
  return (v) => {
    const x = Float64Array.from(v)
    basis.forEach((b, i) => {
      const f = x[lead[i]!]! / b[lead[i]!]!
      if (f !== 0) for (let j = lead[i]!; j < width; j++) x[j]! -= f * b[j]!
    })
    return x.every((y) => Math.abs(y) < 1e-9)
  }
}

/** Row-reduces `m` in place over its first `large` columns; returns how many pivot rows lead it. */
function eliminate(m: Float64Array[], large: number): number {
  let r = 0
  for (let c = 0; c < large && r < m.length; c++) {
    let p = r
    for (let i = r + 1; i < m.length; i++) if (Math.abs(m[i]![c]!) > Math.abs(m[p]![c]!)) p = i
    if (Math.abs(m[p]![c]!) < 1e-9) continue
    ;[m[r], m[p]] = [m[p]!, m[r]!]
    const pivot = m[r]!
    for (let i = r + 1; i < m.length; i++) {
      const row = m[i]!
      const f = row[c]! / pivot[c]!
      if (f === 0) continue
      for (let j = c; j < row.length; j++) row[j]! -= f * pivot[j]!
    }
    r++
  }
  return r
}

/** Rank by Gaussian elimination with partial pivoting (small 0/1 matrices: exact in practice). */
export function rank(m: number[][]): number {
  const a = m.map((r) => [...r])
  const rowsN = a.length
  const colsN = rowsN === 0 ? 0 : a[0]!.length
  let r = 0
  for (let c = 0; c < colsN && r < rowsN; c++) {
    let p = r
    for (let i = r + 1; i < rowsN; i++) if (Math.abs(a[i]![c]!) > Math.abs(a[p]![c]!)) p = i
    if (Math.abs(a[p]![c]!) < 1e-9) continue
    ;[a[r], a[p]] = [a[p]!, a[r]!]
    const pivot = a[r]!
    for (let i = r + 1; i < rowsN; i++) {
      const row = a[i]!
      const f = row[c]! / pivot[c]!
      if (f === 0) continue
      for (let j = c; j < colsN; j++) row[j]! -= f * pivot[j]!
    }
    r++
  }
  return r
}

/** The people of the union of `sets`, counted up to `k` (enough to tell small from not). */
function fewPeople(sets: ReadonlyArray<ReadonlySet<string>>, k: number): number {
  const out = new Set<string>()
  for (const s of sets) for (const p of s) if (out.add(p).size >= k) return k
  return out.size
}

function union(sets: ReadonlyArray<ReadonlySet<string> | undefined>): Set<string> {
  const out = new Set<string>()
  for (const s of sets) for (const p of s ?? []) out.add(p)
  return out
}
