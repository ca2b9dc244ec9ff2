// Evaluates flags of the flagd testbed set through the OpenFeature SDKs and their OFREP
// providers (server: one request per evaluation; web: one bulk request with ETag), against
// the edge at EDGE_URL with CLIENT_KEY, and prints what each SDK resolved as JSON.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { OpenFeature as WebFeature } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const baseUrl = process.env.EDGE_URL;
const headers = [['Authorization', `Bearer ${process.env.CLIENT_KEY}`]];
const pick = (d) => ({ value: d.value, reason: d.reason, variant: d.variant, errorCode: d.errorCode });

await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers }));
const server = OpenFeature.getClient();
const hit = { targetingKey: '5c3d8535-f81a-4478-a6d3-afaa4d51199e' };
const results = {
  server: {
    boolean: pick(await server.getBooleanDetails('boolean-flag', false)),
    integer: pick(await server.getNumberDetails('integer-flag', 1)),
    object: pick(await server.getObjectDetails('object-flag', {})),
    targeting: pick(await server.getStringDetails('targeting-key-flag', 'fallback', hit)),
    fractional: pick(await server.getStringDetails('fractional-flag', 'fallback', { user: { name: 'jack' } })),
    missing: pick(await server.getStringDetails('no-such-flag', 'fallback')),
    wrongType: pick(await server.getNumberDetails('wrong-flag', 13)),
  },
};

await WebFeature.setContext(hit);
await WebFeature.setProviderAndWait(new OFREPWebProvider({ baseUrl, headers, cacheMode: 'disabled', changeDetection: 'none' }));
const web = WebFeature.getClient();
results.web = {
  boolean: pick(web.getBooleanDetails('boolean-flag', false)),
  targeting: pick(web.getStringDetails('targeting-key-flag', 'fallback')),
  missing: pick(web.getStringDetails('no-such-flag', 'fallback')),
};
console.log(JSON.stringify(results));
await OpenFeature.close();
await WebFeature.close();
