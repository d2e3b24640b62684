// npm google-auth-library, unmodified: a DownscopedClient over the credentials of the
// file GOOGLE_APPLICATION_CREDENTIALS names (one `ferry cred-config --universe-domain`
// wrote). The DownscopedClient posts to https://sts.<universe_domain>/v1/token: with the
// universe domain of that file, the host name sts.<domain> is Ferry. Nothing is
// overridden; the environment's HTTPS_PROXY and NODE_EXTRA_CA_CERTS apply as to any
// client. Prints the downscoped token and the source token it narrowed.
import { DownscopedClient, GoogleAuth } from 'google-auth-library';

const source = await new GoogleAuth().getClient();
const client = new DownscopedClient({
  authClient: source,
  universe_domain: source.universeDomain,
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
const { token } = await client.getAccessToken();
if (!token) throw new Error('no token');
const parent = (await source.getAccessToken()).token;
process.stdout.write(JSON.stringify({ access_token: token, parent }));
