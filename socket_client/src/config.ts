/**
 * The shared MetaPuppet config file (read by the Python side too), plus env overrides.
 *
 * Lookup: `--config <path>`, else $METAPUPPET_CONFIG, else ./config.json when it exists,
 * else built-in defaults. Keys this side does not know (the Python side's) are ignored.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { DEFAULT_DOWNLOAD_POLICY, type DownloadPolicy } from './download.js'
import { MAX_BOT_NAME_LENGTH } from './protocol.js'

export interface MetaPuppetConfig {
  server: {
    host: string
    port: number
    token: string | null
    puppet_token: string | null
    /** server.bot_tokens: a bot's own token (then only that token opens it on the server). */
    bot_tokens: Record<string, string>
    /** server.data_dir, MetaPuppet's data directory (shared with the Python side); absolute once loaded. */
    data_dir: string
    /**
     * The server's frame limit (bytes of one encoded Socket.IO frame), used until the server
     * announces its own in the Engine.IO handshake (see wirelimit.ts).
     */
    max_message_bytes: number
  }
  client: {
    url: string | null
    /** Several server URLs (a cluster, docs/scaling.md): the next one is tried after each failure. */
    urls: string[] | null
    bot: string
    heartbeat_ms: number
    reconnect_delay_ms: number
    reconnect_delay_max_ms: number
    /** JSONL file the outbox is persisted to; null keeps it in memory only. Absolute once loaded. */
    outbox_path: string | null
    outbox_max_events: number
    outbox_max_bytes: number
    /** Completed sends remembered (in the outbox file) to answer a repeated send id: count and age bounds. */
    send_records_max: number
    send_records_max_age_ms: number
    /** An event unacknowledged this long is logged and re-sent after the next reconnect only. */
    ack_timeout_ms: number
    /** A ding the puppet does not answer (dong) within this time reports `alive: false`. */
    stall_probe_timeout_ms: number
    /** PEM file of a certificate authority to trust for an https:// (wss://) server URL. */
    ca_file: string | null
    /**
     * Wechaty's memory card: where a puppet saves its login (wechat4u does), so a restart
     * needs no new QR scan. Null keeps it in memory. Default: `<data_dir>/wechaty/<bot>.memory-card.json`,
     * null under the mock (it has nothing to save and must write nothing).
     */
    memory_card: string | null
    /** A puppet that cannot start is retried after this long, doubling up to the max (see supervisor.ts). */
    puppet_retry_delay_ms: number
    puppet_retry_delay_max_ms: number
    /** Identical puppet errors are forwarded at most once per this interval, with a count. */
    error_repeat_ms: number
    /**
     * Take the bot over from another client connected with the same client.bot (a deliberate
     * hand-over). Off: the server refuses this client while the other one is connected and answers.
     */
    replace_existing: boolean
    /**
     * JSONL file for events that can never be delivered (too large); null: only logged. Default:
     * `dead-letters.jsonl` beside the outbox file, else in the data directory. Absolute once loaded.
     */
    dead_letter_path: string | null
    /** Bound of the dead letters file; the oldest records go first. */
    dead_letter_max_bytes: number
    /** `FileBox.from_url` downloads: which hosts, how large, how long (download.ts). */
    file_download: DownloadPolicy
    /** A snippet past its timeout that blocks the client this long is stopped (watchdog.ts); 0 turns it off. */
    snippet_stall_ms: number
  }
  puppet: { name: string; token: string | null; options: Record<string, unknown> }
  mock: { user_name: string }
  /** The folder relative paths are resolved against: the config file's, else the working one. */
  base_dir: string
}

export interface ResolvedConfig {
  config: MetaPuppetConfig
  /** The Socket.IO server URL: client.url, else http://server.host:server.port (the first of `urls`). */
  url: string
  /** client.urls, else [url]. */
  urls: string[]
  /** The token this client authenticates with: server.bot_tokens[client.bot] ?? server.puppet_token ?? server.token. Never log it. */
  token: string
  /** Absolute path of the file that was read, or null when running on defaults. */
  configPath: string | null
  /** True for the offline mock puppet. */
  isMock: boolean
}

