// The version Fledge reports (CLI --version, the schedulers list): package.json's.
import { readFileSync } from 'node:fs';

export const FLEDGE_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;
