// `npm run docs:fields`: rewrites docs/fields.md from the input schemas.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fieldReference } from './field-reference.ts';

writeFileSync(fileURLToPath(new URL('../../../docs/fields.md', import.meta.url)), fieldReference());
