import { inspect } from 'node:util'

/**
 * Request text (prompts, system prompts, attachment bodies, model output) as an opaque value.
 *
 * Contract: `toJSON`, `toString`, template literals and `util.inspect` all print
 * `[content N chars]`, so an accidental `log.info({ body })` or `JSON.stringify(err)` leaks a
 * length, never the text. Only `gateway/wire/`, `classify/`, `friction/` and `providers/` may
 * call `reveal()` (the import-rules test enforces it). Content is never written to storage.
 */
export class Content {
  readonly #text: string

  private constructor(text: string) {
    this.#text = text
  }

  static of(text: string): Content {
    return new Content(text)
  }

  static readonly empty: Content = new Content('')

  /** Length in UTF-16 code units, safe to log. */
  get length(): number {
    return this.#text.length
  }

  /** The text itself. Restricted: see the class comment. */
  reveal(): string {
    return this.#text
  }

  toString(): string {
    return `[content ${this.#text.length} chars]`
  }

  toJSON(): string {
    return this.toString()
  }

  [inspect.custom](): string {
    return this.toString()
  }
}

/** Joins contents with a separator without revealing them to the caller. */
export function joinContent(parts: readonly Content[], separator = '\n'): Content {
  if (parts.length === 0) return Content.empty
  if (parts.length === 1) return parts[0]!
  return Content.of(parts.map((p) => p.reveal()).join(separator))
}
