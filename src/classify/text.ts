/**
 * How much of a request the embedded model reads. USE-lite costs ~0.6 ms per token on this class
 * of machine, so the text given to the model is cut to its first words: a request states its
 * task up front, and 64 words keep one embedding at ~20-60 ms. Rules (safety phrases, PII) read
 * everything; only the model's view is bounded.
 */
export const MAX_EMBED_WORDS = 64
/** Hard cap in characters on the model's view, whatever the words (a 64-"word" base64 blob). */
export const MAX_EMBED_CHARS = 1200

/** The first `maxWords` whitespace-separated words of `text`, joined by single spaces, capped at `maxChars`. */
export function firstWords(text: string, maxWords = MAX_EMBED_WORDS, maxChars = MAX_EMBED_CHARS): string {
  const words: string[] = []
  // A lazy scan: never split a multi-megabyte attachment into an array of every word.
  const re = /\S+/g
  let m: RegExpExecArray | null
  let length = 0
  while (words.length < maxWords && (m = re.exec(text)) !== null) {
    words.push(m[0])
    length += m[0].length + 1
    if (length >= maxChars) break
  }
  const out = words.join(' ')
  return out.length > maxChars ? out.slice(0, maxChars) : out
}

/** Number of whitespace-separated words, counting at most `cap`. */
export function countWords(text: string, cap = Number.MAX_SAFE_INTEGER): number {
  const re = /\S+/g
  let n = 0
  while (n < cap && re.exec(text) !== null) n++
  return n
}

/**
 * Which text segment states the request: the last non-empty one (segments are system first,
 * then each text part in order, so the last is the latest user turn or its attachment).
 */
export function focusIndex(segments: readonly string[]): number {
  for (let i = segments.length - 1; i >= 0; i--) if (segments[i]!.trim() !== '') return i
  return -1
}