/** A configuration problem; `exitCode` is what the process should exit with. */
export class ConfigError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message)
    this.name = 'ConfigError'
  }
}

export const USAGE = [
  'usage: npm start -- [--config <path>]',
  '       tsx src/main.ts [--config <path>]',
  '',
  'Runs a Wechaty bot and connects it to the MetaPuppet server.',
  '',
  'options:',
  '  --config <path>  the MetaPuppet JSON config (default: $METAPUPPET_CONFIG, else ./config.json)',
  '  -h, --help       show this help',
  '',
  'env overrides: METAPUPPET_URL, METAPUPPET_HOST, METAPUPPET_PORT, METAPUPPET_TOKEN,',
  '  METAPUPPET_PUPPET_TOKEN, METAPUPPET_BOT, METAPUPPET_PUPPET, METAPUPPET_PUPPET_SERVICE_TOKEN,',
  '  METAPUPPET_OUTBOX_PATH, METAPUPPET_DATA_DIR, METAPUPPET_LOG_LEVEL (debug|info|warn|error),',
  '  METAPUPPET_PUPPET_SERVICE_ENDPOINT, METAPUPPET_PUPPET_SERVICE_TLS_DISABLE (true|false),',
  '  METAPUPPET_PUPPET_SERVICE_TLS_CA_FILE, METAPUPPET_PUPPET_SERVICE_TLS_SERVER_NAME',
].join('\n')

export const MOCK_PUPPET_NAMES: readonly string[] = ['wechaty-puppet-mock', 'mock']

export function defaultConfig(): MetaPuppetConfig {
  return {
    server: { host: '127.0.0.1', port: 8080, token: null, puppet_token: null, bot_tokens: {}, data_dir: 'data', max_message_bytes: 64 * 1024 * 1024 },
    client: {
      url: null,
      urls: null,
      bot: 'metapuppet',
      heartbeat_ms: 15_000,
      reconnect_delay_ms: 500,
      reconnect_delay_max_ms: 5_000,
      outbox_path: null,
      outbox_max_events: 10_000,
      outbox_max_bytes: 64 * 1024 * 1024,
      send_records_max: 20_000,
      send_records_max_age_ms: 24 * 60 * 60 * 1000,
      ack_timeout_ms: 30_000,
      ca_file: null,
      stall_probe_timeout_ms: 10_000,
      memory_card: null,
      puppet_retry_delay_ms: 1_000,
      puppet_retry_delay_max_ms: 60_000,
      error_repeat_ms: 60_000,
      replace_existing: false,
      dead_letter_path: null,
      dead_letter_max_bytes: 128 * 1024 * 1024,
      file_download: { ...DEFAULT_DOWNLOAD_POLICY, allowHosts: [] },
      snippet_stall_ms: 3_000,
    },
    puppet: { name: 'wechaty-puppet-mock', token: null, options: {} },
    mock: { user_name: 'MetaPuppet Bot' },
    base_dir: process.cwd(),
  }
}

export interface CliOptions {
  configPath: string | null
  help: boolean
}

/** Parses the command line; unknown flags or stray arguments raise a ConfigError with exit code 2. */
export function parseCli(argv: readonly string[]): CliOptions {
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: {
        config: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    })
    return { configPath: values.config ?? null, help: values.help ?? false }
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e)
    throw new ConfigError(`${reason}\n\n${USAGE}`, 2)
  }
}

export interface LoadOptions {
  argv?: readonly string[]
  env?: NodeJS.ProcessEnv
  cwd?: string
}

