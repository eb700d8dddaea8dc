/**
 * wechaty-puppet-service: a hosted puppet reached over gRPC with a token.
 *
 * Upstream facts this file is built around (wechaty-puppet-service 1.19.9, @grpc/grpc-js 1.14):
 * - Without `endpoint`, the client asks api.chatie.io to discover the service from the token.
 *   That path is broken with the gRPC library it ships: an unhandled rejection, no login,
 *   and Python hears nothing. So an endpoint is required here, with a clear error.
 * - The token must read `<prefix>_<secret>`: the prefix is the TLS server name (SNI) unless
 *   `tls.serverName` is given; without either, the puppet throws at start.
 * - `tls.disable: true` talks plain gRPC (a service started with TLS disabled); then the
 *   token travels as the gRPC authority. Otherwise TLS with `tls.caCert` (PEM) or the
 *   Wechaty community CA.
 * - Its payload cache goes to `~/.wechaty/wechaty-puppet-service/<token>/v1.19/<account>/`:
 *   the token in a path, outside MetaPuppet's data directory. `buildServicePuppet` points it
 *   at `<data_dir>/puppet-cache/service/<bot>/` (mode 0700) instead.
 */
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PuppetService } from 'wechaty-puppet-service'
import { ConfigError, type MetaPuppetConfig } from '../config.js'

export const SERVICE_PUPPET_NAME = 'wechaty-puppet-service'

export interface ServiceSettings {
  token: string
  endpoint: string
  tls: { disable?: boolean; caCert?: string; serverName?: string }
  /** Other puppet.options keys, handed on untouched. */
  extra: Record<string, unknown>
}

const HELP = 'see "puppet-service" in the README'

/**
 * Checks `puppet.token` / `puppet.options` (after env overrides) and reads `tls.caFile`.
 * Errors name the key to fix and never quote the token.
 */
export function serviceSettings(config: MetaPuppetConfig, env: NodeJS.ProcessEnv = process.env): ServiceSettings {
  const { endpoint: rawEndpoint, tls: rawTls, token: optionToken, ...extra } = config.puppet.options
  const token = config.puppet.token ?? stringOrNull(optionToken) ?? stringOrNull(env.WECHATY_PUPPET_SERVICE_TOKEN)
  if (token === null) {
    throw new ConfigError(
      `${SERVICE_PUPPET_NAME} needs a token: set puppet.token in the config or METAPUPPET_PUPPET_SERVICE_TOKEN (${HELP})`,
    )
  }
  const endpoint = stringOrNull(rawEndpoint) ?? stringOrNull(env.WECHATY_PUPPET_SERVICE_ENDPOINT)
  if (endpoint === null) {
    throw new ConfigError(
      `${SERVICE_PUPPET_NAME} needs puppet.options.endpoint (host:port of the puppet service, e.g. "127.0.0.1:8788") ` +
        'or METAPUPPET_PUPPET_SERVICE_ENDPOINT; without it Wechaty tries token discovery through api.chatie.io, ' +
        `which does not work with the gRPC library it ships (it never logs in) (${HELP})`,
    )
  }
  const endpointProblem = checkEndpoint(endpoint)
  if (endpointProblem !== null) throw new ConfigError(`puppet.options.endpoint ${JSON.stringify(endpoint)} ${endpointProblem}`)

  if (rawTls !== undefined && rawTls !== null && (typeof rawTls !== 'object' || Array.isArray(rawTls))) {
    throw new ConfigError('puppet.options.tls must be an object like {"disable": true} or {"caFile": "ca.pem", "serverName": "..."}')
  }
  const given = (rawTls ?? {}) as Record<string, unknown>
  const known = ['disable', 'caCert', 'caFile', 'serverName']
  const unknown = Object.keys(given).filter((k) => !known.includes(k))
  if (unknown.length > 0) {
    throw new ConfigError(`puppet.options.tls has an unknown key ${JSON.stringify(unknown[0])}: use ${known.join(', ')}`)
  }
  const tls: ServiceSettings['tls'] = {}
  if (given.disable !== undefined) {
    if (typeof given.disable !== 'boolean') throw new ConfigError('puppet.options.tls.disable must be true or false')
    tls.disable = given.disable
  }
  if (given.serverName !== undefined) {
    if (typeof given.serverName !== 'string' || given.serverName === '') {
      throw new ConfigError('puppet.options.tls.serverName must be a non-empty string')
    }
    tls.serverName = given.serverName
  }
  if (given.caCert !== undefined && given.caFile !== undefined) {
    throw new ConfigError('puppet.options.tls: give caCert (PEM text) or caFile (a path), not both')
  }
  if (given.caCert !== undefined) {
    if (typeof given.caCert !== 'string' || !given.caCert.includes('BEGIN CERTIFICATE')) {
      throw new ConfigError('puppet.options.tls.caCert must be PEM text (-----BEGIN CERTIFICATE----- ...)')
    }
    tls.caCert = given.caCert
  }
  if (given.caFile !== undefined) {
    if (typeof given.caFile !== 'string' || given.caFile === '') throw new ConfigError('puppet.options.tls.caFile must be a path')
    try {
      tls.caCert = readFileSync(given.caFile, 'utf8')
    } catch (e) {
      throw new ConfigError(`cannot read puppet.options.tls.caFile ${given.caFile}: ${e instanceof Error ? e.message : String(e)}`)
    }
    if (!tls.caCert.includes('BEGIN CERTIFICATE')) {
      throw new ConfigError(`puppet.options.tls.caFile ${given.caFile} holds no PEM certificate`)
    }
  }
  if (tls.serverName === undefined && tokenPrefix(token) === null) {
    throw new ConfigError(
      `the ${SERVICE_PUPPET_NAME} token must have the form <prefix>_<secret> (e.g. insecure_… or puppet_…): ` +
        'the prefix is the TLS server name; or set puppet.options.tls.serverName',
    )
  }
  return { token, endpoint, tls, extra }
}

