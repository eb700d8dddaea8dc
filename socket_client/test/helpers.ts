/** Shared test helpers: a started mock bot whose events are collected as envelopes. */
import type { Wechaty } from 'wechaty'
import { defaultConfig } from '../src/config.js'
import { attachEvents } from '../src/events.js'
import { silentLogger } from '../src/log.js'
import type { MockKit } from '../src/mockkit.js'
import type { EventEnvelope, EventName } from '../src/protocol.js'
import { buildBot } from '../src/puppet.js'

export interface MockBot {
  bot: Wechaty
  mock: MockKit
  mocker: unknown
  envelopes: EventEnvelope[]
  /** Resolves with the first envelope (already received or future) matching name and predicate. */
  waitForEvent(name: EventName, predicate?: (e: EventEnvelope) => boolean, timeoutMs?: number): Promise<EventEnvelope>
  stop(): Promise<void>
}

export async function startMockBot(userName = 'MetaPuppet Bot'): Promise<MockBot> {
  const config = defaultConfig()
  config.mock.user_name = userName
  const built = await buildBot(config)
  if (built.mock === null) throw new Error('expected the mock puppet')
  const envelopes: EventEnvelope[] = []
  const waiters = new Set<(e: EventEnvelope) => void>()
  const detach = attachEvents({
    bot: built.bot,
    botName: 'test-bot',
    log: silentLogger,
    isMock: true,
    capabilities: built.capabilities,
    emit: (envelope) => {
      envelopes.push(envelope)
      for (const waiter of [...waiters]) waiter(envelope)
    },
  })

  const waitForEvent = (
    name: EventName,
    predicate: (e: EventEnvelope) => boolean = () => true,
    timeoutMs = 3_000,
  ): Promise<EventEnvelope> => {
    const matches = (e: EventEnvelope): boolean => e.name === name && predicate(e)
    const found = envelopes.find(matches)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(waiter)
        reject(new Error(`no ${name} event within ${timeoutMs} ms; got: ${envelopes.map((e) => e.name).join(', ')}`))
      }, timeoutMs)
      const waiter = (e: EventEnvelope): void => {
        if (!matches(e)) return
        clearTimeout(timer)
        waiters.delete(waiter)
        resolve(e)
      }
      waiters.add(waiter)
    })
  }

  await built.bot.start()
  built.mock.login()
  await waitForEvent('login')
  return {
    bot: built.bot,
    mock: built.mock,
    mocker: built.mocker,
    envelopes,
    waitForEvent,
    stop: async () => {
      await built.bot.stop()
      detach()
    },
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
