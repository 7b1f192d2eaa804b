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
 *    than k people (after merging atoms no shown cell tells apart). While one is, the shown cell
 *    whose suppression removes most of that (then: fewest people, then id) is suppressed. This is
 *    exact linear algebra, so 2-D tables (domain × environment with both margins) are covered
 *    where rule 3 alone is known to fail.
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
  const cellAtoms = new Map(plan.cells.map((c) => [c.id, new Set(c.atoms)]))
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

  for (;;) {
    let changed = false
    for (const n of plan.nests ?? []) {
      if (!shown.has(n.inner) || !shown.has(n.outer)) continue
      const inner = cellAtoms.get(n.inner)!
      const outside = union([...cellAtoms.get(n.outer)!].filter((a) => !inner.has(a)).map((a) => atomPeople.get(a))).size
      const apart = size(n.outer) - size(n.inner)
      if ((apart >= 1 && apart < k) || (outside >= 1 && outside < k)) {
        const done = hide(n.inner) || hide(n.outer)
        if (!done) throw new Error('suppress: two pinned cells break the differencing guard')
        changed = true
      }
    }
    for (const f of plan.families ?? []) {
      const open = f.parts.filter((p) => shown.has(p) && !pinned.has(p)).sort(bySize)
      const hidden = f.parts.filter((p) => !shown.has(p))
      if (open.length === 0) continue
      const hiddenPeople = union(hidden.map((p) => people.get(p))).size
      // (Hidden parts of no person — empty cells — reveal no one: rule 4 still audits records of no person.)
      const needs = shown.has(f.total) ? hiddenPeople > 0 && hiddenPeople < k : hidden.length === 0
      if (needs) changed = hide(open[0]!) || changed
    }
    if (changed) continue

    const excess = derivableSmall(plan, shown, k)
    if (excess === 0) return shown
    const candidates = [...shown].filter((id) => !pinned.has(id)).sort(bySize)
    if (candidates.length === 0) throw new Error('suppress: the pinned cells alone reveal a small group')
    let pick = candidates[0]!
    let best = excess
    for (const c of candidates) {
      shown.delete(c)
      const e = derivableSmall(plan, shown, k)
      shown.add(c)
      if (e < best) {
        best = e
        pick = c
        if (e === 0) break
      }
    }
    hide(pick)
  }
}

/**
 * How many independent combinations of the shown cells isolate records of fewer than k people:
 * rank(shown rows) − rank(shown rows restricted to atoms of ≥ k people), after merging atoms
 * that every shown cell treats alike. 0 means nothing about a small group can be derived.
 */
export function derivableSmall(plan: Plan, shown: ReadonlySet<string>, k = K): number {
  const rows = plan.cells.filter((c) => shown.has(c.id))
  if (rows.length === 0) return 0
  const atomPeople = new Map(plan.atoms.map((a) => [a.id, a.people]))
  // Column signature of each atom: which shown rows contain it.
  const signature = new Map<string, number[]>()
  // An atom without records (not in plan.atoms) is 0 and known to be: it reveals no one.
  rows.forEach((c, i) => {
    for (const a of c.atoms) {
      if (!atomPeople.has(a)) continue
      const s = signature.get(a) ?? []
      s.push(i)
      signature.set(a, s)
    }
  })
  const merged = new Map<string, { rows: number[]; people: Set<string> }>()
  for (const [a, s] of signature) {
    const key = s.join(',')
    const m = merged.get(key) ?? { rows: s, people: new Set<string>() }
    for (const p of atomPeople.get(a) ?? []) m.people.add(p)
    merged.set(key, m)
  }
  const columns = [...merged.values()]
  const matrix = (cols: typeof columns) => rows.map((_, i) => cols.map((c) => (c.rows.includes(i) ? 1 : 0)))
  const large = columns.filter((c) => c.people.size >= k)
  return rank(matrix(columns)) - rank(matrix(large))
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

function union(sets: ReadonlyArray<ReadonlySet<string> | undefined>): Set<string> {
  const out = new Set<string>()
  for (const s of sets) for (const p of s ?? []) out.add(p)
  return out
}
