import { toHttpRequest } from '../../handlers/http/infer-handler';
import { httpEvent } from '../helpers/events';

describe('toHttpRequest: the event as the function reads it', () => {
  test('a string body passes as it is; none stays none', () => {
    expect(toHttpRequest(httpEvent('POST', '/v2/models/m/infer', { body: '{"a":1}' })).body).toBe('{"a":1}');
    expect(toHttpRequest(httpEvent('GET', '/v2/models/m')).body).toBeUndefined();
  });

  // serverless-offline parses a JSON body itself and hands a falsy result over as that value.
  test.each([[false, 'false'], [0, '0'], [null, undefined]])('a body already parsed to %p becomes the text %p', (parsed, text) => {
    const event = { ...httpEvent('POST', '/v2/models/m/infer', { body: 'x' }), body: parsed as unknown as string };
    expect(toHttpRequest(event).body).toBe(text);
  });
});