/** The server-name prefix of a `<prefix>_<secret>` token (what wechaty-token calls the SNI), or null. */
export function tokenPrefix(token: string): string | null {
  const cut = token.lastIndexOf('_')
  return cut > 0 && cut < token.length - 1 ? token.slice(0, cut).toLowerCase() : null
}

/** null when `endpoint` is a gRPC target this puppet can dial, else what is wrong with it. */
export function checkEndpoint(endpoint: string): string | null {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint)) {
    return /^wechaty:/i.test(endpoint) ? 'is a discovery address, which does not work: give host:port' : null
  }
  const match = /^(\[[0-9a-f:.]+\]|[^\s:/[\]]+):(\d+)$/i.exec(endpoint)
  if (match === null) return 'must be host:port (e.g. "127.0.0.1:8788" or "[::1]:8788")'
  const port = Number(match[2])
  return port >= 1 && port <= 65535 ? null : 'has a port outside 1-65535'
}

/** Where the puppet-service payload cache goes: no secret in the path, private to the user. */
export function serviceCacheDir(config: MetaPuppetConfig): string {
  return join(config.server.data_dir, 'puppet-cache', 'service', config.client.bot.replace(/[^\w.-]/g, '_'))
}

interface PayloadStoreLike {
  storeDir?: unknown
}

/** A PuppetService for the checked settings, its cache under the data directory. */
export function buildServicePuppet(settings: ServiceSettings, cacheDir: string, warn: (message: string) => void): PuppetService {
  const puppet = new PuppetService({
    ...settings.extra,
    token: settings.token,
    endpoint: settings.endpoint,
    tls: settings.tls,
  })
  const store = (puppet as unknown as { _payloadStore?: PayloadStoreLike })._payloadStore
  if (store !== undefined && typeof store.storeDir === 'string') {
    mkdirSync(cacheDir, { recursive: true, mode: 0o700 })
    store.storeDir = cacheDir
  } else {
    warn(`cannot move the ${SERVICE_PUPPET_NAME} cache to ${cacheDir} (its internals changed): it goes to ~/.wechaty/`)
  }
  return puppet
}

function stringOrNull(value: unknown): string | null {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : null
}
