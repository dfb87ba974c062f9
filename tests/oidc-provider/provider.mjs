// Local OpenID Connect provider for end-to-end tests.
//
// A thin wrapper around the certified `oidc-provider` package (panva), configured
// entirely from environment variables / `--port N`. Adds:
//   * browserless login + auto-consent interaction routes (/interaction/:uid ...)
//   * test-only admin endpoints (/test/stats, /test/events, /test/reset, /test/revoke-grants)
// All state is in memory; every start is a fresh provider. TEST USE ONLY.
import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

// ---------------------------------------------------------------- configuration
const env = process.env;
const HOST = '127.0.0.1';
const argPort = process.argv.indexOf('--port');
const PORT = Number(argPort > 0 ? process.argv[argPort + 1] : (env.OIDC_PORT ?? 0));
const int = (name, dflt) => {
  const v = env[name] === undefined || env[name] === '' ? dflt : Number(env[name]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer (seconds)`);
  return v;
};
const bool = (name, dflt) => (env[name] === undefined || env[name] === '' ? dflt : !/^(0|false|no|off)$/i.test(env[name]));

const ACCESS_TOKEN_TTL = int('OIDC_ACCESS_TOKEN_TTL', 60);
const REFRESH_TOKEN_TTL = int('OIDC_REFRESH_TOKEN_TTL', 86400);
const ROTATE_REFRESH_TOKEN = bool('OIDC_ROTATE_REFRESH_TOKEN', true);
const REQUIRE_PKCE = bool('OIDC_REQUIRE_PKCE', true);
const AUTO_LOGIN = env.OIDC_AUTO_LOGIN || '';
const EXTRA_SCOPES = (env.OIDC_SCOPES || '').split(/[\s,]+/).filter(Boolean);
const QUIET = bool('OIDC_QUIET', false);
// ID tokens carry the scopes' claims (email, name, groups), as most IdPs' do for sign-in.
const ID_TOKEN_CLAIMS = bool('OIDC_ID_TOKEN_CLAIMS', false);
// {"alice": ["admins"]}: the `groups` claim (scope `profile`) of each user.
const GROUPS = env.OIDC_GROUPS ? JSON.parse(env.OIDC_GROUPS) : {};
// oidc-provider follows OIDC Core 11 strictly: offline_access is silently dropped from the
// request (=> no refresh token) unless prompt contains "consent". By default this wrapper
// adds prompt=consent to such authorize requests (like most commercial IdPs behave);
// OIDC_STRICT_OFFLINE_ACCESS=1 keeps the stock behaviour.
const STRICT_OFFLINE_ACCESS = bool('OIDC_STRICT_OFFLINE_ACCESS', false);
// Which metadata documents are published (oidc-provider itself serves only OpenID discovery):
//   oidc                /.well-known/openid-configuration, complete (the default)
//   rfc8414-revocation  the discovery document without revocation_endpoint, which only the RFC 8414
//                       document /.well-known/oauth-authorization-server has (as Django OAuth Toolkit does)
//   rfc8414             no OpenID discovery (404), only the RFC 8414 document (a plain OAuth 2.0 server)
const METADATA = env.OIDC_METADATA || 'oidc';
// Clients (ids, comma-separated, or `*`) whose token responses carry Keycloak's
// `refresh_expires_in` (the refresh token's lifetime, OIDC_REFRESH_TOKEN_TTL) next to a refresh token.
const REFRESH_EXPIRES_IN = (env.OIDC_REFRESH_EXPIRES_IN_CLIENTS || '').split(/[\s,]+/).filter(Boolean);
if (!['oidc', 'rfc8414-revocation', 'rfc8414'].includes(METADATA)) {
  throw new Error('OIDC_METADATA must be oidc, rfc8414-revocation or rfc8414');
}

const DEFAULT_CLIENTS = [{
  client_id: 'test-client',
  client_secret: 'test-secret',
  redirect_uris: ['http://127.0.0.1/callback'],
  application_type: 'native', // loopback redirect_uri: any port is accepted (RFC 8252 7.3)
}];
const clients = (env.OIDC_CLIENTS ? JSON.parse(env.OIDC_CLIENTS) : DEFAULT_CLIENTS).map((c) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...c,
}));

// ---------------------------------------------------------------- test observability
const zero = () => ({
  code_grants: 0, // successful grant_type=authorization_code at the token endpoint
  refresh_grants: 0, // successful grant_type=refresh_token
  grant_errors: 0, // any token endpoint error
  refresh_errors: 0, // token endpoint errors for grant_type=refresh_token (e.g. invalid_grant)
  revocation_requests: 0, // 200 answers of the revocation endpoint (also for unknown tokens, RFC 7009)
  revocations: 0, // revocation requests that found and revoked a token
  revoked_access_tokens: 0,
  revoked_refresh_tokens: 0,
  introspections: 0,
  logins: 0,
  consents: 0,
  grants_revoked: 0, // whole grants revoked (RT revocation, RT reuse detection, /test/revoke-grants)
});
let stats = zero();
let events = [];
const grants = new Map(); // grantId -> { sub, client_id }

function record(type, data = {}) {
  const ev = { type, at: new Date().toISOString(), ...data };
  events.push(ev);
  if (events.length > 1000) events.shift();
  if (!QUIET) process.stderr.write(`[oidc] ${JSON.stringify(ev)}\n`);
}

// ---------------------------------------------------------------- storage
// Unbounded in-memory adapter with expiry (the library's built-in one is an LRU that
// evicts entries after ~1000 objects and logs a warning on every start).
const store = new Map(); // key -> { payload, exp (ms epoch or Infinity) }
const get = (key) => {
  const e = store.get(key);
  if (e && e.exp <= Date.now()) { store.delete(key); return undefined; }
  return e?.payload;
};
const put = (key, payload, expiresIn) => store.set(key, { payload, exp: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
class MapAdapter {
  constructor(model) { this.model = model; }
  key(id) { return `${this.model}:${id}`; }
  async upsert(id, payload, expiresIn) {
    put(this.key(id), payload, expiresIn);
    if (this.model === 'Session') put(`sessionUid:${payload.uid}`, id, expiresIn);
    if (payload.userCode) put(`userCode:${payload.userCode}`, id, expiresIn);
    if (payload.grantId) {
      const list = get(`grant:${payload.grantId}`) || [];
      list.push(this.key(id));
      put(`grant:${payload.grantId}`, list, 0);
    }
  }
  async find(id) { return get(this.key(id)); }
  async findByUid(uid) { return this.find(get(`sessionUid:${uid}`)); }
  async findByUserCode(code) { return this.find(get(`userCode:${code}`)); }
  async consume(id) { const p = get(this.key(id)); if (p) p.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    for (const key of get(`grant:${grantId}`) || []) store.delete(key);
    store.delete(`grant:${grantId}`);
  }
}

// ---------------------------------------------------------------- provider
function configuration() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    adapter: MapAdapter,
    clients,
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' }] },
    cookies: { keys: ['oidc-test-cookie-key'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'groups'],
    },
    conformIdTokenClaims: !ID_TOKEN_CLAIMS,
    scopes: ['openid', 'offline_access', ...EXTRA_SCOPES],
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { sub, email: `${sub}@example.test`, email_verified: true, name: sub, preferred_username: sub, groups: GROUPS[sub] || [] };
        },
      };
    },
    features: {
      devInteractions: { enabled: false }, // replaced by the routes below
      revocation: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
    },
    pkce: { methods: ['S256'], required: () => REQUIRE_PKCE },
    // default already is "offline_access in scope and client allows refresh_token"; made explicit
    issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    rotateRefreshToken: () => ROTATE_REFRESH_TOKEN,
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      RefreshToken: REFRESH_TOKEN_TTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 86400,
      Grant: 14 * 86400,
    },
    renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  };
}

// ---------------------------------------------------------------- interactions (login + consent)
async function autoGrant(provider, interaction, accountId, reuse) {
  const { params, prompt, grantId } = interaction;
  const grant = (reuse && grantId && await provider.Grant.find(grantId))
    || new provider.Grant({ accountId, clientId: params.client_id });
  // grant everything that was asked for (scopes are already filtered by the provider)
  if (params.scope) grant.addOIDCScope(params.scope);
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

async function finishLogin(provider, req, res, interaction, sub) {
  const grantId = await autoGrant(provider, interaction, sub, false);
  stats.logins += 1;
  record('login', { sub, client_id: interaction.params.client_id, uid: interaction.uid });
  // login and consent in one step: the provider then redirects straight to the client
  await provider.interactionFinished(req, res, { login: { accountId: sub }, consent: { grantId } }, { mergeWithLastSubmission: false });
}

const loginPage = (uid, clientId) => `<!doctype html>
<title>Test provider login</title>
<h1>Sign in to ${clientId}</h1>
<form method="post" action="/interaction/${uid}/login">
  <input name="login" placeholder="username" autofocus>
  <input name="password" type="password" placeholder="any password">
  <button type="submit">Sign in</button>
</form>
<p>Test provider: any username and password are accepted; consent is granted automatically.</p>
`;

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; if (body.length > 65536) req.destroy(); });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

async function interactionRoute(provider, req, res, url) {
  const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return send(res, 404, { error: 'not_found' });
  let interaction;
  try {
    interaction = await provider.interactionDetails(req, res);
  } catch (err) {
    return send(res, 400, { error: 'invalid_request', error_description: `${err.error_description || err.message} (the _interaction cookie from the /authorize response must be sent)` });
  }
  if (interaction.uid !== m[1]) return send(res, 400, { error: 'invalid_request', error_description: 'interaction uid does not match the _interaction cookie' });
  const { prompt, params } = interaction;

  if (req.method === 'GET' && prompt.name === 'consent') {
    // already logged in (session cookie) but the grant lacks something: auto-consent
    const grantId = await autoGrant(provider, interaction, interaction.session.accountId, true);
    stats.consents += 1;
    record('consent', { sub: interaction.session.accountId, client_id: params.client_id, uid: interaction.uid });
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  if (req.method === 'GET' && prompt.name === 'login') {
    const auto = params.login_hint || AUTO_LOGIN;
    if (auto) return finishLogin(provider, req, res, interaction, auto);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(loginPage(interaction.uid, params.client_id));
  }
  if (req.method === 'POST' && m[2]) {
    const form = await readForm(req);
    const sub = (form.get('login') || '').trim();
    if (!sub) return send(res, 400, { error: 'invalid_request', error_description: 'login (username) is required' });
    return finishLogin(provider, req, res, interaction, sub);
  }
  return send(res, 405, { error: 'method_not_allowed', prompt: prompt.name });
}

// ---------------------------------------------------------------- admin routes
function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function revokeGrants(provider, sub) {
  const revoked = [];
  for (const [grantId, g] of grants) {
    if (sub && g.sub !== sub) continue;
    await Promise.all([
      provider.AccessToken.revokeByGrantId(grantId),
      provider.RefreshToken.revokeByGrantId(grantId),
      provider.AuthorizationCode.revokeByGrantId(grantId),
      provider.Grant.adapter.destroy(grantId),
    ]);
    grants.delete(grantId);
    revoked.push(grantId);
    stats.grants_revoked += 1;
    record('grant.revoked', { grant_id: grantId, sub: g.sub, client_id: g.client_id, by: 'admin' });
  }
  return revoked;
}

async function adminRoute(provider, req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /test/stats': return send(res, 200, stats);
    case 'GET /test/events': return send(res, 200, events);
    case 'GET /test/grants': return send(res, 200, Object.fromEntries(grants));
    case 'POST /test/reset': stats = zero(); events = []; return send(res, 200, stats);
    case 'POST /test/revoke-grants': {
      // ?sub=alice revokes all grants (access + refresh tokens) of that user; no sub = everyone's
      const revoked = await revokeGrants(provider, url.searchParams.get('sub'));
      return send(res, 200, { revoked });
    }
    default: return send(res, 404, { error: 'not_found' });
  }
}

// ---------------------------------------------------------------- metadata documents (OIDC_METADATA)
const DISCOVERY = '/.well-known/openid-configuration';
const RFC8414 = '/.well-known/oauth-authorization-server';
function publishMetadata(provider) {
  provider.use(async (ctx, next) => {
    const path = ctx.path;
    if (path === DISCOVERY && METADATA === 'rfc8414') {
      ctx.status = 404;
      ctx.body = { error: 'not_found' };
      return;
    }
    if (path === RFC8414 && METADATA !== 'oidc') ctx.path = DISCOVERY; // same fields, RFC 8414 names
    await next();
    if (path === DISCOVERY && METADATA === 'rfc8414-revocation' && ctx.body) delete ctx.body.revocation_endpoint;
  });
}

// ---------------------------------------------------------------- wiring
function observe(provider) {
  provider.on('grant.success', (ctx) => {
    const gt = ctx.oidc.params.grant_type;
    if (gt === 'authorization_code') stats.code_grants += 1;
    if (gt === 'refresh_token') stats.refresh_grants += 1;
    record('grant.success', { grant_type: gt, client_id: ctx.oidc.client?.clientId });
  });
  provider.on('grant.error', (ctx, err) => {
    const gt = ctx.oidc?.params?.grant_type;
    stats.grant_errors += 1;
    if (gt === 'refresh_token') stats.refresh_errors += 1;
    record('grant.error', { grant_type: gt, error: err.error, error_description: err.error_description, detail: err.error_detail, client_id: ctx.oidc?.client?.clientId });
  });
  provider.on('grant.saved', (grant) => {
    grants.set(grant.jti, { sub: grant.accountId, client_id: grant.clientId });
  });
  provider.on('grant.revoked', (ctx, grantId) => {
    grants.delete(grantId);
    stats.grants_revoked += 1;
    record('grant.revoked', { grant_id: grantId, by: ctx.oidc?.route });
  });
  provider.on('refresh_token.consumed', (token) => record('refresh_token.consumed', { grant_id: token.grantId }));
  for (const e of ['revocation.error', 'introspection.error', 'authorization.error', 'server_error']) {
    provider.on(e, (ctx, err) => record(e, { error: err.error, error_description: err.error_description || err.message }));
  }
  // upstream koa middleware: adjusts authorize requests, sees the outcome of revocation / introspection
  provider.use(async (ctx, next) => {
    if (!STRICT_OFFLINE_ACCESS && ctx.method === 'GET' && ctx.path === '/auth') {
      const { scope = '', prompt = '' } = ctx.query;
      const prompts = prompt.split(' ').filter(Boolean);
      if (scope.split(' ').includes('offline_access') && !prompts.includes('consent') && !prompts.includes('none')) {
        ctx.query = { ...ctx.query, prompt: [...prompts, 'consent'].join(' ') };
      }
    }
    await next();
    const route = ctx.oidc?.route;
    const clientId = ctx.oidc?.client?.clientId;
    if (route === 'token' && ctx.status === 200 && ctx.body?.refresh_token
        && (REFRESH_EXPIRES_IN.includes('*') || REFRESH_EXPIRES_IN.includes(clientId))) {
      ctx.body = { ...ctx.body, refresh_expires_in: REFRESH_TOKEN_TTL };
    }
    if (route === 'revocation' && ctx.status === 200) {
      stats.revocation_requests += 1;
      const { AccessToken, RefreshToken } = ctx.oidc.entities;
      if (AccessToken || RefreshToken) stats.revocations += 1;
      if (AccessToken) stats.revoked_access_tokens += 1;
      if (RefreshToken) stats.revoked_refresh_tokens += 1;
      record('revocation', {
        client_id: ctx.oidc.client?.clientId,
        token_type_hint: ctx.oidc.params.token_type_hint,
        revoked: AccessToken ? 'access_token' : RefreshToken ? 'refresh_token' : null,
      });
    } else if (route === 'introspection' && ctx.status === 200) {
      stats.introspections += 1;
      record('introspection', { client_id: ctx.oidc.client?.clientId, active: ctx.body?.active });
    }
  });
}

const server = createServer();
server.listen(PORT, HOST, () => {
  const issuer = `http://${HOST}:${server.address().port}`;
  const provider = new Provider(issuer, configuration());
  publishMetadata(provider);
  observe(provider);
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const url = new URL(req.url, issuer);
    const handle = url.pathname.startsWith('/test/') ? adminRoute
      : url.pathname.startsWith('/interaction/') ? interactionRoute : null;
    if (!handle) return callback(req, res);
    handle(provider, req, res, url).catch((err) => {
      process.stderr.write(`[oidc] ${err.stack}\n`);
      if (!res.headersSent) send(res, 500, { error: 'server_error', error_description: err.message });
    });
  });
  process.stdout.write(`listening on ${issuer}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
