/**
 * Builds the Wechaty bot for the configured puppet.
 *
 * "wechaty-puppet-mock" (or "mock") runs offline: a Mocker, a PuppetMock and a MockKit to drive
 * it. "ilink" is MetaPuppet's own puppet for the official bot API (src/puppets/ilink/).
 * "wechaty-puppet-service" is built by puppets/service.ts (endpoint and token checked, cache
 * under the data directory). Any other name is handed to Wechaty with `{token, ...options}` as
 * puppet options. Real puppets get a memory card file (`client.memory_card`) to keep a login.
 */
import { log as wechatyLog, WechatyBuilder, type Wechaty } from 'wechaty'
import { PuppetMock, mock } from 'wechaty-puppet-mock'
import { allCapabilities, mockCapabilities } from './capabilities.js'
import { ConfigError, MOCK_PUPPET_NAMES, type MetaPuppetConfig } from './config.js'
import { createLogger, type Logger } from './log.js'
import { prepareMemoryCard } from './memory.js'
import { MockKit } from './mockkit.js'
import type { Capabilities } from './protocol.js'
import { ILINK_PUPPET_NAMES, buildIlinkPuppet } from './puppets/ilink/index.js'
import { SERVICE_PUPPET_NAME, buildServicePuppet, serviceCacheDir, serviceSettings } from './puppets/service.js'

export interface BuiltBot {
  bot: Wechaty
  puppetName: string
  isMock: boolean
  /** The wechaty-puppet-mock Mocker (mock mode only). */
  mocker: mock.Mocker | null
  /** The MockKit driving the mock (mock mode only); log in with `mock.login()` after `bot.start()`. */
  mock: MockKit | null
  /** What the channel can do (sent at connect and in `login`). */
  capabilities: Capabilities
}

/** Keeps Wechaty's own (very chatty) logger at warn unless WECHATY_LOG asks otherwise. */
export function quietWechatyLogs(env: NodeJS.ProcessEnv = process.env): void {
  if (env.WECHATY_LOG === undefined || env.WECHATY_LOG === '') wechatyLog.level('warn')
}

export async function buildBot(config: MetaPuppetConfig, log?: Logger): Promise<BuiltBot> {
  quietWechatyLogs()
  const puppetName = config.puppet.name
  if (MOCK_PUPPET_NAMES.includes(puppetName)) {
    const mocker = new mock.Mocker()
    const puppet = new PuppetMock({ mocker })
    // No `name` unless client.memory_card asks: Wechaty then keeps its memory card in memory
    // instead of writing <name>.memory-card.json (the mock has no login to save).
    const bot = WechatyBuilder.build({ puppet, ...prepareMemoryCard(config.client.memory_card) })
    guardErrors(bot)
    const kit = new MockKit(mocker, puppet, config.mock.user_name)
    return { bot, puppetName, isMock: true, mocker, mock: kit, capabilities: mockCapabilities() }
  }
  if (ILINK_PUPPET_NAMES.includes(puppetName)) {
    const { puppet, capabilities } = buildIlinkPuppet(config, log ?? createLogger(config.client.bot))
    const bot = WechatyBuilder.build({ puppet })
    guardErrors(bot)
    return { bot, puppetName, isMock: false, mocker: null, mock: null, capabilities }
  }

  await requirePuppetPackage(puppetName)
  const memory = prepareMemoryCard(config.client.memory_card)
  if (puppetName === SERVICE_PUPPET_NAME) {
    const settings = serviceSettings(config)
    const puppet = buildServicePuppet(settings, serviceCacheDir(config), (m) => log?.warn('%s', m))
    const bot = WechatyBuilder.build({ puppet, ...memory })
    guardErrors(bot)
    return { bot, puppetName, isMock: false, mocker: null, mock: null, capabilities: allCapabilities(puppetName) }
  }
  const puppetOptions: Record<string, unknown> = { ...config.puppet.options }
  if (config.puppet.token !== null) puppetOptions.token = config.puppet.token
  const bot = WechatyBuilder.build({
    puppet: puppetName as 'wechaty-puppet-service',
    puppetOptions,
    ...memory,
  })
  guardErrors(bot)
  return { bot, puppetName, isMock: false, mocker: null, mock: null, capabilities: allCapabilities(puppetName) }
}

/**
 * An `error` event without a listener crashes the process (EventEmitter semantics), and the
 * mock raises some on its own. events.ts logs and forwards them; this keeps a bot built
 * without events.ts alive too.
 */
function guardErrors(bot: Wechaty): void {
  bot.on('error', () => {})
}

async function requirePuppetPackage(name: string): Promise<void> {
  try {
    await import(name)
  } catch (e) {
    const code = (e as { code?: unknown }).code
    const message = e instanceof Error ? e.message : String(e)
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(`'${name}'`)) {
      throw new ConfigError(`puppet package ${name} is not installed: run \`npm install ${name}\` in socket_client/`)
    }
    throw new ConfigError(`puppet package ${name} failed to load: ${message}`)
  }
}
