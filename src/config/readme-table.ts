// The README carries the option table between two markers; this swaps in the current one.
import { optionsTable } from './options.ts';

export const TABLE_START = '<!-- server-options:start (npm run docs:options) -->';
export const TABLE_END = '<!-- server-options:end -->';

export function replaceOptionsTable(readme: string): string {
  const start = readme.indexOf(TABLE_START);
  const end = readme.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error(`README.md has no ${TABLE_START} … ${TABLE_END} section`);
  return `${readme.slice(0, start + TABLE_START.length)}\n${optionsTable()}\n${readme.slice(end)}`;
}
