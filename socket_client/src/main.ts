/**
 * Entry point: `npm start -- [--config <path>]`.
 *
 * Loads the config, builds the Wechaty bot (and the MockKit under the mock puppet), forwards
 * its events to the MetaPuppet server and runs the snippets the server sends.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { ConfigError, USAGE, loadConfig, parseCli, type ResolvedConfig } from './config.js'
import { ActionRunner } from './actions.js'
import { Bridge } from './bridge.js'
import { Control } from './control.js'
import { DeadLetters } from './deadletters.js'
import { attachEvents } from './events.js'
import { Executor } from './executor.js'
import { LivenessProbe } from './liveness.js'
import { createLogger } from './log.js'
import { Outbox, OutboxError } from './outbox.js'
import { watchParent } from './parent.js'
import type { ErrorEventPayload, ExecResponse, OutboxDepth, PuppetHealth } from './protocol.js'
import { buildBot, type BuiltBot } from './puppet.js'
import { SERVICE_PUPPET_NAME } from './puppets/service.js'
import { addSecret, redactConsole, redactDeep } from './secrets.js'
import { ErrorGate, PuppetSupervisor } from './supervisor.js'
import { routeWechatyLogs } from './wechaty-log.js'
import { SnippetWatchdog } from './watchdog.js'
import { WireLimit } from './wirelimit.js'

const SHUTDOWN_TIMEOUT_MS = 5_000
/** How long a stop waits for a failing outbox file to take the events held in memory only. */
const UNSAVED_WAIT_MS = 3_000

