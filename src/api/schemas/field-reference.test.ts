import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fieldReference } from './field-reference.ts';

describe('docs/fields.md', () => {
  it('is what the schemas generate (run `npm run docs:fields` after changing a schema)', () => {
    expect(readFileSync(new URL('../../../docs/fields.md', import.meta.url), 'utf8')).toBe(fieldReference());
  });

  it('lists every field of a request and a deploy, nested ones included', () => {
    const text = fieldReference();
    for (const field of [
      '`instances`',
      '`maxScale`',
      '`healthcheck.uri`',
      '`canaryDeploySettings.acceptanceMode`',
      '`uris`',
      '`executorData.cmd`',
    ]) {
      expect(text).toContain(field);
    }
  });
});
