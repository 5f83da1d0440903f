// A real OpenID Connect provider for crs's auth tests. The Go test writes a
// config file (issuer port, the provider's signing key, one client per role
// with its public key and claims) and starts: node provider.mjs config.json.
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

const provider = new Provider(issuer, {
  clients: cfg.clients.map((c) => ({
    client_id: c.client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: c.alg || 'RS384',
    jwks: { keys: [c.jwk] },
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: c.scope,
    crs_claims: c.claims,
  })),
  extraClientMetadata: { properties: ['crs_claims'] },
  clientAuthMethods: ['private_key_jwt'],
  enabledJWA: { clientAuthSigningAlgValues: ['RS384', 'ES384', 'RS256'] },
  features: {
    devInteractions: { enabled: false },
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
  scopes: cfg.scopes,
  extraTokenClaims: (ctx) => (ctx.oidc.client && ctx.oidc.client.crs_claims) || {},
  jwks: { keys: [cfg.signing_key] },
});
provider.proxy = false;
server.on('request', provider.callback());
console.log(`listening ${port}`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
