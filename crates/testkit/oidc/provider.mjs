// A real, certified OpenID Connect provider (oidc-provider) for Rampart's tests.
//
// Usage: OIDC_CLIENTS='[{"client_id":"…","client_secret":"…","redirect_uris":["…"]}]' node provider.mjs
//
// Listens on 127.0.0.1, port chosen by the OS, and prints exactly one line on stdout once ready:
// `READY http://127.0.0.1:<port>` (that URL is the issuer). Exits when stdin closes or on SIGTERM.
// Started and driven by crates/testkit/src/oidc.rs.
//
// Besides the provider's own endpoints it serves:
// - GET  /interaction/:uid      signs in the account named by `login_hint` and consents, no UI;
// - POST /__test/accounts       {"sub","email","email_verified","name"} → 204, adds an account;
// - POST /__test/foreign-jwks   {"on":true|false} → 204, while on the advertised JWKS holds only
//                               another key, so the ID tokens (still signed with the real key)
//                               look "signed by another key".
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

// stdout carries only the READY line: oidc-provider prints its notices with console.info.
console.info = console.error;
console.log = console.error;

const clients = JSON.parse(process.env.OIDC_CLIENTS ?? '[]').map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  redirect_uris: c.redirect_uris,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic', // client_secret_post is accepted as well
}));

/** A fresh RSA signing key as a private JWK, and its public half. */
function rsaKey(kid) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const meta = { kid, alg: 'RS256', use: 'sig' };
  return {
    privateJwk: { ...privateKey.export({ format: 'jwk' }), ...meta },
    publicJwk: { ...publicKey.export({ format: 'jwk' }), ...meta },
  };
}
const signingKey = rsaKey(`real-${Date.now()}`);
const foreignKey = rsaKey(`foreign-${Date.now()}`);
let advertiseForeignKeys = false;

/** sub → { sub, email, email_verified, name } */
const accounts = new Map();

const JWKS_PATH = '/jwks';
let provider; // set once the port (and so the issuer) is known

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

/** Completes an interaction at once: login as `login_hint`, then consent to everything asked. */
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    const accountId = params.login_hint;
    result = accounts.has(accountId)
      ? { login: { accountId } }
      : { error: 'access_denied', error_description: 'unknown account' };
  } else if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    throw new Error(`unexpected prompt ${prompt.name}`);
  }
  // Answers 303 back to the provider's /auth/:uid, which carries on with the authorization.
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

async function handle(req, res) {
  const { pathname } = new URL(req.url, 'http://127.0.0.1');
  if (req.method === 'GET' && pathname.startsWith('/interaction/')) {
    return interaction(req, res);
  }
  if (req.method === 'POST' && pathname === '/__test/accounts') {
    const { sub, email, email_verified, name } = await readJson(req);
    accounts.set(sub, { sub, email, email_verified, name });
    return res.writeHead(204).end();
  }
  if (req.method === 'POST' && pathname === '/__test/foreign-jwks') {
    advertiseForeignKeys = (await readJson(req)).on === true;
    return res.writeHead(204).end();
  }
  if (req.method === 'GET' && pathname === JWKS_PATH && advertiseForeignKeys) {
    res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'no-store' });
    return res.end(JSON.stringify({ keys: [foreignKey.publicJwk] }));
  }
  return provider.callback()(req, res);
}

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    console.error('provider.mjs:', err);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err));
  });
});

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, {
    clients,
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    jwks: { keys: [signingKey.privateJwk] },
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    // Put the scope's claims in the ID token too (as Google does), not only at userinfo.
    conformIdTokenClaims: false,
    pkce: { methods: ['S256'], required: () => true },
    // The `claims` request parameter (OpenID Connect Core 1.0 §5.5): Rampart asks for `auth_time`.
    features: { devInteractions: { enabled: false }, claimsParameter: { enabled: true } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    routes: { jwks: JWKS_PATH },
    // Plain http on loopback: cookies are not `Secure` (ctx.secure is false), and SameSite=Lax
    // rather than the default None, which browsers refuse without Secure.
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      long: { httpOnly: true, signed: true, sameSite: 'lax' },
      short: { httpOnly: true, signed: true, sameSite: 'lax' },
    },
    // Refresh tokens: the default issues one when offline_access was granted, which per
    // OpenID Connect Core requires prompt=consent in the authorization request.
    findAccount: (ctx, sub) => {
      const account = accounts.get(sub);
      return account && { accountId: sub, claims: () => ({ ...account }) };
    },
  });
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
    provider.on(event, (ctx, err) => console.error(`provider.mjs ${event}:`, err));
  }
  process.stdout.write(`READY ${issuer}\n`);
});

// The test harness keeps our stdin open; when it dies (or drops us) stdin closes and we go too.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
