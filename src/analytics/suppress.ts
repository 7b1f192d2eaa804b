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
 * 2. Differencing guard: for two cells both shown where one's records are among the other's
 *    (inner ⊆ outer — by the records, whatever the cells are: a day in its month, a value in its
 *    total, but also a team whose requests were all "allowed" inside the "allowed" cell, or a week
 *    inside a month when nothing else happened that month), if their people differ by 1..k−1 — or
 *    the records in outer but not inner come from 1..k−1 people — the INNER cell is suppressed
 *    (the outer one is the more general figure).
 * 3. Complementary suppression: in a family (a total and the parts that partition it), when the
 *    total is shown and the suppressed parts together involve 1..k−1 people, the next
 *    smallest shown part is suppressed too; when the total is suppressed and every part is shown,
 *    the smallest part is suppressed (else the total is their sum).
 * 4. Audit: no vector in the span of the shown rows may sum records of fewer than k people only
 *    (the people of the atoms it is nonzero on). While one may, the smallest (fewest people, then
 *    id) shown cell taking part in such a combination is suppressed. This is exact linear algebra
 *    (up to a search budget, past which a combination is taken as revealing), so multi-way tables
 *    (time × environment × value, every margin) are covered where rule 3 alone is known to fail.
 *    A plan may name `views` — some of its cells over coarser atoms — for the audit to read
 *    instead of the whole plan, each on its own.
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

export interface Plan {
  readonly atoms: readonly Atom[]
  readonly cells: readonly Cell[]
  readonly families?: readonly Family[]
  /**
   * What the exact audit (rule 4) reads, when not the plan itself: views of some of its cells
   * (same ids) over coarser atoms, each audited on its own.
   */
  readonly views?: readonly Plan[]
}

/** The ids of the cells that may be shown. */
export function suppress(plan: Plan, k = K): Set<string> {
  const atomPeople = new Map(plan.atoms.map((a) => [a.id, a.people]))
  const people = new Map(plan.cells.map((c) => [c.id, union(c.atoms.map((a) => atomPeople.get(a)))]))
  const shown = new Set<string>()
  for (const c of plan.cells) if (people.get(c.id)!.size >= k) shown.add(c.id)

  const size = (id: string) => people.get(id)!.size
  /** Smallest first: fewest people, then id (deterministic). */
  const bySize = (a: string, b: string) => size(a) - size(b) || (a < b ? -1 : a > b ? 1 : 0)
  const hide = (id: string): boolean => {
    if (!shown.has(id)) return false
    shown.delete(id)
    return true
  }
  const small = (n: number) => n >= 1 && n < k
  const records = recordsOfCells(plan)
  const audited = plan.views ? plan.views.map((view) => ({ view, records: recordsOfCells(view) })) : [{ view: plan, records }]
  // Most general first: a clash whose outer cell goes anyway (it clashes with one larger still)
  // then hides nothing needlessly.
  const clashes = nestsThatClash(records, atomPeople, size, k)
    .sort((x, y) => size(y.outer) - size(x.outer) || size(y.inner) - size(x.inner) || (x.outer + x.inner < y.outer + y.inner ? -1 : 1))

  for (;;) {
    let changed = false
    for (const n of clashes) {
      if (!shown.has(n.inner) || !shown.has(n.outer)) continue
      changed = hide(n.inner) || changed
    }
    for (const f of plan.families ?? []) {
      const open = f.parts.filter((p) => shown.has(p)).sort(bySize)
      const hidden = f.parts.filter((p) => !shown.has(p))
      if (open.length === 0) continue
      // (Hidden parts of no person — empty cells — reveal no one: rule 4 still audits records of no person.)
      const needs = shown.has(f.total) ? small(fewPeople(hidden.map((p) => people.get(p)!), k)) : hidden.length === 0
      if (needs) changed = hide(open[0]!) || changed
    }
    if (changed) continue

    const witnesses = audited.flatMap((v) => audit(v.view, shown, k, v.records))
    if (witnesses.length === 0) return shown
    // One cell per combination found (the smallest taking part), unless one is already going.
    const picks = new Set<string>()
    for (const w of witnesses) {
      const candidates = [...w].sort(bySize)
      if (!candidates.some((id) => picks.has(id))) picks.add(candidates[0]!)
    }
    for (const id of picks) hide(id)
  }
}