export function loadConfig(options: LoadOptions = {}): ResolvedConfig {
  const env = options.env ?? process.env
  const cwd = options.cwd ?? process.cwd()
  const cli = parseCli(options.argv ?? [])

  const config = defaultConfig()
  const configPath = findConfigFile(cli.configPath, env, cwd)
  config.base_dir = configPath === null ? cwd : dirname(configPath)
  let memoryCard: string | null | undefined
  let deadLetters: string | null | undefined
  if (configPath !== null) {
    ;({ memoryCard, deadLetters } = mergeFile(config, readJsonFile(configPath), configPath))
  }
  applyEnv(config, env, cwd)
  // Like the Python side: relative to the config file's folder (or the working one), env or not.
  config.server.data_dir = resolve(config.base_dir, config.server.data_dir)
  const isMock = MOCK_PUPPET_NAMES.includes(config.puppet.name)
  config.client.memory_card =
    memoryCard !== undefined ? memoryCard : isMock ? null : defaultMemoryCard(config.server.data_dir, config.client.bot)
  config.client.dead_letter_path =
    deadLetters !== undefined
      ? deadLetters
      : join(config.client.outbox_path === null ? config.server.data_dir : dirname(config.client.outbox_path), 'dead-letters.jsonl')

  if (config.client.bot.trim() === '' || config.client.bot.length > MAX_BOT_NAME_LENGTH) {
    throw new ConfigError(`client.bot must be a non-empty name of at most ${MAX_BOT_NAME_LENGTH} characters (the server refuses longer ones)`)
  }
  const token = config.server.bot_tokens[config.client.bot] ?? config.server.puppet_token ?? config.server.token
  if (token === null) {
    throw new ConfigError(
      'no token: set server.token in config.json (metapuppet init writes one) or METAPUPPET_TOKEN',
    )
  }
  if (config.client.url !== null && config.client.urls !== null) {
    throw new ConfigError('set client.url or client.urls, not both (client.urls lists every server URL to try)')
  }
  const urls = config.client.urls ?? [config.client.url ?? `http://${formatHost(config.server.host)}:${config.server.port}`]
  const url = urls[0]!
  return {
    config,
    url,
    urls,
    token,
    configPath,
    isMock,
  }
}

/** `<data_dir>/wechaty/<bot>.memory-card.json`, the bot name made safe for a file name. */
export function defaultMemoryCard(dataDir: string, bot: string): string {
  return join(dataDir, 'wechaty', `${bot.replace(/[^\w.-]/g, '_')}.memory-card.json`)
}

function formatHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
}

function findConfigFile(cliPath: string | null, env: NodeJS.ProcessEnv, cwd: string): string | null {
  const explicit = cliPath ?? nonEmpty(env.METAPUPPET_CONFIG)
  if (explicit !== null) {
    const path = resolve(cwd, explicit)
    if (!existsSync(path)) {
      const source = cliPath !== null ? '--config' : 'METAPUPPET_CONFIG'
      throw new ConfigError(`config file ${path} (from ${source}) does not exist`)
    }
    return path
  }
  const local = resolve(cwd, 'config.json')
  return existsSync(local) ? local : null
}

function readJsonFile(path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${e instanceof Error ? e.message : String(e)}`)
  }
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`)
  }
}

type Obj = Record<string, unknown>

function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function nonEmpty(value: string | undefined): string | null {
  return value === undefined || value.trim() === '' ? null : value
}

/** Paths whose default depends on other keys, as the file gives them (undefined: not set). */
interface FilePaths {
  memoryCard: string | null | undefined
  deadLetters: string | null | undefined
}

