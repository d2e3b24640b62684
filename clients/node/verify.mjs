// A relying service's check with jose, unmodified: createRemoteJWKSet fetches Ferry's
// /jwks by itself; jwtVerify checks signature, issuer, audience, expiry and typ.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const jwks = createRemoteJWKSet(new URL(process.env.JWKS_URL));
const { payload, protectedHeader } = await jwtVerify(process.env.TOKEN, jwks, {
  issuer: process.env.ISSUER,
  audience: process.env.AUDIENCE,
  typ: 'at+jwt',
});
process.stdout.write(JSON.stringify({ payload, protectedHeader }));
