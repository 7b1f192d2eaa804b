const copies = new WeakMap<RegExp, RegExp>()

/**
 * The global ('g') copy of `re` for an exec loop, compiled once (a fresh `new RegExp` per call
 * cost ~1 µs per rule per request, for some 60 rules), with `lastIndex` reset. Callers run their
 * loop synchronously to the end, so no two loops share a copy at once.
 */
export function globalCopy(re: RegExp): RegExp {
  let g = copies.get(re)
  if (!g) {
    g = new RegExp(re.source, 'g')
    copies.set(re, g)
  }
  g.lastIndex = 0
  return g
}
