// `npm run docs:options`: rewrites the README's table of server options from the option table.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { replaceOptionsTable } from './readme-table.ts';

const readme = fileURLToPath(new URL('../../README.md', import.meta.url));
writeFileSync(readme, replaceOptionsTable(readFileSync(readme, 'utf8')));
