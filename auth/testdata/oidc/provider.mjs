// A real OpenID Connect provider for crs's auth tests. The Go test writes a
// config file (issuer port, the provider's signing key, one client per role
// with its public key and claims; web clients and the users who sign in
// through them) and starts: node provider.mjs config.json.
// It listens on 127.0.0.1 only, prints "listening <port>" and exits when its
// stdin closes (so it never outlives the test).
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;
const issuer = `http://127.0.0.1:${port}`;

const users = cfg.users || {};
const web = new Set((cfg.web_clients || []).map((c) => c.client_id));

const provider = new Provider(issuer, {
  clients: (cfg.web_clients || []).map((c) => ({
    client_id: c.client_id,
    ...(c.client_secret
      ? { client_secret: c.client_secret, token_endpoint_auth_method: 'client_secret_basic' }
      : { token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'RS384', jwks: { keys: [c.jwk] } }),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [c.redirect_uri],
    post_logout_redirect_uris: [],
    scope: `openid ${c.scope}`,
  })).concat(cfg.clients.map((c) => ({
    client_id: c.client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: c.alg || 'RS384',
    jwks: { keys: [c.jwk] },
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: c.scope,
    crs_claims: c.claims,
  }))),
  extraClientMetadata: { properties: ['crs_claims'] },
  clientAuthMethods: ['private_key_jwt', 'client_secret_basic'],
  // Users sign in at the provider's development login form (any password);
  // their claims go into the access tokens issued for them.
  findAccount: (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  // The web clients are the region's own applications: no consent screen.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    if (!web.has(ctx.oidc.client.clientId)) return undefined;
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    // Without a resource parameter the SMART scopes are asked for as plain
    // scopes; they are granted both ways, and the access token (for the
    // default resource, crs) carries them.
    grant.addOIDCScope(ctx.oidc.client.scope);
    grant.addResourceScope(cfg.audience, ctx.oidc.client.scope.split(' ').filter((s) => s !== 'openid').join(' '));
    await grant.save();
    return grant;
  },
  enabledJWA: { clientAuthSigningAlgValues: ['RS384', 'ES384', 'RS256'] },
  features: {
    devInteractions: { enabled: !!cfg.web_clients },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => cfg.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== cfg.audience) throw new Error('unknown resource');
        return { scope: cfg.scopes.join(' '), audience: cfg.audience, accessTokenFormat: 'jwt', accessTokenTTL: 300, jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  scopes: ['openid', ...cfg.scopes],
  extraTokenClaims: (ctx, token) => (token.accountId ? users[token.accountId] : ctx.oidc.client && ctx.oidc.client.crs_claims) || {},
  jwks: { keys: [cfg.signing_key] },
});
provider.proxy = false;
server.on('request', provider.callback());
console.log(`listening ${port}`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
