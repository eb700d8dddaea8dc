/**
 * What each puppet's channel can do (reported at connect and in `login`).
 *
 * Puppets of MetaPuppet's own (puppets/<name>/) declare theirs; the mock can do everything but
 * typing; any other puppet package is assumed to do everything but typing.
 */
import type { Capabilities } from './protocol.js'

export function allCapabilities(channel: string): Capabilities {
  return {
    channel,
    rooms: true,
    friendships: true,
    contact_list: true,
    files: true,
    recall: true,
    typing: false,
    url_links: true,
    mini_programs: true,
    contact_cards: true,
    alias: true,
    send_budget: null,
  }
}

export function mockCapabilities(): Capabilities {
  return allCapabilities('mock')
}
