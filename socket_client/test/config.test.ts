import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { ConfigError, loadConfig, parseCli } from '../src/config.js'
import { DEFAULT_SEND_BUDGET, parseIlinkOptions } from '../src/puppets/ilink/options.js'
import { buildBot } from '../src/puppet.js'

const dir = mkdtempSync(join(tmpdir(), 'metapuppet-config-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function writeConfig(name: string, data: unknown): string {
  const path = join(dir, name)
  writeFileSync(path, typeof data === 'string' ? data : JSON.stringify(data))
  return path
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`)
    return e
  }
  assert.fail('expected a ConfigError')
}

const emptyCwd = mkdtempSync(join(dir, 'cwd-'))

describe('config', () => {
  it('reads the file given with --config and derives the URL', () => {
    const path = writeConfig('a.json', {
      server: { host: '127.0.0.2', port: 9001, token: 'file-token' },
      client: { bot: 'alpha', heartbeat_ms: 1000 },
      puppet: { name: 'wechaty-puppet-mock' },
      mock: { user_name: 'Alpha Bot' },
      storage: { kind: 'python-only section, ignored here' },
    })
    const resolved = loadConfig({ argv: ['--config', path], env: {}, cwd: emptyCwd })
    assert.equal(resolved.url, 'http://127.0.0.2:9001')
    assert.equal(resolved.token, 'file-token')
    assert.equal(resolved.configPath, path)
    assert.equal(resolved.isMock, true)
    assert.equal(resolved.config.client.bot, 'alpha')
    assert.equal(resolved.config.client.heartbeat_ms, 1000)
    assert.equal(resolved.config.client.reconnect_delay_ms, 500) // default kept
    assert.equal(resolved.config.mock.user_name, 'Alpha Bot')
  })

  it('lets env variables override the file', () => {
    const path = writeConfig('b.json', { server: { host: '127.0.0.2', port: 9001, token: 'file-token' } })
    const resolved = loadConfig({
      argv: [],
      env: {
        METAPUPPET_CONFIG: path,
        METAPUPPET_HOST: '127.0.0.3',
        METAPUPPET_PORT: '9002',
        METAPUPPET_TOKEN: 'env-token',
        METAPUPPET_BOT: 'beta',
        METAPUPPET_PUPPET: 'wechaty-puppet-service',
        METAPUPPET_PUPPET_SERVICE_TOKEN: 'service-token',
      },
      cwd: emptyCwd,
    })
    assert.equal(resolved.url, 'http://127.0.0.3:9002')
    assert.equal(resolved.token, 'env-token')
    assert.equal(resolved.config.client.bot, 'beta')
    assert.equal(resolved.config.puppet.name, 'wechaty-puppet-service')
    assert.equal(resolved.config.puppet.token, 'service-token')
    assert.equal(resolved.isMock, false)
  })

  it('prefers client.url / METAPUPPET_URL and the puppet token', () => {
    const path = writeConfig('c.json', { server: { token: 't', puppet_token: 'pt' }, client: { url: 'http://h:1' } })
    const fromFile = loadConfig({ argv: ['--config', path], env: {}, cwd: emptyCwd })
    assert.equal(fromFile.url, 'http://h:1')
    assert.equal(fromFile.token, 'pt')
    const fromEnv = loadConfig({
      argv: [`--config=${path}`],
      env: { METAPUPPET_URL: 'http://other:2', METAPUPPET_PUPPET_TOKEN: 'env-pt' },
      cwd: emptyCwd,
    })
    assert.equal(fromEnv.url, 'http://other:2')
    assert.equal(fromEnv.token, 'env-pt')
  })

  it('reads client.urls (several servers, a cluster) and refuses it beside client.url', () => {
    const path = writeConfig('urls.json', {
      server: { token: 't' },
      client: { urls: ['http://a:1', 'https://b:2', 'http://a:1'] },
    })
    const resolved = loadConfig({ argv: ['--config', path], env: {}, cwd: emptyCwd })
    assert.deepEqual(resolved.urls, ['http://a:1', 'https://b:2'])
    assert.equal(resolved.url, 'http://a:1')
    const fromEnv = loadConfig({ argv: ['--config', path], env: { METAPUPPET_URL: 'http://c:3' }, cwd: emptyCwd })
    assert.deepEqual(fromEnv.urls, ['http://c:3'])
    const single = loadConfig({ argv: ['--config', writeConfig('one.json', { server: { token: 't' } })], env: {}, cwd: emptyCwd })
    assert.deepEqual(single.urls, ['http://127.0.0.1:8080'])

    const both = writeConfig('both.json', { server: { token: 't' }, client: { url: 'http://a:1', urls: ['http://b:2'] } })
    assert.match(configError(() => loadConfig({ argv: ['--config', both], env: {}, cwd: emptyCwd })).message, /client\.url or client\.urls, not both/)
    for (const bad of [[], 'http://a:1', ['ftp://a'], [5]]) {
      const path = writeConfig('bad-urls.json', { server: { token: 't' }, client: { urls: bad } })
      assert.match(configError(() => loadConfig({ argv: ['--config', path], env: {}, cwd: emptyCwd })).message, /client\.urls must be a non-empty list of server URLs/)
    }
  })

  it('picks the bot\'s own token first, and reads client.replace_existing', () => {
    const path = writeConfig('bot-tokens.json', {
      server: { token: 't', puppet_token: 'pt', bot_tokens: { shop: 'shop-token', other: 'other-token' } },
      client: { bot: 'shop', replace_existing: true },
    })
    const resolved = loadConfig({ argv: ['--config', path], env: {}, cwd: emptyCwd })
    assert.equal(resolved.token, 'shop-token')
    assert.equal(resolved.config.client.replace_existing, true)
    const unlisted = writeConfig('bot-tokens-2.json', { server: { token: 't', bot_tokens: { shop: 'x' } }, client: { bot: 'b' } })
    const plain = loadConfig({ argv: ['--config', unlisted], env: {}, cwd: emptyCwd })
    assert.equal(plain.token, 't')
    assert.equal(plain.config.client.replace_existing, false)
    const badTokens = writeConfig('bad-bot-tokens.json', { server: { token: 't', bot_tokens: { shop: 42 } } })
    const error = configError(() => loadConfig({ argv: ['--config', badTokens], env: {}, cwd: emptyCwd }))
    assert.match(error.message, /server\.bot_tokens\["shop"\]/)
    const badReplace = writeConfig('bad-replace.json', { server: { token: 't' }, client: { replace_existing: 'yes' } })
    assert.match(configError(() => loadConfig({ argv: ['--config', badReplace], env: {}, cwd: emptyCwd })).message, /client\.replace_existing must be true or false/)
  })

  it('uses ./config.json when present, defaults otherwise', () => {
    const cwd = mkdtempSync(join(dir, 'cwd-'))
    writeFileSync(join(cwd, 'config.json'), JSON.stringify({ server: { port: 7000, token: 'local' } }))
    assert.equal(loadConfig({ env: {}, cwd }).url, 'http://127.0.0.1:7000')
    const defaults = loadConfig({ env: { METAPUPPET_TOKEN: 'x' }, cwd: emptyCwd })
    assert.equal(defaults.url, 'http://127.0.0.1:8080')
    assert.equal(defaults.configPath, null)
    assert.equal(defaults.config.puppet.name, 'wechaty-puppet-mock')
    assert.equal(defaults.config.client.bot, 'metapuppet')
  })

  it('refuses to start without a token, saying how to get one', () => {
    const error = configError(() => loadConfig({ env: {}, cwd: emptyCwd }))
    assert.equal(error.exitCode, 1)
    assert.equal(
      error.message,
      'no token: set server.token in config.json (metapuppet init writes one) or METAPUPPET_TOKEN',
    )
  })

  it('names the file and the JSON error of a malformed config', () => {
    const path = writeConfig('bad.json', '{"server": {"port": 8080,}}')
    const error = configError(() => loadConfig({ argv: ['--config', path], env: {}, cwd: emptyCwd }))
    assert.equal(error.exitCode, 1)
    assert.ok(error.message.includes(path), error.message)
    assert.match(error.message, /not valid JSON: .*(Unexpected|Expected)/)
  })

  it('names a missing config file', () => {
    const error = configError(() => loadConfig({ argv: ['--config', join(dir, 'nope.json')], env: {}, cwd: emptyCwd }))
    assert.match(error.message, /nope\.json \(from --config\) does not exist/)
  })

  it('rejects wrongly typed values without printing the token', () => {
    const path = writeConfig('typed.json', { server: { port: 'eighty', token: 'secret' } })
    assert.match(configError(() => loadConfig({ argv: ['--config', path], env: {}, cwd: emptyCwd })).message, /server\.port must be an integer/)
    const tokenPath = writeConfig('token.json', { server: { token: 12345 } })
    const message = configError(() => loadConfig({ argv: ['--config', tokenPath], env: {}, cwd: emptyCwd })).message
    assert.match(message, /server\.token must be/)
    assert.ok(!message.includes('12345'))
    assert.match(configError(() => loadConfig({ env: { METAPUPPET_PORT: 'x', METAPUPPET_TOKEN: 't' }, cwd: emptyCwd })).message, /METAPUPPET_PORT/)
    assert.match(configError(() => loadConfig({ env: { METAPUPPET_BOT: 'b'.repeat(65), METAPUPPET_TOKEN: 't' }, cwd: emptyCwd })).message, /client\.bot/)
  })

  it('rejects unknown command-line flags with exit code 2 and the usage', () => {
    const error = configError(() => parseCli(['--nope']))
    assert.equal(error.exitCode, 2)
    assert.match(error.message, /usage:/)
    assert.equal(configError(() => parseCli(['stray'])).exitCode, 2)
    assert.deepEqual(parseCli(['--config', 'x.json']), { configPath: 'x.json', help: false })
  })

  it('reads the reliability keys; a relative outbox path is relative to the config file', () => {
    const defaults = loadConfig({ env: { METAPUPPET_TOKEN: 'x' }, cwd: emptyCwd }).config.client
    assert.deepEqual(
      [defaults.outbox_path, defaults.outbox_max_events, defaults.outbox_max_bytes, defaults.ack_timeout_ms, defaults.stall_probe_timeout_ms, defaults.heartbeat_ms],
      [null, 10_000, 64 * 1024 * 1024, 30_000, 10_000, 15_000],
    )
    const sub = mkdtempSync(join(dir, 'conf-'))
    const path = join(sub, 'config.json')
    writeFileSync(path, JSON.stringify({
      server: { token: 't' },
      client: { outbox_path: 'state/outbox.jsonl', outbox_max_events: 50, outbox_max_bytes: 4096, ack_timeout_ms: 100, stall_probe_timeout_ms: 300, heartbeat_ms: 200 },
    }))
    const client = loadConfig({ argv: ['--config', path], env: {}, cwd: emptyCwd }).config.client
    assert.equal(client.outbox_path, join(sub, 'state', 'outbox.jsonl'))
    assert.deepEqual([client.outbox_max_events, client.outbox_max_bytes, client.ack_timeout_ms, client.stall_probe_timeout_ms, client.heartbeat_ms], [50, 4096, 100, 300, 200])
    const absolute = writeConfig('abs.json', { server: { token: 't' }, client: { outbox_path: '/var/tmp/o.jsonl' } })
    assert.equal(loadConfig({ argv: ['--config', absolute], env: {}, cwd: emptyCwd }).config.client.outbox_path, '/var/tmp/o.jsonl')
    const fromEnv = loadConfig({ argv: ['--config', path], env: { METAPUPPET_OUTBOX_PATH: 'env.jsonl' }, cwd: emptyCwd })
    assert.equal(fromEnv.config.client.outbox_path, join(emptyCwd, 'env.jsonl'))
    const bad = writeConfig('bad-outbox.json', { server: { token: 't' }, client: { outbox_max_events: 0 } })
    assert.match(configError(() => loadConfig({ argv: ['--config', bad], env: {}, cwd: emptyCwd })).message, /client\.outbox_max_events must be an integer between 1 and/)
  })

  it('resolves server.data_dir like the Python side: against the config file’s folder, env included', () => {
    const sub = mkdtempSync(join(dir, 'data-'))
    const path = join(sub, 'config.json')
    writeFileSync(path, JSON.stringify({ server: { token: 't', data_dir: 'state' } }))
    assert.equal(loadConfig({ argv: ['--config', path], env: {}, cwd: emptyCwd }).config.server.data_dir, join(sub, 'state'))
    assert.equal(loadConfig({ argv: ['--config', path], env: { METAPUPPET_DATA_DIR: 'other' }, cwd: emptyCwd }).config.server.data_dir, join(sub, 'other'))
    assert.equal(loadConfig({ env: { METAPUPPET_TOKEN: 'x' }, cwd: emptyCwd }).config.server.data_dir, join(emptyCwd, 'data'))
    const abs = writeConfig('abs-data.json', { server: { token: 't', data_dir: '/srv/mp' } })
    assert.equal(loadConfig({ argv: ['--config', abs], env: {}, cwd: emptyCwd }).config.server.data_dir, '/srv/mp')
  })
})

describe('ilink puppet options', () => {
  const context = { serverDataDir: '/srv/data', bot: 'my bot/1', baseDir: '/etc/mp' }

  it('defaults: the real hosts, <server.data_dir>/ilink/<bot>/, the iLink send budget', () => {
    const o = parseIlinkOptions({}, context)
    assert.equal(o.baseUrl, 'https://ilinkai.weixin.qq.com')
    assert.equal(o.cdnBaseUrl, 'https://novac2c.cdn.weixin.qq.com/c2c')
    assert.equal(o.dataDir, '/srv/data/ilink/my_bot_1')
    assert.equal(o.longPollTimeoutMs, 35_000)
    assert.deepEqual(o.sendBudget, DEFAULT_SEND_BUDGET)
    assert.deepEqual(o.sendBudget, { user_first: true, per_user_message: 10, window_s: 86_400 })
  })

  it('reads every option; a relative data_dir is relative to the config file', () => {
    const o = parseIlinkOptions(
      {
        base_url: 'http://127.0.0.1:9000/',
        cdn_base_url: 'http://127.0.0.1:9000/c2c',
        data_dir: 'ilink-state',
        long_poll_timeout_ms: 5000,
        bot_agent: 'MyBot/1.2 (test)',
        send_budget: { user_first: false, per_user_message: 3, window_s: 3600 },
        retry_delay_ms: 10,
        retry_delay_max_ms: 5,
        max_file_bytes: 1000,
      },
      context,
    )
    assert.equal(o.baseUrl, 'http://127.0.0.1:9000')
    assert.equal(o.dataDir, '/etc/mp/ilink-state')
    assert.equal(o.botAgent, 'MyBot/1.2 (test)')
    assert.deepEqual(o.sendBudget, { user_first: false, per_user_message: 3, window_s: 3600 })
    assert.deepEqual([o.retryDelayMs, o.retryDelayMaxMs, o.maxFileBytes], [10, 10, 1000])
  })

  it('refuses bad options with errors naming the key', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ base_url: 'ftp://x' }, /puppet\.options\.base_url must be an http\(s\) URL/],
      [{ base_url: 'not a url' }, /base_url must be an http\(s\) URL/],
      [{ cdn_base_url: 5 }, /cdn_base_url must be/],
      [{ long_poll_timeout_ms: 10 }, /long_poll_timeout_ms must be an integer between 1000 and 300000/],
      [{ bot_agent: 'ünïcode' }, /bot_agent must be a non-empty printable ASCII string/],
      [{ send_budget: { per_user_message: 0 } }, /send_budget\.per_user_message must be an integer between 1 and/],
      [{ send_budget: { user_first: 'yes' } }, /send_budget\.user_first must be true or false/],
      [{ send_budget: { window: 1 } }, /unknown key puppet\.options\.send_budget\.window/],
      [{ send_budget: [] }, /send_budget must be an object/],
      [{ basse_url: 'x' }, /unknown ilink option puppet\.options\.basse_url \(known: base_url/],
      [{ data_dir: '' }, /data_dir must be a non-empty path/],
    ]
    for (const [raw, message] of cases) {
      assert.match(configError(() => parseIlinkOptions(raw, context)).message, message, JSON.stringify(raw))
    }
  })

  it('buildBot: "ilink" builds the ilink puppet with its capabilities; a bad option is a ConfigError', async () => {
    const config = loadConfig({ env: { METAPUPPET_TOKEN: 'x' }, cwd: emptyCwd }).config
    config.puppet = { name: 'ilink', token: null, options: { send_budget: { per_user_message: 5 } } }
    const built = await buildBot(config)
    assert.equal(built.puppetName, 'ilink')
    assert.equal(built.isMock, false)
    assert.equal(built.capabilities.channel, 'ilink')
    assert.deepEqual([built.capabilities.rooms, built.capabilities.files, built.capabilities.typing], [false, true, true])
    assert.deepEqual(built.capabilities.send_budget, { user_first: true, per_user_message: 5, window_s: 86_400 })
    config.puppet.options = { bogus: 1 }
    await assert.rejects(buildBot(config), (e: unknown) => e instanceof ConfigError && /unknown ilink option/.test(e.message))
    const mock = await buildBot(loadConfig({ env: { METAPUPPET_TOKEN: 'x' }, cwd: emptyCwd }).config)
    assert.deepEqual([mock.capabilities.channel, mock.capabilities.typing, mock.capabilities.send_budget, mock.capabilities.rooms], ['mock', false, null, true])
  })
})
