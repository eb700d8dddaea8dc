/**
 * The ilink puppet: `"puppet": {"name": "ilink", "options": {...}}` in the config.
 *
 * `buildIlinkPuppet` validates the options (ConfigError on a bad one) and makes the puppet;
 * `ilinkCapabilities` is what the channel can do (direct messages with files and typing; no
 * rooms, friendships, contact list, recall or cards; a send budget).
 */
import type { MetaPuppetConfig } from '../../config.js'
import type { Logger } from '../../log.js'
import type { Capabilities } from '../../protocol.js'
import { parseIlinkOptions, type IlinkOptions } from './options.js'
import { PuppetIlink } from './puppet.js'

export { ILinkError, NotSupportedError, SEND_REFUSED, SESSION_EXPIRED } from './errors.js'
export { parseIlinkOptions, type IlinkOptions, type SendBudget } from './options.js'
export { PuppetIlink, type PuppetIlinkOptions } from './puppet.js'

export const ILINK_PUPPET_NAMES: readonly string[] = ['ilink']

export function ilinkCapabilities(options: IlinkOptions): Capabilities {
  return {
    channel: 'ilink',
    rooms: false,
    friendships: false,
    contact_list: false,
    files: true,
    recall: false,
    typing: true,
    url_links: false,
    mini_programs: false,
    contact_cards: false,
    alias: false,
    send_budget: options.sendBudget === null ? null : { ...options.sendBudget },
  }
}

export function buildIlinkPuppet(config: MetaPuppetConfig, log?: Logger): { puppet: PuppetIlink; capabilities: Capabilities } {
  const ilink = parseIlinkOptions(config.puppet.options, {
    serverDataDir: config.server.data_dir,
    bot: config.client.bot,
    baseDir: config.base_dir,
  })
  // main.ts forwards events through events.ts, which reports each forwarded message back.
  return { puppet: new PuppetIlink({ ilink, log, waitForDelivery: true }), capabilities: ilinkCapabilities(ilink) }
}