async function main(argv: readonly string[]): Promise<void> {
  // Every file this process creates (ours, Wechaty's memory card, a puppet's cache) is private.
  process.umask(0o077)
  const early = createLogger(process.env.METAPUPPET_BOT || 'metapuppet')
  let resolved: ResolvedConfig
  try {
    if (parseCli(argv).help) {
      process.stdout.write(`${USAGE}\n`)
      process.exit(0)
    }
    resolved = loadConfig({ argv })
  } catch (e) {
    if (e instanceof ConfigError) {
      early.error('%s', e.message)
      process.exit(e.exitCode)
    }
    throw e
  }

  const { config, url, urls, token } = resolved
  // Before anything is logged: no token ever reaches a log line, an event or an exec error.
  for (const secret of [token, config.server.token, config.server.puppet_token, config.puppet.token]) addSecret(secret)
  for (const secret of Object.values(config.server.bot_tokens)) addSecret(secret)
  addSecret(typeof config.puppet.options.token === 'string' ? config.puppet.options.token : null)
  addSecret(process.env.WECHATY_PUPPET_SERVICE_TOKEN)
  redactConsole()
  const botName = config.client.bot
  const log = createLogger(botName)
  routeWechatyLogs(log)
  log.info('config: %s', resolved.configPath ?? 'built-in defaults (no config file)')
  log.debug('modules loaded %d ms after process start', Math.round(performance.now()))

  let built: BuiltBot
  try {
    built = await buildBot(config, log)
  } catch (e) {
    if (e instanceof ConfigError) {
      log.error('%s', e.message)
      process.exit(e.exitCode)
    }
    throw e
  }
  const { bot, mock, mocker, puppetName, capabilities } = built

  let bridgeRef: Bridge | undefined
  let outbox: Outbox
  try {
    outbox = new Outbox({
      path: config.client.outbox_path,
      maxEvents: config.client.outbox_max_events,
      maxBytes: config.client.outbox_max_bytes,
      log,
      // one write per turn of the event loop for every event, ack and send record in it
      groupCommit: true,
      sendRecordsMax: config.client.send_records_max,
      sendRecordsMaxAgeMs: config.client.send_records_max_age_ms,
      // A full disk is news for the server too (it is delivered once the server takes events).
      onWriteError: (failure) =>
        bridgeRef?.send({
          id: randomUUID(),
          bot: botName,
          name: 'error',
          payload: {
            name: 'OutboxWriteFailed',
            message: `cannot write the outbox file ${failure.path}: ${failure.error}; unacknowledged events are held in memory only until it works again`,
            stack: null,
          },
          ts: Date.now(),
        }),
    })
  } catch (e) {
    if (e instanceof OutboxError) {
      log.error('%s', e.message)
      process.exit(1)
    }
    throw e
  }
  if (outbox.path !== null) log.info('outbox file: %s', outbox.path)

  let shuttingDown = false
  const shutdown = async (code: number): Promise<void> => {
    if (shuttingDown) return
    shuttingDown = true
    supervisor?.stop()
    gate.close()
    if (code === 0) {
      // Stop the bot first so its logout event still reaches the server. A puppet that never
      // logged in has no logout to send: a start still in flight (puppet-service waits 5 s for
      // its stream) must not hold up the exit.
      await Promise.race([
        bot.stop().catch((e: unknown) => log.debug('bot.stop() failed: %s', e)),
        new Promise((resolve) => setTimeout(resolve, loggedIn ? SHUTDOWN_TIMEOUT_MS : 1_000).unref()),
      ])
      await bridge.drain(1_000)
      // Events the outbox could not write (disk full): give the disk or the server a little longer.
      for (let waited = 0; outbox.unsavedCount > 0 && waited < UNSAVED_WAIT_MS; waited += 250) {
        outbox.compact()
        if (outbox.unsavedCount === 0) break
        await new Promise((resolve) => setTimeout(resolve, 250))
      }
    }
    liveness.stop()
    bridge.close() // also compacts the outbox file: it keeps exactly the unacknowledged events
    // Events that are neither on disk nor delivered are lost: the close named them; say it in the exit code.
    process.exit(code === 0 && outbox.unsavedCount > 0 ? 1 : code)
  }

  let loggedIn = false
  let announced = false
  const announceReady = (): void => {
    if (announced || !loggedIn || !bridge.connected) return
    announced = true
    log.info('ready: bot=%s puppet=%s url=%s', botName, puppetName, bridge.url)
  }

  const wireLimit = new WireLimit(config.server.max_message_bytes)
  const deadLetters = new DeadLetters({
    path: config.client.dead_letter_path,
    maxBytes: config.client.dead_letter_max_bytes,
    log,
  })
  const watchdog =
    config.client.snippet_stall_ms > 0
      ? new SnippetWatchdog({ log, stallMs: config.client.snippet_stall_ms, logPrefix: `[metapuppet ${botName}]` })
      : undefined
  watchdog?.start()
  // Results are capped by the server's frame limit: a larger answer would close the connection.
  const executor = new Executor({
    bot,
    log,
    mocker,
    mock,
    maxResultBytes: () => wireLimit.maxJsonBytes,
    watchdog,
    download: config.client.file_download,
  })
  // Exec errors travel to Python's logs: redacted like everything else (results are not touched).
  const runner = {
    run: async (req: unknown): Promise<ExecResponse> => {
      const response = await executor.run(req)
      return response.ok ? response : redactDeep(response)
    },
  }
  // Typed actions (say, typing): deduplicated by send id through the outbox's send records.
  const actionRunner = new ActionRunner({
    bot,
    log,
    outbox,
    download: config.client.file_download,
    onFailed: (payload) => bridgeRef?.send({ id: randomUUID(), bot: botName, name: 'error', payload: redactDeep(payload), ts: Date.now() }),
  })
  const actions = {
    act: async (req: unknown): Promise<ExecResponse> => {
      const response = await actionRunner.act(req)
      return response.ok ? response : redactDeep(response)
    },
    runAcked: (list: Parameters<ActionRunner['runAcked']>[0]) => actionRunner.runAcked(list),
  }
  // The bot's own messages are forwarded only while the server wants them (it says at every
  // authentication, and with a control request when that changes).
  let forwardSelf = false
  const selfMessages = (on: boolean): void => {
    if (on !== forwardSelf) log.debug('the bot\'s own messages are %s', on ? 'forwarded' : 'not forwarded')
    forwardSelf = on
  }

  // Errors: redacted; start failures go to the supervisor (one event per cause, backoff),
  // the rest through the gate (identical ones at most once per client.error_repeat_ms).
  let sendError: ((payload: ErrorEventPayload) => void) | null = null
  const gate = new ErrorGate({
    intervalMs: config.client.error_repeat_ms,
    forward: (payload) => {
      log.warn('wechaty error: %s', payload.message)
      sendError?.(payload)
    },
  })
  const endpoint = config.puppet.options.endpoint
  const supervisor = built.isMock
    ? null
    : new PuppetSupervisor({
        bot,
        log,
        target: puppetName === SERVICE_PUPPET_NAME ? `the puppet service at ${String(endpoint ?? process.env.WECHATY_PUPPET_SERVICE_ENDPOINT)}` : 'WeChat',
        retryDelayMs: config.client.puppet_retry_delay_ms,
        retryDelayMaxMs: config.client.puppet_retry_delay_max_ms,
        report: (payload) => sendError?.(payload),
      })
  const mockHealth: PuppetHealth = { state: 'running', message: null, retry_in_s: null, attempts: 0 }
  const liveness = new LivenessProbe({ bot, timeoutMs: config.client.stall_probe_timeout_ms, log })
  let socketOptions: { ca: string } | undefined
  if (config.client.ca_file !== null) {
    try {
      socketOptions = { ca: readFileSync(config.client.ca_file, 'utf8') }
    } catch (error) {
      log.error('cannot read client.ca_file %s: %s', config.client.ca_file, String(error))
      process.exit(1)
    }
  }
  const bridge = new Bridge({
    url,
    urls,
    token,
    socketOptions,
    botName,
    log,
    executor: runner,
    capabilities,
    replaceExisting: config.client.replace_existing,
    reconnectDelayMs: config.client.reconnect_delay_ms,
    reconnectDelayMaxMs: config.client.reconnect_delay_max_ms,
    heartbeatMs: config.client.heartbeat_ms,
    heartbeatPayload: () => {
      // Report the latest completed probe, then start the next one in the background.
      const wechaty = liveness.state()
      void liveness.probe()
      const depth: OutboxDepth = { pending: outbox.size, bytes: outbox.bytes }
      return { wechaty, puppet: supervisor?.state() ?? mockHealth, outbox: depth }
    },
    outbox,
    wireLimit,
    deadLetters,
    ackTimeoutMs: config.client.ack_timeout_ms,
    control: new Control({ bot, mock, log, selfMessages }),
    actions,
    onSelfMessages: selfMessages,
    onFatal: (message, exitCode) => {
      log.error('%s', message)
      void shutdown(exitCode)
    },
    onConnect: announceReady,
  })
  bridgeRef = bridge

  attachEvents({
    bot,
    botName,
    log,
    isMock: built.isMock,
    capabilities,
    emit: (envelope) => new Promise<void>((written) => bridge.send(envelope, written)),
    forwardSelf: () => forwardSelf,
    onError: (payload, send) => {
      sendError = send
      const clean = redactDeep(payload)
      if (supervisor?.consume(clean) === true) return
      gate.admit(clean)
    },
  })
  bot.on('login', (user) => {
    loggedIn = true
    log.info('logged in as %s (%s) %d ms after process start', user.name(), user.id, Math.round(performance.now()))
    announceReady()
    void liveness.probe()
    actionRunner.resume() // sends of acknowledged events a crash left undone
  })
  bot.on('logout', () => {
    loggedIn = false
  })

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (shuttingDown) process.exit(0)
      log.info('%s received: stopping', signal)
      void shutdown(0)
    })
  }
  watchParent({
    onGone: (why) => {
      log.warn('%s: stopping (nobody is left to stop this client)', why)
      void shutdown(0)
    },
    onWarn: (message) => log.warn('%s', message),
  })
  process.on('unhandledRejection', (reason) => {
    const text = reason instanceof Error ? reason.stack : reason
    // Stopping a failing puppet leaves its own handlers throwing (wechat4u's logout restarts a
    // client it no longer has); that is expected noise, not news.
    if (supervisor?.quiet() === true) log.debug('unhandled rejection while the puppet was stopped for a retry: %s', text)
    else log.error('unhandled rejection: %s', text)
  })

  bridge.start()
  if (supervisor === null) {
    await bot.start()
  } else {
    await bot.start().catch((e: unknown) => supervisor.startFailed(e))
  }
  log.debug('bot started %d ms after process start', Math.round(performance.now()))
  mock?.login()
}

main(process.argv.slice(2)).catch((e: unknown) => {
  createLogger(process.env.METAPUPPET_BOT || 'metapuppet').error(
    'fatal: %s',
    e instanceof Error ? e.stack ?? e.message : String(e),
  )
  process.exit(1)
})
