import type { Content } from '../core/content.ts'
import { screenOutput } from './embedded.ts'
import type { Facts } from './facts.ts'

/** How many characters before a new delta are screened with it (a phrase split across chunks is still seen). */
const OVERLAP = 400

/**
 * Screens a model's answer as it streams (GW-6): each delta is checked together with the text
 * just before it, so a phrase split across chunks is still caught before the delta is released.
 * The window lives in memory for the length of the answer only.
 */
export class OutputScreener {
  #window = ''

  /** The safety facts of the answer so far, up to and including `delta`. */
  async add(delta: Content, signal?: AbortSignal): Promise<Pick<Facts, 'safety' | 'errors'>> {
    this.#window = (this.#window + delta.reveal()).slice(-(OVERLAP + delta.length))
    return screenOutput(this.#window, signal)
  }

  /** A whole answer at once (JSON). */
  static async whole(text: Content, signal?: AbortSignal): Promise<Pick<Facts, 'safety' | 'errors'>> {
    return screenOutput(text.reveal(), signal)
  }
}