/**
 * The exact audit (rule 4). Returns combinations of the shown cells (each as the cells taking
 * part) that add up records of fewer than k people only: none when nothing about a small group
 * can be derived.
 *
 * Atoms that every shown cell treats alike are merged; an atom without records (not in
 * plan.atoms) is 0 and known to be, so it reveals no one, and a cell of no records is a known 0.
 * A combination that isolates a small group vanishes on every merged atom of ≥ k people: each
 * shown row is reduced, in turn, by the pivot rows before it over those columns (incremental
 * Gaussian elimination, rows kept sparse); the rows that reduce to zero there but not on the small
 * columns span those combinations, and smallGroups decides which of them sum records of fewer
 * than k people. Fine rows (fewest atoms) go first, so the pivots stay local to a
 * day and coarse rows reduce to what their hidden parts hold. A shown total whose parts are all
 * shown or empty adds nothing to what can be derived (it is their sum, and parts are finer than
 * totals, so dropping all such totals at once keeps the span).
 */
function audit(plan: Plan, shown: ReadonlySet<string>, k = K, recordsOf = recordsOfCells(plan)): string[][] {
  const atomPeople = new Map(plan.atoms.map((a) => [a.id, a.people]))
  const known = (id: string) => shown.has(id) || recordsOf.get(id)!.length === 0
  const redundant = new Set((plan.families ?? []).filter((f) => shown.has(f.total) && f.parts.every(known)).map((f) => f.total))
  const rows = plan.cells.filter((c) => shown.has(c.id) && !redundant.has(c.id) && recordsOf.get(c.id)!.length > 0)
    .sort((a, b) => recordsOf.get(a.id)!.length - recordsOf.get(b.id)!.length || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  if (rows.length === 0) return []
  const signature = new Map<string, number[]>()
  rows.forEach((c, i) => {
    for (const a of recordsOf.get(c.id)!) {
      const s = signature.get(a)
      if (s) s.push(i)
      else signature.set(a, [i])
    }
  })
  const merged = new Map<string, { people: Set<string>; atom: string }>()
  const column = new Map<string, { people: Set<string>; atom: string }>()
  for (const [a, s] of signature) {
    const key = s.join(',')
    let m = merged.get(key)
    if (!m) merged.set(key, (m = { people: new Set<string>(), atom: a }))
    for (const p of atomPeople.get(a)!) m.people.add(p)
    column.set(a, m)
  }
  const byAtom = (x: { atom: string }, y: { atom: string }) => (x.atom < y.atom ? -1 : x.atom > y.atom ? 1 : 0)
  const large = [...merged.values()].filter((c) => c.people.size >= k).sort(byAtom)
  const small = [...merged.values()].filter((c) => c.people.size < k).sort(byAtom)
  if (small.length === 0) return []
  const index = new Map([...large, ...small].map((c, j) => [c, j]))
  const rowColumns = rows.map((c) => [...new Set(recordsOf.get(c.id)!.map((a) => index.get(column.get(a)!)!))].sort((x, y) => x - y))
  const width = large.length + small.length
  if (eliminate(rowColumns, large.length, width, false).length === 0) return []
  // The combinations that vanish on every large atom, as a basis reduced over the small ones; a
  // combination reveals a small group only if the people of the atoms it sums are fewer than k.
  const smallPeople = small.map((c) => c.people)
  return smallGroups(reduce(eliminate(rowColumns, large.length, width, true)), large.length, smallPeople, k)
    .map((track) => [...track.keys()].map((i) => rows[i]!.id))
}

/** A residual: its values on the small columns (by index) and the original rows it combines. */
interface Residual {
  readonly small: Map<number, number>
  readonly track: Map<number, number>
}

/**
 * Row-reduces the residuals (spanning the combinations that vanish on the large columns) to a
 * reduced echelon basis over the small columns: each basis vector has a pivot column where it is
 * 1 and every other basis vector is 0.
 */
function reduce(residuals: readonly Residual[]): Array<Residual & { readonly pivot: number }> {
  const basis: Array<{ small: Map<number, number>; track: Map<number, number>; pivot: number }> = []
  for (const r of residuals) {
    const v = { small: new Map(r.small), track: new Map(r.track) }
    for (const b of basis) {
      const f = v.small.get(b.pivot) ?? 0
      if (f !== 0) { axpy(v.small, -f, b.small); axpy(v.track, -f, b.track) }
    }
    if (v.small.size === 0) continue
    const pivot = Math.min(...v.small.keys())
    const scale = 1 / v.small.get(pivot)!
    for (const [j, x] of v.small) v.small.set(j, x * scale)
    for (const [j, x] of v.track) v.track.set(j, x * scale)
    v.small.set(pivot, 1)
    for (const b of basis) {
      const f = b.small.get(pivot) ?? 0
      if (f !== 0) { axpy(b.small, -f, v.small); axpy(b.track, -f, v.track) }
    }
    basis.push({ ...v, pivot })
  }
  return basis
}

/** y += a·x on sparse vectors, dropping what cancels. */
function axpy(y: Map<number, number>, a: number, x: ReadonlyMap<number, number>): void {
  for (const [j, xv] of x) {
    const n = (y.get(j) ?? 0) + a * xv
    if (Math.abs(n) < EPS) y.delete(j)
    else y.set(j, n)
  }
}

/** Most groups tried per component; a component that needs more is taken as revealing (safe side). */
const GROUPS_TRIED = 2000

/**
 * Which of the combinations (a reduced basis of those vanishing on the large atoms) reveal a
 * small group, as the original rows to hide from. The basis splits into independent components
 * (combinations sharing no atom); any combination is a sum of one per component, so a component is
 * judged on its own: when its atoms hold fewer than k people, every combination in it reveals
 * them; when it is one combination, the only thing it reveals is the sum over its atoms, of ≥ k
 * people; else groupRevealed searches it.
 */
function smallGroups(basis: ReadonlyArray<Residual & { readonly pivot: number }>, from: number, people: ReadonlyArray<ReadonlySet<string>>, k: number): Array<Map<number, number>> {
  const parent = new Map<number, number>()
  const find = (x: number): number => {
    let r = x
    while (parent.get(r) !== r) r = parent.get(r)!
    return r
  }
  for (const b of basis) {
    const cols = [...b.small.keys()]
    for (const c of cols) if (!parent.has(c)) parent.set(c, c)
    for (const c of cols.slice(1)) parent.set(find(c), find(cols[0]!))
  }
  const components = new Map<number, Array<Residual & { readonly pivot: number }>>()
  for (const b of basis) {
    const root = find(b.pivot)
    components.set(root, [...(components.get(root) ?? []), b])
  }
  const out: Array<Map<number, number>> = []
  const peopleOf = (c: number) => people[c - from]!
  for (const members of components.values()) {
    const cols = [...new Set(members.flatMap((b) => [...b.small.keys()]))]
    const everyone = new Set(cols.flatMap((c) => [...peopleOf(c)]))
    const reveals = everyone.size < k || (members.length > 1 && groupRevealed(members, peopleOf, k))
    if (reveals) out.push(...members.map((b) => b.track))
  }
  return out
}

/**
 * Whether some group of fewer than k people holds all the atoms of a nonzero combination of
 * `members` (a reduced basis), or there are more groups than GROUPS_TRIED to try.
 *
 * A combination is Σ a_q·b_q over the basis vectors; it is a_q at q's pivot column (every other
 * basis vector is 0 there), so it lies inside a group's atoms S only if every q it uses has its
 * pivot in S, and it vanishes on the free (non-pivot) columns outside S. So S holds one iff the
 * basis vectors pivoting in S, restricted to the free columns outside S, are dependent. The
 * groups are searched from each pivot's people, grown by the people of a column the search could
 * need next (a pivot outside the group, or a free column outside it where a vector pivoting
 * inside is nonzero) — every group that holds a combination is reached this way.
 */
function groupRevealed(members: ReadonlyArray<Residual & { readonly pivot: number }>, peopleOf: (c: number) => ReadonlySet<string>, k: number): boolean {
  const pivots = new Set(members.map((b) => b.pivot))
  const tried = new Set<string>()
  let budget = GROUPS_TRIED
  const within = (group: ReadonlySet<string>, c: number) => { for (const p of peopleOf(c)) if (!group.has(p)) return false; return true }
  const visit = (group: Set<string>): boolean => {
    const key = [...group].sort().join('\u0000')
    if (tried.has(key)) return false
    tried.add(key)
    if (--budget < 0) return true
    const inner = members.filter((b) => within(group, b.pivot))
    const next = new Set<number>()
    for (const b of members) if (!inner.includes(b)) next.add(b.pivot)
    if (inner.length > 0) {
      const free = new Set<number>()
      for (const b of inner) for (const c of b.small.keys()) if (!pivots.has(c) && !within(group, c)) free.add(c)
      const cols = [...free]
      if (rank(inner.map((b) => cols.map((c) => b.small.get(c) ?? 0))) < inner.length) return true
      for (const c of cols) next.add(c)
    }
    if (group.size >= k - 1) return false
    for (const c of next) {
      const grown = new Set([...group, ...peopleOf(c)])
      if (grown.size < k && grown.size > group.size && visit(grown)) return true
    }
    return false
  }
  return members.some((b) => visit(new Set(peopleOf(b.pivot))))
}

/**
 * Rule 2's pairs, found once (they depend on the records only): every two cells of ≥ k people
 * where the inner one's records are all in the outer one and the people differ by 1..k−1, or the
 * outer one's other records come from 1..k−1 people. An outer cell holds the inner one's first
 * atom, so only the cells holding it are candidates.
 */
function nestsThatClash(records: ReadonlyMap<string, readonly string[]>, atomPeople: ReadonlyMap<string, ReadonlySet<string>>, size: (id: string) => number, k: number): Array<{ inner: string; outer: string }> {
  const small = (n: number) => n >= 1 && n < k
  const candidates = [...records].filter(([id, atoms]) => atoms.length > 0 && size(id) >= k)
  const holding = new Map<string, string[]>()
  for (const [id, atoms] of candidates) for (const a of atoms) {
    const h = holding.get(a)
    if (h) h.push(id)
    else holding.set(a, [id])
  }
  const sets = new Map(candidates.map(([id, atoms]) => [id, new Set(atoms)]))
  const out: Array<{ inner: string; outer: string }> = []
  for (const [inner, atoms] of candidates) {
    const mine = sets.get(inner)!
    for (const outer of holding.get(atoms[0]!)!) {
      const theirs = sets.get(outer)!
      if (outer === inner || theirs.size < mine.size || !atoms.every((a) => theirs.has(a))) continue
      if (small(size(outer) - size(inner))) {
        out.push({ inner, outer })
        continue
      }
      const outside = new Set<string>()
      for (const a of theirs) {
        if (mine.has(a)) continue
        for (const p of atomPeople.get(a)!) outside.add(p)
        if (outside.size >= k) break
      }
      if (small(outside.size)) out.push({ inner, outer })
    }
  }
  return out
}

/** Each cell's atoms that hold records (an atom not in plan.atoms is an empty one). */
function recordsOfCells(plan: Plan): Map<string, string[]> {
  const atoms = new Set(plan.atoms.map((a) => a.id))
  return new Map(plan.cells.map((c) => [c.id, c.atoms.filter((a) => atoms.has(a))]))
}

const EPS = 1e-9

interface SparseRow {
  readonly idx: number[]
  readonly val: number[]
  /** The original rows this one combines, with their coefficients (tracked only when asked). */
  readonly track?: Map<number, number>
}

/**
 * Incremental elimination over the first `large` of `width` columns. Each row (its columns, all
 * 1) is reduced by the pivot rows before it, lowest column first (a pivot row is zero before its
 * pivot column, so a reduction only touches later columns); a row left with a large column
 * becomes that column's pivot, and a row left with small columns only is a residual: a
 * combination of the original rows that vanishes on every large column. Returns the residuals
 * with their small columns and, with `track`, the original rows taking part.
 */
function eliminate(rows: ReadonlyArray<readonly number[]>, large: number, width: number, track: boolean): Residual[] {
  const pivots: Array<SparseRow | undefined> = new Array(large)
  const x = new Float64Array(width)
  const out: Residual[] = []
  rows.forEach((cols, r) => {
    for (const c of cols) x[c] = 1
    const t = track ? new Map([[r, 1]]) : undefined
    let pivoted = false
    for (let c = cols[0] ?? large; c < large; c++) {
      const v = x[c]!
      if (Math.abs(v) < EPS) { x[c] = 0; continue }
      const p = pivots[c]
      if (!p) {
        const idx: number[] = []
        const val: number[] = []
        for (let j = c; j < width; j++) if (Math.abs(x[j]!) >= EPS) { idx.push(j); val.push(x[j]!) }
        pivots[c] = { idx, val, ...(t ? { track: t } : {}) }
        pivoted = true
        break
      }
      const f = v / p.val[0]!
      for (let j = 0; j < p.idx.length; j++) x[p.idx[j]!]! -= f * p.val[j]!
      x[c] = 0
      if (t) for (const [row, coef] of p.track!) {
        const n = (t.get(row) ?? 0) - f * coef
        if (Math.abs(n) < EPS) t.delete(row)
        else t.set(row, n)
      }
    }
    const rest = new Map<number, number>()
    for (let j = large; j < width; j++) {
      if (!pivoted && Math.abs(x[j]!) >= EPS) rest.set(j, x[j]!)
      x[j] = 0
    }
    x.fill(0, 0, large)
    if (rest.size > 0) out.push({ small: rest, track: t ?? new Map([[r, 1]]) })
  })
  return out
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