/** Merges the file into `config`; returns the paths whose default depends on other keys. */
function mergeFile(config: MetaPuppetConfig, data: unknown, path: string): FilePaths {
  const bad = (key: string, expected: string, got: unknown): never => {
    const shown = key.endsWith('token') ? typeof got : JSON.stringify(got)
    throw new ConfigError(`config file ${path}: ${key} must be ${expected} (got ${shown})`)
  }
  if (!isObject(data)) bad('the top level', 'a JSON object', data)
  const root = data as Obj

  const section = (name: string): Obj => {
    const value = root[name]
    if (value === undefined || value === null) return {}
    if (!isObject(value)) bad(name, 'an object', value)
    return value as Obj
  }
  const str = (obj: Obj, sect: string, key: string, nullable: boolean): string | null | undefined => {
    const value = obj[key]
    if (value === undefined) return undefined
    if (value === null && nullable) return null
    if (typeof value !== 'string' || value === '') {
      bad(`${sect}.${key}`, nullable ? 'a non-empty string or null' : 'a non-empty string', value)
    }
    return value as string
  }
  const int = (obj: Obj, sect: string, key: string, min: number, max: number): number | undefined => {
    const value = obj[key]
    if (value === undefined) return undefined
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      bad(`${sect}.${key}`, `an integer between ${min} and ${max}`, value)
    }
    return value as number
  }

  const server = section('server')
  config.server.host = str(server, 'server', 'host', false) ?? config.server.host
  config.server.port = int(server, 'server', 'port', 1, 65535) ?? config.server.port
  const token = str(server, 'server', 'token', true)
  if (token !== undefined) config.server.token = token
  const puppetToken = str(server, 'server', 'puppet_token', true)
  if (puppetToken !== undefined) config.server.puppet_token = puppetToken
  const botTokens = server.bot_tokens
  if (botTokens !== undefined && botTokens !== null) {
    if (!isObject(botTokens)) bad('server.bot_tokens', 'an object of bot name → token', botTokens)
    for (const [bot, value] of Object.entries(botTokens as Obj)) {
      if (typeof value !== 'string' || value === '') bad(`server.bot_tokens[${JSON.stringify(bot)}].token`, 'a non-empty string', value)
      config.server.bot_tokens[bot] = value as string
    }
  }
  config.server.data_dir = str(server, 'server', 'data_dir', false) ?? config.server.data_dir
  config.server.max_message_bytes =
    int(server, 'server', 'max_message_bytes', 1024, 2 ** 40) ?? config.server.max_message_bytes

  const client = section('client')
  const url = str(client, 'client', 'url', true)
  if (url !== undefined) config.client.url = url
  const urls = client.urls
  if (urls !== undefined && urls !== null) {
    if (!Array.isArray(urls) || urls.length === 0 || !urls.every((u) => typeof u === 'string' && /^(https?|wss?):\/\//i.test(u))) {
      bad('client.urls', 'a non-empty list of server URLs (http:// or https://)', urls)
    }
    config.client.urls = [...new Set(urls as string[])]
  }
  config.client.bot = str(client, 'client', 'bot', false) ?? config.client.bot
  const day = 24 * 60 * 60 * 1000
  config.client.heartbeat_ms = int(client, 'client', 'heartbeat_ms', 1, day) ?? config.client.heartbeat_ms
  config.client.reconnect_delay_ms =
    int(client, 'client', 'reconnect_delay_ms', 1, day) ?? config.client.reconnect_delay_ms
  config.client.reconnect_delay_max_ms =
    int(client, 'client', 'reconnect_delay_max_ms', 1, day) ?? config.client.reconnect_delay_max_ms
  const outboxPath = str(client, 'client', 'outbox_path', true)
  // A relative path is relative to the config file, not to wherever the process was started.
  if (outboxPath !== undefined) config.client.outbox_path = outboxPath === null ? null : resolve(dirname(path), outboxPath)
  config.client.outbox_max_events =
    int(client, 'client', 'outbox_max_events', 1, 10_000_000) ?? config.client.outbox_max_events
  config.client.outbox_max_bytes =
    int(client, 'client', 'outbox_max_bytes', 1024, 2 ** 40) ?? config.client.outbox_max_bytes
  config.client.send_records_max =
    int(client, 'client', 'send_records_max', 1, 10_000_000) ?? config.client.send_records_max
  config.client.send_records_max_age_ms =
    int(client, 'client', 'send_records_max_age_ms', 1_000, 30 * day) ?? config.client.send_records_max_age_ms
  config.client.ack_timeout_ms = int(client, 'client', 'ack_timeout_ms', 1, day) ?? config.client.ack_timeout_ms
  config.client.stall_probe_timeout_ms =
    int(client, 'client', 'stall_probe_timeout_ms', 1, day) ?? config.client.stall_probe_timeout_ms
  const caFile = str(client, 'client', 'ca_file', true)
  if (caFile !== undefined) config.client.ca_file = caFile === null ? null : resolve(dirname(path), caFile)
  const memoryCard = str(client, 'client', 'memory_card', true)
  config.client.puppet_retry_delay_ms =
    int(client, 'client', 'puppet_retry_delay_ms', 1, day) ?? config.client.puppet_retry_delay_ms
  config.client.puppet_retry_delay_max_ms =
    int(client, 'client', 'puppet_retry_delay_max_ms', 1, day) ?? config.client.puppet_retry_delay_max_ms
  config.client.error_repeat_ms = int(client, 'client', 'error_repeat_ms', 1, day) ?? config.client.error_repeat_ms
  const replace = client.replace_existing
  if (replace !== undefined && replace !== null) {
    if (typeof replace !== 'boolean') bad('client.replace_existing', 'true or false', replace)
    config.client.replace_existing = replace as boolean
  }
  const deadLetters = str(client, 'client', 'dead_letter_path', true)
  config.client.dead_letter_max_bytes =
    int(client, 'client', 'dead_letter_max_bytes', 1024, 2 ** 40) ?? config.client.dead_letter_max_bytes
  config.client.snippet_stall_ms = int(client, 'client', 'snippet_stall_ms', 0, day) ?? config.client.snippet_stall_ms
  const download = client.file_download
  if (download !== undefined && download !== null) {
    if (!isObject(download)) bad('client.file_download', 'an object', download)
    const d = download as Obj
    const known = ['allow_hosts', 'allow_private', 'max_bytes', 'connect_timeout_ms', 'read_timeout_ms', 'max_redirects']
    for (const key of Object.keys(d)) {
      if (!known.includes(key)) bad(`client.file_download.${key}`, `one of ${known.join(', ')} (unknown key)`, key)
    }
    const policy = config.client.file_download
    const hosts = d.allow_hosts
    if (hosts !== undefined) {
      if (!Array.isArray(hosts) || !hosts.every((h) => typeof h === 'string' && h.trim() !== '')) {
        bad('client.file_download.allow_hosts', 'a list of host names, addresses or CIDR ranges', hosts)
      }
      policy.allowHosts = (hosts as string[]).map((h) => h.trim())
    }
    if (d.allow_private !== undefined) {
      if (typeof d.allow_private !== 'boolean') bad('client.file_download.allow_private', 'true or false', d.allow_private)
      policy.allowPrivate = d.allow_private as boolean
    }
    const sect = 'client.file_download'
    policy.maxBytes = int(d, sect, 'max_bytes', 1, 2 ** 40) ?? policy.maxBytes
    policy.connectTimeoutMs = int(d, sect, 'connect_timeout_ms', 1, day) ?? policy.connectTimeoutMs
    policy.readTimeoutMs = int(d, sect, 'read_timeout_ms', 1, day) ?? policy.readTimeoutMs
    policy.maxRedirects = int(d, sect, 'max_redirects', 0, 100) ?? policy.maxRedirects
  }

  const puppet = section('puppet')
  config.puppet.name = str(puppet, 'puppet', 'name', false) ?? config.puppet.name
  const puppetServiceToken = str(puppet, 'puppet', 'token', true)
  if (puppetServiceToken !== undefined) config.puppet.token = puppetServiceToken
  const puppetOptions = puppet.options
  if (puppetOptions !== undefined && puppetOptions !== null) {
    if (!isObject(puppetOptions)) bad('puppet.options', 'an object', puppetOptions)
    config.puppet.options = { ...(puppetOptions as Obj) }
    const tls = config.puppet.options.tls
    if (isObject(tls)) {
      config.puppet.options.tls = { ...tls }
      // like every path in the file: relative to the file's folder
      if (typeof tls.caFile === 'string' && tls.caFile !== '') {
        ;(config.puppet.options.tls as Obj).caFile = resolve(dirname(path), tls.caFile)
      }
    }
  }

  const mock = section('mock')
  config.mock.user_name = str(mock, 'mock', 'user_name', false) ?? config.mock.user_name

  if (config.client.reconnect_delay_max_ms < config.client.reconnect_delay_ms) {
    config.client.reconnect_delay_max_ms = config.client.reconnect_delay_ms
  }
  if (config.client.puppet_retry_delay_max_ms < config.client.puppet_retry_delay_ms) {
    config.client.puppet_retry_delay_max_ms = config.client.puppet_retry_delay_ms
  }
  const relative = (value: string | null | undefined): string | null | undefined =>
    value === undefined || value === null ? value : resolve(dirname(path), value)
  return { memoryCard: relative(memoryCard), deadLetters: relative(deadLetters) }
}

