/**
 * Whether a JSON text nests objects and arrays deeper than `max` (LIMIT-3). A linear scan over
 * the text that skips string contents, so a hostile body is refused before a parser (or any
 * recursive walk after it) sees it. It does not validate: an unterminated string or unbalanced
 * brackets are left to the parser, which refuses them.
 */
export function jsonNestingExceeds(text: string, max: number): boolean {
  // Fewer characters than the limit cannot open more levels than it.
  if (text.length <= max) return false
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      // A string: jump to its closing quote (one not escaped by an odd run of backslashes).
      let j = i + 1
      for (;;) {
        j = text.indexOf('"', j)
        if (j === -1) return false
        let k = j - 1
        while (k > i && text.charCodeAt(k) === 0x5c) k--
        if ((j - 1 - k) % 2 === 0) break
        j++
      }
      i = j
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true
    } else if (c === 0x7d || c === 0x5d) depth--
  }
  return false
}
