// A real OpenID Connect provider (oidc-provider) for the integration tests, on a loopback port.
//
// Configured from the environment by tests/integration/oidc_support.py:
//   OIDC_PORT        port to listen on (issuer http://127.0.0.1:<port>)
//   OIDC_JWKS_FILE   private signing keys (a JWK set); restart with another file to rotate keys
//   OIDC_CLIENTS     JSON list of clients (client_id, client_secret, redirect_uris)
//   OIDC_ACCOUNTS    JSON {account id: extra claims (clientpulse_role, rm_id, team)}
//   OIDC_API         resource indicator (audience) of the RM API's access tokens
//   OIDC_ACCESS_TTL  access token lifetime, seconds
// Sign-in uses the provider's own development login and consent pages (any password).
import fs from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const jwks = JSON.parse(fs.readFileSync(process.env.OIDC_JWKS_FILE, 'utf8'));
const clients = JSON.parse(process.env.OIDC_CLIENTS);
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS);
const api = process.env.OIDC_API;
const accessTtl = Number(process.env.OIDC_ACCESS_TTL || '300');
const scope = 'openid profile clientpulse';

function claimsOf(id) {
  return { sub: id, preferred_username: id, ...(accounts[id] || {}) };
}

const provider = new Provider(issuer, {
  clients: clients.map((c) => ({
    ...c,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks,
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'clientpulse'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username'],
    clientpulse: ['clientpulse_role', 'rm_id', 'team'],
  },
  conformIdTokenClaims: false,
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => claimsOf(id) }),
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => api,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => ({
        scope,
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: accessTtl,
      }),
    },
  },
  extraTokenClaims: async (ctx, token) => {
    if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
    const { sub, ...rest } = claimsOf(token.accountId);
    return rest;
  },
  ttl: { IdToken: 600, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600 },
});
provider.proxy = false;

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
