// npm google-auth-library, unmodified: a DownscopedClient over an IdentityPoolClient.
// Its STS URL is hard-wired to https://sts.<universe_domain>/v1/token, so (as
// ../shared/reference/CLIENTS.md describes) only its stsCredential is replaced by one
// built for Ferry's token endpoint. Prints the downscoped token it obtained.
import { DownscopedClient, IdentityPoolClient } from 'google-auth-library';
import { StsCredentials } from 'google-auth-library/build/src/auth/stscredentials.js';

const source = new IdentityPoolClient({
  type: 'external_account',
  audience: process.env.AUDIENCE,
  subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
  token_url: process.env.TOKEN_URL,
  credential_source: { file: process.env.SUBJECT_TOKEN_FILE },
});
const client = new DownscopedClient({
  authClient: source,
  credentialAccessBoundary: {
    accessBoundary: {
      accessBoundaryRules: [
        {
          availableResource: '//storage.googleapis.com/projects/_/buckets/bucket-123',
          availablePermissions: ['inRole:roles/storage.objectViewer'],
          availabilityCondition: {
            expression:
              "resource.name.startsWith('projects/_/buckets/bucket-123/objects/customer-a')",
            title: 'customer-a-objects',
          },
        },
      ],
    },
  },
});
client.stsCredential = new StsCredentials({ tokenExchangeEndpoint: process.env.TOKEN_URL });
const { token } = await client.getAccessToken();
if (!token) throw new Error('no token');
const parent = (await source.getAccessToken()).token;
process.stdout.write(JSON.stringify({ access_token: token, parent }));
