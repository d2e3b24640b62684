// npm google-auth-library, unmodified: GoogleAuth reads the credential file
// GOOGLE_APPLICATION_CREDENTIALS names (one `ferry cred-config` wrote, fed as it is) and
// gets an access token from Ferry with it. Prints the token.
import { GoogleAuth } from 'google-auth-library';

const client = await new GoogleAuth().getClient();
const { token } = await client.getAccessToken();
if (!token) throw new Error('no token');
process.stdout.write(JSON.stringify({ access_token: token }));
