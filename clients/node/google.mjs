// npm google-auth-library, unmodified: an IdentityPoolClient with a file-sourced subject
// token, as a GitHub Actions or Kubernetes workload would configure it. Prints the
// access token it obtained from Ferry.
import { IdentityPoolClient } from 'google-auth-library';

const client = new IdentityPoolClient({
  type: 'external_account',
  audience: process.env.AUDIENCE,
  subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
  token_url: process.env.TOKEN_URL,
  credential_source: { file: process.env.SUBJECT_TOKEN_FILE },
});
const { token } = await client.getAccessToken();
if (!token) throw new Error('no token');
process.stdout.write(JSON.stringify({ access_token: token }));