function applyEnv(config: MetaPuppetConfig, env: NodeJS.ProcessEnv, cwd: string): void {
  const url = nonEmpty(env.METAPUPPET_URL)
  if (url !== null) {
    config.client.url = url
    config.client.urls = null // one URL from the environment replaces the file's list
  }
  const host = nonEmpty(env.METAPUPPET_HOST)
  if (host !== null) config.server.host = host
  const port = nonEmpty(env.METAPUPPET_PORT)
  if (port !== null) {
    const n = Number(port)
    if (!/^\d+$/.test(port.trim()) || n < 1 || n > 65535) {
      throw new ConfigError(`METAPUPPET_PORT must be an integer between 1 and 65535 (got ${JSON.stringify(port)})`)
    }
    config.server.port = n
  }
  const token = nonEmpty(env.METAPUPPET_TOKEN)
  if (token !== null) config.server.token = token
  const puppetToken = nonEmpty(env.METAPUPPET_PUPPET_TOKEN)
  if (puppetToken !== null) config.server.puppet_token = puppetToken
  const bot = nonEmpty(env.METAPUPPET_BOT)
  if (bot !== null) config.client.bot = bot
  const puppet = nonEmpty(env.METAPUPPET_PUPPET)
  if (puppet !== null) config.puppet.name = puppet
  const serviceToken = nonEmpty(env.METAPUPPET_PUPPET_SERVICE_TOKEN)
  if (serviceToken !== null) config.puppet.token = serviceToken
  const outboxPath = nonEmpty(env.METAPUPPET_OUTBOX_PATH)
  if (outboxPath !== null) config.client.outbox_path = resolve(cwd, outboxPath)
  const dataDir = nonEmpty(env.METAPUPPET_DATA_DIR)
  if (dataDir !== null) config.server.data_dir = dataDir

  // wechaty-puppet-service options (src/puppets/service.ts checks them)
  const options = config.puppet.options
  const tls = (): Obj => {
    if (!isObject(options.tls)) options.tls = {}
    return options.tls as Obj
  }
  const endpoint = nonEmpty(env.METAPUPPET_PUPPET_SERVICE_ENDPOINT)
  if (endpoint !== null) options.endpoint = endpoint.trim()
  const disable = nonEmpty(env.METAPUPPET_PUPPET_SERVICE_TLS_DISABLE)
  if (disable !== null) {
    const flag = disable.trim().toLowerCase()
    if (!['true', 'false', '1', '0', 'yes', 'no'].includes(flag)) {
      throw new ConfigError(`METAPUPPET_PUPPET_SERVICE_TLS_DISABLE must be true or false (got ${JSON.stringify(disable)})`)
    }
    tls().disable = ['true', '1', 'yes'].includes(flag)
  }
  const caFile = nonEmpty(env.METAPUPPET_PUPPET_SERVICE_TLS_CA_FILE)
  if (caFile !== null) tls().caFile = resolve(cwd, caFile)
  const serverName = nonEmpty(env.METAPUPPET_PUPPET_SERVICE_TLS_SERVER_NAME)
  if (serverName !== null) tls().serverName = serverName.trim()
}
