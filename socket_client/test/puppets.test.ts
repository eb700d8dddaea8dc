/**
 * Real puppets, offline:
 * - wechaty-puppet-service: a local gRPC `PuppetServer` wraps the mock puppet; the real client
 *   connects with {endpoint, tls: {disable: true}}, a message travels both ways, the payload
 *   cache lands under the data directory, and a wrong token never shows in a log or an event.
 * - wechaty-puppet-wechat4u that cannot reach WeChat (every request refused by a proxy on a
 *   closed port): it backs off, Python hears one state instead of an error per retry, the
 *   heartbeat carries it, SIGTERM ends it, and its memory card is a private file.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { randomUUID } from 'node:crypto'
import { PuppetMock, mock } from 'wechaty-puppet-mock'
import { PuppetServer } from 'wechaty-puppet-service'
import { ConfigError, defaultConfig, loadConfig, type MetaPuppetConfig } from '../src/config.js'
import { prepareMemoryCard } from '../src/memory.js'
import { buildBot } from '../src/puppet.js'
import { serviceCacheDir, serviceSettings } from '../src/puppets/service.js'
import { type ClientProcess, standInServer, startClient, until } from './client-process.js'

const dir = mkdtempSync(join(tmpdir(), 'metapuppet-puppets-'))
const cleanups: Array<() => unknown> = []
const clients: ClientProcess[] = []
after(async () => {
  for (const client of clients) if (client.child.exitCode === null && client.child.signalCode === null) client.child.kill('SIGKILL')
  for (const cleanup of cleanups.reverse()) await cleanup()
  rmSync(dir, { recursive: true, force: true })
})

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

const mode = (path: string): number => statSync(path).mode & 0o777

it('wechaty-puppet-service end to end: a message each way, the cache under data_dir, a wrong token redacted', { timeout: 120_000 }, async () => {
  const standIn = await standInServer('service-test-server-token-0123')
  cleanups.push(() => standIn.close())

  // The hosted puppet: the mock, served over plain gRPC on loopback.
  const mocker = new mock.Mocker()
  const puppet = new PuppetMock({ mocker })
  const token = `insecure_${randomUUID()}`
  const grpcPort = await freePort()
  const service = new PuppetServer({ endpoint: `127.0.0.1:${grpcPort}`, puppet, token, tls: { disable: true } })
  await service.start()
  cleanups.push(() => service.stop())

  const home = join(dir, 'home')
  mkdirSync(home)
  const write = (name: string, puppetToken: string): string => {
    const path = join(dir, name)
    writeFileSync(path, JSON.stringify({
      server: { host: '127.0.0.1', port: standIn.port, token: 'service-test-server-token-0123', data_dir: 'data' },
      client: { bot: 'hosted', outbox_path: null, heartbeat_ms: 300, puppet_retry_delay_ms: 300, puppet_retry_delay_max_ms: 1_000 },
      puppet: { name: 'wechaty-puppet-service', token: puppetToken, options: { endpoint: `127.0.0.1:${grpcPort}`, tls: { disable: true } } },
    }))
    return path
  }

  // 1. The right token: login, a message in, a message out.
  const client = startClient(write('service.json', token), { HOME: home })
  clients.push(client)
  await until(() => (puppet.state.active() as unknown) === true, 'the client starting the hosted puppet', client.log)
  const user = mocker.createContact({ name: 'Hosted Bot' })
  const alice = mocker.createContact({ name: 'Alice' })
  mocker.login(user)
  await until(() => standIn.named('login').length === 1, 'the login event', client.log)
  assert.equal(standIn.named('login')[0]!.payload.name, 'Hosted Bot')

  alice.say('hello over gRPC').to(user)
  await until(() => standIn.named('message').some((e) => e.payload.text === 'hello over gRPC'), 'the message from Alice', client.log)
  const incoming = standIn.named('message').find((e) => e.payload.text === 'hello over gRPC')!
  assert.equal((incoming.payload.talker as { name: string }).name, 'Alice')

  const answer = await standIn.sockets[0]!.timeout(20_000).emitWithAck('exec', {
    code: 'const c = await bot.Contact.find({ name: args.name }); await c.say(args.text); return c.id',
    args: { name: 'Alice', text: 'hi back over gRPC' },
  })
  assert.equal(answer.ok, true, JSON.stringify(answer))
  await until(
    () => [...mocker.cacheMessagePayload.values()].some((m) => m.text === 'hi back over gRPC' && m.listenerId === alice.id),
    'the reply reaching the hosted puppet',
    client.log,
  )

  // The payload cache: under the data directory, private, no token in any path; nothing in ~/.wechaty.
  const cache = join(dir, 'data', 'puppet-cache', 'service', 'hosted')
  await until(() => existsSync(join(cache, user.id, 'contact-payload')), 'the contact cache', client.log)
  assert.equal(mode(join(dir, 'data', 'puppet-cache')), 0o700)
  assert.equal(existsSync(join(home, '.wechaty')), false, 'nothing may go to ~/.wechaty')
  const paths = (root: string): string[] =>
    readdirSync(root, { recursive: true, encoding: 'utf8' }).map((p) => join(root, p))
  assert.ok(paths(join(dir, 'data')).every((p) => !p.includes(token.slice(9))), 'no token in a cache path')

  client.child.kill('SIGTERM')
  assert.equal(await client.exited(), 0, client.log())

  // 2. A wrong token: the service says so, quoting it. Nothing shows it: not the log, not an event.
  const wrong = `insecure_${randomUUID()}`
  const errorsBefore = standIn.named('error').length
  const refused = startClient(write('wrong.json', wrong), { HOME: home })
  clients.push(refused)
  await until(() => standIn.named('error').length > errorsBefore, 'the error event of the wrong token', refused.log)
  const error = standIn.named('error')[errorsBefore]!
  assert.equal(error.payload.name, 'PuppetUnavailable')
  assert.match(String(error.payload.message), /^the puppet cannot start: .*UNAUTHENTICATED.*<redacted>.*; retrying in \d+ s$/)
  refused.child.kill('SIGTERM')
  const stopAsked = Date.now()
  assert.equal(await refused.exited(), 0, refused.log())
  assert.ok(Date.now() - stopAsked < 5_000, 'a puppet that never got through must not hold up the stop')
  const everything = JSON.stringify(standIn.envelopes) + client.log() + refused.log()
  for (const secret of [wrong, wrong.slice(9), token, token.slice(9), 'service-test-server-token-0123']) {
    assert.ok(!everything.includes(secret), `a token leaked: ${secret.slice(0, 12)}…`)
  }
  assert.equal(existsSync(join(home, '.wechaty')), false)
})

it('wechat4u that cannot reach WeChat backs off, reports one state, and stops on SIGTERM', { timeout: 90_000 }, async () => {
  const standIn = await standInServer('w4u-test-server-token-0123456')
  cleanups.push(() => standIn.close())
  const closed = await freePort() // nothing listens here: every request wechat4u makes is refused
  const configPath = join(dir, 'w4u.json')
  writeFileSync(configPath, JSON.stringify({
    server: { host: '127.0.0.1', port: standIn.port, token: 'w4u-test-server-token-0123456', data_dir: 'state' },
    client: { bot: 'w4u', outbox_path: null, heartbeat_ms: 300, puppet_retry_delay_ms: 400, puppet_retry_delay_max_ms: 1_500 },
    puppet: { name: 'wechaty-puppet-wechat4u' },
  }))
  const proxy = `http://127.0.0.1:${closed}`
  const client = startClient(configPath, { HTTPS_PROXY: proxy, HTTP_PROXY: proxy, https_proxy: proxy, http_proxy: proxy, NO_PROXY: '' })
  clients.push(client)

  await until(() => /failed start 3\]/.test(client.log()), 'three failed starts', client.log)
  const heartbeat = (): Record<string, unknown> | undefined =>
    standIn.named('heartbeat').map((e) => e.payload.puppet as Record<string, unknown> | undefined).findLast((p) => p !== undefined)
  await until(() => Number(heartbeat()?.attempts ?? 0) >= 3, 'a heartbeat with three failed starts', client.log)
  const state = heartbeat()!
  assert.ok(['retrying', 'starting'].includes(String(state.state)), JSON.stringify(state))
  assert.match(String(state.message), /^cannot reach WeChat: connect ECONNREFUSED 127\.0\.0\.1:\d+; retrying in [12] s$/)

  // One error event for the one cause, not one per retry (unsupervised: hundreds a second).
  const errors = standIn.named('error')
  assert.equal(errors.length, 1, JSON.stringify(errors.map((e) => e.payload.message)))
  assert.equal(errors[0]!.payload.name, 'PuppetUnavailable')
  assert.match(String(errors[0]!.payload.message), /^cannot reach WeChat: connect ECONNREFUSED .*; retrying in 1 s$/)
  assert.equal((errors[0]!.payload.puppet as { state: string }).state, 'retrying')
  // The delays grow up to the cap: far fewer than one attempt per 400 ms.
  const started = Date.now()
  const attemptsNow = Number(heartbeat()!.attempts)
  await new Promise((resolve) => setTimeout(resolve, 2_000))
  const perSecond = (Number(heartbeat()!.attempts) - attemptsNow) / ((Date.now() - started) / 1000)
  assert.ok(perSecond <= 1.5, `${perSecond} failed starts per second`)
  assert.equal(standIn.named('error').length, 1)
  assert.doesNotMatch(client.log(), /ERROR unhandled rejection/)

  // The memory card (where wechat4u would keep a login): private, under the data directory.
  const card = join(dir, 'state', 'wechaty', 'w4u.memory-card.json')
  assert.equal(mode(card), 0o600)
  assert.equal(mode(join(dir, 'state', 'wechaty')), 0o700)

  client.child.kill('SIGTERM')
  const stopAsked = Date.now()
  assert.equal(await client.exited(), 0, client.log())
  assert.ok(Date.now() - stopAsked < 10_000, 'SIGTERM must end it promptly')
  assert.match(client.log(), /SIGTERM received: stopping/)
})

it('puppet-service settings: endpoint, token form and TLS options are checked, naming the key', () => {
  const base = (): MetaPuppetConfig => {
    const config = defaultConfig()
    config.puppet = { name: 'wechaty-puppet-service', token: 'insecure_0123456789', options: { endpoint: '127.0.0.1:8788' } }
    return config
  }
  const problem = (change: (c: MetaPuppetConfig) => void, env: NodeJS.ProcessEnv = {}): string => {
    const config = base()
    change(config)
    try {
      serviceSettings(config, env)
    } catch (e) {
      assert.ok(e instanceof ConfigError)
      assert.ok(!e.message.includes('0123456789'), 'an error never quotes the token')
      return e.message
    }
    return 'ok'
  }
  assert.equal(problem(() => {}), 'ok')
  assert.deepEqual(serviceSettings(base(), {}).tls, {})
  assert.match(problem((c) => { c.puppet.options = {} }), /needs puppet\.options\.endpoint \(host:port of the puppet service.*token discovery/)
  assert.equal(problem((c) => { c.puppet.options = {} }, { WECHATY_PUPPET_SERVICE_ENDPOINT: '10.0.0.2:8788' }), 'ok')
  assert.match(problem((c) => { c.puppet.token = null }), /needs a token: set puppet\.token/)
  assert.match(problem((c) => { c.puppet.token = 'no-prefix-0123456789' }), /must have the form <prefix>_<secret>/)
  assert.equal(problem((c) => { c.puppet.token = 'no-prefix-0123456789'; c.puppet.options.tls = { serverName: 'svc' } }), 'ok')
  assert.match(problem((c) => { c.puppet.options.endpoint = 'localhost' }), /endpoint "localhost" must be host:port/)
  assert.match(problem((c) => { c.puppet.options.endpoint = 'h:70000' }), /port outside 1-65535/)
  assert.match(problem((c) => { c.puppet.options.endpoint = 'wechaty://api.chatie.io/x' }), /discovery address/)
  assert.equal(problem((c) => { c.puppet.options.endpoint = '[::1]:8788' }), 'ok')
  assert.match(problem((c) => { c.puppet.options.tls = { disable: 'yes' } }), /tls\.disable must be true or false/)
  assert.match(problem((c) => { c.puppet.options.tls = { insecure: true } }), /unknown key "insecure"/)
  assert.match(problem((c) => { c.puppet.options.tls = { caFile: join(dir, 'missing.pem') } }), /cannot read puppet\.options\.tls\.caFile/)
  const pem = join(dir, 'ca.pem')
  writeFileSync(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
  const config = base()
  config.puppet.options.tls = { caFile: pem, serverName: 'svc' }
  assert.deepEqual(serviceSettings(config, {}).tls, { caCert: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', serverName: 'svc' })
})

it('puppet-service environment overrides and the data directory, memory card and cache paths', () => {
  const path = join(dir, 'env.json')
  writeFileSync(path, JSON.stringify({
    server: { token: 'env-test-server-token-0123', data_dir: 'var' },
    client: { bot: 'my bot/1' },
    puppet: { name: 'wechaty-puppet-service', token: 'insecure_x0123456789', options: { tls: { caFile: 'ca.pem' } } },
  }))
  const { config } = loadConfig({
    argv: ['--config', path],
    cwd: '/somewhere',
    env: {
      METAPUPPET_PUPPET_SERVICE_ENDPOINT: '10.1.2.3:9000',
      METAPUPPET_PUPPET_SERVICE_TLS_DISABLE: 'true',
      METAPUPPET_PUPPET_SERVICE_TLS_SERVER_NAME: 'hosted',
    },
  })
  assert.equal(config.server.data_dir, join(dir, 'var'))
  assert.deepEqual(config.puppet.options, {
    endpoint: '10.1.2.3:9000',
    tls: { caFile: join(dir, 'ca.pem'), disable: true, serverName: 'hosted' },
  })
  // a real puppet keeps its login in a memory card under the data directory ...
  assert.equal(config.client.memory_card, join(dir, 'var', 'wechaty', 'my_bot_1.memory-card.json'))
  assert.equal(serviceCacheDir(config), join(dir, 'var', 'puppet-cache', 'service', 'my_bot_1'))
  assert.throws(
    () => loadConfig({ argv: ['--config', path], env: { METAPUPPET_PUPPET_SERVICE_TLS_DISABLE: 'maybe' } }),
    /METAPUPPET_PUPPET_SERVICE_TLS_DISABLE must be true or false/,
  )
  // ... the mock keeps none (it has nothing to save, and must write nothing), unless asked to
  writeFileSync(path, JSON.stringify({ server: { token: 'env-test-server-token-0123' } }))
  assert.equal(loadConfig({ argv: ['--config', path], env: {} }).config.client.memory_card, null)
  writeFileSync(path, JSON.stringify({ server: { token: 'env-test-server-token-0123' }, client: { memory_card: 'cards/mock.memory-card.json' } }))
  assert.equal(loadConfig({ argv: ['--config', path], env: {} }).config.client.memory_card, join(dir, 'cards', 'mock.memory-card.json'))
  writeFileSync(path, JSON.stringify({ server: { token: 'env-test-server-token-0123' }, puppet: { name: 'wechaty-puppet-wechat4u' }, client: { memory_card: null } }))
  assert.equal(loadConfig({ argv: ['--config', path], env: {} }).config.client.memory_card, null)
  assert.throws(() => prepareMemoryCard(join(dir, 'card.json')), /must end in \.memory-card\.json/)
  assert.deepEqual(prepareMemoryCard(null), {})
})

it('the mock writes no memory card: not in the working directory, not in the data directory', async () => {
  const work = mkdtempSync(join(dir, 'mock-cwd-'))
  const previous = process.cwd()
  process.chdir(work)
  try {
    const path = join(work, 'config.json')
    writeFileSync(path, JSON.stringify({ server: { token: 'mock-card-server-token-0123' } }))
    const { config } = loadConfig({ argv: ['--config', path], env: {} })
    const built = await buildBot(config)
    await built.bot.start()
    built.mock!.login()
    await new Promise<void>((resolve) => built.bot.once('login', () => resolve()))
    await built.bot.stop()
    assert.deepEqual(readdirSync(work), ['config.json'])
  } finally {
    process.chdir(previous)
  }
})
