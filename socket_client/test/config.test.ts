import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { ConfigError, loadConfig, parseCli } from '../src/config.js'

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
})
